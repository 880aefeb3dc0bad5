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
Pretrain   no inner loop in training: fit all tasks' data at once  Finn et al. 2017 (baseline)
=========  ======================================================  =============================

All of them fine-tune at test time with the same SGD inner step (``mlkit.learner.fine_tune``).
For the MLP, MAML's and first-order MAML's ``meta_loss`` hands over to ``fast_maml.py``,
which computes the same numbers in fewer operations (checked to 1e-10 in float64).
"""
from __future__ import annotations

import torch
from torch import nn

from . import fast_maml
from .checks import check_float, check_int
from .learner import Learner
from .models import MLP
from .tasks import TaskBatch


class MAML(Learner):
    """Model-Agnostic Meta-Learning (Finn, Abbeel, Levine, ICML 2017).

    model:       an ``mlkit.models`` network (has ``forward_tasks``)
    loss:        "mse" (regression) or "cross_entropy" (classification)
    inner_lr:    alpha, the inner SGD step size
    inner_steps: inner SGD steps during meta-training
    multi_step_loss: average the query loss after *every* inner step instead of
        only the last (Antoniou et al., "How to train your MAML", ICLR 2019), so the
        initialisation is good after 1 step and stays good over more steps
    adapt_batch_norm: whether the inner loop also changes batch norm's scale and shift.
        False follows Finn et al.'s Omniglot code, whose inner loop adapts the weights of
        the convolutions and the head only (batch norm is learned in the outer loop);
        models without batch norm (the MLP) are the same either way.
    """

    name = "maml"
    first_order = False
    fast_path = True  # False: always the readable path below, even where fast_maml.py applies

    def __init__(self, model: nn.Module, loss="mse", inner_lr=0.01, inner_steps=1,
                 multi_step_loss=False, adapt_batch_norm=True):
        super().__init__(model, loss)
        self.inner_lr = check_float("inner_lr", inner_lr, low=0.0)
        self.inner_steps = check_int("inner_steps", inner_steps, low=0)
        self.multi_step_loss = bool(multi_step_loss)
        if not isinstance(adapt_batch_norm, bool):
            raise ValueError(f"adapt_batch_norm must be True or False, got {adapt_batch_norm!r}")
        self.adapt_batch_norm = adapt_batch_norm

    # ---- inner loop ---------------------------------------------------------
    def adapted_names(self) -> list:
        """Which parameters the inner loop changes: all of them, or all but batch norm's
        (``adapt_batch_norm=False``)."""
        frozen = set() if self.adapt_batch_norm else set(batch_norm_names(self.model))
        return [name for name, _ in self.model.named_parameters() if name not in frozen]

    def step_size(self, name: str):
        """The inner learning rate of parameter ``name`` (a number, or a tensor in Meta-SGD)."""
        return self.inner_lr

    def start(self, tasks: int) -> dict:
        """theta copied once per task: name -> (tasks, *shape), still connected to theta."""
        return {name: p.expand(tasks, *p.shape) for name, p in self.model.named_parameters()}

    def inner_step(self, params: dict, x, y, create_graph: bool, inner_lr=None) -> dict:
        """One SGD step of every task on its own data: theta_i - alpha * grad L_i(theta_i).

        params name -> (tasks, *shape); x, y (tasks, K, ...). ``inner_lr`` replaces the
        step size of every weight (default: the learner's own)."""
        names = self.adapted_names()
        task_losses = self.loss(self.model.forward_tasks(params, x), y)  # (tasks,)
        grads = torch.autograd.grad(task_losses.sum(), [params[n] for n in names],
                                    create_graph=create_graph)
        new = dict(params)
        for name, g in zip(names, grads):
            size = self.step_size(name) if inner_lr is None else inner_lr
            new[name] = params[name] - size * g
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

    def predict(self, params: dict, batch: TaskBatch, x: torch.Tensor) -> torch.Tensor:
        """Outputs of every task's network at x (tasks, N, ...) -> (tasks, N, outputs)."""
        return self.model.forward_tasks(params, x)

    def inner_update(self, inner_lr=None) -> str:
        bn = batch_norm_names(self.model)
        kept = " (batch norm not adapted)" if bn and set(bn).isdisjoint(self.adapted_names()) else ""
        return (f"SGD on the support set{kept}, lr "
                f"{self.inner_lr if inner_lr is None else inner_lr}")

    # ---- outer loop ---------------------------------------------------------
    def query_loss(self, params: dict, batch: TaskBatch) -> torch.Tensor:
        """Mean over tasks of each task's query loss with its adapted weights."""
        return self.loss(self.model.forward_tasks(params, batch.x_query), batch.y_query).mean()

    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        """Mean query loss after adaptation, a scalar differentiable with respect to theta."""
        if self.has_fast_path():  # the same numbers in fewer operations (fast_maml.py)
            return fast_maml.meta_loss(self.model, batch, self.inner_lr, self.inner_steps,
                                       self.first_order, self.multi_step_loss)
        if not self.multi_step_loss:
            return self.query_loss(self.adapt(batch.x_support, batch.y_support), batch)
        params, losses = self.start(batch.tasks), []
        for _ in range(self.inner_steps):
            params = self.inner_step(params, batch.x_support, batch.y_support,
                                     create_graph=not self.first_order)
            losses.append(self.query_loss(params, batch))
        return torch.stack(losses).mean() if losses else self.query_loss(params, batch)

    def has_fast_path(self) -> bool:
        """True for an MLP with the squared error and MAML's own inner loop (a subclass
        that changes any part of it, such as ANIL or Meta-SGD, keeps the readable path)."""
        own = ("start", "inner_step", "step_size", "adapted_names", "query_loss", "meta_loss",
               "outer_step")
        return (self.fast_path and self.loss_name == "mse" and isinstance(self.model, MLP)
                and all(getattr(type(self), m) is getattr(MAML, m) for m in own))

    def config(self) -> dict:
        frozen = {} if self.adapt_batch_norm else {"adapt_batch_norm": False}  # named when off
        return {**super().config(), "inner_lr": self.inner_lr, "inner_steps": self.inner_steps,
                "multi_step_loss": self.multi_step_loss, **frozen}


def batch_norm_names(model: nn.Module) -> list:
    """Names of the scale and shift parameters of every batch-norm layer in ``model``."""
    return [f"{prefix}.{name}" for prefix, module in model.named_modules()
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))
            for name, _ in module.named_parameters(recurse=False)]


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
    learned_inner_lr = True

    def __init__(self, model, loss="mse", inner_lr=0.01, inner_steps=1, multi_step_loss=False,
                 adapt_batch_norm=True):
        super().__init__(model, loss, inner_lr, inner_steps, multi_step_loss, adapt_batch_norm)
        # ParameterDict keys may not contain dots
        self.lrs = nn.ParameterDict({name.replace(".", "_"): nn.Parameter(torch.full_like(p, inner_lr))
                                     for name, p in model.named_parameters()})

    def step_size(self, name: str):
        return self.lrs[name.replace(".", "_")]

    def inner_update(self, inner_lr=None) -> str:
        return ("SGD on the support set, the learned per-weight rates" if inner_lr is None
                else super().inner_update(inner_lr))


