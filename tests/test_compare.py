"""Time and memory of the MAML family (mlkit.compare)."""
import torch

from mlkit import MLP, SinusoidFamily, make_learner
from mlkit.compare import LiveTensorBytes, ms_per_iteration, peak_memory


def learners():
    torch.manual_seed(0)
    return {algo: make_learner(algo, MLP()) for algo in ("maml", "fomaml", "reptile")}


def test_live_tensor_bytes_counts_peak_not_total():
    with LiveTensorBytes() as watch:
        a = torch.zeros(1000)          # 4,000 bytes
        del a                          # freed
        b = torch.zeros(500)           # 2,000 bytes
        c = b + 1                      # 2,000 more
    assert watch.peak == 4000
    assert c.shape == (500,)


def test_peak_memory_second_order_needs_more():
    ls = learners()
    before = {k: [p.clone() for p in v.parameters()] for k, v in ls.items()}
    mem = peak_memory(ls, SinusoidFamily(), meta_batch=5)
    assert mem == peak_memory(ls, SinusoidFamily(), meta_batch=5)  # deterministic
    assert mem["maml"] > mem["fomaml"] > 0
    for k, v in ls.items():  # the learners themselves were not trained
        assert all(torch.equal(p, q) for p, q in zip(v.parameters(), before[k]))


def test_ms_per_iteration():
    ms = ms_per_iteration(learners(), SinusoidFamily(), meta_batch=5, iterations=2, rounds=2)
    assert set(ms) == {"maml", "fomaml", "reptile"}
    assert all(v > 0 for v in ms.values())
