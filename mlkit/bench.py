"""Benchmark: batched meta-training against a per-task Python loop, in one run.

Both sides run the same algorithm on the same task batches (MAML paper protocol:
MLP 1-40-40-1, 25 tasks, K = 10 + 10, one inner step, Adam), measured
alternately in rounds so that a busy machine slows both alike. Reported: median
milliseconds per meta-iteration (task sampling included) and their ratio.
"""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call

from .checks import check_int
from .models import MLP
from .runtime import adam
from .tasks import SinusoidFamily
from .train import make_learner


def per_task_loop_step(model, batch, optimizer, inner_lr, first_order):
    """The textbook MAML step: one task at a time (the kind of loop we replace)."""
    params = dict(model.named_parameters())
    total = 0.0
    for t in range(batch.tasks):
        loss = F.mse_loss(functional_call(model, params, (batch.x_support[t],)), batch.y_support[t])
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=not first_order)
        adapted = {n: p - inner_lr * g for (n, p), g in zip(params.items(), grads)}
        total = total + F.mse_loss(functional_call(model, adapted, (batch.x_query[t],)),
                                   batch.y_query[t])
    optimizer.zero_grad(set_to_none=True)
    (total / batch.tasks).backward()
    optimizer.step()


def run_bench(rounds=10, iterations=50, meta_batch=25, shots=10, device="cpu", seed=0):
    """Time batched vs per-task MAML and first-order MAML. Returns a dict of results."""
    check_int("rounds", rounds, low=1)
    check_int("iterations", iterations, low=1)
    check_int("meta_batch", meta_batch, low=1)
    family = SinusoidFamily()
    results = {}
    for algo, first_order in (("maml", False), ("fomaml", True)):
        torch.manual_seed(seed)
        learner = make_learner(algo, MLP()).to(device)
        loop_model = MLP().to(device)
        opt_batched, opt_loop = adam(learner.parameters(), 1e-3), adam(loop_model.parameters(), 1e-3)
        gen = torch.Generator().manual_seed(seed)

        def batched():
            batch = family.sample(meta_batch, shots, shots, generator=gen, device=device)
            learner.outer_step(batch, opt_batched)

        def loop():
            batch = family.sample(meta_batch, shots, shots, generator=gen, device=device)
            per_task_loop_step(loop_model, batch, opt_loop, learner.inner_lr, first_order)

        times = {"batched": [], "loop": []}
        for r in range(rounds + 1):  # round 0 warms up and is not counted
            for name, fn in (("batched", batched), ("loop", loop)):
                if device != "cpu":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(iterations):
                    fn()
                if device != "cpu":
                    torch.cuda.synchronize()
                if r > 0:
                    times[name].append((time.perf_counter() - start) / iterations * 1e3)
        b, l = statistics.median(times["batched"]), statistics.median(times["loop"])
        results[algo] = {"batched_ms": b, "loop_ms": l, "ratio": l / b}
    return {"protocol": {"model": "MLP 1-40-40-1", "meta_batch": meta_batch, "shots": shots,
                         "queries": shots, "inner_steps": 1, "optimizer": "Adam",
                         "rounds": rounds, "iterations_per_round": iterations,
                         "threads": torch.get_num_threads(), "device": str(device),
                         "torch": torch.__version__},
            "results": results}
