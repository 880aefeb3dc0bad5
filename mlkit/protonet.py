"""Prototypical Networks (Snell, Swersky, Zemel, "Prototypical Networks for Few-shot
Learning", NeurIPS 2017).

A ProtoNet learns an embedding (here the Conv-4 without its head) in which images
of a class cluster around one point. To classify in a new task it needs no
fine-tuning at all: the *prototype* of each class is the mean embedding of its K
support images, and a query image gets the class whose prototype is nearest
(squared Euclidean distance). The logits are the negative distances, so training
is plain cross-entropy on the query set, one episode after another.

It answers the same learner interface as the MAML family (``mlkit.learner``), so
``meta_train``, ``fine_tune``, ``meta_test``, checkpoints and the command line treat it
the same way; it adapts no weights, so fine-tuning takes no steps.
"""
from __future__ import annotations

import torch
from torch import nn

from .learner import Learner
from .tasks import TaskBatch, cross_entropy_per_task


class ProtoNet(Learner):
    """Prototypical Networks. model: an embedding network, e.g. ``Conv4(ways=None)``."""

    name = "protonet"

    def __init__(self, model: nn.Module, loss: str = "cross_entropy"):
        if loss != "cross_entropy":
            raise ValueError(f"loss must be 'cross_entropy' for protonet (it classifies), "
                             f"got {loss!r}")
        super().__init__(model, loss)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images x (T, N, C, H, W) -> embeddings (T, N, D); batch norm takes its statistics
        within each task, so a task's result does not depend on the others in the batch."""
        return self.model.embed_tasks(x)

    @staticmethod
    def prototypes(z_support: torch.Tensor, y_support: torch.Tensor, ways: int) -> torch.Tensor:
        """Class means: z_support (T, S, D), y_support (T, S) in [0, ways) -> (T, ways, D)."""
        onehot = nn.functional.one_hot(y_support, ways).to(z_support.dtype)  # (T, S, ways)
        sums = onehot.transpose(1, 2) @ z_support                            # (T, ways, D)
        return sums / onehot.sum(1).unsqueeze(-1)                            # / count per class

    def logits(self, batch: TaskBatch, x: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (T, N, ways) of inputs x (default: the query images): minus the squared
        distance to each class prototype of the task's support set."""
        ways = int(batch.y_support.max()) + 1
        x = batch.x_query if x is None else x
        # 1. embed each task's support images and x together (as Snell et al.'s code does)
        support = batch.x_support.shape[1]
        z = self.embed(torch.cat([batch.x_support, x], 1))
        z_support, z_x = z[:, :support], z[:, support:]
        # 2. one prototype per class: the mean of its support embeddings
        protos = self.prototypes(z_support, batch.y_support, ways)
        # 3. score each input by how close it is to each prototype
        return -torch.cdist(z_x, protos).pow(2)

    def predict(self, params: dict, batch: TaskBatch, x: torch.Tensor) -> torch.Tensor:
        """No per-task weights: the logits of x against the support set's prototypes."""
        return self.logits(batch, x)

    def inner_update(self, inner_lr=None) -> str:
        return "none (nearest class prototype)"

    def meta_loss(self, batch: TaskBatch) -> torch.Tensor:
        """Mean over tasks of the query cross-entropy."""
        return cross_entropy_per_task(self.logits(batch), batch.y_query).mean()
