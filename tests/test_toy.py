"""The two-weight sinusoid problem: model, inner step, meta-gradients (float64 checks)."""
import math

import pytest
import torch

from mlkit import SinusoidFamily, toy
from mlkit.tasks import TaskBatch


def batch64(tasks=8, shots=10, queries=10, seed=0):
    b = SinusoidFamily().sample(tasks, shots, queries, generator=torch.Generator().manual_seed(seed))
    return TaskBatch(*(t.double() for t in (b.x_support, b.y_support, b.x_query, b.y_query)),
                     {k: v.double() for k, v in b.info.items()})


def test_true_weights_fit_each_task_exactly():
    b = batch64()
    truth = torch.stack([b.info["amplitude"], b.info["phase"]], 1)
    assert torch.allclose(toy.predict(truth, b.x_support), b.y_support, atol=1e-5)  # data are float32
    assert toy.task_loss(truth, b.x_query, b.y_query).abs().max() < 1e-10
    # the true weights are a fixed point of adaptation
    path = toy.adapt(truth, b.x_support, b.y_support, lr=0.1, steps=3)
    assert path.shape == (8, 4, 2)
    assert torch.allclose(path[:, -1], truth, atol=1e-6)


def test_inner_step_matches_a_per_task_hand_gradient():
    b = batch64(tasks=3)
    theta = torch.tensor([[1.0, 0.3], [2.0, 1.0], [-0.5, 2.0]], dtype=torch.float64)
    new = toy.inner_step(theta.clone(), b.x_support, b.y_support, lr=0.1)
    for i in range(3):
        a, p = theta[i]
        x, y = b.x_support[i].flatten(), b.y_support[i].flatten()
        r = a * torch.sin(x - p) - y
        grad = torch.stack([(2 * r * torch.sin(x - p)).mean(), (-2 * r * a * torch.cos(x - p)).mean()])
        assert torch.allclose(new[i], theta[i] - 0.1 * grad)


def test_second_order_meta_gradient_matches_finite_differences_first_order_does_not():
    b = batch64(tasks=20)
    init = torch.tensor([2.0, 1.0], dtype=torch.float64)
    g2 = toy.meta_gradient(init, b, lr=0.2, steps=2)
    g1 = toy.meta_gradient(init, b, lr=0.2, steps=2, first_order=True)
    eps, fd = 1e-6, torch.zeros(2, dtype=torch.float64)
    for j in range(2):
        d = torch.zeros(2, dtype=torch.float64)
        d[j] = eps
        plus = toy.meta_loss((init + d).requires_grad_(), b, 0.2, 2).item()
        minus = toy.meta_loss((init - d).requires_grad_(), b, 0.2, 2).item()
        fd[j] = (plus - minus) / (2 * eps)
    assert torch.allclose(g2, fd, rtol=1e-6, atol=1e-8)
    assert (g1 - g2).norm() > 1e-2 * g2.norm()


def test_landscape_is_the_mean_post_adaptation_loss():
    b = batch64(tasks=5)
    points = torch.tensor([[1.0, 0.5], [2.0, 1.5], [0.0, 0.0]], dtype=torch.float64)
    for steps in (0, 2):
        z = toy.landscape(b, lr=0.1, steps=steps, chunk=2)(points)
        assert z.shape == (3,)
        for g in range(3):
            expected = toy.post_adaptation_losses(points[g], b, 0.1, steps).mean()
            assert z[g].item() == pytest.approx(expected.item(), rel=1e-12)


def test_meta_train_is_seeded_and_improves_on_the_start():
    fam = SinusoidFamily()
    init = torch.tensor([0.5, 0.0], dtype=torch.float64)
    a, traj, losses = toy.meta_train(init, fam, 150, lr=0.2, meta_batch=10, outer_lr=0.05)
    b, _, _ = toy.meta_train(init, fam, 150, lr=0.2, meta_batch=10, outer_lr=0.05)
    assert torch.equal(a, b) and traj.shape == (151, 2) and losses.shape == (150,)
    test = batch64(tasks=200, seed=7)
    before = toy.post_adaptation_losses(init, test, 0.2, 1).mean()
    after = toy.post_adaptation_losses(a, test, 0.2, 1).mean()
    assert after < before
    assert math.isfinite(after.item())


@pytest.mark.parametrize("kwargs, name", [({"lr": -1.0}, "lr"), ({"steps": -1}, "steps"),
                                          ({"steps": 1.5}, "steps")])
def test_bad_arguments_name_the_parameter(kwargs, name):
    b = batch64(tasks=2)
    args = {"lr": 0.1, "steps": 1, **kwargs}
    with pytest.raises(ValueError, match=name):
        toy.adapt(torch.zeros(2, dtype=torch.float64), b.x_support, b.y_support, **args)
