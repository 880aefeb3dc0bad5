"""meta_test against independent per-task computations; the same numbers whatever the chunks."""
import math

import pytest
import torch
import torch.nn.functional as F

from mlkit.algorithms import make_learner
from mlkit.data import ClassImages
from mlkit.episodes import EpisodeFamily
from mlkit.evaluate import fresh_tasks, image_test_steps, mean_ci95, meta_test, summarize
from mlkit.models import MLP, Conv4
from mlkit.protonet import ProtoNet
from mlkit.tasks import SinusoidFamily


def without_time(result):
    return {k: v for k, v in result.items() if k != "seconds"}


def tiny_images(classes=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(classes, 6, 16, 16, generator=g) * 255).to(torch.uint8)
    return ClassImages(images, [f"c{i}" for i in range(classes)], ["a"] * classes)


def test_ci95_formula():
    v = torch.tensor([1.0, 2.0, 3.0, 4.0])
    mean, ci = mean_ci95(v)
    sd = math.sqrt(sum((x - 2.5) ** 2 for x in [1, 2, 3, 4]) / 3)  # unbiased (n - 1)
    assert mean == pytest.approx(2.5)
    assert ci == pytest.approx(1.96 * sd / 2)
    assert math.isnan(mean_ci95(torch.tensor([3.0]))[1])
    with pytest.raises(ValueError):
        mean_ci95(torch.tensor([]))


def test_summarize_gives_median_and_share_of_diverged_tasks():
    curves = torch.tensor([[1.0, 0.5], [2.0, 0.25], [3.0, 100.0], [4.0, 0.75]])
    flags = torch.tensor([[False, False], [False, False], [False, True], [False, False]])
    s = summarize(curves, flags)
    assert s["0"] == {"mean": 2.5, "ci95": pytest.approx(1.96 * curves[:, 0].std().item() / 2),
                      "median": 2.0, "diverged": 0.0}
    assert s["1"]["median"] == 0.5 and s["1"]["diverged"] == 0.25


def test_meta_test_equals_plain_sgd_on_the_same_fresh_tasks():
    torch.manual_seed(0)
    learner = make_learner("maml", MLP(), inner_lr=0.02)
    family = SinusoidFamily()
    r = meta_test(learner, family, shots=5, steps=2, tasks=12, queries=7)
    batch = fresh_tasks(family, 0, 12, 5, 7, seed=12345)
    model, finals = learner.model, []
    for t in range(12):  # written out: two SGD steps per task, then the query MSE
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
        x, y = batch.x_support[t], batch.y_support[t]
        for _ in range(2):
            live = {n: p.requires_grad_() for n, p in params.items()}
            loss = F.mse_loss(torch.func.functional_call(model, live, (x,)), y)
            grads = torch.autograd.grad(loss, list(live.values()))
            params = {n: (p - 0.02 * g).detach() for (n, p), g in zip(live.items(), grads)}
        pred = torch.func.functional_call(model, params, (batch.x_query[t],))
        finals.append(F.mse_loss(pred, batch.y_query[t]))
    mean, ci = mean_ci95(torch.stack(finals))
    assert r["mse"]["2"]["mean"] == pytest.approx(mean, rel=1e-5)
    assert r["mse"]["2"]["ci95"] == pytest.approx(ci, rel=1e-4)
    p = r["protocol"]
    assert (p["shots"], p["steps"], p["tasks"], p["queries"], p["inner_lr"]) == (5, 2, 12, 7, 0.02)


@pytest.mark.parametrize("chunk", [1, 7, 40])
def test_same_seed_same_numbers_whatever_the_chunk(chunk):
    torch.manual_seed(1)
    learner = make_learner("maml", MLP(), inner_lr=0.01)
    family = SinusoidFamily()
    reference = meta_test(learner, family, shots=5, steps=3, tasks=40)
    other = meta_test(learner, family, shots=5, steps=3, tasks=40, chunk=chunk)
    for step in reference["mse"]:
        for key in ("mean", "ci95", "median"):
            assert other["mse"][step][key] == pytest.approx(reference["mse"][step][key],
                                                            rel=1e-5), (step, key)


