"""The two-weight sinusoid problem (mlkit.toy): its hand-written gradient, inner step and
meta-objective, checked against autograd, torch.func and point-by-point loops in float64."""
import pytest
import torch
from torch.func import hessian

from mlkit import SinusoidFamily, TaskBatch, toy


def batch64(tasks=8, shots=10, queries=10, seed=0) -> TaskBatch:
    b = SinusoidFamily().sample(tasks, shots, queries, generator=torch.Generator().manual_seed(seed))
    return TaskBatch(*(t.double() for t in (b.x_support, b.y_support, b.x_query, b.y_query)),
                     {k: v.double() for k, v in b.info.items()})


def starts(n, seed=1):
    """n starting points (a, p) spread over the plane the notebooks draw."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.rand(n, generator=g, dtype=torch.float64) * 6 - 1,
                        torch.rand(n, generator=g, dtype=torch.float64) * 4 - 0.5], 1)


def one_task(b: TaskBatch, i: int) -> TaskBatch:
    return TaskBatch(b.x_support[i:i + 1], b.y_support[i:i + 1], b.x_query[i:i + 1],
                     b.y_query[i:i + 1], {})


def test_true_weights_fit_each_task_and_do_not_move():
    b = batch64()
    truth = torch.stack([b.info["amplitude"], b.info["phase"]], 1)
    assert torch.allclose(toy.predict(truth, b.x_support), b.y_support, atol=1e-5)  # float32 data
    assert toy.task_loss(truth, b.x_query, b.y_query).max() < 1e-10
    path = toy.adaptation_path(truth, b.x_support, b.y_support, lr=0.1, steps=3)
    assert path.shape == (8, 4, 2)
    assert torch.allclose(path[:, -1], truth, atol=1e-6)


def test_gradient_matches_autograd():
    b = batch64(tasks=6)
    theta = starts(6).requires_grad_()
    expected, = torch.autograd.grad(toy.task_loss(theta, b.x_support, b.y_support).sum(), theta)
    got = toy.gradient(theta.detach(), b.x_support, b.y_support)
    assert got.dtype == torch.float64 and got.shape == (6, 2)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert got.abs().min() > 1e-6  # not a trivially zero gradient


def test_sgd_step_and_adaptation_path_follow_the_hand_gradient():
    b = batch64(tasks=3)
    theta = torch.tensor([[1.0, 0.3], [2.0, 1.0], [-0.5, 2.0]], dtype=torch.float64)
    new = toy.sgd_step(theta, b.x_support, b.y_support, lr=0.1)
    for i in range(3):
        a, p = theta[i]
        x, y = b.x_support[i].flatten(), b.y_support[i].flatten()
        r = a * torch.sin(x - p) - y
        grad = torch.stack([(2 * r * torch.sin(x - p)).mean(),
                            (-2 * r * a * torch.cos(x - p)).mean()])
        assert torch.allclose(new[i], theta[i] - 0.1 * grad, rtol=1e-12, atol=1e-14)
    path = toy.adaptation_path(theta, b.x_support, b.y_support, lr=0.1, steps=3)
    expected = [theta]
    for _ in range(3):  # step by step, with autograd's gradient of each task's own loss
        t = expected[-1].clone().requires_grad_()
        g, = torch.autograd.grad(toy.task_loss(t, b.x_support, b.y_support).sum(), t)
        expected.append(expected[-1] - 0.1 * g)
    assert torch.allclose(path, torch.stack(expected, 1), rtol=1e-12, atol=1e-14)
    shared = toy.adaptation_path(theta[0], b.x_support, b.y_support, lr=0.1, steps=1)
    assert torch.equal(shared[:, 0], theta[0].expand(3, 2))  # a (2,) start is shared by all


def test_overshoot_fraction_matches_the_eigenvalues_of_the_step_jacobian():
    b = batch64(tasks=40, seed=3)
    theta = torch.tensor([1.5, 0.5], dtype=torch.float64)
    hessians = torch.stack([
        hessian(lambda t: toy.task_loss(t.view(1, 2), b.x_support[i:i + 1],
                                        b.y_support[i:i + 1])[0])(theta)
        for i in range(b.tasks)])                                              # (T, 2, 2)
    seen = set()
    for lr in (0.05, 0.3, 0.6, 1.0, 3.0):
        jac = torch.eye(2, dtype=torch.float64) - lr * hessians
        expected = (torch.linalg.eigvalsh(jac)[:, 0] < 0).double().mean().item()
        assert toy.overshoot_fraction(theta, b, lr) == pytest.approx(expected, abs=1e-12)
        seen.add(expected)
    # the comparison is not trivial: some step sizes overshoot on part of the tasks only
    assert any(0 < f < 1 for f in seen) and 0.0 in seen


@pytest.mark.parametrize("steps", [0, 1, 2])
@pytest.mark.parametrize("first_order", [False, True])
def test_objective_equals_meta_loss_and_meta_gradient_point_by_point(steps, first_order):
    b = batch64(tasks=5, seed=2)
    points = starts(4)
    values, grads = toy.objective(points, b, lr=0.15, steps=steps, first_order=first_order)
    assert values.shape == (4,) and grads.shape == (4, 2)
    for g in range(4):
        value = toy.meta_loss(points[g], b, 0.15, steps, first_order)
        grad = toy.meta_gradient(points[g], b, 0.15, steps, first_order)
        assert values[g].item() == pytest.approx(value.item(), rel=1e-12)
        assert torch.allclose(grads[g], grad, rtol=1e-10, atol=1e-12)
        # ... and the meta-loss is the mean of each task's query loss after adapting alone
        per_task = []
        for i in range(b.tasks):
            t = one_task(b, i)
            theta = toy.adaptation_path(points[g], t.x_support, t.y_support, 0.15, steps)[0, -1]
            per_task.append(toy.task_loss(theta.view(1, 2), t.x_query, t.y_query)[0])
        assert value.item() == pytest.approx(torch.stack(per_task).mean().item(), rel=1e-12)
    assert toy.objective(points, b, 0.15, steps, first_order, gradient=False)[1] is None


def test_second_order_gradient_is_exact_first_order_differs():
    b = batch64(tasks=20)
    init = torch.tensor([2.0, 1.0], dtype=torch.float64)
    g2 = toy.meta_gradient(init, b, lr=0.2, steps=2)
    g1 = toy.meta_gradient(init, b, lr=0.2, steps=2, first_order=True)
    eps, fd = 1e-6, torch.zeros(2, dtype=torch.float64)
    for j in range(2):
        d = torch.zeros(2, dtype=torch.float64)
        d[j] = eps
        fd[j] = (toy.meta_loss(init + d, b, 0.2, 2) - toy.meta_loss(init - d, b, 0.2, 2)) / (2 * eps)
    assert torch.allclose(g2, fd, rtol=1e-6, atol=1e-8)
    assert (g1 - g2).norm() > 1e-2 * g2.norm()
    # first order: the same loss, the gradient of the query loss at the adapted weights
    assert toy.meta_loss(init, b, 0.2, 2, first_order=True).item() == \
        pytest.approx(toy.meta_loss(init, b, 0.2, 2).item(), rel=1e-14)
    adapted = toy.adaptation_path(init, b.x_support, b.y_support, 0.2, 2)[:, -1]
    fo = toy.gradient(adapted, b.x_query, b.y_query).mean(0)
    assert torch.allclose(g1, fo, rtol=1e-10, atol=1e-12)
    # the same holds in objective(): equal values, different gradients
    points = starts(3)
    v2, d2 = toy.objective(points, b, 0.2, 2)
    v1, d1 = toy.objective(points, b, 0.2, 2, first_order=True)
    assert torch.allclose(v1, v2, rtol=1e-14) and not torch.allclose(d1, d2, rtol=1e-3)


def test_landscape_is_the_mean_post_adaptation_loss():
    b = batch64(tasks=5)
    points = torch.tensor([[1.0, 0.5], [2.0, 1.5], [0.0, 0.0]], dtype=torch.float64)
    for steps in (0, 2):
        z = toy.landscape(b, lr=0.1, steps=steps)(points)
        assert z.shape == (3,)
        for g in range(3):
            expected = toy.post_adaptation_losses(points[g], b, 0.1, steps).mean()
            assert z[g].item() == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("first_order", [False, True])
def test_train_start_on_a_fixed_batch_reduces_the_meta_loss(first_order):
    b = batch64(tasks=10, seed=5)
    init = torch.tensor([0.5, 0.0], dtype=torch.float64)
    final, trajectory, losses = toy.train_start(init, b, 60, lr=0.2, first_order=first_order,
                                                outer_lr=0.05)
    again = toy.train_start(init, b, 60, lr=0.2, first_order=first_order, outer_lr=0.05)
    assert torch.equal(final, again[0]) and torch.equal(losses, again[2])
    assert trajectory.shape == (61, 2) and losses.shape == (60,)
    assert torch.equal(trajectory[0], init) and torch.equal(trajectory[-1], final)
    before, after = toy.meta_loss(init, b, 0.2), toy.meta_loss(final, b, 0.2)
    # losses[i] is the meta-loss at trajectory[i] (the returned losses are float32)
    assert losses[0].item() == pytest.approx(before.item(), rel=1e-6)
    assert losses[-1].item() == pytest.approx(
        toy.meta_loss(trajectory[-2], b, 0.2).item(), rel=1e-6)
    assert after < 0.8 * before
    assert torch.equal(init, torch.tensor([0.5, 0.0], dtype=torch.float64))  # not moved in place


def test_train_start_on_a_family_is_seeded():
    fam = SinusoidFamily()
    init = torch.tensor([0.5, 0.0], dtype=torch.float64)
    a = toy.train_start(init, fam, 30, lr=0.2, meta_batch=10, seed=4)
    b = toy.train_start(init, fam, 30, lr=0.2, meta_batch=10, seed=4)
    c = toy.train_start(init, fam, 30, lr=0.2, meta_batch=10, seed=5)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


@pytest.mark.parametrize("kwargs, name", [({"lr": -1.0}, "lr"), ({"steps": -1}, "steps"),
                                          ({"steps": 1.5}, "steps")])
def test_bad_arguments_name_the_parameter(kwargs, name):
    b = batch64(tasks=2)
    args = {"lr": 0.1, "steps": 1, **kwargs}
    with pytest.raises(ValueError, match=name):
        toy.adaptation_path(torch.zeros(2, dtype=torch.float64), b.x_support, b.y_support, **args)
    with pytest.raises(ValueError, match=name):
        toy.objective(torch.zeros(1, 2, dtype=torch.float64), b, **args)
