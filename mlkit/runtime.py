"""Where and how computations run: device choice, thread count, the optimiser, Ctrl-C."""
from __future__ import annotations

import contextlib
import signal
import threading

import torch


def pick_device(name=None) -> torch.device:
    """``name`` ("cpu", "cuda", "cuda:1", ...) or, when None, a GPU if there is one, else the CPU."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but no CUDA GPU is available; use 'cpu'")
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


@contextlib.contextmanager
def hold_interrupts():
    """Delay Ctrl-C until the block has finished, so that a training step or a file save
    is never left half done (main thread only; elsewhere Ctrl-C cannot arrive anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of handing it back to the system.

    A Conv-4 pass over a large episode allocates activations of tens of MB; by default
    glibc maps each such block fresh and unmaps it when freed, and the page faults of the
    next pass cost time (measured: 60-way ProtoNet training spent 6.5 s of 27 s in the
    kernel without this, 1.3 s with it). The command line calls it for image tasks (a
    process of its own); returns whether it applied (Linux with glibc).
    """
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False
