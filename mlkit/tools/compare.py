"""What each member of the MAML family costs: time per meta-iteration and memory for backward.

Both are measured on the same task batches for every learner, on copies of the learners
(the originals, e.g. shipped checkpoints, are left untouched).

* time: median milliseconds per meta-iteration (task sampling included), the learners
  taking turns in rounds so that a busy machine slows all of them alike (as ``bench``).
* memory: the peak of the bytes that autograd holds for the backward pass during one
  meta-iteration, counted with the public ``torch.autograd.graph.saved_tensors_hooks``
  (``peak_saved_bytes``). This is the memory that second order adds: MAML keeps the whole
  inner loop, its gradients included, until the outer gradient; first-order MAML and
  Reptile free each inner step's tensors as soon as its gradient is taken.
"""
from __future__ import annotations

import copy
import weakref

import torch

from ..checks import check_int
from ..runtime import adam
from .bench import alternate


def _copies(learners: dict, outer_lr: float) -> dict:
    """name -> (a deep copy of the learner in training mode, a fresh Adam for it)."""
    out = {}
    for name, learner in learners.items():
        twin = copy.deepcopy(learner).train()
        out[name] = (twin, adam(twin.parameters(), outer_lr))
    return out


def ms_per_iteration(learners: dict, family, meta_batch=25, shots=10, queries=10,
                     iterations=20, rounds=5, outer_lr=1e-3, seed=0) -> dict:
    """Median milliseconds per meta-iteration of each learner: name -> ms. Every learner
    sees the same task batches; round 0 warms up and is not counted."""
    check_int("meta_batch", meta_batch, low=1)
    twins = _copies(learners, outer_lr)
    batches = [family.sample(meta_batch, shots, queries, generator=torch.Generator()
                             .manual_seed(seed + i)) for i in range(iterations)]
    steps = {name: (lambda l=learner, o=opt: [l.outer_step(b, o) for b in batches])
             for name, (learner, opt) in twins.items()}
    ms = alternate(steps, rounds, 1, torch.device("cpu"))
    return {name: t / iterations for name, t in ms.items()}


class _Saved:
    """What autograd stores in place of a saved tensor while it is counted."""
    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor):
        self.tensor = tensor


def peak_saved_bytes(step) -> int:
    """The most bytes that autograd holds for backward at one time while ``step()`` runs.

    Every tensor saved for backward passes through a ``saved_tensors_hooks`` pack hook,
    which wraps it; autograd drops the wrapper when it frees the saved tensor, so the
    wrappers still alive are what backward still needs. Each storage counts once."""
    live, peak = [], 0

    def pack(tensor):
        nonlocal live, peak
        held = _Saved(tensor)
        storage = tensor.untyped_storage()
        live = [e for e in live if e[0]() is not None]
        live.append((weakref.ref(held), storage.data_ptr(), storage.nbytes()))
        peak = max(peak, sum(dict((key, n) for _, key, n in live).values()))
        return held
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda held: held.tensor):
        step()
    return peak


def peak_memory(learners: dict, family, meta_batch=25, shots=10, queries=10, seed=0) -> dict:
    """``peak_saved_bytes`` of one meta-iteration of each learner: name -> bytes, on the same
    batch (after a warm-up step that creates the optimiser state). Deterministic."""
    check_int("meta_batch", meta_batch, low=1)
    batch = family.sample(meta_batch, shots, queries, generator=torch.Generator().manual_seed(seed))
    result = {}
    for name, (learner, optimizer) in _copies(learners, outer_lr=1e-3).items():
        learner.outer_step(batch, optimizer)
        result[name] = peak_saved_bytes(lambda: learner.outer_step(batch, optimizer))
    return result
