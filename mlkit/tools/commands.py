"""What each ``python -m mlkit`` subcommand does (parsing lives in ``cli.py``)."""
from __future__ import annotations

import json
import shlex
import sys
import time

import torch

from ..algorithms import make_learner
from ..checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from ..data import load_glyphs
from ..episodes import EpisodeFamily, evaluation_family
from ..evaluate import image_test_steps, meta_test
from ..models import MLP, Conv4
from ..runtime import keep_freed_memory, pick_device, torch_threads
from ..tasks import SinusoidFamily
from ..train import History, meta_train

# Training settings of each task when not given (data/README.md lists the shipped runs)
DEFAULTS = {
    "sinusoid": {"algo": "maml", "iterations": 70000, "shots": 10, "queries": 10,
                 "meta_batch": 25, "inner_lr": 0.01, "outer_lr": 1e-3, "lr_drops": [],
                 "seed": 0, "multi_step_loss": False},
    "glyphs": {"algo": "maml", "iterations": 10000, "ways": 5, "shots": 1, "queries": 5,
               "meta_batch": 16, "inner_lr": 0.4, "outer_lr": 1e-3, "lr_drops": [],
               "seed": 0, "multi_step_loss": False},
}
SETTINGS = ("algo", "ways", "network", "shots", "queries", "meta_batch", "inner_steps",
            "inner_lr", "multi_step_loss", "adapt_batch_norm", "outer_lr", "lr_drops", "seed")
SWITCHES = {"multi_step_loss": False, "adapt_batch_norm": True}  # on/off settings: their default;
# the flag turns it over (--multi-step-loss, --no-adapt-batch-norm), and a run without the
# setting stored has the default
SINUSOID_TEST_STEPS = 10  # Finn et al. 2017, figure 3: the sinusoid MSE after up to 10 steps
GLYPH_TEST_SPLITS = ("evaluation", "background")  # `evaluate --split` without --data


def command_line(task, cfg, iterations, out) -> str:
    """The explicit command that trains this run from scratch (stored in the checkpoint)."""
    words = ["python", "-m", "mlkit", "train", "--task", task, "--iterations", str(iterations)]
    for key in SETTINGS:
        value = cfg.get(key)
        if key in SWITCHES:
            words += [flag(key)] if value is not None and value != SWITCHES[key] else []
        elif key == "lr_drops":
            words += [flag(key), *map(str, value)] if value else []
        elif value is not None:
            words += [flag(key), str(value)]
    return shlex.join(words + ["--out", str(out)])


def flag(key: str) -> str:
    """The command-line flag of setting ``key``: "inner_lr" -> "--inner-lr",
    "adapt_batch_norm" (on by default) -> "--no-adapt-batch-norm"."""
    return ("--no-" if SWITCHES.get(key) else "--") + key.replace("_", "-")


def downsample(values, points=500):
    """Mean of ``values`` over ``points`` equal chunks (a compact loss curve for checkpoints)."""
    if len(values) <= points:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64)
    n = len(values) // points * points
    return t[:n].view(points, -1).mean(1).tolist()


INNER = ("inner_lr", "inner_steps", "multi_step_loss", "adapt_batch_norm")


def training_settings(args):
    """-> (task, settings, iterations, history to continue or None): the flags given, the
    run being resumed (its settings must not be contradicted), then the task's defaults."""
    given = {k: getattr(args, k) for k in SETTINGS if getattr(args, k) is not None}
    if args.resume is None:
        task = args.task or "sinusoid"
        cfg = {k: v for k, v in {**DEFAULTS[task], **given}.items() if k != "iterations"}
        if task == "glyphs":
            cfg.setdefault("network", "pool" if cfg["algo"] == "protonet" else "strided")
        else:
            for key in ("ways", "network", "adapt_batch_norm"):
                if key in given:
                    raise ValueError(f"{flag(key)} applies to --task glyphs only")
        if cfg["algo"] == "protonet":
            for key in INNER:
                if key in given:
                    raise ValueError(f"{flag(key)} does not apply to protonet "
                                     f"(ProtoNets have no inner loop)")
                cfg.pop(key, None)
        return task, cfg, args.iterations or DEFAULTS[task]["iterations"], None
    payload = read_checkpoint(args.resume)
    meta, state = payload["meta"], payload.get("training")
    if state is None or "config" not in meta:
        raise ValueError(f"--resume {args.resume}: this checkpoint has no training state to "
                         f"continue from (train a new run instead)")
    task, cfg = meta["task"], meta["config"]
    if args.task not in (None, task):
        raise ValueError(f"--task {args.task} differs from the run being resumed ({task}); "
                         f"leave it out to keep the run's own")
    done = meta["iterations"]
    for key, value in given.items():
        if key == "lr_drops" and same_drops_so_far(cfg.get(key) or [], value, done):
            continue  # the outer lr of the iterations already run stays as it was
        own = cfg.get(key, SWITCHES.get(key))
        if value != own:
            hint = (f"; a resumed run keeps the drops it has run with and may change only "
                    f"drops at iteration {done} or later" if key == "lr_drops" else "")
            shown = "" if key in SWITCHES else f" {value}"  # on/off flags take no value
            raise ValueError(f"{flag(key)}{shown} differs from the run being resumed "
                             f"({key}={own}); leave it out to keep the run's own{hint}")
    iterations = args.iterations or meta["target_iterations"]
    return task, {**cfg, **given}, iterations, History.from_state(state)


