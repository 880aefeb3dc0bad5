"""Few-shot image classification: N-way K-shot episodes as a task family, training and testing.

``EpisodeFamily`` makes the glyph (or Omniglot) classes look like any other task family
(``family.sample(tasks, shots, queries) -> TaskBatch``), so ``meta_train``, ``meta_test``
and ``adaptation_curves`` work on images unchanged:

    family = EpisodeFamily(load_glyphs("background"), ways=5, rotations=True)
    learner = make_learner("maml", Conv4(ways=5), "cross_entropy", inner_lr=0.4)
    meta_train(learner, family, iterations=1000, meta_batch=8, shots=1, queries=5)

Protocol of the tests (Vinyals et al. 2016; Finn et al. 2017; Snell et al. 2017): train on
the *background* alphabets, test on the held-out *evaluation* alphabets; every test task has
fresh classes, K support and 15 query images per class; report the mean query accuracy over
600 or more tasks with a 95% confidence interval.
"""
from __future__ import annotations

import itertools
import time

import torch
from tqdm.auto import tqdm

from .checks import check_float, check_int
from .data import ClassImages, load_glyphs, load_omniglot
from .episodes import sample_episodes
from .evaluate import accuracy_per_task, summarize
from .tasks import TaskBatch, cross_entropy_per_task

PUBLISHED_OMNIGLOT = {  # accuracy % (5w1s, 5w5s, 20w1s, 20w5s) reported on real Omniglot
    "MAML (Finn et al. 2017)": (98.7, 99.9, 95.8, 98.9),
    "ProtoNets (Snell et al. 2017)": (98.8, 99.7, 96.0, 98.9),
}
TRAIN_DEFAULTS = {  # the CLI's glyph defaults, those of the shipped checkpoints (data/README.md)
    "protonet": {"shots": 1, "queries": 5, "meta_batch": 1, "iterations": 6000},
    "maml": {"shots": 1, "queries": 3, "meta_batch": 8, "iterations": 3000,
             "inner_lr": 0.4, "inner_steps": 1},
}
TEST_STEPS = 3  # inner steps at test time for the MAML family (Finn et al. 2017: 3 for Omniglot)
IMAGES_PER_PASS = 100  # episodes are evaluated in chunks of about this many images: small
# chunks keep memory low and avoid the page faults of large allocations (2x faster on CPU)


class EpisodeFamily:
    """N-way K-shot classification tasks over a class-indexed image set.

    dataset:   a ``ClassImages`` (e.g. ``load_glyphs("background")``)
    ways:      classes per task (N)
    rotations: also use every class turned by 90, 180, 270 degrees as new classes
    name, split: recorded in ``protocol()`` (where the classes come from)
    """

    metric = "accuracy"
    loss = staticmethod(cross_entropy_per_task)

    def __init__(self, dataset: ClassImages, ways: int, rotations: bool = False,
                 name: str = "glyphs", split: str = "background"):
        if not isinstance(dataset, ClassImages):
            raise ValueError(f"dataset must be a ClassImages (see mlkit.data), got "
                             f"{type(dataset).__name__}")
        available = len(dataset) * (4 if rotations else 1)
        self.ways = check_int("ways", ways, low=2, high=available)
        if not isinstance(rotations, bool):
            raise ValueError(f"rotations must be True or False, got {rotations!r}")
        self.dataset, self.rotations, self.name, self.split = dataset, rotations, name, split

    def protocol(self) -> dict:
        return {"task": self.name, "split": self.split, "ways": self.ways,
                "rotations": self.rotations, "classes": len(self.dataset),
                "alphabets": len(self.dataset.alphabet_names),
                "image_size": list(self.dataset.image_size)}

    def sample(self, tasks: int, shots: int, queries: int = 15, generator=None, device=None,
               ways: int | None = None) -> TaskBatch:
        """Draw ``tasks`` episodes: x_support (T, ways*shots, 1, H, W) float in [0, 1],
        y_support (T, ways*shots) long, x_query (T, ways*queries, 1, H, W), y_query;
        info: "classes" and "rotations" (T, ways), the dataset class and quarter turns of
        each label. ``ways`` overrides the family's for this draw."""
        e = sample_episodes(self.dataset, self.ways if ways is None else ways, shots, queries,
                            tasks, generator=generator, rotations=self.rotations, device=device)
        return TaskBatch(e.x_support, e.y_support, e.x_query, e.y_query,
                         {"classes": e.classes, "rotations": e.rotations})


