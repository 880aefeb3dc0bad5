"""Benchmark: the kit's meta-iteration against the per-task loop users would write, in one run.

Both sides run the same algorithm on the same network and the same task batches. The
loop is written the way learn2learn's users write it (``clone()`` / ``adapt()``
semantics): one task at a time, the network's own forward with the task's weights
(``functional_call``), ``autograd.grad(create_graph=True)`` for the inner step and a
backward pass per task. The two take turns, round after round, so that a busy machine
slows both alike; reported are the median milliseconds per meta-iteration (task
sampling included) and their ratio, loop / kit.

* sinusoid: MAML paper protocol (MLP 1-40-40-1, 25 tasks, K = 10 + 10, 1 inner step,
  lr 0.01, Adam); the kit batches all tasks (``MLP.forward_tasks``).
* images: 5-way 1-shot glyph episodes, 15 queries per class, 8 tasks, 1 inner step of
  lr 0.4, Conv-4 with 64 filters on 28x28 (both networks); the kit loops over tasks with
  its faster pass (``Conv4.functional``). As ``train`` and ``evaluate`` do for glyphs, the
  process keeps the memory it frees (``keep_freed_memory``): the loop, in the same
  process, runs with that setting too.
"""
from __future__ import annotations

import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..algorithms import make_learner
from ..checks import check_int
from ..data import load_glyphs
from ..episodes import EpisodeFamily
from ..models import MLP, Conv4
from ..runtime import adam, keep_freed_memory
from ..tasks import SinusoidFamily

IMAGE_SETTING = {"ways": 5, "shots": 1, "queries": 15, "meta_batch": 8, "inner_lr": 0.4}


def loop_maml_step(model, batch, optimizer, loss_fn, inner_lr, first_order):
    """One MAML meta-iteration, one task at a time (the kind of loop the kit replaces)."""
    optimizer.zero_grad(set_to_none=True)
    theta = dict(model.named_parameters())
    for t in range(batch.tasks):
        loss = loss_fn(functional_call(model, theta, (batch.x_support[t],)), batch.y_support[t])
        grads = torch.autograd.grad(loss, list(theta.values()), create_graph=not first_order)
        adapted = {n: p - inner_lr * g for (n, p), g in zip(theta.items(), grads)}
        query = loss_fn(functional_call(model, adapted, (batch.x_query[t],)), batch.y_query[t])
        (query / batch.tasks).backward()
    optimizer.step()


def loop_protonet_step(model, batch, optimizer):
    """One ProtoNet iteration, one episode at a time (as easyfsl's tutorials write it)."""
    optimizer.zero_grad(set_to_none=True)
    for t in range(batch.tasks):
        ways = int(batch.y_support[t].max()) + 1
        z = model(torch.cat([batch.x_support[t], batch.x_query[t]]))
        z_support, z_query = z[:len(batch.x_support[t])], z[len(batch.x_support[t]):]
        prototypes = torch.stack([z_support[batch.y_support[t] == c].mean(0) for c in range(ways)])
        loss = F.cross_entropy(-torch.cdist(z_query, prototypes) ** 2, batch.y_query[t])
        (loss / batch.tasks).backward()
    optimizer.step()


def round_times(contenders: dict, rounds: int, iterations: int, device) -> dict:
    """ms per call of each contender in each round: {name: [ms, ...]}, taking turns for
    ``rounds`` rounds of ``iterations`` calls (round 0 warms up and is not counted)."""
    times = {name: [] for name in contenders}
    for r in range(rounds + 1):
        for name, step in contenders.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(iterations):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if r > 0:
                times[name].append((time.perf_counter() - start) / iterations * 1e3)
    return times


def alternate(contenders: dict, rounds: int, iterations: int, device) -> dict:
    """Median ms per call of each contender, taking turns (``round_times``)."""
    times = round_times(contenders, rounds, iterations, device)
    return {name: statistics.median(t) for name, t in times.items()}


def compare(kit_step, loop_step, rounds, iterations, device) -> dict:
    """The two medians, their ratio (loop / kit), and the lowest and highest ratio of a
    single round: how far one round's answer can stray on this machine."""
    times = round_times({"kit": kit_step, "loop": loop_step}, rounds, iterations, device)
    kit, loop = statistics.median(times["kit"]), statistics.median(times["loop"])
    per_round = [lp / k for k, lp in zip(times["kit"], times["loop"])]
    return {"kit_ms": kit, "loop_ms": loop, "ratio": loop / kit,
            "ratio_range": [min(per_round), max(per_round)]}


