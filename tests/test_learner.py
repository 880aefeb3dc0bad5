"""fine_tune, the one fine-tuning loop, against independent per-task computations."""
import pytest
import torch
import torch.nn.functional as F

from mlkit.algorithms import make_learner
from mlkit.learner import DIVERGED_FACTOR, DIVERGED_FLOOR, fine_tune
from mlkit.models import MLP, Conv4
from mlkit.protonet import ProtoNet
from mlkit.tasks import SinusoidFamily, TaskBatch


def sinusoid_batch(tasks=6, seed=0, shots=5, queries=9):
    b = SinusoidFamily().sample(tasks, shots, queries, generator=torch.Generator().manual_seed(seed))
    return TaskBatch(*(t.double() for t in (b.x_support, b.y_support, b.x_query, b.y_query)),
                     b.info)


def manual_sgd(model, x, y, x_query, lr, steps, names=None, rates=None):
    """Plain per-task SGD written out: the query predictions after each step."""
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    outs = [torch.func.functional_call(model, params, (x_query,))]
    for _ in range(steps):
        live = {n: p.requires_grad_() for n, p in params.items()}
        loss = F.mse_loss(torch.func.functional_call(model, live, (x,)), y)
        grads = dict(zip(live, torch.autograd.grad(loss, list(live.values()))))
        params = {n: (p - (rates[n] if rates else lr) * grads[n]).detach()
                  if names is None or n in names else p.detach() for n, p in live.items()}
        outs.append(torch.func.functional_call(model, params, (x_query,)).detach())
    return torch.stack(outs)


