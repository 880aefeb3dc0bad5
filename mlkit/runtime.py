"""Where and how computations run: device choice and thread count."""
from __future__ import annotations

import contextlib

import torch


def pick_device(name=None) -> torch.device:
    """``name`` ("cpu", "cuda", "cuda:1", ...) or, when None, a GPU if there is one, else the CPU."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but no CUDA GPU is available; use 'cpu'")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {name!r}")
    return device


@contextlib.contextmanager
def torch_threads(n):
    """Run the block with ``n`` torch CPU threads (None: leave as is).

    Small models (the sinusoid MLP) run fastest on one thread: with more, threads
    wait for each other longer than the tiny matrix products take.
    """
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def adam(params, lr):
    """Adam (Kingma & Ba 2015), the fused kernel where this torch build has one."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)
