"""Models, and the *functional view* the inner loop needs.

An inner loop gives every task its own copy of the weights. So besides the usual
``model(x)``, each model has ``forward_tasks(params, x)``: the network run once per
task with that task's weights, all tasks in one call.

    params: name -> tensor of shape (tasks, *parameter shape)
    x:      (tasks, N, *input shape)   ->   output (tasks, N, outputs)

How each model does it was chosen by measurement (README, "Speed"): the MLP multiplies
all tasks at once with batched matrix products (``torch.baddbmm``); the Conv-4 loops
over tasks, because its convolutions are large enough that batching saves nothing, and
instead computes each pass with fewer trips through memory (``Conv4.functional``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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
    """The four-block convolutional network of few-shot image classification.

    pool=True:  each block is 3x3 conv -> batch norm -> ReLU -> 2x2 max-pool, and the
                features are flattened (Vinyals et al. 2016; Snell et al. 2017, ProtoNets).
    pool=False: each block is 3x3 conv with stride 2 -> batch norm -> ReLU, and the features
                are averaged over the remaining pixels: MAML's own Omniglot network (Finn et
                al. 2017, section 5.2, and their code), about 4x cheaper.
    With ``ways`` set, a linear head maps the features to ``ways`` logits (MAML); with
    ``ways=None`` the network returns the features (ProtoNets). Batch norm always uses the
    statistics of the images it is given (as the papers' code does), so a task's result
    does not depend on other tasks. The convolutions have no bias: batch norm's mean
    subtraction would cancel it.
    """

    def __init__(self, ways=5, channels=1, hidden=64, image_size=28, pool=True):
        super().__init__()
        if ways is not None:
            check_int("ways", ways, low=2)
        check_int("channels", channels, low=1)
        check_int("hidden", hidden, low=1)
        check_int("image_size", image_size, low=16)
        if not isinstance(pool, bool):
            raise ValueError(f"pool must be True or False, got {pool!r}")
        self.ways, self.channels, self.hidden = ways, channels, hidden
        self.image_size, self.pool = image_size, pool
        side = image_size
        self.blocks = nn.ModuleList()
        for c_in in (channels, hidden, hidden, hidden):
            layers = [nn.Conv2d(c_in, hidden, 3, stride=1 if pool else 2, padding=1, bias=False),
                      nn.BatchNorm2d(hidden, track_running_stats=False), nn.ReLU()]
            self.blocks.append(nn.Sequential(*layers, *[nn.MaxPool2d(2)] * pool))
            side = side // 2 if pool else (side + 1) // 2
        self.feature_dim = hidden * side * side if pool else hidden
        self.head = nn.Linear(self.feature_dim, ways) if ways is not None else None

    @property
    def head_names(self) -> tuple:
        """Names of the head's parameters (the part ANIL adapts); none without a head."""
        return ("head.weight", "head.bias") if self.head is not None else ()

    def forward(self, x):
        """x (N, C, H, W) -> logits (N, ways), or features (N, feature_dim) without a head.
        The definition; ``functional`` computes the same faster."""
        for block in self.blocks:
            x = block(x)
        z = x.flatten(1) if self.pool else x.mean((2, 3))
        return self.head(z) if self.head is not None else z

    def functional(self, p: dict, x):
        """``forward(x)`` with the weights ``p`` (name -> tensor, no task dimension), in
        fewer passes over memory (equal up to rounding: the tests check it in float64):
        the first block is one matrix product (``conv_bn``), the later ones max-pool before
        the ReLU (the same result, on 4x less data), and activations stay channels-last."""
        stride = 1 if self.pool else 2
        for i in range(4):
            w, g, b = (p[f"blocks.{i}.{k}"] for k in ("0.weight", "1.weight", "1.bias"))
            if i == 0:
                x = conv_bn(x, w, g, b, stride, self.blocks[0][1].eps)
            else:
                x = F.batch_norm(F.conv2d(x, w, stride=stride, padding=1), None, None, g, b,
                                 training=True, eps=self.blocks[i][1].eps)
            x = F.relu(F.max_pool2d(x, 2) if self.pool else x)
        z = x.flatten(1) if self.pool else x.mean((2, 3))
        return F.linear(z, p["head.weight"], p["head.bias"]) if self.head is not None else z

    def forward_tasks(self, params, x):
        """Per-task weights: params[name] (T, *shape), x (T, N, C, H, W) -> (T, N, out),
        one task after another: measured faster than vmap, grouped convolutions, or (for
        weights all tasks share) one pass over every task's images with per-task batch-norm
        statistics, which was 1.2-1.9x slower on the machines measured."""
        tasks = zip(*(p.unbind(0) for p in params.values()))  # one weight set per task
        return torch.stack([self.functional(dict(zip(params, weights)), xt)
                            for weights, xt in zip(tasks, x.unbind(0))])

    def embed_tasks(self, x):
        """The network's own weights on every task: x (T, N, C, H, W) -> (T, N, out), batch
        norm statistics taken per task (ProtoNets)."""
        return self.forward_tasks({n: p.expand(x.shape[0], *p.shape)
                                   for n, p in self.named_parameters()}, x)

    def config(self) -> dict:
        return {"model": "conv4", "ways": self.ways, "channels": self.channels,
                "hidden": self.hidden, "image_size": self.image_size, "pool": self.pool}


def conv_bn(x, weight, gamma, beta, stride=1, eps=1e-5):
    """``batch_norm(conv2d(x, weight, stride=stride, padding=1))`` with batch statistics,
    computed as one matrix product: x (N, C, H, W), weight (D, C, 3, 3) -> (N, D, H', W').

    Output channel d is w_d . u for each (C*9)-value input patch u, so its batch mean is
    w_d . mean(u) and its variance w_d' Cov(u) w_d: the statistics come from the small
    patches, and the normalisation folds into the weights. One product then writes the
    output once, where conv, mean, variance and normalisation pass over it four times.
    Worth it where patches are small and outputs large: the first block.
    """
    n, c, h, w = x.shape
    u = F.unfold(x, 3, padding=1, stride=stride).transpose(1, 2)     # (N, L, C*9) patches
    u = u.reshape(-1, c * 9)
    mean = u.mean(0)
    centred = u - mean
    cov = centred.T @ centred / len(u)                                # (C*9, C*9)
    wf = weight.flatten(1)                                            # (D, C*9)
    scale = gamma * torch.rsqrt(((wf @ cov) * wf).sum(1) + eps)      # gamma / std, (D,)
    # the folded weights as a row-major (C*9, D) matrix: autograd then forms their gradient
    # as u^T g, 4x faster here than the (g^T u)^T it forms for a transposed view
    w_t = (scale[:, None] * wf).T.contiguous()
    out = torch.addmm(beta - scale * (wf @ mean), u, w_t)            # (N*L, D)
    return out.view(n, (h - 1) // stride + 1, (w - 1) // stride + 1, -1).permute(0, 3, 1, 2)


def build_model(config: dict) -> nn.Module:
    """Rebuild a model from ``model.config()`` (used when loading checkpoints)."""
    kind = config.get("model")
    if kind == "mlp":
        return MLP(config["sizes"])
    if kind == "conv4":
        return Conv4(config["ways"], config["channels"], config["hidden"], config["image_size"],
                     config.get("pool", True))
    raise ValueError(f"model must be 'mlp' or 'conv4', got {kind!r}")
