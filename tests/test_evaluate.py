import math

import pytest
import torch

from mlkit.evaluate import adaptation_curves, mean_ci95, meta_test
from mlkit.models import MLP
from mlkit.tasks import SinusoidFamily
from mlkit.train import History, make_learner, meta_train


def test_ci95_formula():
    v = torch.tensor([1.0, 2.0, 3.0, 4.0])
    mean, ci = mean_ci95(v)
    sd = math.sqrt(sum((x - 2.5) ** 2 for x in [1, 2, 3, 4]) / 3)
    assert mean == pytest.approx(2.5)
    assert ci == pytest.approx(1.96 * sd / 2)
    assert math.isnan(mean_ci95(torch.tensor([3.0]))[1])
    with pytest.raises(ValueError):
        mean_ci95(torch.tensor([]))


def test_meta_test_result_shape_and_protocol():
    torch.manual_seed(0)
    learner = make_learner("maml", MLP())
    r = meta_test(learner, SinusoidFamily(), shots=5, steps=3, tasks=50)
    assert set(r["mse"]) == {"0", "1", "2", "3"}
    assert all(set(v) == {"mean", "ci95"} and v["ci95"] > 0 for v in r["mse"].values())
    p = r["protocol"]
    assert (p["shots"], p["steps"], p["tasks"], p["inner_lr"]) == (5, 3, 50, 0.01)
    # the same seed gives the same tasks, hence the same numbers
    assert meta_test(learner, SinusoidFamily(), shots=5, steps=3, tasks=50) == r


def test_meta_test_chunks_give_same_result():
    torch.manual_seed(0)
    learner = make_learner("maml", MLP())
    fam = SinusoidFamily()
    a = meta_test(learner, fam, shots=5, steps=2, tasks=40, chunk=40)
    b = meta_test(learner, fam, shots=5, steps=2, tasks=40, chunk=40)
    assert a["mse"] == b["mse"]


def test_adaptation_reduces_error_and_matches_inner_loop():
    torch.manual_seed(0)
    learner = make_learner("maml", MLP(), inner_lr=0.01)
    batch = SinusoidFamily().sample(20, 10, 50, generator=torch.Generator().manual_seed(0))
    curves = adaptation_curves(learner, batch, steps=5)
    assert curves["loss"].shape == (20, 6)
    assert curves["loss"][:, 5].mean() < curves["loss"][:, 0].mean()
    # step 3 of the curve is the query loss of learner.adapt(..., steps=3)
    params = learner.adapt(batch.x_support, batch.y_support, steps=3, create_graph=False)
    direct = learner.loss(learner.model.forward_tasks(params, batch.x_query), batch.y_query)
    torch.testing.assert_close(curves["loss"][:, 3], direct.detach())


def test_divergent_lr_is_reported_not_raised():
    torch.manual_seed(0)
    learner = make_learner("maml", MLP())
    batch = SinusoidFamily().sample(5, 10, 10, generator=torch.Generator().manual_seed(0))
    curves = adaptation_curves(learner, batch, steps=30, lr=1e6)
    assert curves["diverged"].all()
    assert torch.isfinite(curves["loss"]).all()


def test_meta_train_history_and_callback():
    torch.manual_seed(0)
    learner = make_learner("maml", MLP())
    seen = []
    h = meta_train(learner, SinusoidFamily(), 30, meta_batch=4, progress=False,
                   callback=lambda hist: seen.append(hist.iterations), callback_every=10)
    assert isinstance(h, History) and h.iterations == 30 and h.stopped == "finished"
    assert seen == [10, 20, 30, 30]


def test_meta_train_is_deterministic():
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        learner = make_learner("fomaml", MLP())
        runs.append(meta_train(learner, SinusoidFamily(), 20, meta_batch=4, progress=False).losses)
    assert runs[0] == runs[1]


def test_meta_train_stops_on_divergence_with_last_finite_model():
    torch.manual_seed(0)
    learner = make_learner("maml", MLP(), inner_lr=1e30)
    with pytest.warns(RuntimeWarning, match="inner_lr"):
        h = meta_train(learner, SinusoidFamily(), 10, meta_batch=4, progress=False)
    assert h.stopped == "diverged"
    assert all(torch.isfinite(p).all() for p in learner.parameters())


def test_meta_train_keeps_progress_on_keyboard_interrupt():
    torch.manual_seed(0)
    learner = make_learner("maml", MLP())

    def interrupt(hist):  # a student pressing Ctrl-C (once) after 20 iterations
        if hist.iterations == 20 and hist.stopped == "finished":
            raise KeyboardInterrupt

    h = meta_train(learner, SinusoidFamily(), 1000, meta_batch=4, progress=False,
                   callback=interrupt, callback_every=10)
    assert h.stopped == "interrupted" and h.iterations == 20


def test_pretrain_learns_the_average_curve():
    torch.manual_seed(0)
    learner = make_learner("pretrain", MLP())
    meta_train(learner, SinusoidFamily(), 1500, progress=False)
    x = torch.linspace(-4, 4, 50).view(50, 1)
    with torch.no_grad():
        y = learner.model(x)
    # E[A sin(x - phase)] with A ~ U[0.1, 5], phase ~ U[0, pi] is -(2 / pi) E[A] cos(x)
    average = -(2 / torch.pi) * 2.55 * torch.cos(x)
    assert (y - average).abs().mean() < 0.3 * average.abs().mean()
