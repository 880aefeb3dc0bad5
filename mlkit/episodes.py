"""N-way K-shot episodes: a batch of few-shot classification tasks drawn from a class-indexed set.

One task (Vinyals et al. 2016, "Matching networks for one shot learning"): pick `ways` classes,
give them the labels 0 .. ways-1 in random order, and draw `shots` support and `queries` query
images of each. The learner adapts on the support set and is scored on the query set.
With rotations=True every class also appears turned by 90, 180 and 270 degrees as three new
classes (Santoro et al. 2016; Finn et al. 2017, MAML; Snell et al. 2017, ProtoNets).

    tasks = sample_episodes(load_glyphs("background"), ways=5, shots=1, queries=15, tasks=32)
    tasks.x_support.shape   # (32, 5, 1, 28, 28)
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .checks import check_int
from .data import ClassImages


class Episodes(NamedTuple):
    """A batch of tasks. Images are float32 in [0, 1] (ink bright); within a task the support
    and query sets are ordered by label: label 0's images first, then label 1's, ..."""
    x_support: torch.Tensor  # (tasks, ways * shots, 1, H, W)
    y_support: torch.Tensor  # (tasks, ways * shots) long in [0, ways)
    x_query: torch.Tensor    # (tasks, ways * queries, 1, H, W)
    y_query: torch.Tensor    # (tasks, ways * queries) long in [0, ways)
    classes: torch.Tensor    # (tasks, ways) dataset class of each label
    rotations: torch.Tensor  # (tasks, ways) quarter turns of each label, all 0 without rotations


def sample_episodes(dataset, ways: int, shots: int, queries: int, tasks: int,
                    generator: torch.Generator | int | None = None, rotations: bool = False,
                    device=None) -> Episodes:
    """Draw `tasks` independent `ways`-way `shots`-shot tasks with `queries` queries per class.

    dataset: a ClassImages, or images (classes, samples, H, W) as a uint8 (0..255) or float
    (0..1) tensor / array. generator: a torch.Generator or an int seed, for repeatable episodes.
    Classes within a task are distinct (a class and its rotation count as distinct), and so are
    the images drawn of a class. All tasks are drawn at once, without a loop over tasks.
    """
    images = dataset.images if isinstance(dataset, ClassImages) else dataset
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
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
    #    i.e. a uniform draw without replacement, in random order (topk is cheaper than argsort)
    pick = torch.rand(tasks, available, generator=generator).topk(ways, dim=1).indices
    classes, turns = (pick // 4, pick % 4) if rotations else (pick, torch.zeros_like(pick))
    # 2. images: likewise shots + queries distinct samples of each chosen class
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
    labels = torch.arange(ways, device=x.device).view(1, ways, 1)
    y = labels.expand(tasks, ways, n)

    def flat(t):  # (tasks, ways, m, ...) -> (tasks, ways * m, ...)
        return t.reshape(tasks, -1, *t.shape[3:])
    return Episodes(flat(x[:, :, :shots]), flat(y[:, :, :shots]),
                    flat(x[:, :, shots:]), flat(y[:, :, shots:]),
                    classes.to(x.device), turns.to(x.device))