def same_drops_so_far(own: list, given: list, done: int) -> bool:
    """True when ``given`` and the run's own lr drops agree on the ``done`` iterations already
    run (drops before ``done``): continuing with ``given`` then equals an uninterrupted run
    with ``given``. Drops the run has not reached may be added, moved or left out, e.g. a
    finished run trained further at a halved outer lr, or a long plan shortened."""
    return sorted(d for d in own if d < done) == sorted(d for d in given if d < done)


def train(args, argv) -> int:
    task, cfg, iterations, history = training_settings(args)
    out = args.out or args.resume
    if out is None:
        raise ValueError("--out is required (the checkpoint file to write)")
    if history is not None and iterations < history.iterations:
        raise ValueError(f"--iterations must be at least the {history.iterations} iterations "
                         f"already done in {args.resume}, got {iterations}")
    if cfg["algo"] == "protonet" and task != "glyphs":
        raise ValueError("--algo protonet needs --task glyphs (ProtoNets classify images)")
    device = pick_device(args.device)
    torch.manual_seed(cfg["seed"])
    options = {k: cfg[k] for k in INNER if k in cfg}
    if task == "glyphs":
        keep_freed_memory()
        train_set = load_glyphs("background")
        family = EpisodeFamily(train_set, cfg["ways"], rotations=True, split="background")
        if cfg["shots"] + cfg["queries"] > train_set.samples_per_class:
            raise ValueError(f"--shots + --queries must be at most "
                             f"{train_set.samples_per_class} (drawings per class), got "
                             f"{cfg['shots']} + {cfg['queries']}")
        head = None if cfg["algo"] == "protonet" else cfg["ways"]
        model = Conv4(head, pool=cfg["network"] == "pool")
        learner = make_learner(cfg["algo"], model, "cross_entropy", **options)
    else:
        family = SinusoidFamily()
        learner = make_learner(cfg["algo"], MLP(), "mse", **options)
    cfg.update({k: v for k, v in learner.config().items() if k in SETTINGS})
    if history is not None:
        learner.load_state_dict(load_checkpoint(args.resume)[0].state_dict())
    learner.to(device)

    def save(history, note=None):
        meta = {"task": task, "family": family.protocol(), "algo": cfg["algo"], "config": cfg,
                "seed": cfg["seed"], "iterations": history.iterations,
                "target_iterations": iterations,
                "stopped": note or history.stopped, "seconds": round(history.seconds, 1),
                "loss_curve": downsample(history.losses), "metrics": metrics,
                "command": command_line(task, cfg, iterations, out)}
        return save_checkpoint(out, learner, meta, history.state())

    metrics, last_save = {}, [time.monotonic()]

    def save_now_and_then(history):
        if time.monotonic() - last_save[0] >= args.save_every:
            save(history, note=f"saved while training, towards {iterations} iterations")
            last_save[0] = time.monotonic()

    threads = args.threads or (1 if task == "sinusoid" else None)
    with torch_threads(threads):
        history = meta_train(learner, family, iterations, cfg["meta_batch"], cfg["shots"],
                             cfg["queries"], cfg["outer_lr"], cfg["seed"], device,
                             callback=save_now_and_then, callback_every=10, history=history,
                             lr_drops=cfg["lr_drops"])
        save(history)  # the run is safe on disk before the quick check
        try:
            metrics["quick_eval"] = quick_check(learner, task, cfg)
        except KeyboardInterrupt:
            print("quick evaluation skipped (interrupted); the model is saved", file=sys.stderr)
            history.stopped = "interrupted"
    path = save(history)
    status = {"finished": "", "interrupted": " (interrupted: continue it with --resume)",
              "diverged": " (stopped: the loss diverged)"}[history.stopped]
    q = metrics.get("quick_eval")
    scale = 100 if task == "glyphs" else 1
    result = "" if q is None else (f"; {q['what']}: {scale * q['value']:.3g} +- "
                                   f"{scale * q['ci95']:.2g}{'%' * (scale == 100)}")
    print(f"saved {path}: {cfg['algo']}, {history.iterations} iterations in "
          f"{history.seconds:.0f} s{status}{result}")
    return 0 if history.stopped != "diverged" else 1


def quick_check(learner, task, cfg) -> dict:
    """A short meta-test after training (200 fresh tasks / 100 held-out episodes)."""
    if task == "sinusoid":
        r = meta_test(learner, SinusoidFamily(), shots=cfg["shots"], steps=1, tasks=200, seed=1)
        v = r["mse"]["1"]
        return {"what": f"{cfg['shots']}-shot MSE after 1 step on 200 fresh tasks",
                "value": v["mean"], "ci95": v["ci95"]}
    steps = image_test_steps(learner)
    ways = getattr(learner.model, "ways", None) or 20  # ProtoNets: any number of ways
    r = meta_test(learner, evaluation_family(ways), shots=cfg["shots"], steps=steps,
                  tasks=100, queries=5, seed=1)
    v = r["accuracy"][str(steps)]
    return {"what": f"{ways}-way {cfg['shots']}-shot accuracy on 100 held-out episodes",
            "value": v["mean"], "ci95": v["ci95"]}


