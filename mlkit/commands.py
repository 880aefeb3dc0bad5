"""What each ``python -m mlkit`` subcommand does (parsing lives in ``cli.py``)."""
from __future__ import annotations

import json
import shlex
import sys

import torch

from .checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from .evaluate import meta_test
from .models import MLP
from .runtime import pick_device, torch_threads
from .tasks import SinusoidFamily
from .train import make_learner, meta_train

SINUSOID_DEFAULTS = {"shots": 10, "queries": 10, "meta_batch": 25, "inner_lr": 0.01}


def quick_check(evaluate):
    """Run a short evaluation after training; a second Ctrl-C skips it (the model is still saved)."""
    try:
        return evaluate()
    except KeyboardInterrupt:
        print("quick evaluation skipped (interrupted); saving the model", file=sys.stderr)
        return None


def _command_line(argv) -> str:
    return "python -m mlkit " + shlex.join(argv)


def downsample(values, points=500):
    """Mean of ``values`` over ``points`` equal chunks (a compact loss curve for checkpoints)."""
    if len(values) <= points:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64)
    n = len(values) // points * points
    return t[:n].view(points, -1).mean(1).tolist()


def train(args, argv) -> int:
    if args.task == "glyphs":
        from .images import train_glyphs
        return train_glyphs(args, argv)
    if args.algo == "protonet":
        raise ValueError("--algo protonet needs --task glyphs (ProtoNets classify images)")
    if args.ways != 5:
        raise ValueError("--ways applies to --task glyphs only")
    if args.iterations is None:
        args.iterations = 70000  # the MAML paper's sinusoid training length
    cfg = {k: getattr(args, k) if getattr(args, k) is not None else v
           for k, v in SINUSOID_DEFAULTS.items()}
    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    learner = make_learner(args.algo, MLP(), "mse", cfg["inner_lr"], args.inner_steps,
                           args.multi_step_loss).to(device)
    family = SinusoidFamily()
    with torch_threads(args.threads or 1):
        history = meta_train(learner, family, args.iterations, cfg["meta_batch"], cfg["shots"],
                             cfg["queries"], args.outer_lr, seed=args.seed, device=device)
        quick = quick_check(lambda: meta_test(learner, family, shots=cfg["shots"], steps=1,
                                              tasks=200, seed=1)["mse"]["1"]["mean"])
    meta = {"task": "sinusoid", "family": family.protocol(), "algo": args.algo,
            "config": {**cfg, "inner_steps": learner.inner_steps, "outer_lr": args.outer_lr,
                       "multi_step_loss": learner.multi_step_loss,
                       "iterations": args.iterations, "optimizer": "Adam"},
            "seed": args.seed, "iterations": history.iterations, "stopped": history.stopped,
            "seconds": round(history.seconds, 1), "loss_curve": downsample(history.losses),
            "metrics": {"quick_eval": {"shots": cfg["shots"], "tasks": 200,
                                        "mse_after_1_step": quick}},
            "command": _command_line(argv)}
    path = save_checkpoint(args.out, learner, meta)
    status = {"finished": "", "interrupted": " (interrupted: partial training)",
              "diverged": " (stopped: the loss diverged)"}[history.stopped]
    result = "" if quick is None else (f"; {cfg['shots']}-shot MSE after 1 step on 200 fresh "
                                       f"tasks: {quick:.3g}")
    print(f"saved {path}: {args.algo}, {history.iterations} iterations in "
          f"{history.seconds:.0f} s{status}{result}")
    return 0 if history.stopped != "diverged" else 1


def evaluate(args, argv) -> int:
    device = pick_device(args.device)
    if args.task is not None:  # say so before anything else is checked
        trained_on = read_checkpoint(args.checkpoint)["meta"].get("task")
        if trained_on != args.task:
            raise ValueError(f"--task {args.task} does not match checkpoint {args.checkpoint}, "
                             f"which was trained on {trained_on!r}")
    learner, meta = load_checkpoint(args.checkpoint, device=device)
    task = meta["task"]
    if task == "glyphs":
        from .images import evaluate_glyphs
        result = evaluate_glyphs(learner, meta, args, device)
    else:
        for opt in ("ways", "data"):
            if getattr(args, opt) is not None:
                raise ValueError(f"--{opt} applies to --task glyphs only")
        shots = args.shots or 10
        steps = 10 if args.steps is None else args.steps
        with torch_threads(1):
            result = meta_test(learner, SinusoidFamily(**_family_kwargs(meta)), shots=shots,
                               steps=steps, tasks=args.tasks or 1000, queries=args.queries or 100,
                               lr=args.inner_lr, seed=args.seed, device=device)
    result["checkpoint"] = {"path": args.checkpoint, "algo": meta.get("algo"),
                            "iterations": meta.get("iterations"), "command": meta.get("command")}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(format_table(result))
    return 0


def _family_kwargs(meta):
    fam = meta.get("family", {})
    return {k: tuple(fam[k]) for k in ("amplitude", "phase", "x_range") if k in fam}


def format_table(result) -> str:
    """A readable table of a ``meta_test`` result."""
    p = result["protocol"]
    metric = "accuracy" if "accuracy" in result else "mse"
    lines = [f"{result['checkpoint']['algo']} on {p['task']}: "
             + ", ".join(f"{k}={v}" for k, v in p.items() if k not in ("task", "algo", "ci")),
             f"{'steps':>5}  {metric:>10}  {'95% CI':>9}"]
    for step, v in result[metric].items():
        scale = 100 if metric == "accuracy" else 1
        unit = "%" if metric == "accuracy" else ""
        lines.append(f"{step:>5}  {v['mean'] * scale:>9.3f}{unit or ' '}  +- {v['ci95'] * scale:.3f}")
    if result.get("diverged_tasks"):
        lines.append(f"{result['diverged_tasks']} task(s) diverged (their last finite error is used)")
    return "\n".join(lines)


def bench(args, argv) -> int:
    from .bench import run_bench
    device = pick_device(args.device)
    with torch_threads(args.threads):
        out = run_bench(args.rounds, args.iterations, device=str(device))
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    p = out["protocol"]
    print(f"ms per meta-iteration, {p['model']}, {p['meta_batch']} tasks, K={p['shots']}+"
          f"{p['queries']}, 1 inner step, Adam, {p['threads']} thread(s), {p['device']}; median "
          f"of {p['rounds']} alternating rounds of {p['iterations_per_round']} iterations")
    print(f"{'algorithm':<10} {'batched':>9} {'per-task loop':>14} {'ratio':>7}")
    for algo, r in out["results"].items():
        print(f"{algo:<10} {r['batched_ms']:>7.3f}ms {r['loop_ms']:>12.3f}ms {r['ratio']:>6.1f}x")
    return 0


def make_glyphs(args, argv) -> int:
    from .data import make_glyphs as build
    build(args.out, size=args.size, seed=args.seed)
    return 0


def table(args, argv) -> int:
    if args.task == "glyphs":
        from .images import glyphs_table
        print(glyphs_table(tasks=args.tasks or 600))
    else:
        from .report import paper_comparison, sinusoid_table
        print(sinusoid_table(tasks=args.tasks or 1000))
        print()
        print(paper_comparison(tasks=args.tasks or 1000))
    return 0


def doctor(args, argv) -> int:
    from .doctor import run_doctor
    return run_doctor()
