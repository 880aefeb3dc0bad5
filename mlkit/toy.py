"""A meta-learning problem small enough to draw: the sinusoid tasks, a two-weight model.

The tasks are the MAML paper's sinusoids, y = A sin(x - phase) (``SinusoidFamily``).
The model has only two weights, theta = (a, p), and predicts

    y_hat = a * sin(x - p)

so every task has an exact answer theta_i = (A_i, phase_i), and every starting
point theta can be drawn as a dot on a plane. The inner loop, the meta-loss and
the meta-gradient below are the same as in ``mlkit.maml`` (Finn et al. 2017),
written for this model:

    inner step:  theta_i = theta - alpha * grad L_support_i(theta)
    meta-loss:   mean_i L_query_i(theta_i)

Second order differentiates through the inner gradient; first order treats it
as a constant (Finn et al. 2017, section 5.2). Shapes: theta (T, 2) holds one
(a, p) pair per task, x and y are (T, N, 1) as in a ``TaskBatch``.
"""
from __future__ import annotations

import torch

from .checks import check_float, check_int
from .tasks import SinusoidFamily, TaskBatch


def _check(lr, steps):
    check_float("lr", lr, low=0.0)
    check_int("steps", steps, low=0)


def predict(theta, x):
    """a sin(x - p) for each task: theta (T, 2), x (T, N, 1) -> (T, N, 1)."""
    a, p = theta[:, 0].view(-1, 1, 1), theta[:, 1].view(-1, 1, 1)
    return a * torch.sin(x - p)


def task_loss(theta, x, y):
    """Mean squared error of each task: theta (T, 2), x, y (T, N, 1) -> (T,)."""
    return ((predict(theta, x) - y) ** 2).mean((1, 2))


def inner_step(theta, x, y, lr, create_graph=False):
    """One SGD step of every task on its own data: theta (T, 2) -> (T, 2).

    With ``create_graph`` the step stays differentiable (second order)."""
    with torch.enable_grad():
        if not theta.requires_grad:
            theta = theta.requires_grad_()
        grad, = torch.autograd.grad(task_loss(theta, x, y).sum(), theta, create_graph=create_graph)
    return theta - lr * grad


def adapt(init, x, y, lr, steps, create_graph=False):
    """The adaptation path of every task from ``init`` (2,) or (T, 2):
    ``steps`` SGD steps on (x, y) (T, K, 1) -> points (T, steps + 1, 2)."""
    _check(lr, steps)
    theta = init.expand(x.shape[0], 2) if init.dim() == 1 else init
    path = [theta]
    for _ in range(steps):
        theta = inner_step(theta, x, y, lr, create_graph)
        path.append(theta)
    path = torch.stack(path, 1)
    return path if create_graph else path.detach()


def meta_loss(init, batch: TaskBatch, lr, steps=1, first_order=False):
    """Mean query loss after ``steps`` inner steps from ``init`` (2,); a differentiable scalar.

    first_order: the inner gradients are constants (FOMAML); the loss value is the
    same, only its gradient with respect to ``init`` changes."""
    _check(lr, steps)
    theta = init.expand(batch.tasks, 2)
    for _ in range(steps):
        grad, = torch.autograd.grad(task_loss(theta, batch.x_support, batch.y_support).sum(),
                                    theta, create_graph=not first_order)
        theta = theta - lr * grad
    return task_loss(theta, batch.x_query, batch.y_query).mean()


def meta_gradient(init, batch: TaskBatch, lr, steps=1, first_order=False):
    """Gradient of ``meta_loss`` with respect to ``init``: (2,) -> (2,)."""
    init = init.detach().clone().requires_grad_()
    grad, = torch.autograd.grad(meta_loss(init, batch, lr, steps, first_order), init)
    return grad


def post_adaptation_losses(init, batch: TaskBatch, lr, steps):
    """Each task's query loss after ``steps`` inner steps from ``init``: (2,) shared by
    all tasks, or (T, 2) one start per task -> (T,)."""
    theta = adapt(init, batch.x_support, batch.y_support, lr, steps)[:, -1]
    with torch.no_grad():
        return task_loss(theta, batch.x_query, batch.y_query)


def landscape(batch: TaskBatch, lr=0.0, steps=0, chunk=500):
    """The meta-loss as a function of the starting point, for contour plots.

    Returns f: points (G, 2) -> (G,), the mean over the tasks of ``batch`` of the
    query loss after ``steps`` inner steps from each point. steps=0 gives the plain
    average loss (what plain training minimises); steps >= 1 the MAML objective.
    """
    _check(lr, steps)

    def f(points):
        out = []
        for part in points.split(chunk):
            g, t = part.shape[0], batch.tasks
            repeat = lambda z: z.unsqueeze(0).expand(g, *z.shape).flatten(0, 1)  # (G*T, ...)
            sub = TaskBatch(repeat(batch.x_support), repeat(batch.y_support),
                            repeat(batch.x_query), repeat(batch.y_query), {})
            start = part.to(batch.x_query.dtype).repeat_interleave(t, 0)  # (G*T, 2)
            losses = post_adaptation_losses(start, sub, lr, steps)
            out.append(losses.view(g, t).mean(1))
        return torch.cat(out)

    return f


def meta_train(init, family: SinusoidFamily, iterations, lr, steps=1, first_order=False,
               meta_batch=25, shots=10, queries=10, outer_lr=0.02, seed=0):
    """Meta-train the two weights from ``init`` (2,) with Adam on fresh task batches.

    Returns (final init (2,), trajectory (iterations + 1, 2), losses (iterations,)),
    the trajectory being where the meta-initialisation went during training.
    """
    _check(lr, steps)
    check_int("iterations", iterations, low=0)
    check_float("outer_lr", outer_lr, low=0.0, low_inclusive=False)
    theta = torch.nn.Parameter(torch.as_tensor(init).detach().clone())
    optimizer = torch.optim.Adam([theta], lr=outer_lr)
    generator = torch.Generator().manual_seed(seed)
    trajectory, losses = [theta.detach().clone()], []
    for _ in range(iterations):
        batch = family.sample(meta_batch, shots, queries, generator=generator)
        batch = TaskBatch(*(t.to(theta.dtype) for t in (batch.x_support, batch.y_support,
                                                         batch.x_query, batch.y_query)), batch.info)
        loss = meta_loss(theta, batch, lr, steps, first_order)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        trajectory.append(theta.detach().clone())
    return theta.detach(), torch.stack(trajectory), torch.tensor(losses)