@pytest.mark.parametrize("algo", ["maml", "fomaml", "reptile", "pretrain", "anil"])
def test_fine_tune_equals_plain_sgd_per_task(algo):
    torch.manual_seed(0)
    learner = make_learner(algo, MLP().double(), inner_lr=0.02)
    batch = sinusoid_batch()
    r = fine_tune(learner, batch, steps=4)
    assert r["outputs"].shape == (6, 5, 9, 1) and r["loss"].shape == (6, 5)
    names = list(learner.adapted_names())
    for t in range(batch.tasks):
        ref = manual_sgd(learner.model, batch.x_support[t], batch.y_support[t],
                         batch.x_query[t], 0.02, 4, names=names)
        torch.testing.assert_close(r["outputs"][t], ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(r["loss"][t], ((ref - batch.y_query[t]) ** 2).mean((1, 2)),
                                   rtol=1e-10, atol=1e-12)
    assert not r["diverged"].any()


def test_fine_tune_equals_the_learners_own_inner_loop():
    torch.manual_seed(1)
    learner = make_learner("maml", MLP().double(), inner_lr=0.03)
    batch = sinusoid_batch(seed=1)
    r = fine_tune(learner, batch, steps=3)
    params = learner.adapt(batch.x_support, batch.y_support, steps=3, create_graph=False)
    direct = learner.loss(learner.model.forward_tasks(params, batch.x_query), batch.y_query)
    torch.testing.assert_close(r["loss"][:, 3], direct.detach(), rtol=1e-12, atol=1e-12)


def test_inner_lr_overrides_every_step_size():
    torch.manual_seed(2)
    learner = make_learner("maml", MLP().double(), inner_lr=0.01)
    batch = sinusoid_batch(seed=2)
    r = fine_tune(learner, batch, steps=2, inner_lr=0.05)
    ref = manual_sgd(learner.model, batch.x_support[0], batch.y_support[0], batch.x_query[0],
                     0.05, 2)
    torch.testing.assert_close(r["outputs"][0], ref, rtol=1e-10, atol=1e-12)


def test_metasgd_keeps_its_learned_rates_unless_an_lr_is_given():
    torch.manual_seed(3)
    learner = make_learner("metasgd", MLP().double(), inner_lr=0.01)
    with torch.no_grad():
        for rate in learner.lrs.values():
            rate.uniform_(0.001, 0.05)
    rates = {n: learner.lrs[n.replace(".", "_")].detach() for n, _ in
             learner.model.named_parameters()}
    batch = sinusoid_batch(seed=3)
    own = fine_tune(learner, batch, steps=2)
    ref = manual_sgd(learner.model, batch.x_support[0], batch.y_support[0], batch.x_query[0],
                     None, 2, rates=rates)
    torch.testing.assert_close(own["outputs"][0], ref, rtol=1e-10, atol=1e-12)
    scalar = fine_tune(learner, batch, steps=2, inner_lr=0.02)
    ref = manual_sgd(learner.model, batch.x_support[0], batch.y_support[0], batch.x_query[0],
                     0.02, 2)
    torch.testing.assert_close(scalar["outputs"][0], ref, rtol=1e-10, atol=1e-12)


def test_diverging_tasks_are_marked_and_frozen_and_others_are_untouched():
    torch.manual_seed(4)
    learner = make_learner("maml", MLP().double(), inner_lr=0.01)
    batch = sinusoid_batch(tasks=8, seed=4)
    r = fine_tune(learner, batch, steps=8, inner_lr=3.0)  # far too large for most tasks
    assert r["diverged"].dtype == torch.bool and r["diverged"].any()
    assert not r["diverged"][:, 0].any()                       # nothing diverges before a step
    assert (r["diverged"][:, 1:] >= r["diverged"][:, :-1]).all()  # once diverged, always
    final = r["diverged"][:, -1]
    for t in range(batch.tasks):
        alone = fine_tune(learner, TaskBatch(batch.x_support[t:t + 1], batch.y_support[t:t + 1],
                                             batch.x_query[t:t + 1], batch.y_query[t:t + 1], {}),
                          steps=8, inner_lr=3.0)
        torch.testing.assert_close(r["loss"][t], alone["loss"][0], rtol=1e-12, atol=1e-12)
        assert torch.equal(r["diverged"][t], alone["diverged"][0])
    frozen = r["loss"][final]
    assert torch.isfinite(frozen).all()
    assert (frozen[:, -1] == frozen[:, -2]).all()  # flat once diverged
    # the rule, recomputed by hand: the first step whose support loss passes
    # DIVERGED_FACTOR x the lowest it reached + DIVERGED_FLOOR (or is not finite) marks
    # the task, and its curve keeps the query loss from the step before
    for t in torch.nonzero(final).flatten().tolist():
        model, x, y = learner.model, batch.x_support[t], batch.y_support[t]
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
        support = [F.mse_loss(torch.func.functional_call(model, params, (x,)), y).item()]
        queries = [r["loss"][t, 0].item()]
        for _ in range(8):
            live = {n: p.requires_grad_() for n, p in params.items()}
            loss = F.mse_loss(torch.func.functional_call(model, live, (x,)), y)
            grads = torch.autograd.grad(loss, list(live.values()))
            params = {n: (p - 3.0 * g).detach() for (n, p), g in zip(live.items(), grads)}
            support.append(F.mse_loss(torch.func.functional_call(model, params, (x,)), y).item())
            queries.append(F.mse_loss(torch.func.functional_call(
                model, params, (batch.x_query[t],)), batch.y_query[t]).item())
        first = next(k for k in range(1, 9)
                     if not support[k] <= DIVERGED_FACTOR * min(support[:k]) + DIVERGED_FLOOR)
        assert r["loss"][t, -1].item() == pytest.approx(queries[first - 1], rel=1e-9)
        assert not r["diverged"][t, first - 1] and r["diverged"][t, first]


def test_diverged_is_never_set_at_a_sane_step_size():
    torch.manual_seed(5)
    learner = make_learner("maml", MLP().double(), inner_lr=0.01)
    r = fine_tune(learner, sinusoid_batch(tasks=20, seed=5), steps=10)
    assert not r["diverged"].any() and torch.isfinite(r["outputs"]).all()


def test_fine_tune_on_images_is_per_task_and_protonets_take_no_steps():
    torch.manual_seed(6)
    maml = make_learner("maml", Conv4(3, hidden=8, image_size=16).double(), "cross_entropy",
                        inner_lr=0.3)
    g = torch.Generator().manual_seed(6)
    batch = TaskBatch(torch.rand(3, 3, 1, 16, 16, generator=g, dtype=torch.float64),
                      torch.arange(3).repeat(3, 1),
                      torch.rand(3, 6, 1, 16, 16, generator=g, dtype=torch.float64),
                      torch.arange(3).repeat(3, 2), {})
    r = fine_tune(maml, batch, steps=2)
    assert r["outputs"].shape == (3, 3, 6, 3)
    one = fine_tune(maml, TaskBatch(batch.x_support[1:2], batch.y_support[1:2],
                                    batch.x_query[1:2], batch.y_query[1:2], {}), steps=2)
    torch.testing.assert_close(r["outputs"][1], one["outputs"][0], rtol=1e-10, atol=1e-12)
    proto = ProtoNet(Conv4(None, hidden=8, image_size=16).double())
    p = fine_tune(proto, batch, steps=5)  # no weights to adapt: no steps
    assert p["outputs"].shape == (3, 1, 6, 3)
    torch.testing.assert_close(p["outputs"][:, 0], proto.logits(batch).detach())


@pytest.mark.parametrize("kwargs, name", [({"steps": -1}, "steps"), ({"steps": 1.5}, "steps"),
                                          ({"steps": 1, "inner_lr": -0.1}, "inner_lr")])
def test_bad_arguments_name_the_parameter(kwargs, name):
    learner = make_learner("maml", MLP())
    with pytest.raises(ValueError, match=name):
        fine_tune(learner, SinusoidFamily().sample(2, 3), **kwargs)


def test_a_task_that_first_fits_and_then_blows_up_is_marked():
    """Divergence is measured from the lowest support loss reached, not only from the start."""
    torch.manual_seed(7)
    learner = make_learner("maml", MLP().double(), inner_lr=0.01)
    batch = sinusoid_batch(tasks=40, seed=7, shots=5)
    r = fine_tune(learner, batch, steps=12, inner_lr=0.12)
    late = r["diverged"][:, -1] & ~r["diverged"][:, 2]  # fine for two steps, then diverged
    assert late.any()
    for t in torch.nonzero(late).flatten().tolist():
        assert r["loss"][t, 2] < r["loss"][t, 0]  # it had started to fit
