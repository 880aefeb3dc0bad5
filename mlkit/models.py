"""Models, and the *functional view* the inner loop needs.

An inner loop gives every task its own copy of the weights.  So besides the
usual ``model(x)``, each model here has ``forward_tasks(params, x)``: it runs the
network once per task with that task's weights, all tasks at once.

    params: name -> tensor of shape (tasks, *parameter shape)
    x:      (tasks, N, *input shape)   ->   output (tasks, N, outputs)

The MLP does this with batched matrix products (``torch.baddbmm``), the Conv-4
with ``torch.func.vmap`` over ``torch.func.functional_call``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from .checks import check_int


class MLP(nn.Module):
    """Fully connected ReLU network; the MAML paper's sinusoid model is sizes=(1, 40, 40, 1)."""

    def __init__(self, sizes=(1, 40, 40, 1)):
        super().__init__()
        sizes = tuple(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least an input and an output size, got {sizes!r}")
        for i, s in enumerate(sizes):
            check_int(f"sizes[{i}]", s, low=1)
        self.sizes = sizes
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    @property
    def head_names(self) -> tuple:
        """Names of the last layer's parameters (the part ANIL adapts)."""
        last = len(self.layers) - 1
        return (f"layers.{last}.weight", f"layers.{last}.bias")

    def forward(self, x):
        """x (N, in) -> (N, out)."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x

    def forward_tasks(self, params, x):
        """Per-task weights: params[name] (T, *shape), x (T, N, in) -> (T, N, out)."""
        last = len(self.layers) - 1
        for i in range(last + 1):
            w, b = params[f"layers.{i}.weight"], params[f"layers.{i}.bias"]
            x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))  # x @ w^T + b, per task
            if i < last:
                x = F.relu(x)
        return x

    def config(self) -> dict:
        return {"model": "mlp", "sizes": list(self.sizes)}


class Conv4(nn.Module):
    """The 4-block CNN of Vinyals et al. 2016 used by MAML and ProtoNets.

    Each block: 3x3 conv (``hidden`` filters) -> batch norm -> ReLU -> 2x2 max-pool.
    With ``ways`` set, a linear head maps the features to ``ways`` logits (MAML);
    with ``ways=None`` the network returns the features (ProtoNets).
    Batch norm uses batch statistics only (``track_running_stats=False``), as
    torch.func.vmap needs and as in the MAML paper's code.
    """

    def __init__(self, ways=5, channels=1, hidden=64, image_size=28):
        super().__init__()
        if ways is not None:
            check_int("ways", ways, low=2)
        check_int("channels", channels, low=1)
        check_int("hidden", hidden, low=1)
        check_int("image_size", image_size, low=16)
        self.ways, self.channels, self.hidden, self.image_size = ways, channels, hidden, image_size
        blocks = []
        for c_in in (channels, hidden, hidden, hidden):
            blocks += [nn.Conv2d(c_in, hidden, 3, padding=1),
                       nn.BatchNorm2d(hidden, track_running_stats=False),
                       nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*blocks, nn.Flatten())
        side = image_size
        for _ in range(4):
            side //= 2
        self.feature_dim = hidden * side * side
        self.head = nn.Linear(self.feature_dim, ways) if ways is not None else None

    @property
    def head_names(self) -> tuple:
        return ("head.weight", "head.bias")

    def forward(self, x):
        """x (N, C, H, W) -> logits (N, ways), or features (N, feature_dim) without a head."""
        z = self.features(x)
        return self.head(z) if self.head is not None else z

    def forward_tasks(self, params, x):
        """Per-task weights: params[name] (T, *shape), x (T, N, C, H, W) -> (T, N, ways)."""
        return vmap(lambda p, xb: functional_call(self, p, (xb,)))(params, x)

    def config(self) -> dict:
        return {"model": "conv4", "ways": self.ways, "channels": self.channels,
                "hidden": self.hidden, "image_size": self.image_size}


def build_model(config: dict) -> nn.Module:
    """Rebuild a model from ``model.config()`` (used when loading checkpoints)."""
    kind = config.get("model")
    if kind == "mlp":
        return MLP(config["sizes"])
    if kind == "conv4":
        return Conv4(config["ways"], config["channels"], config["hidden"], config["image_size"])
    raise ValueError(f"model must be 'mlp' or 'conv4', got {kind!r}")
