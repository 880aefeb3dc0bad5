"""Prototypical Networks (Snell, Swersky, Zemel, "Prototypical Networks for Few-shot
Learning", NeurIPS 2017).

A ProtoNet learns an embedding (here the Conv-4 without its head) in which images
of a class cluster around one point. To classify in a new task it needs no
fine-tuning at all: the *prototype* of each class is the mean embedding of its K
support images, and a query image gets the class whose prototype is nearest
(squared Euclidean distance). The logits are the negative distances, so training
is plain cross-entropy on the query set, one episode after another.

Like the MAML family it works on a TaskBatch of many tasks at once and has an
``outer_step``, so ``meta_train``, checkpoints and the command line treat it the
same way; its "inner loop" has zero steps.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import vmap

from .maml import step_if_finite
from .tasks import TaskBatch, cross_entropy_per_task


class ProtoNet(nn.Module):
    """Prototypical Networks. model: an embedding network, e.g. ``Conv4(ways=None)``."""

    name = "protonet"
    loss_name = "cross_entropy"
    inner_lr = 0.0
    inner_steps = 0
    multi_step_loss = False

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images x (T, N, C, H, W) -> embeddings (T, N, D).

        vmap runs the network on every task at once, and batch norm takes its statistics
        within each task, so a task's result does not depend on the others in the batch.
        """
        return vmap(self.model)(x)

    @staticmethod
    def prototypes(z_support: torch.Tensor, y_support: torch.Tensor, ways: int) -> torch.Tensor:
        """Class means: z_support (T, S, D), y_support (T, S) in [0, ways) -> (T, ways, D)."""
        onehot = nn.functional.one_hot(y_support, ways).to(z_support.dtype)  # (T, S, ways)
        sums = onehot.transpose(1, 2) @ z_support                            # (T, ways, D)
        return sums / onehot.sum(1).unsqueeze(-1)                            # / count per class

    def logits(self, batch: TaskBatch, ways: int | None = None) -> torch.Tensor:
        """Query logits (T, Q, ways): minus the squared distance to each class prototype."""
        ways = int(batch.y_support.max()) + 1 if ways is None else ways
        # 1. embed each task's support and query images together (as Snell et al.'s code does)
        support = batch.x_support.shape[1]
        z = self.embed(torch.cat([batch.x_support, batch.x_query], 1))
        z_support, z_query = z[:, :support], z[:, support:]
        # 2. one prototype per class: the mean of its support embeddings
        protos = self.prototypes(z_support, batch.y_support, ways)
        # 3. score each query by how close it is to each prototype
        return -torch.cdist(z_query, protos).pow(2)

    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        """Mean over tasks of the query cross-entropy."""
        return cross_entropy_per_task(self.logits(batch), batch.y_query).mean()

    def outer_step(self, batch: TaskBatch, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """One training step on a batch of episodes; returns the (detached) loss before it.

        The step is skipped when the loss is not finite (``meta_train`` stops there).
        """
        return step_if_finite(self.meta_loss(batch), optimizer)

    def config(self) -> dict:
        return {"algo": self.name, "loss": self.loss_name, "inner_lr": 0.0, "inner_steps": 0,
                "multi_step_loss": False}