def evaluate(args, argv) -> int:
    device = pick_device(args.device)
    if args.task is not None:  # say so before anything else is checked
        trained_on = read_checkpoint(args.checkpoint)["meta"].get("task")
        if trained_on != args.task:
            raise ValueError(f"--task {args.task} does not match checkpoint {args.checkpoint}, "
                             f"which was trained on {trained_on!r}")
    learner, meta = load_checkpoint(args.checkpoint, device=device)
    task = meta["task"]
    adapts = bool(learner.adapted_names())
    if task == "glyphs":
        keep_freed_memory()
        ways = args.ways or getattr(learner.model, "ways", None) or 5
        if args.data is None and args.split not in (None, *GLYPH_TEST_SPLITS):
            raise ValueError(f"--split {args.split} needs --data (an Omniglot folder); the "
                             f"shipped glyphs have --split evaluation (held-out alphabets, the "
                             f"default) or background (the alphabets the models trained on)")
        family = evaluation_family(ways, args.data, args.split or "evaluation",
                                   learner.model.image_size)
        shots, tasks = args.shots or 1, args.tasks or 600
        queries = args.queries or family.test_queries
        if shots + queries > family.dataset.samples_per_class:
            raise ValueError(f"--shots + --queries must be at most "
                             f"{family.dataset.samples_per_class} (drawings per class), "
                             f"got {shots} + {queries}")
    else:
        for opt in ("ways", "data", "split"):
            if getattr(args, opt) is not None:
                raise ValueError(f"--{opt} applies to --task glyphs only")
        fam = meta.get("family", {})
        family = SinusoidFamily(**{k: tuple(fam[k]) for k in ("amplitude", "phase", "x_range")
                                   if k in fam})
        shots, tasks, queries = args.shots or 10, args.tasks or 1000, args.queries
    if args.steps is not None:
        steps = args.steps
    elif task == "glyphs":
        steps = image_test_steps(learner)
    else:
        steps = SINUSOID_TEST_STEPS if adapts else 0
    with torch_threads(1 if task == "sinusoid" else None):
        result = meta_test(learner, family, shots=shots, steps=steps, tasks=tasks,
                           queries=queries, inner_lr=args.inner_lr, seed=args.seed,
                           device=device, progress=task == "glyphs" and not args.json)
    result["checkpoint"] = {"path": args.checkpoint, "algo": meta.get("algo"),
                            "iterations": meta.get("iterations"), "command": meta.get("command")}
    print(json.dumps(result, indent=1) if args.json else format_result(result))
    return 0


def format_result(result) -> str:
    """A readable table of a ``meta_test`` result."""
    p = result["protocol"]
    metric = "accuracy" if "accuracy" in result else "mse"
    scale, unit = (100, "%") if metric == "accuracy" else (1, " ")
    lines = [f"{result['checkpoint']['algo']} on {p['task']}: "
             + ", ".join(f"{k}={v}" for k, v in p.items()
                         if k not in ("task", "algo", "ci", "diverged")),
             f"{'steps':>5}  {metric:>10}  {'95% CI':>9}  {'median':>9}"]
    for step, v in result[metric].items():
        lines.append(f"{step:>5}  {v['mean'] * scale:>9.3f}{unit}  +- {v['ci95'] * scale:<6.3f}"
                     f"  {v['median'] * scale:>9.3f}")
    if result.get("diverged_tasks"):
        lines.append(f"{result['diverged_tasks']} of {p['tasks']} tasks diverged (each counts "
                     f"with its error from before it diverged)")
    return "\n".join(lines)


def bench(args, argv) -> int:
    from .bench import format_bench, run_bench
    device = pick_device(args.device)
    with torch_threads(args.threads):
        out = run_bench(args.rounds, args.iterations, device=device, only=args.only)
    print(json.dumps(out, indent=1) if args.json else format_bench(out))
    return 0


def make_glyphs(args, argv) -> int:
    from .glyphs import make_glyphs as build
    print(f"wrote {build(args.out, size=args.size, seed=args.seed)}")
    return 0


def table(args, argv) -> int:
    from .report import glyphs_table, sinusoid_tables
    if args.task == "glyphs":
        print(glyphs_table(tasks=args.tasks or 600))
    else:
        print(sinusoid_tables(tasks=args.tasks or 1000))
    return 0


def doctor(args, argv) -> int:
    from .doctor import run_doctor
    return run_doctor()


def student_edition(args, argv) -> int:
    from .student import write_student_edition
    written = write_student_edition(args.out)
    print(f"wrote {len(written)} student notebooks to {args.out}")
    return 0
