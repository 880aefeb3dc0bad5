"""The MAML family: learn an initialisation that adapts to a new task in a few steps.

Every method here has the same two loops (Finn et al. 2017, Algorithm 1):

* inner loop, ``adapt``: starting from the shared weights theta, each task takes
  a few SGD steps on its support set:  theta_i = theta - alpha * grad L_support_i(theta)
* outer loop, ``outer_step``: move theta so that the *adapted* weights do well on
  each task's query set:  theta <- theta - beta * grad sum_i L_query_i(theta_i)

All tasks adapt at once. The trick: give every task its own copy of theta
(``expand``, shape (tasks, ...)), add up the task losses, and differentiate the
sum once; task i's loss depends only on copy i, so the gradient of the sum with
respect to copy i is exactly task i's own gradient.

The family differs only in small places:

=========  ======================================================  =============================
class      what changes                                            paper
=========  ======================================================  =============================
MAML       second order: the inner gradient is differentiated      Finn et al. 2017
FOMAML     first order: the inner gradient is treated as constant  Finn et al. 2017, section 5.2
ANIL       only the head (last layer) adapts in the inner loop     Raghu et al. 2020
MetaSGD    a learned learning rate for every weight                Li et al. 2017
Reptile    outer step moves theta towards the adapted weights      Nichol et al. 2018
=========  ======================================================  =============================
"""
from __future__ import annotations

import torch
from torch import nn

from .checks import check_float, check_int
from .tasks import LOSSES, TaskBatch


