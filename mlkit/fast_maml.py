"""MAML's meta-loss for the MLP, in fewer operations: the same numbers as ``maml.py``.

Read ``maml.py`` first; this file computes exactly what ``MAML.meta_loss`` computes for an
``MLP`` with the squared error, and ``MAML`` hands that case over to it. A sinusoid
meta-iteration is small (about 5 million multiply-adds, 0.2 million per task, in products
of at most 40 x 40), so much of its time goes to launching operations, not to arithmetic.
Four things remove operations:

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
4. With one inner step and one query loss (the paper's sinusoid protocol), the outer
   backward pass is written out too (``OneStepMetaLoss``): about 40 products and sums in
   a fixed order, where autograd would record and replay the graph of the forward pass.

``tests/test_fast_maml.py`` checks in float64 that meta-loss and meta-gradient equal
``maml.py``'s readable path to 1e-10 (MAML and first-order MAML, 0, 1 and 2 steps, with
and without the multi-step loss); ``python -m mlkit bench`` times it.

Shapes: x (T, K, in), y (T, K, out); transposed weights w_t shared (in, out) or per task
(T, in, out); biases shared (out,) or per task (T, 1, out).
"""
from __future__ import annotations

import torch

from .models import MLP
from .tasks import TaskBatch


def product(a: torch.Tensor, b: torch.Tensor, add=None) -> torch.Tensor:
    """a @ b (+ add): one matrix product, or one per task where a and b are 3-D. Where the
    inner size is 1 (the sinusoid network's input and output are single numbers) it is an
    outer product, and a broadcast multiply computes it 2-3x faster on a CPU."""
    if a.shape[-1] == 1:
        return a * b if add is None else torch.addcmul(add, a, b)
    if a.dim() == 3 and b.dim() == 3:  # one product per task
        return torch.bmm(a, b) if add is None else torch.baddbmm(add, a, b)
    return torch.matmul(a, b) if add is None else torch.addmm(add, a, b)


