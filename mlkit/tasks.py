"""Task families: where the tasks a meta-learner learns from come from.

A *task* is a small supervised problem with a support set (the K examples the
learner adapts on) and a query set (held-out examples that measure how well it
adapted). Tasks travel in batches, as tensors with a leading task dimension:
``x_support: (tasks, K, ...)``. Everything downstream batches over that dimension.

Sinusoid regression follows Finn et al., "Model-Agnostic Meta-Learning for Fast
Adaptation of Deep Networks", ICML 2017, section 5.1: y = A sin(x - phase) with
A ~ U[0.1, 5], phase ~ U[0, pi], x ~ U[-5, 5]. Here ``shots`` and ``queries``
count points per task; for image episodes (``mlkit.episodes``) they count images
per class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .checks import check_int, check_range


@dataclass
class TaskBatch:
    """A batch of tasks. Shapes: x_support (T, K, ...), y_support (T, K, ...),
    x_query (T, Q, ...), y_query (T, Q, ...); ``info`` holds per-task extras with a
    leading task dimension (sinusoids: amplitude and phase (T,); episodes: the
    dataset class and quarter turns of each label (T, ways))."""

    x_support: torch.Tensor
    y_support: torch.Tensor
    x_query: torch.Tensor
    y_query: torch.Tensor
    info: dict

    @property
    def tasks(self) -> int:
        return self.x_support.shape[0]

    def to(self, device) -> "TaskBatch":
        move = lambda t: t.to(device)
        return TaskBatch(move(self.x_support), move(self.y_support), move(self.x_query),
                         move(self.y_query), {k: move(v) for k, v in self.info.items()})

    @staticmethod
    def cat(batches: list) -> "TaskBatch":
        """One batch holding the tasks of ``batches`` in order."""
        join = lambda name: torch.cat([getattr(b, name) for b in batches])
        return TaskBatch(join("x_support"), join("y_support"), join("x_query"), join("y_query"),
                         {k: torch.cat([b.info[k] for b in batches]) for k in batches[0].info})


def mse_per_task(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each task: pred, target (T, N, 1) -> (T,)."""
    return ((pred - target) ** 2).flatten(1).mean(1)


def cross_entropy_per_task(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each task: logits (T, N, ways), labels (T, N) -> (T,)."""
    per_example = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                                    reduction="none")
    return per_example.view(labels.shape).mean(1)


LOSSES = {"mse": mse_per_task, "cross_entropy": cross_entropy_per_task}


class SinusoidFamily:
    """Sinusoid regression tasks y = A sin(x - phase) (Finn et al. 2017).

    Defaults are the MAML paper's protocol; every range can be changed, e.g.
    ``SinusoidFamily(amplitude=(1, 2))`` for an easier family.
    """

    test_queries = 100  # held-out points per task at meta-test time
    tasks_per_pass = 1000  # meta_test fine-tunes this many tasks at once (small tensors)

    def __init__(self, amplitude=(0.1, 5.0), phase=(0.0, math.pi), x_range=(-5.0, 5.0)):
        # bounds keep every value (and A sin(...)) well inside float32
        self.amplitude = check_range("amplitude", amplitude, low=0.0, high=1e6)
        self.phase = check_range("phase", phase, low=-1e6, high=1e6)
        self.x_range = check_range("x_range", x_range, low=-1e6, high=1e6)

    def protocol(self) -> dict:
        return {"task": "sinusoid", "amplitude": list(self.amplitude),
                "phase": list(self.phase), "x_range": list(self.x_range)}

    @staticmethod
    def curve(amplitude, phase, x):
        """The true function of each task: amplitude, phase (T,), x (T, N, 1) -> (T, N, 1)."""
        return amplitude.view(-1, 1, 1) * torch.sin(x - phase.view(-1, 1, 1))

    def sample(self, tasks: int, shots: int, queries: int = 10, generator=None,
               device=None) -> TaskBatch:
        """Draw ``tasks`` tasks with ``shots`` support and ``queries`` query points each:
        x_*, y_* (tasks, shots or queries, 1). A seeded ``torch.Generator`` gives the same
        tasks every time."""
        check_int("tasks", tasks, low=1)
        check_int("shots", shots, low=1)
        check_int("queries", queries, low=1)
        u = lambda *shape: torch.rand(*shape, generator=generator)
        (a0, a1), (p0, p1), (x0, x1) = self.amplitude, self.phase, self.x_range
        amplitude = a0 + (a1 - a0) * u(tasks)
        phase = p0 + (p1 - p0) * u(tasks)
        x = x0 + (x1 - x0) * u(tasks, shots + queries, 1)
        y = self.curve(amplitude, phase, x)
        batch = TaskBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:],
                          {"amplitude": amplitude, "phase": phase})
        return batch if device is None else batch.to(device)
