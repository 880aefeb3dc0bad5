"""Meta-training: one loop for every learner (the Pretrain baseline included).

``meta_train`` samples a batch of tasks, calls the learner's ``outer_step``, records
the loss, and again. It shows a progress bar, calls an optional callback (for live
plots and periodic saves), stops cleanly on Ctrl-C or on a non-finite loss, and
always returns what it has so far. Everything needed to continue a run (the losses,
the optimiser's state, the task sampler's position) is kept in the ``History``, so a
run stopped and continued equals one that never stopped.
"""
from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .checks import check_float, check_int
from .runtime import adam, hold_interrupts


@dataclass
class History:
    """What meta-training produced, and what it needs to continue.

    losses:          the meta-loss of every iteration so far
    seconds:         training time so far
    stopped:         "finished", "interrupted" (Ctrl-C) or "diverged" (non-finite loss)
    optimizer_state: ``optimizer.state_dict()`` after the last iteration
    sampler_state:   the task sampler's ``torch.Generator`` state after the last iteration
    """

    losses: list = field(default_factory=list)
    seconds: float = 0.0
    stopped: str = "finished"
    optimizer_state: dict | None = None
    sampler_state: torch.Tensor | None = None

    @property
    def iterations(self) -> int:
        return len(self.losses)

    def state(self) -> dict:
        """Tensors and plain numbers only (a checkpoint's "training" entry, which loads
        with ``weights_only=True``); losses are stored as float32."""
        return {"losses": torch.tensor(self.losses, dtype=torch.float32),
                "seconds": self.seconds, "stopped": self.stopped,
                "optimizer": self.optimizer_state, "sampler": self.sampler_state}

    @classmethod
    def from_state(cls, state: dict) -> "History":
        return cls(state["losses"].tolist(), state["seconds"], state["stopped"],
                   state["optimizer"], state["sampler"])


def outer_lr_at(iteration: int, outer_lr: float, lr_drops=()) -> float:
    """The outer learning rate at ``iteration``: ``outer_lr`` halved at each iteration
    listed in ``lr_drops`` (a step decay, as Snell et al. 2017 train ProtoNets)."""
    return outer_lr * 0.5 ** sum(iteration >= d for d in lr_drops)


def meta_train(learner, family, iterations, meta_batch=25, shots=10, queries=10, outer_lr=1e-3,
               seed=0, device=None, callback=None, callback_every=100, progress=True,
               history=None, lr_drops=()) -> History:
    """Meta-train ``learner`` on tasks from ``family`` until ``iterations`` outer steps.

    Each step samples ``meta_batch`` tasks with ``shots`` support and ``queries`` query
    examples (per task for sinusoids, per class for episodes) from a generator seeded by
    ``seed``, and takes an Adam step with ``outer_lr`` (Finn et al. 2017), halved at each
    iteration listed in ``lr_drops``. ``callback(history)`` runs every ``callback_every``
    iterations and at the end. Pass the ``history`` of an earlier call to continue it up to
    ``iterations`` in all. Ctrl-C stops training and keeps everything so far.
    """
    check_int("iterations", iterations, low=0)
    check_int("meta_batch", meta_batch, low=1)
    check_int("shots", shots, low=1)
    check_int("queries", queries, low=1)
    check_float("outer_lr", outer_lr, low=0.0, low_inclusive=False)
    check_int("seed", seed, low=0)
    check_int("callback_every", callback_every, low=1)
    for d in lr_drops:
        check_int("lr_drops", d, low=1)
    history = history if history is not None else History()
    if iterations < history.iterations:
        raise ValueError(f"iterations is the total to reach and must be at least the "
                         f"{history.iterations} already done, got {iterations}")
    device = device or next(learner.parameters()).device
    learner.to(device).train()
    optimizer = adam(learner.parameters(), outer_lr)
    generator = torch.Generator().manual_seed(seed)
    if history.optimizer_state is not None:  # a copy: the saved state stays as it was
        optimizer.load_state_dict(copy.deepcopy(history.optimizer_state))
    if history.sampler_state is not None:
        generator.set_state(history.sampler_state)

    def snapshot():  # copies: the live optimiser goes on changing its tensors
        history.optimizer_state = copy.deepcopy(optimizer.state_dict())
        history.sampler_state = generator.get_state()

    bar = tqdm(total=iterations, initial=history.iterations, desc=f"meta-train {learner.name}",
               disable=not progress, mininterval=0.5)
    start = time.perf_counter()
    history.stopped = "finished"
    try:
        for it in range(history.iterations, iterations):
            with hold_interrupts():  # an iteration is done whole or not at all
                for group in optimizer.param_groups:
                    group["lr"] = outer_lr_at(it, outer_lr, lr_drops)
                batch = family.sample(meta_batch, shots, queries, generator=generator,
                                      device=device)
                loss = learner.outer_step(batch, optimizer).item()
                if loss != loss or loss in (float("inf"), float("-inf")):
                    history.stopped = "diverged"
                    warnings.warn(f"meta-training stopped at iteration {it}: the loss is "
                                  f"{loss} (try a smaller inner_lr or outer_lr); the model is "
                                  f"the last finite one", RuntimeWarning, stacklevel=2)
                    break
                history.losses.append(loss)
            bar.update(1)
            if it % 50 == 0:
                bar.set_postfix(loss=f"{loss:.3f}")
            if callback is not None and (it + 1) % callback_every == 0:
                history.seconds += time.perf_counter() - start
                start = time.perf_counter()
                snapshot()
                callback(history)
        if callback is not None:
            history.seconds += time.perf_counter() - start
            start = time.perf_counter()
            snapshot()
            callback(history)
    except KeyboardInterrupt:
        history.stopped = "interrupted"
        print(f"Interrupted after {history.iterations} iterations: the model and the "
              f"history so far are kept.")
    finally:
        bar.close()
        history.seconds += time.perf_counter() - start
        snapshot()
    return history