def relu_grad(grad: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``grad`` passed back through the ReLU whose output is ``h``: zero where h is 0."""
    return torch.ops.aten.threshold_backward(grad, h, 0)


def forward(weights_t: list, biases: list, x: torch.Tensor) -> list:
    """The MLP's layer outputs [x, h1, ..., out] (ReLU after every layer but the last).
    ``weights_t`` are the weight matrices transposed: shared (in, out), every task's
    own (T, in, out); x (T, K, in); outputs (T, K, size)."""
    tasks, points = x.shape[:2]
    shared = weights_t[0].dim() == 2
    h = x.flatten(0, 1) if shared else x  # one weight set: all tasks' points in one product
    outputs = [x]
    for i, (w_t, b) in enumerate(zip(weights_t, biases)):
        h = product(h, w_t, add=b)
        if i < len(weights_t) - 1:
            h = h.relu()
        outputs.append(h.view(tasks, points, -1))
    return outputs


def backprop(weights_t: list, outputs: list, step: torch.Tensor) -> list:
    """-alpha * dLoss/d(output of layer i) for every layer i, from ``step``, its value at the
    network's output: the inner gradient written out as plain matrix products (the
    transposed weights of the forward pass, and ReLU's mask). Shapes (T, K, size)."""
    steps = [step]
    for i in reversed(range(1, len(weights_t))):  # back through layer i, then its input's ReLU
        steps.insert(0, relu_grad(product(steps[0], weights_t[i].transpose(-1, -2)),
                                  outputs[i]))
    return steps


def sgd_step(weights_t: list, biases: list, x, y, inner_lr: float, second_order=True) -> tuple:
    """One SGD step of every task on the mean squared error of its (x, y), from shared or
    per-task weights -> per-task weights (T, in, out) and biases (T, 1, out). With
    ``second_order=False`` the gradient is a constant (first-order MAML): only the update
    theta - alpha * g itself is recorded for the outer backward pass."""
    record = second_order and torch.is_grad_enabled()
    with torch.set_grad_enabled(record):
        outputs = forward(weights_t, biases, x)
        # -alpha * dLoss_t/dout for the mean squared error, (T, K, out); the rest of the
        # backward pass is linear in it, so the update (``update``) is a plain addition
        step = (outputs[-1] - y) * (-2.0 * inner_lr / outputs[-1].shape[1:].numel())
        steps = backprop(weights_t, outputs, step)
    return update(weights_t, biases, outputs, steps)


def update(weights_t: list, biases: list, outputs: list, steps: list) -> tuple:
    """theta - alpha * grad: w_t - alpha * dL/dw_t = w_t + h^T step, fused into one product
    per layer (``baddbmm``) -> per-task weights (T, in, out) and biases (T, 1, out)."""
    new_w = [torch.baddbmm(w_t, h.transpose(1, 2), s)
             for w_t, h, s in zip(weights_t, outputs, steps)]
    new_b = [b + s.sum(1, keepdim=True) for b, s in zip(biases, steps)]
    return new_w, new_b


class OneStepMetaLoss(torch.autograd.Function):
    """The meta-loss after one inner step (the paper's sinusoid MAML), with its backward
    pass written out by hand, so that the outer backward records no graph and runs no
    double-backward formulas:

        L(theta) = mean over tasks of MSE(f(x_q; theta'), y_q),
        theta'   = theta - alpha * grad_theta MSE(f(x_s; theta), y_s)   (per task).

    ``backward`` is the adjoint of ``forward``, line by line in reverse: the query pass,
    then the update w' = w + h^T step, then the inner gradient (``backprop``), then the
    support pass. First-order MAML treats the update as w' = w + constant, so only the
    query pass is reversed.

    Inputs: x_s, y_s (T, K, in/out), x_q, y_q (T, Q, in/out), inner_lr, second_order, then
    every layer's weight (out, in) and every layer's bias (out,), as ``nn.Linear`` stores
    them."""

    @staticmethod
    def forward(ctx, x_s, y_s, x_q, y_q, inner_lr: float, second_order: bool, *params):
        layers = len(params) // 2
        weights_t, biases = [w.t() for w in params[:layers]], list(params[layers:])
        support = forward(weights_t, biases, x_s)  # [x_s, h_1, ..., out], (T, K, size)
        scale = -2.0 * inner_lr / support[-1].shape[1:].numel()
        steps = backprop(weights_t, support, (support[-1] - y_s) * scale)
        new_w, new_b = update(weights_t, biases, support, steps)
        query = forward(new_w, new_b, x_q)         # [x_q, g_1, ..., prediction]
        # What backward needs: the query pass, and for second order the support pass too;
        # not w'_0, step_0 or w_0, which only pass a gradient on below the first layer
        inner = ((*support[:-1], None, *steps[1:], None, *params[1:layers]) if second_order
                 else ())
        error = query[-1] - y_q                    # (T, Q, out)
        ctx.save_for_backward(error, *query[:-1], None, *new_w[1:], *inner)
        ctx.layers, ctx.scale, ctx.second_order = layers, scale, second_order
        return error.square().mean()               # the mean squared error

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        n, (error, *saved) = ctx.layers, ctx.saved_tensors
        query, new_w, support, steps, weights = (saved[k * n:(k + 1) * n] for k in range(5))
        # the query pass, reversed -> d/dw'_i, transposed as nn.Linear stores weights
        # (T, out, in), and d/db'_i (T, 1, out)
        grad = error * (grad_loss * (2.0 / error.numel()))
        d_new_w, d_new_b = [None] * n, [None] * n
        for i in reversed(range(n)):
            d_new_w[i] = torch.bmm(grad.transpose(1, 2), query[i])
            d_new_b[i] = grad.sum(1, keepdim=True)
            if i > 0:
                grad = relu_grad(product(grad, new_w[i].transpose(1, 2)), query[i])
        # w'_i = w_i + h_i^T step_i: every task's d/dw'_i reaches w_i as it is
        grad_w = [d.sum(0) for d in d_new_w]   # (out, in), as the weights
        grad_b = [d.sum((0, 1)) for d in d_new_b]
        if ctx.second_order:
            # ... and through step_i, which depends on theta. First the update, reversed:
            # d/dstep_i = h_i d/dw'_i + d/db'_i, and d/dh_i = step_i (d/dw'_i)^T; then
            # step_{i-1} = relu_mask_i(step_i w_i^T) (``backprop``), reversed, from i = 0 up
            d_h, d_step = [None] * n, None
            for i in range(n):
                d = product(support[i], d_new_w[i].transpose(1, 2), add=d_new_b[i])  # (T,K,out)
                if i > 0:
                    u = relu_grad(d_step, support[i]).flatten(0, 1)      # (T*K, in)
                    d.view(-1, d.shape[-1]).addmm_(u, weights[i].t())
                    grad_w[i].addmm_(steps[i].flatten(0, 1).t(), u)
                    d_h[i] = product(steps[i], d_new_w[i])
                d_step = d
            # step = scale * (out - y_s); then the support pass, reversed
            grad = (d_step * ctx.scale).flatten(0, 1)  # (T*K, out)
            support = [h.flatten(0, 1) for h in support]  # (T*K, size)
            for i in reversed(range(n)):
                grad_w[i].addmm_(grad.t(), support[i])
                grad_b[i] += grad.sum(0)
                if i > 0:
                    grad = relu_grad(product(grad, weights[i], add=d_h[i].flatten(0, 1)),
                                     support[i])
        return (None,) * 6 + tuple(grad_w) + tuple(grad_b)


def meta_loss(model: MLP, batch: TaskBatch, inner_lr: float, inner_steps: int,
              first_order: bool, multi_step_loss: bool) -> torch.Tensor:
    """``MAML.meta_loss`` for an MLP and the squared error: the mean query loss after
    ``inner_steps`` steps (or its mean over the steps, with ``multi_step_loss``)."""
    if inner_steps == 1 and not multi_step_loss:  # the paper's protocol: backward by hand
        return OneStepMetaLoss.apply(batch.x_support, batch.y_support, batch.x_query,
                                     batch.y_query, inner_lr, not first_order,
                                     *[layer.weight for layer in model.layers],
                                     *[layer.bias for layer in model.layers])
    weights_t = [layer.weight.t() for layer in model.layers]
    biases = [layer.bias for layer in model.layers]
    # the mean squared error as (prediction - y)^2, whose backward keeps only the difference
    query = lambda: (forward(weights_t, biases, batch.x_query)[-1] - batch.y_query).square().mean()
    losses = []
    for _ in range(inner_steps):
        weights_t, biases = sgd_step(weights_t, biases, batch.x_support, batch.y_support,
                                     inner_lr, second_order=not first_order)
        if multi_step_loss:
            losses.append(query())
    return torch.stack(losses).mean() if losses else query()
