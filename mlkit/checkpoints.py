"""Checkpoints: a learner's weights plus the metadata that says how they were made.

Saved atomically (written to a temporary file, then renamed over the target), so
a checkpoint file is always either the old complete one or the new complete one,
even if training is interrupted while saving. Loaded with ``weights_only=True``:
loading never runs code from the file.
"""
from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import torch

from .models import build_model

FORMAT = "mlkit-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, damaged or not what was expected."""


def versions() -> dict:
    import numpy
    return {"torch": str(torch.__version__), "numpy": str(numpy.__version__),
            "python": platform.python_version()}


def save_checkpoint(path, learner, meta: dict) -> Path:
    """Write ``learner``'s weights and ``meta`` to ``path`` atomically; returns the path.

    ``meta`` should hold plain data only (str, int, float, bool, lists, dicts): the
    task, training config, seed, iterations, metrics and the command that made it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "model": learner.model.config(),
        "learner": learner.config(),
        "state_dict": {k: v.detach().cpu() for k, v in learner.state_dict().items()},
        "meta": {**meta, "versions": versions()},
    }
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def read_checkpoint(path, device="cpu") -> dict:
    """Load the raw payload of a checkpoint with ``weights_only=True`` and check its format."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (see data/README.md for the "
                              f"command that rebuilds each shipped checkpoint)")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated, corrupted, or not a torch file at all
        raise CheckpointError(f"checkpoint {path} is damaged or not an mlkit checkpoint "
                              f"({type(e).__name__}); rebuild it with the command in "
                              f"data/README.md") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an mlkit checkpoint (expected format {FORMAT!r})")
    return payload


def load_checkpoint(path, device="cpu", task=None):
    """Rebuild the learner saved in ``path``. Returns (learner, meta).

    With ``task`` given ("sinusoid" or "glyphs"), a checkpoint of another task is refused.
    """
    from .train import make_learner

    payload = read_checkpoint(path, device)
    meta = payload.get("meta", {})
    if task is not None and meta.get("task") != task:
        raise CheckpointError(f"checkpoint {path} was trained on task {meta.get('task')!r}, "
                              f"not {task!r}")
    try:
        cfg = payload["learner"]
        model = build_model(payload["model"])
        learner = make_learner(cfg["algo"], model, cfg["loss"], cfg["inner_lr"], cfg["inner_steps"],
                               cfg.get("multi_step_loss", False))
        learner.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} does not match its model description "
                              f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
    return learner.to(device).eval(), meta


DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CHECKPOINT_DIR = DATA_DIR / "checkpoints"


def load_shipped(name, device="cpu"):
    """Load a checkpoint shipped in ``data/checkpoints``, e.g. ``load_shipped("sinusoid_maml")``.

    Returns (learner, meta); ``meta["command"]`` is the command that rebuilds it.
    """
    path = CHECKPOINT_DIR / f"{name}.pt"
    if not path.is_file():
        available = sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt"))
        raise CheckpointError(f"no shipped checkpoint named {name!r} (file {path}); available: "
                              f"{', '.join(available) or 'none'}; data/README.md has the "
                              f"command that rebuilds each one")
    return load_checkpoint(path, device)
