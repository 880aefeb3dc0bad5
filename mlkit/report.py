"""The README's results tables, computed from the shipped checkpoints.

``python -m mlkit table sinusoid`` prints the markdown table; every number in it
comes from ``meta_test`` on fresh tasks, with its 95% confidence interval.
"""
from __future__ import annotations

from .checkpoints import load_shipped
from .evaluate import meta_test
from .runtime import torch_threads
from .tasks import SinusoidFamily

SINUSOID_ALGOS = ("maml", "fomaml", "reptile", "anil", "metasgd", "pretrain")


def sinusoid_table(shots=(5, 10, 20), steps=(1, 10), tasks=1000, seed=12345, algos=SINUSOID_ALGOS):
    """Markdown table: MSE after each of ``steps`` for each shipped checkpoint and K in ``shots``."""
    header = ["checkpoint", "iterations"] + [f"K={k}, {s} step{'s' if s > 1 else ''}"
                                             for k in shots for s in steps]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    with torch_threads(1):
        for algo in algos:
            learner, meta = load_shipped(f"sinusoid_{algo}")
            cells = [f"`sinusoid_{algo}`", f"{meta.get('iterations', '?'):,}"]
            for k in shots:
                r = meta_test(learner, SinusoidFamily(), shots=k, steps=max(steps), tasks=tasks,
                              seed=seed)
                cells += [_cell(r["mse"][str(s)]) for s in steps]
            rows.append("| " + " | ".join(cells) + " |")
    protocol = (f"MSE on 100 held-out points per task, mean over {tasks} fresh tasks (seed {seed}) "
                f"+- 95% CI; fine-tuning: SGD on the K support points with each checkpoint's inner "
                f"lr (0.01; Meta-SGD: its learned rates); tasks A ~ U[0.1, 5], phase ~ U[0, pi], "
                f"x ~ U[-5, 5].")
    return "\n".join(rows) + "\n\n" + protocol


PAPER_5_SHOT = {"maml": (0.67, 0.38, 0.35), "pretrain": (2.41, 2.23, 2.19)}  # Finn et al., app. C


def paper_comparison(tasks=1000, seed=12345):
    """Markdown table: the MAML paper's 5-shot MSE after 1 / 5 / 10 steps beside ours."""
    rows = ["| | paper: 1 / 5 / 10 steps | this kit: 1 / 5 / 10 steps (± 95% CI) |", "|---|---|---|"]
    names = {"maml": "MAML", "pretrain": "pretrained on all tasks"}
    with torch_threads(1):
        for algo, paper in PAPER_5_SHOT.items():
            learner, _ = load_shipped(f"sinusoid_{algo}")
            r = meta_test(learner, SinusoidFamily(), shots=5, steps=10, tasks=tasks, seed=seed)
            ours = " / ".join(_cell(r["mse"][s]) for s in ("1", "5", "10"))
            rows.append(f"| {names[algo]} | {' / '.join(map(str, paper))} | {ours} |")
    return "\n".join(rows)


def _cell(v) -> str:
    if v["mean"] > 100:  # SGD blew up on some tasks (the lr is too large for that many steps)
        return f"{v['mean']:.0e} (diverges)"
    return f"{v['mean']:.2f} ± {v['ci95']:.2f}"