class Reptile(MAML):
    """Reptile (Nichol, Achiam, Schulman 2018): a first-order method without a query loss.

    Outer step: theta <- theta + beta * mean_i(theta_i - theta), i.e. the optimiser
    is handed ``theta - mean_i theta_i`` as the gradient.
    Only what adapts moves: with ``adapt_batch_norm=False`` batch norm keeps its initial
    scale and shift.
    """

    name = "reptile"
    first_order = True

    def __init__(self, model, loss="mse", inner_lr=0.01, inner_steps=5, multi_step_loss=False,
                 adapt_batch_norm=True):
        super().__init__(model, loss, inner_lr, inner_steps, multi_step_loss, adapt_batch_norm)

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


class Pretrain(MAML):
    """The baseline: one network fitted to the data of all tasks, no inner loop.

    This is the "meta-training" loop of many blog posts. It learns the average
    task (for sinusoids: about -1.6 cos x, notebook 01) and, at test time, is fine-tuned
    by plain SGD like the others (Finn et al. 2017's "pretrained" baseline).
    """

    name = "pretrain"

    def __init__(self, model, loss="mse", inner_lr=0.01, inner_steps=0, multi_step_loss=False,
                 adapt_batch_norm=True):
        super().__init__(model, loss, inner_lr, inner_steps, multi_step_loss, adapt_batch_norm)

    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        x = torch.cat([batch.x_support, batch.x_query], 1)
        y = torch.cat([batch.y_support, batch.y_query], 1)
        return self.loss(self.model.forward_tasks(self.start(x.shape[0]), x), y).mean()
