"""Training loops: plain training (the baseline) and meta-training (any learner).

``meta_train`` is one loop for every algorithm: sample a batch of tasks, call the
learner's ``outer_step``, record the loss. It shows a progress bar, calls an
optional callback (for live plots), stops cleanly on Ctrl-C or on a non-finite
loss, and always returns the model and the history so far.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .checks import check_choice, check_float, check_int
from .maml import ANIL, FOMAML, MAML, MetaSGD, Reptile
from .protonet import ProtoNet
from .runtime import adam
from .tasks import TaskBatch


class Pretrain(MAML):
    """The baseline: one network fitted to the data of all tasks, no inner loop.

    This is the "meta-training" loop of many blog posts. It learns the average
    task (for sinusoids: a curve near zero) and, at test time, is fine-tuned by
    plain SGD like the others (Finn et al. 2017's "pretrained" baseline).
    """

    name = "pretrain"

    def __init__(self, model, loss="mse", inner_lr=0.01, inner_steps=0, multi_step_loss=False):
        super().__init__(model, loss, inner_lr, inner_steps, multi_step_loss)

    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        x = torch.cat([batch.x_support, batch.x_query], 1)
        y = torch.cat([batch.y_support, batch.y_query], 1)
        return self.loss(self.model.forward_tasks(self.start(x.shape[0]), x), y).mean()


ALGORITHMS = {cls.name: cls for cls in (MAML, FOMAML, Reptile, ANIL, MetaSGD, Pretrain)}


def make_learner(algo: str, model, loss="mse", inner_lr=0.01, inner_steps=None,
                 multi_step_loss=False):
    """Build a learner by name: one of maml, fomaml, reptile, anil, metasgd, pretrain, protonet.

    ``inner_steps=None`` takes the class's own default (Reptile 5, Pretrain 0, others 1).
    """
    check_choice("algo", algo, list(ALGORITHMS) + ["protonet"])
    if algo == "protonet":  # no inner loop: loss (cross-entropy), inner_lr and steps do not apply
        return ProtoNet(model)
    cls = ALGORITHMS[algo]
    kwargs = {} if inner_steps is None else {"inner_steps": inner_steps}
    return cls(model, loss, inner_lr, multi_step_loss=multi_step_loss, **kwargs)


@dataclass
class History:
    """What meta-training produced: one meta-loss per iteration, and how it ended."""

    losses: list = field(default_factory=list)
    seconds: float = 0.0
    stopped: str = "finished"  # or "interrupted" (Ctrl-C) or "diverged" (non-finite loss)

    @property
    def iterations(self) -> int:
        return len(self.losses)


def meta_train(learner, family, iterations, meta_batch=25, shots=10, queries=10, outer_lr=1e-3,
               seed=0, device=None, callback=None, callback_every=100, progress=True,
               history=None, optimizer=None) -> History:
    """Meta-train ``learner`` on tasks from ``family`` for ``iterations`` outer steps.

    Each step samples ``meta_batch`` tasks with ``shots`` support and ``queries``
    query examples, seeded by ``seed``. Adam with ``outer_lr`` (Finn et al. 2017).
    ``callback(history)`` runs every ``callback_every`` iterations and at the end.
    Ctrl-C stops training and keeps everything so far (``history.stopped``).
    Pass ``history`` and ``optimizer`` back in to continue a run.
    """
    check_int("iterations", iterations, low=0)
    check_int("meta_batch", meta_batch, low=1)
    check_int("shots", shots, low=1)
    check_int("queries", queries, low=1)
    check_float("outer_lr", outer_lr, low=0.0, low_inclusive=False)
    check_int("seed", seed, low=0)
    check_int("callback_every", callback_every, low=1)
    device = device or next(learner.parameters()).device
    learner.to(device)
    history = history if history is not None else History()
    optimizer = optimizer or adam(learner.parameters(), outer_lr)
    generator = torch.Generator().manual_seed(seed)
    bar = tqdm(total=iterations, desc=f"meta-train {learner.name}", disable=not progress,
               mininterval=0.5)
    start = time.perf_counter()
    history.stopped = "finished"
    try:
        for it in range(iterations):
            batch = family.sample(meta_batch, shots, queries, generator=generator, device=device)
            loss = learner.outer_step(batch, optimizer).item()
            if loss != loss or loss in (float("inf"), float("-inf")):
                history.stopped = "diverged"
                warnings.warn(f"meta-training stopped at iteration {it}: the loss is {loss} "
                              f"(try a smaller inner_lr or outer_lr); the model is the last "
                              f"finite one", RuntimeWarning, stacklevel=2)
                break
            history.losses.append(loss)
            bar.update(1)
            if it % 50 == 0:
                bar.set_postfix(loss=f"{loss:.3f}")
            if callback is not None and (it + 1) % callback_every == 0:
                callback(history)
    except KeyboardInterrupt:
        history.stopped = "interrupted"
        print(f"Interrupted after {history.iterations} iterations: the model and the "
              f"history so far are kept.")
    finally:
        bar.close()
        history.seconds += time.perf_counter() - start
    if callback is not None:
        callback(history)
    return history
