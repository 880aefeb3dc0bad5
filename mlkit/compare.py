"""What each member of the MAML family costs: time per meta-iteration and peak memory.

Both are measured on the same task batches for every learner, on copies of the
learners (the originals, e.g. shipped checkpoints, are left untouched).

* time: median milliseconds per meta-iteration (task sampling included), the
  learners taking turns in rounds so that a busy machine slows all of them alike
  (the same method as ``mlkit.bench``).
* memory: the peak of the bytes held by tensors that torch creates during one
  meta-iteration (inputs, activations, what autograd saves for the backward pass,
  gradients, optimiser state), counted exactly by watching every torch operation.
  It leaves out the weights that existed before and the allocator's own overhead,
  so it is the *extra* memory an iteration needs: for MAML this includes the
  graph of the inner loop that second-order gradients flow through.
"""
from __future__ import annotations

import copy
import statistics
import time

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .checks import check_int
from .runtime import adam


class LiveTensorBytes(TorchDispatchMode):
    """Inside ``with LiveTensorBytes() as m:``, ``m.peak`` tracks the most bytes held at once
    by tensors created in the block (each storage counted once, until it is freed)."""

    def __init__(self):
        super().__init__()
        self.live = {}  # storage address -> (weak reference, bytes)
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for key in [k for k, (ref, _) in self.live.items() if ref.expired()]:
            del self.live[key]  # freed since the last operation
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                if storage.data_ptr() not in self.live:
                    self.live[storage.data_ptr()] = (StorageWeakRef(storage), storage.nbytes())
        self.peak = max(self.peak, sum(n for _, n in self.live.values()))
        return out


def _copies(learners: dict, outer_lr: float) -> dict:
    """name -> (a deep copy of the learner in training mode, a fresh Adam for it)."""
    out = {}
    for name, learner in learners.items():
        twin = copy.deepcopy(learner).train()
        out[name] = (twin, adam(twin.parameters(), outer_lr))
    return out


def ms_per_iteration(learners: dict, family, meta_batch=25, shots=10, queries=10,
                     iterations=20, rounds=5, outer_lr=1e-3, seed=0) -> dict:
    """Median milliseconds per meta-iteration of each learner: name -> ms.

    Each round runs ``iterations`` outer steps of every learner in turn (round 0
    warms up and is not counted); every learner sees the same task batches.
    """
    check_int("meta_batch", meta_batch, low=1)
    check_int("iterations", iterations, low=1)
    check_int("rounds", rounds, low=1)
    twins = _copies(learners, outer_lr)
    times = {name: [] for name in learners}
    for r in range(rounds + 1):
        for name, (learner, optimizer) in twins.items():
            generator = torch.Generator().manual_seed(seed + r)
            start = time.perf_counter()
            for _ in range(iterations):
                batch = family.sample(meta_batch, shots, queries, generator=generator)
                learner.outer_step(batch, optimizer)
            if r > 0:
                times[name].append((time.perf_counter() - start) / iterations * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def peak_memory(learners: dict, family, meta_batch=25, shots=10, queries=10, outer_lr=1e-3,
                seed=0) -> dict:
    """Peak extra bytes of tensors during one meta-iteration of each learner: name -> bytes.

    One warm-up step first creates the optimiser state, so the measured step is a
    typical one. Deterministic: the same settings give the same bytes.
    """
    check_int("meta_batch", meta_batch, low=1)
    batch = family.sample(meta_batch, shots, queries, generator=torch.Generator().manual_seed(seed))
    result = {}
    for name, (learner, optimizer) in _copies(learners, outer_lr).items():
        learner.outer_step(batch, optimizer)
        with LiveTensorBytes() as watch:
            learner.outer_step(batch, optimizer)
        result[name] = watch.peak
    return result