def check_ways(learner, ways: int) -> None:
    """A MAML-family model has a head with a fixed number of outputs: refuse other ways."""
    head = getattr(learner.model, "ways", None)
    if learner.name != "protonet" and head is not None and head != ways:
        raise ValueError(f"ways={ways} does not fit this {learner.name} model: its head has {head} "
                         f"outputs, so it classifies {head}-way tasks only (train a {ways}-way "
                         f"checkpoint, or use ProtoNets, which work at any number of ways)")


def episode_accuracy(learner, batch: TaskBatch, steps: int = 0, lr=None) -> dict:
    """Query accuracy and loss per task, (T, steps + 1) each, without meta-gradients.

    ProtoNets classify directly (one column, "step 0"); the MAML family is fine-tuned
    on the support set with ``steps`` SGD steps (``mlkit.evaluate.adaptation_curves``).
    """
    if learner.name == "protonet":
        with torch.no_grad():
            logits = learner.logits(batch, ways=int(batch.y_support.max()) + 1)
        return {"accuracy": accuracy_per_task(logits, batch.y_query)[:, None],
                "loss": cross_entropy_per_task(logits, batch.y_query)[:, None],
                "diverged": torch.zeros(batch.tasks, dtype=torch.bool)}
    from .evaluate import adaptation_curves
    check_ways(learner, int(batch.y_support.max()) + 1)
    return adaptation_curves(learner, batch, steps, lr)


def prediction_steps(learner, batch: TaskBatch, lr=None):
    """Fine-tune step by step; yield (pred, support_loss, diverged) after 0, 1, 2, ... steps.

    pred (T, Q): predicted query labels; support_loss (T,): the loss on the support set
    at the current weights (None for ProtoNets); diverged (T,) bool. An endless generator:
    a caller takes as many steps as it wants and can come back for more. A task whose
    fine-tuning stops being finite (too large an lr) keeps its last finite weights and is
    marked diverged. ProtoNets do not fine-tune: every step yields the same prediction.
    """
    if learner.name == "protonet":
        with torch.no_grad():
            logits = learner.logits(batch, ways=int(batch.y_support.max()) + 1)
        pred, diverged = logits.argmax(-1), torch.zeros(batch.tasks, dtype=torch.bool)
        while True:
            yield pred, None, diverged
    check_ways(learner, int(batch.y_support.max()) + 1)
    lr = learner.inner_lr if lr is None else check_float("lr", lr, low=0.0)
    model, names = learner.model, learner.adapted_names()
    params = {n: p.detach() for n, p in learner.start(batch.tasks).items()}
    with torch.no_grad():
        pred = model.forward_tasks(params, batch.x_query).argmax(-1)
    diverged = torch.zeros(batch.tasks, dtype=torch.bool)
    while True:
        with torch.enable_grad():  # one step of the inner loop of mlkit.maml, no meta-gradient
            live = {n: p.detach().requires_grad_(n in names) for n, p in params.items()}
            losses = learner.loss(model.forward_tasks(live, batch.x_support), batch.y_support)
        yield pred, losses.detach(), diverged.clone()
        grads = torch.autograd.grad(losses.sum(), [live[n] for n in names])
        with torch.no_grad():
            new = {**params, **{n: params[n] - lr * g for n, g in zip(names, grads)}}
            logits = model.forward_tasks(new, batch.x_query)
            ok = torch.isfinite(logits).flatten(1).all(1)
            for n in names:
                ok &= torch.isfinite(new[n]).flatten(1).all(1)
            diverged |= ~ok
            keep = lambda a, b: torch.where(diverged.view(-1, *[1] * (a.dim() - 1)), b, a)
            params = {n: keep(new[n], params[n]) for n in params}
            pred = keep(logits.argmax(-1), pred)


