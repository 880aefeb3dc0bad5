"""The image explorer of notebook 06: few-shot glyph episodes, MAML and ProtoNets.

Sliders: ways, K (shots), inner steps, inner lr. It samples a seeded episode from the
held-out alphabets, fine-tunes the shipped MAML checkpoint on its support set
(``fine_tune``, once per setting for the largest step count; moving "inner steps" only
picks another column of that result), classifies the query images with MAML and with
ProtoNets, and draws them with the true and predicted labels.
"""
from __future__ import annotations

import torch

from .checkpoints import load_shipped
from .checks import check_int
from .data import load_glyphs
from .episodes import EpisodeFamily
from .learner import fine_tune
from .plots import BAD, draw_predictions
from .runtime import torch_threads
from .widgets import Panel, int_slider, log_slider


class ImageExplorer(Panel):
    """maml: {ways: MAML learner} (default: the shipped 5-way and 20-way checkpoints);
    protonet: a ProtoNet (default: the shipped one); dataset: default the glyphs'
    evaluation split."""

    css_class = "mlkit-image-explorer"
    MAX_STEPS, MAX_SHOTS, SHOWN = 5, 5, 20

    def __init__(self, maml=None, protonet=None, dataset=None, seed: int = 0, ways: int = 5,
                 shots: int = 1, steps: int = 3, lr: float | None = None):
        if maml is None:
            maml = {w: load_shipped(f"glyphs_maml_{w}way")[0] for w in (5, 20)}
        self.maml = {m.model.ways: m for m in (maml.values() if isinstance(maml, dict) else [maml])}
        self.protonet = protonet if protonet is not None else load_shipped("glyphs_protonet")[0]
        self.family = EpisodeFamily(dataset if dataset is not None else load_glyphs("evaluation"),
                                    ways=2, split="evaluation")
        self.seed = check_int("seed", seed, low=0)
        self._runs = {}  # (ways, K, lr) -> (episode, MAML fine_tune result, ProtoNet result)
        lr = lr if lr is not None else next(iter(self.maml.values())).inner_lr
        super().__init__([int_slider("ways", ways, 2, min(20, len(self.family.dataset))),
                          int_slider("K (shots)", shots, 1, self.MAX_SHOTS),
                          int_slider("inner steps", steps, 0, self.MAX_STEPS),
                          log_slider("inner lr", lr, -3, 2)], figsize=(9, 4.2))
        self.ax = self.fig.add_axes((0.01, 0.01, 0.98, 0.86))
        self.update()

    def episode(self, ways, shots):
        """The seeded episode shown for (ways, K): about SHOWN query images in all."""
        g = torch.Generator().manual_seed(self.seed * 1000 + ways * 10 + shots)
        return self.family.sample(1, shots, max(1, self.SHOWN // ways), generator=g, ways=ways)

    def runs(self, ways, shots, lr):
        key = (ways, shots, round(lr, 12))
        if key not in self._runs:
            if len(self._runs) > 32:
                self._runs.clear()
            batch = self.episode(ways, shots)
            maml = self.maml.get(ways)
            with torch_threads(1):
                tuned = None if maml is None else fine_tune(maml, batch, self.MAX_STEPS, lr)
                proto = fine_tune(self.protonet, batch, 0)
            self._runs[key] = (batch, tuned, proto)
        return self._runs[key]

    def update(self):
        ways, shots = self.value("ways"), self.value("K (shots)")
        steps, lr = self.value("inner steps"), self.value("inner lr")
        batch, tuned, proto = self.runs(ways, shots, lr)
        truth = batch.y_query[0]
        guesses = {"MAML": None if tuned is None else tuned["outputs"][0, steps].argmax(-1),
                   "ProtoNet": proto["outputs"][0, 0].argmax(-1)}
        accuracy = {k: None if g is None else (g == truth).double().mean().item()
                    for k, g in guesses.items()}
        diverged = tuned is not None and bool(tuned["diverged"][0, steps])
        self.result = {"accuracy": accuracy, "maml_diverged": diverged}
        heads = " and ".join(f"{w}-way" for w in sorted(self.maml))
        if tuned is None:
            maml_text = f"MAML n/a for {ways}-way (its heads are {heads})"
        else:
            maml_text = f"MAML {100 * accuracy['MAML']:.0f}%" + (
                f" (fine-tuning diverged: lr {lr:.3g} is too large)" * diverged)
        support = batch.x_support[0].view(ways, shots, *batch.x_support.shape[-2:])[:, 0]
        draw_predictions(self.ax, batch.x_query[0, :self.SHOWN], truth[:self.SHOWN],
                         {k: None if g is None else g[:self.SHOWN] for k, g in guesses.items()},
                         support=support)
        maml = self.maml.get(ways)
        trained = "" if maml is None else (f" (meta-trained for {maml.inner_steps} step(s) of "
                                           f"lr {maml.inner_lr:.3g})")
        self.ax.set_title(f"{ways}-way {shots}-shot episode from the held-out alphabets: one "
                          f"support image per label above the line, {len(truth)} query images "
                          f"below\nquery: true label top left; M = MAML after {steps} step(s) "
                          f"of lr {lr:.3g}{trained}, P = ProtoNet; green right, red wrong",
                          fontsize=9)
        if diverged:
            self.ax.text(0.5, 0.5, f"MAML fine-tuning diverged at inner lr {lr:.3g}:\n"
                         "try a smaller lr", transform=self.ax.transAxes, ha="center",
                         va="center", fontsize=13, color=BAD, bbox={"fc": "white", "alpha": 0.85})
        self.show(f"ways={ways} K={shots} steps={steps} lr={lr:.3f} | {maml_text}, ProtoNet "
                  f"{100 * accuracy['ProtoNet']:.0f}% of {len(truth)} query images")
