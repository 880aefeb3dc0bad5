"""Time and memory of the MAML family (mlkit.tools.compare): bytes saved for backward,
counted through torch.autograd.graph.saved_tensors_hooks, checked against hand counts."""
import pytest
import torch

from mlkit import MLP, SinusoidFamily, make_learner
from mlkit.tools.compare import ms_per_iteration, peak_memory, peak_saved_bytes

F64 = 8  # bytes per float64


def leaf(n, requires_grad=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=torch.float64).requires_grad_(requires_grad)


def test_a_product_saves_both_operands():
    x, w = leaf(100), leaf(300, seed=1)[:100].clone().detach().requires_grad_()
    assert peak_saved_bytes(lambda: (x * w).sum()) == (100 + 100) * F64


def test_only_what_backward_needs_is_counted():
    x, w = leaf(100), leaf(100, requires_grad=False, seed=1)
    # d(x*w)/dx needs w only; sum saves a shape, no tensor
    assert peak_saved_bytes(lambda: (x * w).sum()) == 100 * F64
    # one storage counts once, however often it is saved (x * x saves x twice)
    assert peak_saved_bytes(lambda: (x * x).sum()) == 100 * F64
    # exp saves its result: x, w and exp(x * w) -> 3 tensors of 50 float64
    a, b = leaf(50), leaf(50, seed=2)
    assert peak_saved_bytes(lambda: (a * b).exp().sum()) == 3 * 50 * F64
    # nothing is saved without autograd
    assert peak_saved_bytes(lambda: (x.detach() * w).sum()) == 0


def test_the_peak_is_the_most_held_at_once_not_the_total():
    x, small, big = leaf(100), leaf(100, seed=1), leaf(1000, seed=2)

    def step():
        (x * small).sum().backward()      # holds 100 + 100 values until this backward
        return (x.repeat(10) * big).sum()  # then x.repeat(10) (1000) and big (1000)
    # repeat saves no tensor; the first graph was freed by its backward
    assert peak_saved_bytes(step) == (1000 + 1000) * F64

    def held():
        first = (x * small).sum()          # still alive when the second graph is built
        second = (x.repeat(10) * big).sum()
        return first, second
    assert peak_saved_bytes(held) == (100 + 100 + 1000 + 1000) * F64


def learners(steps, seed=0):
    """MAML and FOMAML with ``steps`` inner steps, from the same weights."""
    out = {}
    for algo in ("maml", "fomaml"):
        torch.manual_seed(seed)
        out[f"{algo}-{steps}"] = make_learner(algo, MLP(), inner_steps=steps)
    return out


def test_second_order_needs_more_memory_and_grows_with_steps():
    ls = {**learners(1), **learners(2), **learners(4)}
    before = {k: [p.clone() for p in v.parameters()] for k, v in ls.items()}
    mem = peak_memory(ls, SinusoidFamily(), meta_batch=5)
    assert mem == peak_memory(ls, SinusoidFamily(), meta_batch=5)  # deterministic
    for steps in (1, 2, 4):
        assert mem[f"maml-{steps}"] > mem[f"fomaml-{steps}"] > 0
    # MAML keeps every inner step for the outer gradient; FOMAML frees each one
    assert mem["maml-1"] < mem["maml-2"] < mem["maml-4"]
    assert mem["fomaml-1"] == mem["fomaml-2"] == mem["fomaml-4"]
    for k, v in ls.items():  # the learners themselves were not trained
        assert all(torch.equal(p, q) for p, q in zip(v.parameters(), before[k]))


@pytest.mark.parametrize("algo", ["maml", "fomaml"])
def test_peak_memory_is_the_graph_of_one_meta_loss(algo):
    """MAML's peak is its meta-loss graph (both inner steps kept); FOMAML's is about one
    forward pass on the query set with the adapted weights (each inner step freed after its
    gradient), far below MAML's."""
    torch.manual_seed(0)
    learner = make_learner(algo, MLP(), inner_steps=2)
    mem = peak_memory({algo: learner}, SinusoidFamily(), meta_batch=5)[algo]
    batch = SinusoidFamily().sample(5, 10, 10, generator=torch.Generator().manual_seed(0))
    graph = peak_saved_bytes(lambda: learner.meta_loss(batch))
    assert graph > 0
    # outer_step may also hold a few small tensors besides the graph (the finite-loss check)
    assert graph <= mem < 1.01 * graph
    adapted = learner.adapt(batch.x_support, batch.y_support)
    query_pass = peak_saved_bytes(lambda: learner.query_loss(adapted, batch))
    if algo == "fomaml":
        assert mem < 1.05 * query_pass
    else:
        assert mem > 2 * query_pass  # the inner loop's graph is kept as well


def test_ms_per_iteration_for_each_learner():
    torch.manual_seed(0)
    ls = {algo: make_learner(algo, MLP()) for algo in ("maml", "fomaml", "reptile")}
    ms = ms_per_iteration(ls, SinusoidFamily(), meta_batch=5, iterations=2, rounds=2)
    assert set(ms) == {"maml", "fomaml", "reptile"}
    assert all(isinstance(v, float) and v > 0 for v in ms.values())


@pytest.mark.parametrize("fn", [peak_memory, ms_per_iteration])
def test_bad_meta_batch(fn):
    with pytest.raises(ValueError, match="meta_batch"):
        fn({"maml": make_learner("maml", MLP())}, SinusoidFamily(), meta_batch=0)
