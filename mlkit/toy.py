"""A meta-learning problem small enough to draw: the sinusoid tasks, a two-weight model.

The tasks are the MAML paper's sinusoids, y = A sin(x - phase) (``SinusoidFamily``).
The model has only two weights, theta = (a, p), and predicts

    y_hat = a * sin(x - p)

so every task has an exact answer theta_i = (A_i, phase_i), and every starting point
theta is a dot on a plane. The inner loop and the meta-loss are those of ``mlkit.maml``
(Finn et al. 2017), for this model:

    inner step:  theta_i = theta - alpha * grad L_support_i(theta)
    meta-loss:   mean_i L_query_i(theta_i)

With two weights the gradient of the squared error is short enough to write out
(``gradient``; the tests check it against autograd), so a whole plane of starting
points adapts in a few tensor operations. Second order differentiates through it; first
order treats it as a constant (Finn et al. 2017, section 5.2). Shapes: theta (T, 2) holds
one (a, p) pair per task; x and y are (T, N, 1) as in a ``TaskBatch``.
"""
from __future__ import annotations

import torch

from .checks import check_float, check_int
from .tasks import TaskBatch


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


def gradient(theta, x, y):
    """d task_loss / d theta for each task, written out: (T, 2). With r = a sin(x-p) - y:
    dL/da = mean(2 r sin(x - p)),  dL/dp = mean(-2 r a cos(x - p))."""
    a, p = theta[:, 0].view(-1, 1, 1), theta[:, 1].view(-1, 1, 1)
    s, c = torch.sin(x - p), torch.cos(x - p)
    r = a * s - y
    return torch.stack([(2 * r * s).mean((1, 2)), (-2 * r * a * c).mean((1, 2))], 1)


def sgd_step(theta, x, y, lr, create_graph=False):
    """One SGD step of every task on its own data: theta (T, 2) -> (T, 2). Without
    ``create_graph`` the gradient is a constant for autograd (first order)."""
    g = gradient(theta, x, y)
    return theta - lr * (g if create_graph else g.detach())


def adaptation_path(init, x, y, lr, steps, create_graph=False):
    """The adaptation path of every task from ``init`` (2,) or (T, 2):
    ``steps`` SGD steps on (x, y) (T, K, 1) -> points (T, steps + 1, 2)."""
    _check(lr, steps)
    theta = init.expand(x.shape[0], 2) if init.dim() == 1 else init
    path = [theta]
    for _ in range(steps):
        theta = sgd_step(theta, x, y, lr, create_graph)
        path.append(theta)
    path = torch.stack(path, 1)
    return path if create_graph else path.detach()


def meta_loss(init, batch: TaskBatch, lr, steps=1, first_order=False):
    """Mean query loss after ``steps`` inner steps from ``init`` (2,); a differentiable scalar.

    first_order: the inner gradients are constants (FOMAML); the loss value is the same,
    only its gradient with respect to ``init`` changes."""
    _check(lr, steps)
    theta = init.expand(batch.tasks, 2)
    for _ in range(steps):
        theta = sgd_step(theta, batch.x_support, batch.y_support, lr, not first_order)
    return task_loss(theta, batch.x_query, batch.y_query).mean()


def meta_gradient(init, batch: TaskBatch, lr, steps=1, first_order=False):
    """Gradient of ``meta_loss`` with respect to ``init``: (2,) -> (2,)."""
    init = init.detach().clone().requires_grad_()
    grad, = torch.autograd.grad(meta_loss(init, batch, lr, steps, first_order), init)
    return grad


def post_adaptation_losses(init, batch: TaskBatch, lr, steps):
    """Each task's query loss after ``steps`` inner steps from ``init``: (2,) shared by
    all tasks, or (T, 2) one start per task -> (T,)."""
    theta = adaptation_path(init, batch.x_support, batch.y_support, lr, steps)[:, -1]
    return task_loss(theta, batch.x_query, batch.y_query)


def objective(points, batch: TaskBatch, lr, steps=1, first_order=False, gradient=True):
    """The meta-loss from many starting points at once, for landscapes and gradient fields.

    points (G, 2) -> (values (G,), meta-gradients (G, 2) or None): the mean over the tasks
    of ``batch`` of the query loss after ``steps`` inner steps from each point, and its
    gradient with respect to the point (first order: the first-order approximation).
    steps=0 gives the plain average loss (what plain training minimises).
    """
    _check(lr, steps)
    g, t = points.shape[0], batch.tasks
    repeat = lambda z: z.unsqueeze(0).expand(g, *z.shape).flatten(0, 1)  # (G*T, ...)
    with torch.enable_grad():
        start = points.detach().to(batch.x_query.dtype).requires_grad_(gradient)
        theta = start.repeat_interleave(t, 0)                                   # (G*T, 2)
        for _ in range(steps):
            theta = sgd_step(theta, repeat(batch.x_support), repeat(batch.y_support), lr,
                             create_graph=not first_order)
        loss = task_loss(theta, repeat(batch.x_query), repeat(batch.y_query)).view(g, t).mean(1)
        grads = torch.autograd.grad(loss.sum(), start)[0] if gradient else None
    return loss.detach(), grads


def landscape(batch: TaskBatch, lr=0.0, steps=0):
    """f: points (G, 2) -> (G,), the meta-loss from each point (``objective``), for contour
    plots: steps=0 the average loss, steps >= 1 the MAML objective."""
    return lambda points: objective(points, batch, lr, steps, gradient=False)[0]


def overshoot_fraction(theta, batch: TaskBatch, lr) -> float:
    """The share of tasks whose inner step from ``theta`` (2,) overshoots along some
    direction: the Jacobian I - lr H_i of the step has a negative eigenvalue (H_i: the
    Hessian of task i's support loss). There the first-order gradient points the wrong way."""
    with torch.enable_grad():
        point = theta.detach().to(batch.x_support.dtype).expand(batch.tasks, 2).requires_grad_()
        g = gradient(point, batch.x_support, batch.y_support)                   # (T, 2)
        rows = [torch.autograd.grad(g[:, i].sum(), point, retain_graph=True)[0] for i in (0, 1)]
    hessians = torch.stack(rows, 1)                                              # (T, 2, 2)
    eye = torch.eye(2, dtype=hessians.dtype)
    return (torch.linalg.eigvalsh(eye - lr * hessians).min(1).values < 0).double().mean().item()


def train_start(init, tasks, iterations, lr, steps=1, first_order=False, meta_batch=25,
                shots=10, queries=10, outer_lr=0.02, seed=0):
    """Meta-train the two weights from ``init`` (2,) with Adam: on fresh task batches when
    ``tasks`` is a family (``meta_batch`` tasks of ``shots`` + ``queries`` points, seeded),
    or on the same TaskBatch every iteration.

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
        batch = tasks if isinstance(tasks, TaskBatch) else \
            tasks.sample(meta_batch, shots, queries, generator=generator)
        batch = TaskBatch(*(t.to(theta.dtype) for t in (batch.x_support, batch.y_support,
                                                         batch.x_query, batch.y_query)), {})
        loss = meta_loss(theta, batch, lr, steps, first_order)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        trajectory.append(theta.detach().clone())
    return theta.detach(), torch.stack(trajectory), torch.tensor(losses, dtype=theta.dtype)
