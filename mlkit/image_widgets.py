"""Figures and the explorer panel for few-shot images (notebook 06).

Every figure is one matplotlib axes showing a *mosaic*: many small images pasted into
one array, so a redraw stays fast. The explorer replays shipped checkpoints (MAML and
ProtoNets) on a seeded episode and shows each query image with the predicted labels.
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch

from .checks import check_int
from .images import EpisodeFamily, prediction_steps
from .runtime import torch_threads
from .widgets import widget_bundle

GOOD, BAD = "#1a9850", "#d73027"


def mosaic(images, cols: int, pad: int = 2) -> np.ndarray:
    """Paste images (N, H, W) into a grid with ``cols`` columns -> (rows*(H+pad), cols*(W+pad))."""
    images = np.asarray(images, dtype=np.float32)
    n, h, w = images.shape
    rows = max(1, -(-n // cols))
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), 0.35, np.float32)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = im
    return out


def _as_float(images) -> np.ndarray:
    images = images.detach().cpu() if torch.is_tensor(images) else torch.as_tensor(images)
    images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    return images.reshape(-1, *images.shape[-2:]).numpy()


def plot_gallery(dataset, alphabets=None, per_alphabet: int = 8, seed: int = 0):
    """One row per alphabet: the first drawing of ``per_alphabet`` random characters of it."""
    import matplotlib.pyplot as plt
    names = alphabets or dataset.alphabet_names[:8]
    g = torch.Generator().manual_seed(seed)
    rows, labels = [], []
    for name in names:
        idx = [i for i, a in enumerate(dataset.alphabets) if a == name]
        if not idx:
            raise ValueError(f"alphabet {name!r} is not in this dataset; it has "
                             f"{dataset.alphabet_names}")
        pick = torch.randperm(len(idx), generator=g)[:per_alphabet]
        ims = _as_float(dataset.images[[idx[i] for i in pick], 0])
        ims = np.concatenate([ims, np.zeros((per_alphabet - len(ims), *ims.shape[1:]))])
        rows.append(ims)
        labels.append(f"{name} ({len(idx)})")
    h = dataset.images.shape[-2] + 2
    fig, ax = plt.subplots(figsize=(0.6 * per_alphabet + 2.5, 0.6 * len(names)))
    ax.imshow(mosaic(np.concatenate(rows), per_alphabet), cmap="gray", vmin=0, vmax=1)
    ax.set_yticks([h * i + h / 2 - 1 for i in range(len(names))], labels)
    ax.set_xticks([])
    ax.set_title("one drawing of random characters per alphabet (characters in the alphabet)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_episode(batch, task: int = 0, ways: int | None = None, title: str = ""):
    """An episode as images: the support set (a column per label, a row per shot) on the
    left, the query set on the right, each image titled with its label."""
    import matplotlib.pyplot as plt
    ways = int(batch.y_support[task].max()) + 1 if ways is None else ways
    shots = batch.y_support.shape[1] // ways
    queries = batch.y_query.shape[1] // ways
    side = batch.x_support.shape[-1] + 2
    # (ways*shots) ordered label by label -> grid with a column per label
    sup = _as_float(batch.x_support[task]).reshape(ways, shots, side - 2, side - 2)
    sup = sup.transpose(1, 0, 2, 3).reshape(-1, side - 2, side - 2)
    qry = _as_float(batch.x_query[task]).reshape(ways, queries, side - 2, side - 2)
    qry = qry.transpose(1, 0, 2, 3).reshape(-1, side - 2, side - 2)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(0.55 * ways * 2 + 1, 0.6 * max(shots, queries) + 1),
                                 gridspec_kw={"wspace": 0.08})
    for ax, ims, rows, name in ((a1, sup, shots, "support"), (a2, qry, queries, "query")):
        ax.imshow(mosaic(ims, ways), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([side * c + side / 2 - 1 for c in range(ways)], range(ways))
        ax.set_yticks([])
        ax.set_title(f"{name}: {rows} per label" + (f" ({title})" if title else ""), fontsize=9)
        ax.set_anchor("N")
        ax.set_xlabel("label")
    return fig


def draw_predictions(ax, images, truth, guesses: dict, support=None, cols: int = 10):
    """Query images in a grid, each with its true label at the top left and every model's
    predicted label below (green right, red wrong). guesses: model name -> (N,) labels or
    None. support (ways, H, W): one image per label, drawn first, in rows of its own."""
    ax.clear()
    images = _as_float(images)
    side = images.shape[-1] + 2
    first = 0
    if support is not None:
        support = _as_float(support)
        first = -(-len(support) // cols) * cols
        blank = np.full((first - len(support), *images.shape[1:]), 0.35, np.float32)
        images = np.concatenate([support, blank, images])
    rows = -(-len(images) // cols)
    ax.imshow(mosaic(images, cols, pad=2), cmap="gray", vmin=0, vmax=1,
              extent=(-0.5, cols * side - 2.5, rows * side - 2.5, -0.5))
    for i in range(first if support is not None else 0):
        if i < len(support):
            r, c = divmod(i, cols)
            ax.text(c * side + 1, r * side + 1, f"label {i}", color="black", fontsize=7,
                    va="top", ha="left", bbox={"boxstyle": "square,pad=0.1", "fc": "#fee08b",
                                               "lw": 0})
    if support is not None:
        ax.axhline(first // cols * side - 1.5, color="#fee08b", lw=2)
    for i, y in enumerate(truth.tolist()):
        r, c = divmod(first + i, cols)
        x0, y0 = c * side, r * side
        ax.text(x0 + 1, y0 + 1, f"{y}", color="white", fontsize=7, va="top", ha="left")
        for j, (name, g) in enumerate(guesses.items()):
            if g is None:
                continue
            ok = int(g[i]) == y
            ax.text(x0 + (side - 3) * j, y0 + side - 3, f"{name[0]}{int(g[i])}", fontsize=7,
                    ha="left" if j == 0 else "right", va="bottom", color="white",
                    bbox={"boxstyle": "square,pad=0.1", "fc": GOOD if ok else BAD, "lw": 0})
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlim(-0.5, cols * side - 2.5)


class ImageExplorer:
    """Sliders: ways, K (shots), inner steps, inner lr. Samples a seeded episode from
    the held-out alphabets, classifies its query images with MAML (fine-tuned) and
    ProtoNets, and draws them with the true and predicted labels.

    maml: {ways: MAML learner} (default: the shipped 5-way and 20-way checkpoints);
    protonet: a ProtoNet (default: the shipped one); dataset: default glyph evaluation split.
    Fine-tuning runs once per (ways, K, lr) for the largest step count and is cached, so
    moving "inner steps" only redraws.
    """

    MAX_STEPS, MAX_SHOTS, SHOWN = 5, 5, 20

    def __init__(self, maml=None, protonet=None, dataset=None, seed: int = 0, ways: int = 5,
                 shots: int = 1, steps: int = 3, lr: float | None = None):
        import ipywidgets as widgets
        import matplotlib
        from matplotlib.figure import Figure
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from .checkpoints import load_shipped
        from .data import load_glyphs

        if maml is None:
            maml = {w: load_shipped(f"glyphs_maml_{w}way")[0] for w in (5, 20)}
        self.maml = {m.model.ways: m for m in (maml.values() if isinstance(maml, dict) else [maml])}
        self.protonet = protonet if protonet is not None else load_shipped("glyphs_protonet")[0]
        self.family = EpisodeFamily(dataset if dataset is not None else load_glyphs("evaluation"),
                                    ways=2, split="evaluation")
        self.seed = check_int("seed", seed, low=0)
        self._cache = {}
        lr = lr if lr is not None else next(iter(self.maml.values())).inner_lr
        max_ways = min(20, len(self.family.dataset))
        style = {"description_width": "80px"}
        s = widgets
        self.sliders = {
            "ways": s.IntSlider(value=ways, min=2, max=max_ways, description="ways", style=style,
                                continuous_update=False),
            "K (shots)": s.IntSlider(value=shots, min=1, max=self.MAX_SHOTS,
                                     description="K (shots)", style=style,
                                     continuous_update=False),
            "inner steps": s.IntSlider(value=steps, min=0, max=self.MAX_STEPS,
                                       description="inner steps", style=style,
                                       continuous_update=False),
            "inner lr": s.FloatLogSlider(value=lr, base=10, min=-3, max=2, step=0.05,
                                         description="inner lr", readout_format=".3f",
                                         style=style, continuous_update=False),
        }
        with matplotlib.rc_context({"figure.dpi": 80}):
            self.fig = Figure(figsize=(9, 4.2))
        FigureCanvasAgg(self.fig)
        self.ax = self.fig.add_axes((0.01, 0.01, 0.98, 0.9))
        self.image = widgets.Image(format="png").add_class("mlkit-plot")
        self.status = widgets.HTML().add_class("mlkit-status")
        for w in self.sliders.values():
            w.observe(self.update, names="value")
        self.widget = widgets.VBox([widgets.HBox(list(self.sliders.values())[:2]),
                                    widgets.HBox(list(self.sliders.values())[2:]),
                                    self.status, self.image]).add_class("mlkit-image-explorer")
        self.update()

    def _episode(self, ways, shots):
        queries = max(1, self.SHOWN // ways)
        g = torch.Generator().manual_seed(self.seed * 1000 + ways * 10 + shots)
        return self.family.sample(1, shots, queries, generator=g, ways=ways)

    def _predict(self, ways, shots, lr, steps):
        """(batch, {"MAML": (Q,) labels or None, "ProtoNet": (Q,)}, MAML trouble or "").

        Fine-tuning is cached per (ways, K, lr) and resumed, never redone, for more steps."""
        key = (ways, shots, round(lr, 12))
        if key not in self._cache:
            if len(self._cache) > 32:
                self._cache.clear()
            batch = self._episode(ways, shots)
            proto = next(prediction_steps(self.protonet, batch))[0][0]
            maml = self.maml.get(ways)
            run = None if maml is None else prediction_steps(maml, batch, lr)
            self._cache[key] = (batch, proto, run, [])
        batch, proto, run, done = self._cache[key]
        if run is None:
            return batch, {"MAML": None, "ProtoNet": proto}, ""
        while len(done) <= steps:
            pred, loss, diverged = next(run)
            done.append((pred[0], float(loss[0]), bool(diverged[0])))
        pred, loss, diverged = done[steps]
        trouble = ""
        if diverged or not math.isfinite(loss):
            trouble = "diverged"
        elif loss > 1.5 * done[0][1] + 0.1:
            trouble = "overshoots"
        return batch, {"MAML": pred, "ProtoNet": proto}, trouble

    def values(self) -> dict:
        return {k: w.value for k, w in self.sliders.items()}

    def update(self, change=None):
        v = self.values()
        ways, shots, steps, lr = v["ways"], v["K (shots)"], v["inner steps"], v["inner lr"]
        with torch_threads(1):  # small batches: one thread is fastest, and steady on a busy laptop
            batch, guesses, trouble = self._predict(ways, shots, lr, steps)
        truth = batch.y_query[0]
        acc = {k: None if g is None else 100 * (g == truth).float().mean().item()
               for k, g in guesses.items()}
        heads = " and ".join(f"{w}-way" for w in sorted(self.maml))
        if guesses["MAML"] is None:
            maml_text = f"MAML n/a for {ways}-way (its heads are {heads})"
        elif trouble:
            maml_text = (f"MAML {acc['MAML']:.0f}% ({trouble}: the support loss grew, "
                         f"lr {lr:.3g} is too large)")
        else:
            maml_text = f"MAML {acc['MAML']:.0f}%"
        text = (f"ways={ways} K={shots} steps={steps} lr={lr:.3f} | {maml_text} "
                f"ProtoNet {acc['ProtoNet']:.0f}%")
        self.status.value = f"<span style='font-family:monospace'>{text}</span>"
        support = batch.x_support[0].view(ways, shots, *batch.x_support.shape[-2:])[:, 0]
        draw_predictions(self.ax, batch.x_query[0, :self.SHOWN], truth[:self.SHOWN],
                         {k: None if g is None else g[:self.SHOWN] for k, g in guesses.items()},
                         support=support)
        title = (f"{ways}-way {shots}-shot episode, held-out alphabets: one support image per "
                 f"label above the line, {len(truth)} query images below\nquery: true label "
                 f"top left; M = MAML after {steps} step(s) of lr {lr:.3g}, P = ProtoNet; green right, red wrong")
        self.ax.set_title(title, fontsize=9)
        if trouble:
            self.ax.text(0.5, 0.5, f"MAML fine-tuning {trouble} at inner lr {lr:.3g}:\n"
                         "the support loss grew; try a smaller lr", transform=self.ax.transAxes,
                         ha="center", va="center", fontsize=13, color=BAD,
                         bbox={"fc": "white", "alpha": 0.85})
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png")
        self.image.value = buf.getvalue()
        self.text = text

    def _repr_mimebundle_(self, **kwargs):  # a cell ending in ``explorer`` shows the panel
        return widget_bundle(self.widget, **kwargs)
