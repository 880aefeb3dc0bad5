"""MAML's meta-loss for the MLP, in fewer operations: the same numbers as ``maml.py``.

Read ``maml.py`` first; this file computes exactly what ``MAML.meta_loss`` computes for an
``MLP`` with the squared error, and ``MAML`` hands that case over to it. A sinusoid
meta-iteration is tiny (about 0.2 MFLOP), so its cost is the number of operations, not the
arithmetic. Three things remove operations:

1. The inner gradient is written out by hand (backpropagation through the ReLU network,
   as plain matrix products) instead of asking autograd for it with ``create_graph``.
   Those products are ordinary operations, so the outer gradient still flows through them
   (second order) and the outer backward pass needs no double-backward formulas.
2. The first inner step starts from theta itself, the same for every task: its support
   pass is one matrix product per layer over all tasks' points (``addmm``), with no
   per-task copy of theta (``expand``).
3. The SGD update is fused into the product that makes the gradient: with the weights
   kept transposed, w_t - alpha * dL/dw_t = w_t + h^T (-alpha dL/dout) is one ``baddbmm``,
   and the next layer's forward pass uses w_t as it is.

``tests/test_fast_maml.py`` checks in float64 that meta-loss and meta-gradient equal
``maml.py``'s readable path to 1e-10 (MAML and first-order MAML, 0, 1 and 2 steps, with
and without the multi-step loss); ``python -m mlkit bench`` times it.

Shapes: x (T, K, in), y (T, K, out); transposed weights w_t shared (in, out) or per task
(T, in, out); biases shared (out,) or per task (T, 1, out).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .models import MLP
from .tasks import TaskBatch


def forward(weights_t: list, biases: list, x: torch.Tensor) -> list:
    """The MLP's layer outputs [x, h1, ..., out] (ReLU after every layer but the last).
    ``weights_t`` are the weight matrices transposed: shared (in, out), every task's
    own (T, in, out); x (T, K, in); outputs (T, K, size)."""
    tasks, points = x.shape[:2]
    shared = weights_t[0].dim() == 2
    h = x.flatten(0, 1) if shared else x  # one weight set: all tasks' points in one product
    outputs = [x]
    for i, (w_t, b) in enumerate(zip(weights_t, biases)):
        h = torch.addmm(b, h, w_t) if shared else torch.baddbmm(b, h, w_t)
        if i < len(weights_t) - 1:
            h = h.relu()
        outputs.append(h.view(tasks, points, -1))
    return outputs


def sgd_step(weights_t: list, biases: list, x, y, inner_lr: float, second_order=True) -> tuple:
    """One SGD step of every task on the mean squared error of its (x, y), from shared or
    per-task weights -> per-task weights (T, in, out) and biases (T, 1, out). With
    ``second_order=False`` the gradient is a constant (first-order MAML): only the update
    theta - alpha * g itself is recorded for the outer backward pass."""
    record = second_order and torch.is_grad_enabled()
    with torch.set_grad_enabled(record):
        outputs = forward(weights_t, biases, x)
        # -alpha * dLoss_t/dout for the mean squared error, (T, K, out); the rest of the
        # backward pass is linear in it, so every update below is a plain addition
        step = (outputs[-1] - y) * (-2.0 * inner_lr / outputs[-1][0].numel())
    new_w, new_b = [None] * len(weights_t), [None] * len(weights_t)
    for i in reversed(range(len(weights_t))):
        # w_t - alpha * dL/dw_t = w_t + h^T step: the update is fused into the product
        new_w[i] = torch.baddbmm(weights_t[i], outputs[i].transpose(1, 2), step)
        new_b[i] = biases[i] + step.sum(1, keepdim=True)
        if i > 0:  # back through layer i, then the ReLU that made its input
            with torch.set_grad_enabled(record):
                step = torch.ops.aten.threshold_backward(
                    torch.matmul(step, weights_t[i].transpose(-1, -2)), outputs[i], 0)
    return new_w, new_b


def meta_loss(model: MLP, batch: TaskBatch, inner_lr: float, inner_steps: int,
              first_order: bool, multi_step_loss: bool) -> torch.Tensor:
    """``MAML.meta_loss`` for an MLP and the squared error: the mean query loss after
    ``inner_steps`` steps (or its mean over the steps, with ``multi_step_loss``)."""
    weights_t = [layer.weight.t() for layer in model.layers]
    biases = [layer.bias for layer in model.layers]
    query = lambda: F.mse_loss(forward(weights_t, biases, batch.x_query)[-1], batch.y_query)
    losses = []
    for _ in range(inner_steps):
        weights_t, biases = sgd_step(weights_t, biases, batch.x_support, batch.y_support,
                                     inner_lr, second_order=not first_order)
        if multi_step_loss:
            losses.append(query())
    return torch.stack(losses).mean() if losses else query()
