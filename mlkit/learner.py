"""What every learner answers, and the one fine-tuning loop that uses it.

A *learner* (the MAML family, the Pretrain baseline, ProtoNets) is an ``nn.Module``
holding a ``model``. Meta-training calls ``outer_step``; evaluation, the figures, the
panels and the command line all adapt through ``fine_tune`` below, which needs only:

    start(tasks)          per-task weights before adapting: name -> (tasks, *shape)
    adapted_names()       which of them the inner loop changes (none for ProtoNets)
    inner_step(params, x, y, create_graph, inner_lr)   one SGD step of every task
    predict(params, batch, x)    outputs (tasks, N, outputs) at inputs x (tasks, N, ...)
    inner_update(inner_lr)       a phrase saying how it adapts, for the protocol
"""
from __future__ import annotations

import torch
from torch import nn

from .checks import check_float, check_int
from .tasks import LOSSES, TaskBatch

# Fine-tuning has *diverged* on a task when its support loss (what the inner loop
# minimises) or its outputs stop being finite, or the support loss grows past
# DIVERGED_FACTOR times the lowest value it reached plus DIVERGED_FLOOR: SGD with too
# large a step size makes it grow without bound (at once, or after a few good steps).
DIVERGED_FACTOR, DIVERGED_FLOOR = 10.0, 1.0


def step_if_finite(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """Backpropagate ``loss`` and take one optimiser step, unless the loss is not finite
    (then nothing changes and the caller stops). Returns the detached loss."""
    if torch.isfinite(loss):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.detach()


class Learner(nn.Module):
    """The interface shared by all learners. model: an ``mlkit.models`` network;
    loss: "mse" (regression) or "cross_entropy" (classification)."""

    name = "learner"  # the registry name (``mlkit.algorithms``), stored in checkpoints
    learned_inner_lr = False  # True where the inner step sizes are learned (Meta-SGD)

    def __init__(self, model: nn.Module, loss: str = "mse"):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        self.model = model
        self.loss_name = loss
        self.loss = LOSSES[loss]  # per-task loss: (outputs, targets) -> (tasks,)

    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        """The scalar that meta-training minimises on a batch of tasks."""
        raise NotImplementedError(f"{type(self).__name__} must define meta_loss")

    def outer_step(self, batch: TaskBatch, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """One meta-update; returns the detached meta-loss before it (skipped if not finite)."""
        return step_if_finite(self.meta_loss(batch), optimizer)

    def start(self, tasks: int) -> dict:
        return {}

    def adapted_names(self) -> list:
        return []

    def inner_step(self, params: dict, x, y, create_graph=False, inner_lr=None) -> dict:
        return params

    def predict(self, params: dict, batch: TaskBatch, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define predict")

    def inner_update(self, inner_lr=None) -> str:
        return "none"

    def config(self) -> dict:
        """The constructor's arguments and the algorithm's name: enough to rebuild it."""
        return {"algo": self.name, "loss": self.loss_name}


def fine_tune(learner: Learner, batch: TaskBatch, steps: int, inner_lr=None) -> dict:
    """Fine-tune every task of ``batch`` on its support set, without meta-gradients.

    steps:    inner SGD steps (0: the learner as it is; a learner that adapts no
              weights, like ProtoNets, takes none)
    inner_lr: one step size for every weight; None keeps the learner's own (Meta-SGD: learned)

    Returns, for S steps taken, T tasks and Q query inputs:
      "outputs"   (T, S + 1, Q, outputs) predictions at ``batch.x_query`` after 0..S steps
      "loss"      (T, S + 1) query loss after 0..S steps
      "diverged"  (T, S + 1) bool: the task's fine-tuning had diverged by that step (see
                  DIVERGED_FACTOR); it keeps its weights from before the step that
                  diverged, so its curve stays flat from there
    """
    check_int("steps", steps, low=0)
    if inner_lr is not None:
        check_float("inner_lr", inner_lr, low=0.0)
    names = learner.adapted_names()
    steps = steps if names else 0

    def evaluate(params, x, y):
        with torch.no_grad():
            out = learner.predict(params, batch, x)
            return out, learner.loss(out, y)

    params = {n: p.detach() for n, p in learner.start(batch.tasks).items()}
    out, loss = evaluate(params, batch.x_query, batch.y_query)
    outs, losses = [out], [loss]
    diverged = torch.zeros(batch.tasks, dtype=torch.bool, device=loss.device)
    flags = [diverged]
    if steps:
        lowest = evaluate(params, batch.x_support, batch.y_support)[1]
        diverged = ~torch.isfinite(lowest)
    for _ in range(steps):
        live = {n: p.detach().requires_grad_(n in names) for n, p in params.items()}
        with torch.enable_grad():
            new = learner.inner_step(live, batch.x_support, batch.y_support, False, inner_lr)
        new = {n: p.detach() for n, p in new.items()}
        new_out, new_loss = evaluate(new, batch.x_query, batch.y_query)
        support = evaluate(new, batch.x_support, batch.y_support)[1]
        ok = torch.isfinite(support) & (support <= DIVERGED_FACTOR * lowest + DIVERGED_FLOOR)
        ok &= torch.isfinite(new_loss) & torch.isfinite(new_out).flatten(1).all(1)
        diverged = diverged | ~ok
        lowest = torch.minimum(lowest, support)

        def keep(old, fresh):  # a diverged task keeps its old value
            return torch.where(diverged.view(-1, *[1] * (old.dim() - 1)), old, fresh)
        params = {n: keep(params[n], new[n]) for n in new}
        out, loss = keep(out, new_out), keep(loss, new_loss)
        outs.append(out)
        losses.append(loss)
        flags.append(diverged)
    return {"outputs": torch.stack(outs, 1), "loss": torch.stack(losses, 1),
            "diverged": torch.stack(flags, 1)}