def step_if_finite(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """Backpropagate ``loss`` and take one optimiser step, unless the loss is not finite
    (then nothing changes and the caller stops). Returns the detached loss."""
    if torch.isfinite(loss):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.detach()


class MAML(nn.Module):
    """Model-Agnostic Meta-Learning (Finn, Abbeel, Levine, ICML 2017).

    model:       an ``mlkit.models`` network (has ``forward_tasks``)
    loss:        "mse" (regression) or "cross_entropy" (classification)
    inner_lr:    alpha, the inner SGD step size
    inner_steps: inner SGD steps during meta-training
    multi_step_loss: average the query loss after *every* inner step instead of
        only the last (Antoniou et al., "How to train your MAML", ICLR 2019), so the
        initialisation is good after 1 step and stays good over more steps
    """

    name = "maml"
    first_order = False

    def __init__(self, model: nn.Module, loss="mse", inner_lr=0.01, inner_steps=1,
                 multi_step_loss=False):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        self.model = model
        self.loss_name = loss
        self.loss = LOSSES[loss]
        self.inner_lr = check_float("inner_lr", inner_lr, low=0.0)
        self.inner_steps = check_int("inner_steps", inner_steps, low=0)
        self.multi_step_loss = bool(multi_step_loss)

    # ---- inner loop ---------------------------------------------------------
    def adapted_names(self) -> list:
        """Which parameters the inner loop changes (all of them, for MAML)."""
        return [name for name, _ in self.model.named_parameters()]

    def step_size(self, name: str):
        """The inner learning rate of parameter ``name`` (a number, or a tensor in Meta-SGD)."""
        return self.inner_lr

    def start(self, tasks: int) -> dict:
        """theta copied once per task: name -> (tasks, *shape), still connected to theta."""
        return {name: p.expand(tasks, *p.shape) for name, p in self.model.named_parameters()}

    def inner_step(self, params: dict, x, y, create_graph: bool) -> dict:
        """One SGD step of every task on its own data: theta_i - alpha * grad L_i(theta_i)."""
        names = self.adapted_names()
        task_losses = self.loss(self.model.forward_tasks(params, x), y)  # (tasks,)
        grads = torch.autograd.grad(task_losses.sum(), [params[n] for n in names],
                                    create_graph=create_graph)
        new = dict(params)
        for name, g in zip(names, grads):
            new[name] = params[name] - self.step_size(name) * g
        return new

    def adapt(self, x_support, y_support, steps=None, create_graph=None) -> dict:
        """Inner loop: ``steps`` SGD steps per task from theta.

        x_support (tasks, K, ...), y_support (tasks, K, ...) -> name -> (tasks, *shape).
        ``create_graph`` (default: second order unless first-order) keeps the graph
        of the inner gradients so that the outer gradient flows through them.
        """
        steps = self.inner_steps if steps is None else check_int("steps", steps, low=0)
        if create_graph is None:
            create_graph = torch.is_grad_enabled() and not self.first_order
        params = self.start(x_support.shape[0])
        with torch.enable_grad():
            for _ in range(steps):
                params = self.inner_step(params, x_support, y_support, create_graph)
        return params

    # ---- outer loop ---------------------------------------------------------
    def query_loss(self, params: dict, batch: TaskBatch) -> torch.Tensor:
        """Mean over tasks of each task's query loss with its adapted weights."""
        return self.loss(self.model.forward_tasks(params, batch.x_query), batch.y_query).mean()

    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        """Mean query loss after adaptation, a scalar differentiable with respect to theta."""
        if not self.multi_step_loss:
            return self.query_loss(self.adapt(batch.x_support, batch.y_support), batch)
        params, losses = self.start(batch.tasks), []
        for _ in range(self.inner_steps):
            params = self.inner_step(params, batch.x_support, batch.y_support,
                                     create_graph=not self.first_order)
            losses.append(self.query_loss(params, batch))
        return torch.stack(losses).mean() if losses else self.query_loss(params, batch)

    def outer_step(self, batch: TaskBatch, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """One meta-update; returns the (detached) meta-loss before the update.

        The update is skipped when the loss is not finite (the caller stops there).
        """
        return step_if_finite(self.meta_loss(batch), optimizer)

    def config(self) -> dict:
        return {"algo": self.name, "loss": self.loss_name, "inner_lr": self.inner_lr,
                "inner_steps": self.inner_steps, "multi_step_loss": self.multi_step_loss}


class FOMAML(MAML):
    """First-order MAML (Finn et al. 2017, section 5.2): no second derivatives."""

    name = "fomaml"
    first_order = True


class ANIL(MAML):
    """Almost No Inner Loop (Raghu et al., ICLR 2020): only the head adapts; the body is shared."""

    name = "anil"

    def adapted_names(self) -> list:
        return list(self.model.head_names)


class MetaSGD(MAML):
    """Meta-SGD (Li et al. 2017): a learned inner learning rate for every single weight.

    The rates start at ``inner_lr`` and are meta-learned with theta, so the inner
    step is theta - lr (elementwise) * grad.
    """

    name = "metasgd"

    def __init__(self, model, loss="mse", inner_lr=0.01, inner_steps=1, multi_step_loss=False):
        super().__init__(model, loss, inner_lr, inner_steps, multi_step_loss)
        # ParameterDict keys may not contain dots
        self.lrs = nn.ParameterDict({name.replace(".", "_"): nn.Parameter(torch.full_like(p, inner_lr))
                                     for name, p in model.named_parameters()})

    def step_size(self, name: str):
        return self.lrs[name.replace(".", "_")]


class Reptile(MAML):
    """Reptile (Nichol, Achiam, Schulman 2018): a first-order method without a query loss.

    Outer step: theta <- theta + beta * mean_i(theta_i - theta), i.e. the optimiser
    is handed ``theta - mean_i theta_i`` as the gradient.
    """

    name = "reptile"
    first_order = True

    def __init__(self, model, loss="mse", inner_lr=0.01, inner_steps=5, multi_step_loss=False):
        super().__init__(model, loss, inner_lr, inner_steps, multi_step_loss)

    def outer_step(self, batch: TaskBatch, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        params = self.adapt(batch.x_support, batch.y_support, create_graph=False)
        with torch.no_grad():
            loss = self.loss(self.model.forward_tasks(params, batch.x_query), batch.y_query).mean()
            if torch.isfinite(loss):
                optimizer.zero_grad(set_to_none=True)
                for name, p in self.model.named_parameters():
                    p.grad = p - params[name].mean(0)
        if torch.isfinite(loss):
            optimizer.step()
        return loss