def sinusoid_bench(rounds, iterations, device, seed=0) -> dict:
    family, results = SinusoidFamily(), {}
    for algo in ("maml", "fomaml"):
        torch.manual_seed(seed)
        learner = make_learner(algo, MLP()).to(device)
        model = MLP().to(device)
        opt_kit, opt_loop = adam(learner.parameters(), 1e-3), adam(model.parameters(), 1e-3)
        gen = torch.Generator().manual_seed(seed)
        sample = lambda: family.sample(25, 10, 10, generator=gen, device=device)
        results[algo] = compare(
            lambda: learner.outer_step(sample(), opt_kit),
            lambda: loop_maml_step(model, sample(), opt_loop, F.mse_loss, 0.01, algo == "fomaml"),
            rounds, iterations, device)
    return {"protocol": {"model": "MLP 1-40-40-1", "meta_batch": 25, "shots": 10, "queries": 10,
                         "inner_steps": 1, "inner_lr": 0.01, "optimizer": "Adam"},
            "results": results}


def image_bench(rounds, iterations, device, seed=0) -> dict:
    s = IMAGE_SETTING
    kept = keep_freed_memory()  # as the image commands train and evaluate
    family = EpisodeFamily(load_glyphs("background"), s["ways"], rotations=True)
    results = {}
    cases = [("maml", "strided"), ("fomaml", "strided"), ("maml", "pool"), ("fomaml", "pool"),
             ("protonet", "pool")]
    for algo, network in cases:
        torch.manual_seed(seed)
        head = None if algo == "protonet" else s["ways"]
        model = Conv4(head, pool=network == "pool").to(device)
        options = {} if algo == "protonet" else {"inner_lr": s["inner_lr"]}
        learner = make_learner(algo, Conv4(head, pool=network == "pool"), "cross_entropy",
                               **options).to(device)
        learner.model.load_state_dict(model.state_dict())
        opt_kit, opt_loop = adam(learner.parameters(), 1e-3), adam(model.parameters(), 1e-3)
        gen = torch.Generator().manual_seed(seed)
        sample = lambda: family.sample(s["meta_batch"], s["shots"], s["queries"], generator=gen,
                                       device=device)
        if algo == "protonet":
            loop = lambda: loop_protonet_step(model, sample(), opt_loop)
        else:
            loop = lambda: loop_maml_step(model, sample(), opt_loop, F.cross_entropy,
                                          s["inner_lr"], algo == "fomaml")
        results[f"{algo} ({network})"] = compare(lambda: learner.outer_step(sample(), opt_kit),
                                                 loop, rounds, iterations, device)
    return {"protocol": {"model": "Conv-4, 64 filters, 28x28; pool: max-pool network (Snell et "
                                  "al. 2017), strided: MAML's Omniglot network (Finn et al. 2017)",
                         **s, "inner_steps": 1, "optimizer": "Adam",
                         "freed_memory_kept": kept}, "results": results}


def processor_name() -> str:
    """The CPU's model name ("AMD EPYC", ...): timings and even ratios differ between
    processors, so a result names the one that produced it."""
    try:
        with open("/proc/cpuinfo") as f:  # Linux
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def run_bench(rounds=10, iterations=50, device="cpu", only=None, seed=0) -> dict:
    """Time the kit against the per-task loop: {"protocol", "sinusoid", "images"}."""
    check_int("rounds", rounds, low=1)
    check_int("iterations", iterations, low=1)
    device = torch.device(device)
    out = {"protocol": {"rounds": rounds, "threads": torch.get_num_threads(),
                        "device": str(device), "cpu": processor_name(),
                        "torch": torch.__version__,
                        "timing": "median ms per meta-iteration (task sampling included), kit "
                                  "and loop taking turns; ratio = loop / kit; ratio_range: "
                                  "the lowest and highest ratio of a single round"}}
    if only in (None, "sinusoid"):
        out["sinusoid"] = {**sinusoid_bench(rounds, iterations, device, seed),
                           "iterations_per_round": iterations}
    if only in (None, "images"):
        per_round = max(1, iterations // 10)
        out["images"] = {**image_bench(rounds, per_round, device, seed),
                         "iterations_per_round": per_round}
    return out


def format_bench(out) -> str:
    p = out["protocol"]
    lines = [f"ms per meta-iteration, {p['threads']} thread(s), {p['device']}, CPU {p['cpu']}, "
             f"torch {p['torch']}; median of {p['rounds']} rounds, kit and per-task loop "
             f"alternating"]
    for section in ("sinusoid", "images"):
        if section not in out:
            continue
        s = out[section]
        sp = s["protocol"]
        lines += ["", f"{section}: {sp['model']}; {sp['meta_batch']} tasks, "
                      f"{sp.get('ways', 1)}-way K={sp['shots']}+{sp['queries']}, 1 inner step of "
                      f"lr {sp['inner_lr']}, Adam; {s['iterations_per_round']} iterations a round"
                      + ("; freed memory kept for reuse, as in training"
                         if sp.get("freed_memory_kept") else ""),
                  f"{'algorithm':<20} {'kit':>10} {'per-task loop':>14} {'ratio':>7}"
                  f"  {'single rounds':>13}"]
        for algo, r in s["results"].items():
            low, high = r["ratio_range"]
            lines.append(f"{algo:<20} {r['kit_ms']:>8.2f}ms {r['loop_ms']:>12.2f}ms "
                         f"{r['ratio']:>6.2f}x  {low:>5.2f}-{high:.2f}x")
    return "\n".join(lines)
