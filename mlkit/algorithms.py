"""The registry of learners: every algorithm by its name, as the command line and
checkpoints call them."""
from __future__ import annotations

import inspect

from torch import nn

from .checks import check_choice
from .maml import ANIL, FOMAML, MAML, MetaSGD, Pretrain, Reptile
from .protonet import ProtoNet

ALGORITHMS = {cls.name: cls for cls in (MAML, FOMAML, Reptile, ANIL, MetaSGD, Pretrain, ProtoNet)}


def make_learner(algo: str, model: nn.Module, loss="mse", **options):
    """Build a learner by name: one of maml, fomaml, reptile, anil, metasgd, pretrain, protonet.

    options are the class's own arguments (inner_lr, inner_steps, multi_step_loss,
    adapt_batch_norm for the MAML family; none for protonet); an option given as None takes
    the class's default (for inner_steps: Reptile 5, Pretrain 0, others 1).
    """
    check_choice("algo", algo, list(ALGORITHMS))
    cls = ALGORITHMS[algo]
    accepted = inspect.signature(cls.__init__).parameters
    for key, value in options.items():
        if key not in accepted and value is not None:
            allowed = [p for p in accepted if p not in ("self", "model", "loss")]
            raise ValueError(f"{key} does not apply to {algo} (its options: "
                             f"{', '.join(allowed) or 'none'}), got {key}={value!r}")
    kwargs = {k: v for k, v in options.items() if v is not None and k in accepted}
    return cls(model, loss, **kwargs)


def learner_from_config(model: nn.Module, config: dict):
    """Rebuild a learner from ``learner.config()`` (as stored in a checkpoint). Options the
    class does not take are ignored (checkpoints written before they were removed)."""
    cls = ALGORITHMS[check_choice("algo", config.get("algo"), list(ALGORITHMS))]
    accepted = inspect.signature(cls.__init__).parameters
    options = {k: v for k, v in config.items() if k in accepted and k not in ("model", "loss")}
    return cls(model, config.get("loss", "mse"), **options)
