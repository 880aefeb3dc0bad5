"""Meta-testing: how well does a learner adapt to tasks it has never seen?

Protocol (Finn et al. 2017, section 5.1; Vinyals et al. 2016; CS330): draw fresh tasks,
fine-tune on each task's K support examples with S steps of the learner's own inner
update (``mlkit.learner.fine_tune``), and measure the error on held-out query examples
after 0, 1, ..., S steps. Report the mean over tasks with a 95% confidence interval,
1.96 * std / sqrt(n). One function serves regression and classification.
"""
from __future__ import annotations

import math
import time

import torch
from tqdm.auto import tqdm

from .checks import check_float, check_int
from .learner import fine_tune
from .tasks import TaskBatch


def mean_ci95(values: torch.Tensor) -> tuple:
    """Mean and half-width of the 95% normal confidence interval, 1.96 * std / sqrt(n),
    with the unbiased (n - 1) standard deviation; (mean, nan) for a single value."""
    values = values.detach().double().flatten()
    n = values.numel()
    if n == 0:
        raise ValueError("mean_ci95 needs at least one value, got none")
    mean = values.mean().item()
    if n == 1:
        return mean, float("nan")
    return mean, 1.96 * values.std(unbiased=True).item() / math.sqrt(n)


def fresh_tasks(family, first: int, count: int, shots: int, queries: int, seed: int,
               device=None) -> TaskBatch:
    """Tasks ``first`` .. ``first + count - 1`` of the test set drawn with ``seed``. Task i
    comes from its own generator, seeded by (seed, i): the same task however the test set
    is split into passes."""
    draw = lambda i: family.sample(1, shots, queries, device=device, generator=torch.Generator()
                                   .manual_seed((seed * 1_000_003 + i) % 2**63))
    return TaskBatch.cat([draw(i) for i in range(first, first + count)])


def summarize(curves: torch.Tensor, diverged: torch.Tensor) -> dict:
    """{"0": {"mean", "ci95", "median", "diverged"}, "1": ...} from per-task curves and
    divergence flags (tasks, steps + 1); "diverged" is the share of tasks whose
    fine-tuning had diverged by that step."""
    out = {}
    for s in range(curves.shape[1]):
        mean, ci95 = mean_ci95(curves[:, s])
        out[str(s)] = {"mean": mean, "ci95": ci95, "median": curves[:, s].double().median().item(),
                       "diverged": diverged[:, s].double().mean().item()}
    return out


def image_test_steps(learner) -> int:
    """Fine-tuning steps for testing a learner on image episodes, as Finn et al. (2017,
    section 5.2) test Omniglot: 3 steps, or as many as the learner meta-trained with if
    that is more (their 5-way model trained with 1 step and was tested with 3; their
    20-way model trained and was tested with 5); 0 for a learner that does not adapt
    (ProtoNets)."""
    if not learner.adapted_names():
        return 0
    return max(3, getattr(learner, "inner_steps", 0))


def meta_test(learner, family, shots, steps, tasks=1000, queries=None, inner_lr=None,
              seed=12345, device=None, chunk=None, progress=False) -> dict:
    """Evaluate ``learner`` on ``tasks`` fresh tasks from ``family`` (sinusoids or episodes).

    shots, queries: support and query examples per task (sinusoids) or per class (episodes);
    queries defaults to the family's test protocol (100 points; 15 images per class). Each
    task is fine-tuned on its support set for 0..steps SGD steps (``fine_tune``; ProtoNets,
    which adapt no weights, take none) with the learner's own inner lr unless ``inner_lr``.

    Returns {"protocol": {...}, "diverged_tasks": n, "seconds": s,
             metric: {"0": {"mean", "ci95", "median", "diverged"}, ..., str(steps): ...}}
    with metric "mse" (regression), or "accuracy" and "loss" (classification). A task whose
    fine-tuning diverged counts with its last error before it diverged. The same seed gives
    the same tasks, whatever ``chunk`` (tasks fine-tuned at once; default the family's).
    """
    check_int("shots", shots, low=1)
    check_int("steps", steps, low=0)
    check_int("tasks", tasks, low=1)
    queries = family.test_queries if queries is None else check_int("queries", queries, low=1)
    check_int("seed", seed, low=0)
    chunk = family.tasks_per_pass if chunk is None else check_int("chunk", chunk, low=1)
    if inner_lr is not None:
        check_float("inner_lr", inner_lr, low=0.0)
    if not learner.adapted_names() and (steps or inner_lr is not None):
        raise ValueError(f"steps and inner_lr do not apply to {learner.name}: it adapts no "
                         f"weights at test time (use steps=0), got steps={steps}, "
                         f"inner_lr={inner_lr}")
    head, ways = getattr(learner.model, "ways", None), getattr(family, "ways", None)
    if head is not None and ways is not None and head != ways:
        raise ValueError(f"ways={ways} does not fit this {learner.name} model: its head has "
                         f"{head} outputs, so it classifies {head}-way tasks only (use a "
                         f"{head}-way family, or ProtoNets, which work at any number of ways)")
    device = device or next(learner.parameters()).device
    classify = learner.loss_name == "cross_entropy"
    parts, start = [], time.perf_counter()
    with tqdm(total=tasks, desc=f"meta-test {learner.name}", disable=not progress,
              mininterval=0.5) as bar:
        for first in range(0, tasks, chunk):
            n = min(chunk, tasks - first)
            batch = fresh_tasks(family, first, n, shots, queries, seed, device)
            result = fine_tune(learner, batch, steps, inner_lr)
            if classify:
                correct = result["outputs"].argmax(-1) == batch.y_query.unsqueeze(1)
                result["accuracy"] = correct.double().mean(-1)              # (T, S + 1)
            parts.append({k: v.cpu() for k, v in result.items() if k != "outputs"})
            bar.update(n)
    curves = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    diverged = curves.pop("diverged")
    protocol = {**family.protocol(), "algo": learner.name, "shots": shots, "queries": queries,
                "steps": curves["loss"].shape[1] - 1, "tasks": tasks,
                "inner_lr": inner_lr if inner_lr is not None else learner.config().get("inner_lr"),
                "inner_update": learner.inner_update(inner_lr), "seed": seed,
                "ci": "95% normal interval, 1.96 * std / sqrt(tasks)",
                "diverged": "a task whose fine-tuning diverged counts with its error from "
                            "before it diverged"}
    metrics = {"accuracy": curves["accuracy"], "loss": curves["loss"]} if classify \
        else {"mse": curves["loss"]}
    return {"protocol": protocol, "diverged_tasks": int(diverged[:, -1].sum()),
            "seconds": round(time.perf_counter() - start, 2),
            **{name: summarize(c, diverged) for name, c in metrics.items()}}
