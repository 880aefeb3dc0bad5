"""Checkpoints: a learner's weights plus the metadata that says how they were made.

Saved atomically (written to a temporary file, then renamed over the target), so
a checkpoint file is always either the old complete one or the new complete one,
even if training is interrupted while saving. Loaded with ``weights_only=True``:
loading never runs code from the file.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import secrets
from pathlib import Path

import torch

from .algorithms import learner_from_config
from .models import build_model
from .runtime import hold_interrupts

FORMAT = "mlkit-checkpoint-v1"
TASK_MODELS = {"sinusoid": "mlp", "glyphs": "conv4"}


class CheckpointError(ValueError):
    """A checkpoint file that is missing, damaged or not what was expected."""


def versions() -> dict:
    import numpy
    return {"torch": str(torch.__version__), "numpy": str(numpy.__version__),
            "python": platform.python_version()}


def weights_sha256(state_dict: dict) -> str:
    """A fingerprint of the weights: torch files carry no checksum of their own."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        h.update(name.encode())
        h.update(state_dict[name].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def save_checkpoint(path, learner, meta: dict, training: dict | None = None) -> Path:
    """Write ``learner``'s weights and ``meta`` to ``path`` atomically; returns the path.

    ``meta`` holds plain data only (str, int, float, bool, lists, dicts): the task, training
    config, seed, iterations, metrics and the command that made it. ``training`` is what a
    run needs to continue (``History.state()``: losses, optimiser state, sampler position).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"out must be a file path, got the folder {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in learner.state_dict().items()}
    payload = {"format": FORMAT, "model": learner.model.config(), "learner": learner.config(),
               "state_dict": state, "sha256": weights_sha256(state),
               "meta": {**meta, "versions": versions()}, "training": training}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    with hold_interrupts():
        try:
            with open(tmp, "xb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
    return path


def _damaged(path, why) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} is damaged or not an mlkit checkpoint ({why}); "
                           f"rebuild it with the command in data/README.md")


def read_checkpoint(path, device="cpu") -> dict:
    """Load the raw payload of a checkpoint with ``weights_only=True`` and check it is intact."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (see data/README.md for the "
                              f"command that rebuilds each shipped checkpoint)")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated, corrupted, or not a torch file at all
        raise _damaged(path, type(e).__name__) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an mlkit checkpoint (expected format {FORMAT!r})")
    state, meta = payload.get("state_dict"), payload.get("meta")
    if not isinstance(state, dict) or not all(torch.is_tensor(t) for t in state.values()):
        raise _damaged(path, "no weights")
    if not isinstance(meta, dict):
        raise _damaged(path, "no metadata")
    if payload.get("sha256") != weights_sha256(state):
        raise _damaged(path, "the weights do not match their checksum")
    if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
        raise _damaged(path, "the weights are not finite")
    return payload


def load_checkpoint(path, device="cpu", task=None):
    """Rebuild the learner saved in ``path``. Returns (learner, meta).

    With ``task`` given ("sinusoid" or "glyphs"), a checkpoint of another task is refused.
    """
    payload = read_checkpoint(path, device)
    meta = payload["meta"]
    saved_task = meta.get("task")
    if saved_task not in TASK_MODELS:
        raise CheckpointError(f"checkpoint {path} does not say which task it was trained on "
                              f"(meta['task'] is {saved_task!r}; expected one of "
                              f"{sorted(TASK_MODELS)})")
    if task is not None and saved_task != task:
        raise CheckpointError(f"checkpoint {path} was trained on task {saved_task!r}, "
                              f"not {task!r}")
    model_cfg = payload.get("model")
    expected = TASK_MODELS[saved_task]
    sizes = (model_cfg.get("sizes") if isinstance(model_cfg, dict) else None) or [None]
    if not isinstance(model_cfg, dict) or model_cfg.get("model") != expected or (
            expected == "mlp" and [sizes[0], sizes[-1]] != [1, 1]):
        raise CheckpointError(f"checkpoint {path} holds a {model_cfg!r} model, which does not fit "
                              f"task {saved_task!r} (expected {expected!r}"
                              f"{' with 1 input and 1 output' if expected == 'mlp' else ''})")
    try:
        cfg = payload["learner"]
        model = build_model(model_cfg)
        learner = learner_from_config(model, cfg)
        learner.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError, ValueError, IndexError) as e:
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