def test_fresh_tasks_do_not_depend_on_where_a_pass_starts():
    family = SinusoidFamily()
    whole = fresh_tasks(family, 0, 6, 4, 3, seed=9)
    part = fresh_tasks(family, 2, 3, 4, 3, seed=9)
    torch.testing.assert_close(part.x_support, whole.x_support[2:5], rtol=0, atol=0)
    torch.testing.assert_close(part.info["amplitude"], whole.info["amplitude"][2:5])
    assert not torch.equal(fresh_tasks(family, 0, 6, 4, 3, seed=10).x_support, whole.x_support)


def test_episodes_whatever_the_chunk_and_against_a_direct_computation():
    torch.manual_seed(2)
    family = EpisodeFamily(tiny_images(), ways=3)
    proto = ProtoNet(Conv4(None, hidden=8, image_size=16))
    a = meta_test(proto, family, shots=1, steps=0, tasks=10, queries=2, chunk=1)
    b = meta_test(proto, family, shots=1, steps=0, tasks=10, queries=2, chunk=4)
    assert without_time(a)["accuracy"] == without_time(b)["accuracy"]
    batch = fresh_tasks(family, 0, 10, 1, 2, seed=12345)
    with torch.no_grad():
        logits = proto.logits(batch)
    correct = (logits.argmax(-1) == batch.y_query).double().mean(1)
    assert a["accuracy"]["0"]["mean"] == pytest.approx(correct.mean().item())
    maml = make_learner("maml", Conv4(3, hidden=8, image_size=16), "cross_entropy", inner_lr=0.3)
    c = meta_test(maml, family, shots=1, steps=2, tasks=6, queries=2, chunk=1)
    d = meta_test(maml, family, shots=1, steps=2, tasks=6, queries=2, chunk=6)
    for step in ("0", "1", "2"):
        assert c["accuracy"][step]["mean"] == pytest.approx(d["accuracy"][step]["mean"])
        assert c["loss"][step]["mean"] == pytest.approx(d["loss"][step]["mean"], rel=1e-5)


def test_a_model_that_does_not_fit_the_task_is_refused_with_a_clear_message():
    family = EpisodeFamily(tiny_images(), ways=4)
    maml = make_learner("maml", Conv4(3, hidden=4, image_size=16), "cross_entropy")
    with pytest.raises(ValueError, match="ways=4"):
        meta_test(maml, family, shots=1, steps=1, tasks=2)
    proto = ProtoNet(Conv4(None, hidden=4, image_size=16))
    with pytest.raises(ValueError, match="steps"):
        meta_test(proto, family, shots=1, steps=2, tasks=2)


@pytest.mark.parametrize("kwargs, name", [({"shots": 0}, "shots"), ({"steps": -1}, "steps"),
                                          ({"tasks": 0}, "tasks"), ({"queries": 0}, "queries"),
                                          ({"seed": -2}, "seed"), ({"chunk": 0}, "chunk"),
                                          ({"inner_lr": -1.0}, "inner_lr")])
def test_bad_arguments_name_the_parameter(kwargs, name):
    args = {"shots": 5, "steps": 1, "tasks": 3, **kwargs}
    with pytest.raises(ValueError, match=name):
        meta_test(make_learner("maml", MLP()), SinusoidFamily(), **args)


def test_divergence_is_counted_and_summarised():
    torch.manual_seed(3)
    learner = make_learner("maml", MLP(), inner_lr=0.01)
    r = meta_test(learner, SinusoidFamily(), shots=5, steps=6, tasks=50, inner_lr=2.0)
    assert 0 < r["diverged_tasks"] <= 50
    assert r["mse"]["6"]["diverged"] == pytest.approx(r["diverged_tasks"] / 50)
    shares = [r["mse"][str(s)]["diverged"] for s in range(7)]
    assert shares[0] == 0 and shares == sorted(shares)  # the share by each step only grows
    assert math.isfinite(r["mse"]["6"]["mean"])


@pytest.mark.parametrize("algo, inner_steps, expected", [
    ("maml", 1, 3),     # Finn et al. 2017: the 5-way model trained with 1 step, tested with 3
    ("maml", 5, 5),     # their 20-way model trained and was tested with 5
    ("fomaml", 2, 3),
    ("protonet", None, 0),  # nothing to fine-tune
])
def test_image_test_steps_follow_the_papers_protocol(algo, inner_steps, expected):
    model = Conv4(ways=None if algo == "protonet" else 5, image_size=16)
    learner = make_learner(algo, model, loss="cross_entropy", inner_steps=inner_steps)
    assert image_test_steps(learner) == expected
