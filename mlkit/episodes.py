"""N-way K-shot episodes: few-shot classification tasks drawn from a class-indexed image set.

One task (Vinyals et al. 2016, "Matching networks for one shot learning"): pick `ways` classes,
give them the labels 0 .. ways-1 in a random order (so a label means nothing across tasks),
and draw `shots` support and `queries` query images of each class. Optionally every class
also counts turned by 90, 180 and 270 degrees as three new classes (Santoro et al. 2016;
Finn et al. 2017; Snell et al. 2017). Here ``shots`` and ``queries`` count images *per class*.

    family = EpisodeFamily(load_glyphs("background"), ways=5, rotations=True)
    batch = family.sample(8, shots=1, queries=15)   # a TaskBatch, as SinusoidFamily gives
    batch.x_support.shape                            # (8, 5, 1, 28, 28)

Test protocol (Vinyals et al. 2016; Finn et al. 2017; Snell et al. 2017): train on the
*background* alphabets, test on the held-out *evaluation* alphabets; every test task has
fresh classes, K support and 15 query images per class; report the mean query accuracy over
600 or more tasks with a 95% confidence interval.
"""
from __future__ import annotations

import numpy as np
import torch

from .checks import check_int
from .data import ClassImages, load_glyphs, load_omniglot
from .tasks import TaskBatch


def sample_episodes(dataset, ways: int, shots: int, queries: int, tasks: int,
                    generator: torch.Generator | int | None = None, rotations: bool = False,
                    device=None) -> TaskBatch:
    """Draw `tasks` independent `ways`-way `shots`-shot tasks with `queries` queries per class.

    dataset: a ClassImages, or images (classes, samples, H, W) as a uint8 (0..255) or float
    (0..1) tensor. Returns x_support (T, ways*shots, 1, H, W) float in [0, 1], y_support
    (T, ways*shots) long, x_query (T, ways*queries, 1, H, W), y_query; support and query sets
    are ordered by label. info: "classes" and "rotations" (T, ways), the dataset class and
    quarter turns behind each label. All tasks are drawn at once, without a loop over tasks.
    """
    images = dataset.images if isinstance(dataset, ClassImages) else dataset
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError("dataset must be a ClassImages or images shaped (classes, samples, H, W), "
                         f"got {type(dataset).__name__} {tuple(getattr(images, 'shape', ()))}")
    n_classes, n_samples, height, width = images.shape
    if not isinstance(rotations, bool):
        raise ValueError(f"rotations must be True or False, got {rotations!r}")
    if rotations and height != width:
        raise ValueError(f"rotations need square images, got {height}x{width}")
    available = n_classes * (4 if rotations else 1)
    ways = check_int("ways", ways, 1, None)
    if ways > available:
        raise ValueError(f"ways must be at most the number of classes ({available}"
                         f"{' with rotations' if rotations else ''}), got {ways}")
    shots = check_int("shots", shots, 1, None)
    queries = check_int("queries", queries, 1, None)
    if shots + queries > n_samples:
        raise ValueError(f"shots + queries must be at most the samples per class ({n_samples}), "
                         f"got {shots} + {queries}")
    tasks = check_int("tasks", tasks, 1, None)
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        generator = torch.Generator().manual_seed(int(generator))
    elif generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, an int seed or None, got "
                         f"{generator!r}")

    # 1. classes: per task, the `ways` (class, rotation) pairs with the largest random keys,
    #    a uniform draw without replacement in random order: label i is the i-th pair drawn
    pick = torch.rand(tasks, available, generator=generator).topk(ways, dim=1).indices
    classes, turns = (pick // 4, pick % 4) if rotations else (pick, torch.zeros_like(pick))
    # 2. images: likewise shots + queries distinct drawings of each chosen class
    n = shots + queries
    index = torch.rand(tasks, ways, n_samples, generator=generator).topk(n, dim=2).indices
    x = images[classes[..., None], index]                  # (tasks, ways, n, H, W)
    for k in (1, 2, 3):                                    # turn each label's images k times
        turned = turns == k
        if turned.any():
            x[turned] = torch.rot90(x[turned], k, dims=(-2, -1))
    x = x.to(device)
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    x = x.unsqueeze(3)                                     # (tasks, ways, n, 1, H, W)
    y = torch.arange(ways, device=x.device).view(1, ways, 1).expand(tasks, ways, n)

    def flat(t):  # (tasks, ways, m, ...) -> (tasks, ways * m, ...)
        return t.reshape(tasks, -1, *t.shape[3:])
    return TaskBatch(flat(x[:, :, :shots]), flat(y[:, :, :shots]), flat(x[:, :, shots:]),
                     flat(y[:, :, shots:]),
                     {"classes": classes.to(x.device), "rotations": turns.to(x.device)})


class EpisodeFamily:
    """N-way K-shot classification tasks over a class-indexed image set.

    dataset:   a ``ClassImages`` (e.g. ``load_glyphs("background")``)
    ways:      classes per task (N)
    rotations: also use every class turned by 90, 180, 270 degrees as new classes
    name, split: recorded in ``protocol()`` (where the classes come from)
    """

    test_queries = 15  # query images per class at meta-test time (Vinyals et al. 2016)
    tasks_per_pass = 8  # meta_test fine-tunes this many episodes at once (bounded memory)

    def __init__(self, dataset: ClassImages, ways: int, rotations: bool = False,
                 name: str = "glyphs", split: str = "background"):
        if not isinstance(dataset, ClassImages):
            raise ValueError(f"dataset must be a ClassImages (see mlkit.data), got "
                             f"{type(dataset).__name__}")
        if not isinstance(rotations, bool):
            raise ValueError(f"rotations must be True or False, got {rotations!r}")
        self.ways = check_int("ways", ways, low=2, high=len(dataset) * (4 if rotations else 1))
        self.dataset, self.rotations, self.name, self.split = dataset, rotations, name, split

    def protocol(self) -> dict:
        return {"task": self.name, "split": self.split, "ways": self.ways,
                "rotations": self.rotations, "classes": len(self.dataset),
                "alphabets": len(self.dataset.alphabet_names),
                "image_size": list(self.dataset.image_size)}

    def sample(self, tasks: int, shots: int, queries: int = 15, generator=None, device=None,
               ways: int | None = None) -> TaskBatch:
        """``tasks`` episodes (see ``sample_episodes``); ``ways`` overrides the family's."""
        return sample_episodes(self.dataset, self.ways if ways is None else ways, shots,
                               queries, tasks, generator=generator, rotations=self.rotations,
                               device=device)


def evaluation_family(ways: int, data=None, split: str = "evaluation",
                      image_size: int = 28) -> EpisodeFamily:
    """Held-out classes: the glyphs' evaluation alphabets, or the ``split`` ("evaluation",
    "background_small1", ...) of an Omniglot folder ``data``."""
    if data is None:
        return EpisodeFamily(load_glyphs(split), ways, name="glyphs", split=split)
    return EpisodeFamily(load_omniglot(data, split, size=image_size), ways, name="omniglot",
                         split=split)
