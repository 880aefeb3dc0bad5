"""Meta-testing: how well does a learner adapt to tasks it has never seen?

Protocol (Finn et al. 2017, section 5.1; CS330): draw fresh tasks, fine-tune on
each task's K support examples with S steps of the learner's own inner update,
and measure the error on held-out query examples after 0, 1, ..., S steps.
Report the mean over tasks and a 95% confidence interval, 1.96 * std / sqrt(n).
"""
from __future__ import annotations

import math

import torch

from .checks import check_float, check_int


def mean_ci95(values: torch.Tensor) -> tuple:
    """Mean and half-width of the normal 95% confidence interval of a 1-D tensor."""
    values = values.double().flatten()
    n = values.numel()
    if n == 0:
        raise ValueError("mean_ci95 needs at least one value")
    mean = values.mean().item()
    if n == 1:
        return mean, float("nan")
    return mean, 1.96 * values.std(unbiased=True).item() / math.sqrt(n)


def accuracy_per_task(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of correct predictions per task: logits (T, N, ways), labels (T, N) -> (T,)."""
    return (logits.argmax(-1) == labels).float().mean(1)


def adaptation_curves(learner, batch, steps, lr=None):
    """Query error of every task after 0..steps inner steps, without meta-gradients.

    Returns a dict of (tasks, steps + 1) tensors: "loss" always, "accuracy" for
    classification. A task whose loss stops being finite keeps its last finite
    weights (a too-large lr diverges; the curve then stays flat), and
    ``curves["diverged"]`` (tasks,) marks it.
    """
    check_int("steps", steps, low=0)
    if lr is not None:
        check_float("lr", lr, low=0.0)
    model, names = learner.model, learner.adapted_names()
    classify = learner.loss_name == "cross_entropy"

    def query_error(params):
        with torch.no_grad():
            out = model.forward_tasks(params, batch.x_query)
            loss = learner.loss(out, batch.y_query)
            acc = accuracy_per_task(out, batch.y_query) if classify else loss
        return loss, acc

    params = {n: p.detach() for n, p in learner.start(batch.tasks).items()}
    loss, acc = query_error(params)
    losses, accs = [loss], [acc]
    diverged = torch.zeros(batch.tasks, dtype=torch.bool, device=batch.x_query.device)
    for _ in range(steps):
        with torch.enable_grad():
            live = {n: p.detach().requires_grad_(n in names) for n, p in params.items()}
            task_losses = learner.loss(model.forward_tasks(live, batch.x_support), batch.y_support)
            grads = torch.autograd.grad(task_losses.sum(), [live[n] for n in names])
        new = dict(params)
        with torch.no_grad():
            for n, g in zip(names, grads):
                size = learner.step_size(n) if lr is None else lr
                new[n] = params[n] - (size.detach() if torch.is_tensor(size) else size) * g
        new_loss, new_acc = query_error(new)
        finite = torch.isfinite(new_loss)
        for n in names:
            finite &= torch.isfinite(new[n]).flatten(1).all(1)
        diverged |= ~finite
        for n in names:  # diverged tasks keep their last finite weights
            new[n] = torch.where(diverged.view(-1, *[1] * (new[n].dim() - 1)), params[n], new[n])
        params = new
        loss = torch.where(diverged, loss, new_loss)
        acc = torch.where(diverged, acc, new_acc)
        losses.append(loss)
        accs.append(acc)
    curves = {"loss": torch.stack(losses, 1), "diverged": diverged}
    if classify:
        curves["accuracy"] = torch.stack(accs, 1)
    return curves


def meta_test(learner, family, shots, steps, tasks=1000, queries=100, lr=None, seed=12345,
              device=None, chunk=1000, **sample_kwargs) -> dict:
    """Evaluate ``learner`` on ``tasks`` fresh tasks from ``family``.

    Returns {"protocol": {...}, metric: {"0": {"mean", "ci95"}, ..., str(steps): ...}}
    where metric is "mse" for regression and "accuracy" (plus "loss") for
    classification. Same seed, same tasks: two learners are compared on
    identical tasks. Tasks are processed ``chunk`` at a time.
    """
    check_int("shots", shots, low=1)
    check_int("steps", steps, low=0)
    check_int("tasks", tasks, low=1)
    check_int("queries", queries, low=1)
    check_int("seed", seed, low=0)
    check_int("chunk", chunk, low=1)
    device = device or next(learner.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    parts, done = [], 0
    while done < tasks:
        n = min(chunk, tasks - done)
        batch = family.sample(n, shots, queries, generator=generator, device=device,
                              **sample_kwargs)
        parts.append(adaptation_curves(learner, batch, steps, lr))
        done += n
    curves = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    used_lr = lr if lr is not None else ("learned" if learner.name == "metasgd" else learner.inner_lr)
    result = {"protocol": {**family.protocol(), "algo": learner.name, "shots": shots,
                           "queries": queries, "steps": steps, "tasks": tasks, "inner_lr": used_lr,
                           "inner_update": "SGD on the support set", "seed": seed,
                           "ci": "95% normal interval, 1.96 * std / sqrt(tasks)"},
              "diverged_tasks": int(curves["diverged"].sum())}
    metrics = {"accuracy": "accuracy", "loss": "loss"} if "accuracy" in curves else {"mse": "loss"}
    return {**result, **summarize(curves, metrics)}


def summarize(curves: dict, metrics: dict) -> dict:
    """{name: {"0": {"mean", "ci95"}, "1": ...}} from (tasks, steps + 1) curves;
    ``metrics`` maps each reported name to its curve, e.g. {"mse": "loss"}."""
    return {key: {str(s): dict(zip(("mean", "ci95"), mean_ci95(curves[source][:, s])))
                  for s in range(curves[source].shape[1])}
            for key, source in metrics.items()}