def predictions(learner, batch: TaskBatch, steps: int = 0, lr=None):
    """Predicted query labels after 0..steps inner steps: (T, Q, steps + 1) long, and
    diverged (T,) bool (see ``prediction_steps``)."""
    check_int("steps", steps, low=0)
    out = list(itertools.islice(prediction_steps(learner, batch, lr), steps + 1))
    return torch.stack([p for p, _, _ in out], -1), out[-1][2]


def meta_test_images(learner, family: EpisodeFamily, shots: int, steps: int | None = None,
                     tasks: int = 600, queries: int = 15, lr=None, seed: int = 12345, device=None,
                     progress: bool = False) -> dict:
    """Meta-test on ``tasks`` fresh episodes of ``family`` (same seed, same episodes).

    Returns {"protocol": {...}, "accuracy": {"0": {"mean", "ci95"}, ...}, "loss": {...}}:
    step "0" only for ProtoNets, "0" .. str(steps) for the MAML family (default 3 steps,
    each learner's own inner lr unless ``lr`` is given). The numbers equal
    ``mlkit.evaluate.meta_test``'s; this adds ProtoNets, a progress bar and bounded memory.
    """
    check_ways(learner, family.ways)
    protonet = learner.name == "protonet"
    if protonet and (steps not in (None, 0) or lr is not None):
        raise ValueError(f"steps and lr do not apply to ProtoNets (they do not fine-tune), got "
                         f"steps={steps}, lr={lr}")
    steps = 0 if protonet else (TEST_STEPS if steps is None else check_int("steps", steps, low=0))
    check_int("shots", shots, low=1)
    check_int("tasks", tasks, low=1)
    check_int("queries", queries, low=1)
    generator = torch.Generator().manual_seed(check_int("seed", seed, low=0))
    chunk = max(1, IMAGES_PER_PASS // (family.ways * (shots + queries)))
    device = device or next(learner.parameters()).device
    parts, done, start = [], 0, time.perf_counter()
    with tqdm(total=tasks, desc=f"{learner.name} episodes", disable=not progress,
              mininterval=0.5) as bar:
        while done < tasks:
            n = min(chunk, tasks - done)
            batch = family.sample(n, shots, queries, generator=generator, device=device)
            parts.append(episode_accuracy(learner, batch, steps, lr))
            done += n
            bar.update(n)
    curves = {k: torch.cat([p[k].cpu() for p in parts]) for k in parts[0]}
    used_lr = None if protonet else (learner.inner_lr if lr is None else lr)
    update = ("none (nearest class prototype)" if protonet else
              f"{steps} SGD step(s) on the support set, lr {used_lr}")
    result = {"protocol": {**family.protocol(), "algo": learner.name, "shots": shots,
                           "queries": queries, "steps": steps, "tasks": tasks,
                           "inner_lr": used_lr,
                           "inner_update": update, "seed": seed,
                           "ci": "95% normal interval, 1.96 * std / sqrt(tasks)"},
              "diverged_tasks": int(curves["diverged"].sum())}
    result.update(summarize(curves, {"accuracy": "accuracy", "loss": "loss"}))
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def evaluation_family(ways: int, data=None, image_size: int = 28) -> EpisodeFamily:
    """Held-out classes: the glyphs' evaluation alphabets, or an Omniglot folder's."""
    if data is None:
        return EpisodeFamily(load_glyphs("evaluation"), ways, name="glyphs", split="evaluation")
    return EpisodeFamily(load_omniglot(data, "evaluation", size=image_size), ways,
                         name="omniglot", split="evaluation")


# ------------------------------------------------------------------------------ command line
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the system.

    A Conv-4 pass over a 20-way episode allocates activations of tens of MB; by default
    glibc maps each such block fresh and unmaps it when freed, and the page faults of the
    next pass cost more than the convolutions on some virtual machines (2-4x slower, mostly
    system time). Called by the command line only (a process of its own); returns whether
    it applied (Linux with glibc).
    """
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False


def _lr_schedule(optimizer, iterations: int):
    """Halve the learning rate after 50% and 75% of training (a step decay, as Snell et al.)."""
    milestones = sorted({max(1, int(iterations * f)) for f in (0.5, 0.75)})
    base = [g["lr"] for g in optimizer.param_groups]

    def step(history):
        drops = sum(history.iterations >= m for m in milestones)
        for g, lr in zip(optimizer.param_groups, base):
            g["lr"] = lr * 0.5 ** drops
    return step, milestones


def train_glyphs(args, argv) -> int:
    """``python -m mlkit train --task glyphs ...``: meta-train on the background alphabets
    (with rotations as extra classes) and save a checkpoint."""
    from .commands import _command_line, downsample
    from .checkpoints import save_checkpoint
    from .models import Conv4
    from .runtime import adam, pick_device, torch_threads
    from .train import make_learner, meta_train

    if args.algo not in ("maml", "fomaml", "anil", "protonet"):
        raise ValueError(f"--algo must be one of maml, fomaml, anil, protonet for --task glyphs, "
                         f"got {args.algo!r}")
    protonet = args.algo == "protonet"
    keep_freed_memory()
    defaults = TRAIN_DEFAULTS["protonet" if protonet else "maml"]
    pick = lambda name: getattr(args, name) if getattr(args, name, None) is not None \
        else defaults.get(name)
    cfg = {k: pick(k) for k in ("shots", "queries", "meta_batch", "iterations")}
    if protonet:
        for opt in ("inner_lr", "inner_steps"):
            if getattr(args, opt) is not None:
                raise ValueError(f"--{opt.replace('_', '-')} does not apply to protonet "
                                 f"(ProtoNets have no inner loop)")
    else:
        cfg.update(inner_lr=pick("inner_lr"), inner_steps=pick("inner_steps"))
    train_set = load_glyphs("background")
    family = EpisodeFamily(train_set, args.ways, rotations=True, split="background")
    if cfg["shots"] + cfg["queries"] > train_set.samples_per_class:
        raise ValueError(f"--shots + --queries must be at most {train_set.samples_per_class} "
                         f"(drawings per class), got {cfg['shots']} + {cfg['queries']}")
    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    model = Conv4(None if protonet else args.ways)
    learner = make_learner(args.algo, model, "cross_entropy", cfg.get("inner_lr", 0.0),
                           cfg.get("inner_steps"), args.multi_step_loss).to(device)
    optimizer = adam(learner.parameters(), args.outer_lr)
    schedule, milestones = _lr_schedule(optimizer, cfg["iterations"])
    with torch_threads(args.threads):
        history = meta_train(learner, family, cfg["iterations"], cfg["meta_batch"], cfg["shots"],
                             cfg["queries"], args.outer_lr, seed=args.seed, device=device,
                             callback=schedule, callback_every=1, optimizer=optimizer)
        quick = meta_test_images(learner, evaluation_family(args.ways), cfg["shots"],
                                 steps=None if protonet else TEST_STEPS, tasks=100, queries=5,
                                 seed=1)
    final = quick["accuracy"][str(quick["protocol"]["steps"])]
    explicit = ["train", "--task", "glyphs", "--algo", args.algo, "--ways", str(args.ways),
                "--shots", str(cfg["shots"]), "--queries", str(cfg["queries"]),
                "--meta-batch", str(cfg["meta_batch"]), "--iterations", str(cfg["iterations"])]
    if not protonet:
        explicit += ["--inner-steps", str(cfg["inner_steps"]), "--inner-lr", str(cfg["inner_lr"])]
        explicit += ["--multi-step-loss"] if args.multi_step_loss else []
    explicit += ["--outer-lr", str(args.outer_lr), "--seed", str(args.seed), "--out", args.out]
    if args.threads is not None:
        explicit += ["--threads", str(args.threads)]
    meta = {"task": "glyphs", "family": family.protocol(), "algo": args.algo, "ways": args.ways,
            "config": {**cfg, **learner.config(), "outer_lr": args.outer_lr, "optimizer": "Adam",
                       "lr_schedule": f"x0.5 at iterations {milestones}",
                       "rotations": True},
            "seed": args.seed, "iterations": history.iterations, "stopped": history.stopped,
            "seconds": round(history.seconds, 1), "loss_curve": downsample(history.losses),
            "metrics": {"quick_eval": {"split": "evaluation", "ways": args.ways,
                                        "shots": cfg["shots"], "queries": 5, "tasks": 100,
                                        "steps": quick["protocol"]["steps"],
                                        "accuracy": final["mean"], "ci95": final["ci95"]}},
            "command": _command_line(explicit), "command_as_typed": _command_line(argv)}
    path = save_checkpoint(args.out, learner, meta)
    status = {"finished": "", "interrupted": " (interrupted: partial training)",
              "diverged": " (stopped: the loss diverged)"}[history.stopped]
    print(f"saved {path}: {args.algo}, {history.iterations} iterations in "
          f"{history.seconds:.0f} s{status}; {args.ways}-way {cfg['shots']}-shot accuracy on 100 "
          f"held-out episodes: {100 * final['mean']:.1f}% +- {100 * final['ci95']:.1f}%")
    return 0 if history.stopped != "diverged" else 1


def evaluate_glyphs(learner, meta: dict, args, device) -> dict:
    """``python -m mlkit evaluate CK --task glyphs ...``: test on held-out alphabets."""
    ways = args.ways or getattr(learner.model, "ways", None) or 5
    shots = args.shots or 1
    tasks = args.tasks or 600
    queries = args.queries or 15
    check_ways(learner, ways)
    keep_freed_memory()
    family = evaluation_family(ways, args.data, learner.model.image_size)
    if shots + queries > family.dataset.samples_per_class:
        raise ValueError(f"--shots + --queries must be at most "
                         f"{family.dataset.samples_per_class} (drawings per class), "
                         f"got {shots} + {queries}")
    return meta_test_images(learner, family, shots, steps=args.steps, tasks=tasks,
                            queries=queries, lr=args.inner_lr, seed=args.seed, device=device,
                            progress=True)


def glyphs_table(tasks: int = 600, seed: int = 12345, queries: int = 15) -> str:
    """Markdown table of the shipped glyph checkpoints on held-out alphabets (accuracy %)."""
    from .checkpoints import load_shipped
    settings = [(5, 1), (5, 5), (20, 1), (20, 5)]
    keep_freed_memory()
    header = ["model", "checkpoint"] + [f"{w}-way {k}-shot" for w, k in settings]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    family = {w: evaluation_family(w) for w in (5, 20)}
    for label, names in (("ProtoNets", {5: "glyphs_protonet", 20: "glyphs_protonet"}),
                         ("MAML", {5: "glyphs_maml_5way", 20: "glyphs_maml_20way"})):
        cells = [label, " / ".join(f"`{n}`" for n in dict.fromkeys(names.values()))]
        for w, k in settings:
            learner, _ = load_shipped(names[w])
            r = meta_test_images(learner, family[w], k, tasks=tasks, queries=queries, seed=seed,
                                 progress=True)
            v = r["accuracy"][str(r["protocol"]["steps"])]
            cells.append(f"{100 * v['mean']:.1f} ± {100 * v['ci95']:.1f}")
        rows.append("| " + " | ".join(cells) + " |")
    for label, numbers in PUBLISHED_OMNIGLOT.items():
        rows.append(f"| {label}, real Omniglot | published | "
                    + " | ".join(f"{x:.1f}" for x in numbers) + " |")
    note = (f"Accuracy % on the held-out glyph alphabets (evaluation split), mean over {tasks} "
            f"episodes (seed {seed}) +- 95% CI, {queries} queries per class; MAML fine-tunes "
            f"{TEST_STEPS} SGD steps with its training inner lr.")
    return "\n".join(rows) + "\n\n" + note
