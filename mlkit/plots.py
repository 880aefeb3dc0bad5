"""Figures for the notebooks: every function draws with matplotlib and returns a Figure.

Each function takes an optional ``ax``: pass one to draw into your own layout,
or leave it out and get a new figure. Figures are made with
``matplotlib.figure.Figure`` (not pyplot), so nothing pops up twice and no
figure is left open: end a notebook cell with the returned figure to show it.

The plots hold no learning logic; they draw numbers the library computed.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from .tasks import SinusoidFamily

# the same colour, line and marker for the same method in every notebook
COLORS = {"MAML": "C0", "pretrained": "C1", "random init": "C7", "FOMAML": "C2", "Reptile": "C3",
          "ANIL": "C4", "Meta-SGD": "C5", "first order": "C2", "second order": "C0",
          "plain training": "C1"}
LINES = {"MAML": ("-", "o"), "FOMAML": ("--", "s"), "Reptile": (":", "^"), "ANIL": ("-.", "D"),
         "Meta-SGD": ("-", "v"), "pretrained": ("--", "x"), "random init": (":", "+")}


SPARE = ("C6", "C8", "C9", "C5", "C4")  # for names without a colour of their own


def style(name, i=0) -> dict:
    """Keyword arguments that draw ``name``'s line (the i-th of a figure) in its colour,
    line style and marker."""
    ls, marker = LINES.get(name, ("-", "o"))
    return {"color": COLORS.get(name, SPARE[i % len(SPARE)]), "ls": ls, "marker": marker}


def legend_outside(ax, **kwargs):
    """The legend to the right of the axes, where it hides no data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              fontsize="small", **kwargs)


def _axes(ax, figsize=(6.0, 3.5)):
    """The given axes and its figure, or a new figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _numpy(t):
    """Tensor / list / array -> flat float numpy array."""
    if torch.is_tensor(t):
        t = t.detach().cpu().double()
    return np.asarray(t, dtype=float).reshape(-1)


# ---- training ---------------------------------------------------------------
def plot_loss_curve(losses, smooth=50, ax=None, label=None, title="Meta-training loss",
                    log=True, color=None):
    """Training loss per iteration: the raw values (faint) and their moving average.

    losses: sequence or 1-D tensor, one loss per iteration (e.g. ``history.losses``).
    smooth: window of the moving average in iterations (1 or less: no average drawn).
    Draws 2 lines (raw, smoothed), or 1 when there are fewer than ``smooth`` values.
    Call it again with the same ``ax`` to add a second run.
    """
    values = _numpy(losses)
    fig, ax = _axes(ax)
    steps = np.arange(1, len(values) + 1)
    raw = ax.plot(steps, values, alpha=0.25, lw=0.8, color=color)[0]
    if smooth > 1 and len(values) >= smooth:
        kernel = np.ones(int(smooth)) / int(smooth)
        average = np.convolve(values, kernel, mode="valid")
        ax.plot(steps[int(smooth) - 1:], average, color=raw.get_color(), lw=1.8,
                label=f"{label or 'loss'} (mean of {int(smooth)})")
    else:
        raw.set_label(label or "loss")
        raw.set_alpha(1.0)
    if log and len(values) and np.all(values[np.isfinite(values)] > 0):
        ax.set_yscale("log")
        # plain numbers (0.5, 1, 2) rather than 5 x 10^-1; minor ticks labelled at 2 and 5 only
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if v > 0 and f"{v:.0e}"[0] in "25" else ""))
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    legend_outside(ax)
    return fig


# ---- evaluation -------------------------------------------------------------
def _curve_with_ci(result, metric):
    """(metric name, mean (S+1,), ci95 (S+1,)) from a meta_test result, a fine_tune
    result or a (tasks, S+1) tensor."""
    if torch.is_tensor(result) or isinstance(result, np.ndarray):
        per_task = torch.as_tensor(result, dtype=torch.float64)
        metric = metric or "loss"
    elif "protocol" in result:  # meta_test: {"mse": {"0": {"mean", "ci95"}, ...}}
        metric = metric or ("accuracy" if "accuracy" in result else "mse")
        table = result[metric]
        steps = sorted(table, key=int)
        return (metric, np.array([table[s]["mean"] for s in steps]),
                np.array([table[s]["ci95"] for s in steps]))
    else:  # fine_tune: {"loss": (T, S+1), ...}
        metric = metric or ("accuracy" if "accuracy" in result else "loss")
        per_task = result[metric].double()
    n = per_task.shape[0]
    mean = per_task.mean(0)
    ci = 1.96 * per_task.std(0) / math.sqrt(n) if n > 1 else torch.full_like(mean, float("nan"))
    return metric, mean.cpu().numpy(), ci.cpu().numpy()


def plot_adaptation_curves(results_by_name, ax=None, metric=None, title=None, log=False,
                           ylabel=None):
    """Error (or accuracy) after 0, 1, ..., S fine-tuning steps, mean with a 95% CI band.

    results_by_name: label -> one of
      * a ``mlkit.meta_test`` result (mean and ci95 per step are read from it),
      * an ``mlkit.fine_tune`` result ({"loss": (tasks, S+1), ...}),
      * a (tasks, S+1) tensor of per-task values;
    the CI is 1.96 * std / sqrt(tasks) for the last two.
    metric: "mse", "loss" or "accuracy"; default: accuracy when present, else the error.
    ylabel: the y axis label (default: from the metric).
    Draws one line (and one band) per entry, labelled, in the kit's colours and line styles.
    """
    if not results_by_name:
        raise ValueError("results_by_name must hold at least one result, got an empty dict")
    fig, ax = _axes(ax)
    metrics = []
    for i, (name, result) in enumerate(results_by_name.items()):
        metric_used, mean, ci = _curve_with_ci(result, metric)
        metrics.append(metric_used)
        steps = np.arange(len(mean))
        line = ax.plot(steps, mean, ms=3.5, mfc="none", label=name, **style(name, i))[0]
        if np.all(np.isfinite(ci)):
            ax.fill_between(steps, mean - ci, mean + ci, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("fine-tuning steps on the support set")
    ax.set_ylabel(ylabel or {"mse": "query MSE", "loss": "query loss",
                             "accuracy": "query accuracy"}.get(metrics[0], metrics[0]))
    if log:
        ax.set_yscale("log")
    ax.set_title(title or "Adaptation to new tasks (mean, 95% CI band)")
    legend_outside(ax)
    return fig


# ---- tasks --------------------------------------------------------------------
def plot_tasks(batch, max_tasks=20, x_range=(-5.0, 5.0), ax=None, mean_curve=None,
               title="Tasks of the sinusoid family"):
    """The true curve of up to ``max_tasks`` sinusoid tasks of ``batch`` (a TaskBatch
    whose ``info`` holds amplitude and phase (T,)). ``mean_curve``: optional callable
    x (N,) -> y (N,) drawn thick in black (e.g. the average task). One line per task."""
    fig, ax = _axes(ax)
    n = min(int(max_tasks), batch.tasks)
    x = torch.linspace(*x_range, 200)
    y = SinusoidFamily.curve(batch.info["amplitude"][:n], batch.info["phase"][:n],
                             x.expand(n, -1).unsqueeze(-1))
    for i in range(n):
        ax.plot(x, _numpy(y[i]), lw=1, alpha=0.6)
    if mean_curve is not None:
        ax.plot(x, _numpy(mean_curve(x)), color="k", lw=3, label="average task")
        legend_outside(ax)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    return fig


def plot_support_query(batch, task=0, x_range=(-5.0, 5.0), ax=None, title=None):
    """One sinusoid task: its true curve (line), support points (filled) and query points
    (open circles). batch: TaskBatch with x_support (T, K, 1) and info amplitude, phase (T,)."""
    fig, ax = _axes(ax)
    x = torch.linspace(*x_range, 200).view(1, -1, 1)
    a, p = batch.info["amplitude"][task:task + 1], batch.info["phase"][task:task + 1]
    ax.plot(_numpy(x), _numpy(SinusoidFamily.curve(a, p, x)), color="k", lw=1, label="true curve")
    k, q = batch.x_support.shape[1], batch.x_query.shape[1]
    ax.scatter(_numpy(batch.x_support[task]), _numpy(batch.y_support[task]), color="C0", s=40,
               zorder=3, label=f"support set (K = {k})")
    ax.scatter(_numpy(batch.x_query[task]), _numpy(batch.y_query[task]), facecolor="none",
               edgecolor="C3", s=40, zorder=3, label=f"query set ({q} points)")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title or f"Task {task}: A = {float(a):.2f}, phase = {float(p):.2f}")
    legend_outside(ax)
    return fig


def plot_fit(x, truth, predictions=None, support=None, ax=None, title=None):
    """A true curve, model predictions and the points the model saw.

    x: (N,) or (N, 1); truth: (N,) or (N, 1); predictions: label -> (N,) or (N, 1);
    support: optional (x_s, y_s) drawn as dots. One line for the truth, one per prediction.
    """
    fig, ax = _axes(ax)
    xs = _numpy(x)
    ax.plot(xs, _numpy(truth), color="k", lw=2, label="true curve")
    for label, y in (predictions or {}).items():
        ax.plot(xs, _numpy(y), lw=1.5, ls="--", label=label, color=COLORS.get(label))
    if support is not None:
        ax.scatter(_numpy(support[0]), _numpy(support[1]), color="k", s=25, zorder=3,
                   label=f"training points ({len(_numpy(support[0]))})")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    if title:
        ax.set_title(title)
    legend_outside(ax)
    return fig


def plot_episode_schematic(ways=5, shots=1, queries=2, ax=None):
    """A picture of one N-way K-shot episode: a grid of coloured squares, one row per
    class (way), ``shots`` support examples left of the bar and ``queries`` query
    examples right of it. No image data needed; returns a Figure."""
    from matplotlib.patches import Rectangle

    fig, ax = _axes(ax, figsize=(1.2 + 0.5 * (shots + queries + 1), 0.6 + 0.5 * ways))
    for row in range(ways):
        y = ways - 1 - row
        for col in range(shots + queries):
            x = col + (1 if col >= shots else 0)  # one empty column between support and query
            ax.add_patch(Rectangle((x + 0.05, y + 0.05), 0.9, 0.9, color=f"C{row % 10}",
                                   alpha=0.85 if col < shots else 0.35))
        ax.text(-0.2, y + 0.5, f"class {row + 1}", ha="right", va="center", fontsize="small")
    ax.axvline(shots + 0.5, color="k", lw=1)
    ax.text(shots / 2, ways + 0.15, f"support\n{shots} per class", ha="center", va="bottom",
            fontsize="small")
    ax.text(shots + 1 + queries / 2, ways + 0.15, f"query\n{queries} per class", ha="center",
            va="bottom", fontsize="small")
    ax.set_xlim(-2.2, shots + queries + 1.2)
    ax.set_ylim(-0.2, ways + 1.2)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"{ways}-way {shots}-shot episode")
    return fig


# ---- two-parameter problems -------------------------------------------------
def plot_loss_contour_paths(loss_fn, xlim, ylim, paths=None, points=None, ax=None,
                            resolution=80, levels=20, labels=("w", "b"), title=None,
                            log=True):
    """Contour plot of a loss over two parameters, with optimisation paths on top.

    loss_fn: callable (G, 2) tensor of parameter points -> (G,) tensor of losses.
    xlim, ylim: (low, high) of the two parameters.
    paths: label -> (S+1, 2) points, e.g. an adaptation path from the meta-init
        (drawn as a line with dots; a list of such arrays under one label draws
        several paths in one colour, labelled once).
    points: label -> (2,) point drawn as a star (e.g. a meta-initialisation); a point
        with the same label as a path takes the path's colour and legend entry.
    levels: a number of contour levels, or the levels themselves (the same levels give
        two panels the same colour scale).
    log: a number of levels is spaced in log scale (losses spanning decades).
    One line per path; one star per point.
    """
    fig, ax = _axes(ax, figsize=(5.5, 4.5))
    gx = torch.linspace(*xlim, resolution, dtype=torch.float64)
    gy = torch.linspace(*ylim, resolution, dtype=torch.float64)
    grid_x, grid_y = torch.meshgrid(gx, gy, indexing="xy")
    with torch.no_grad():
        z = loss_fn(torch.stack([grid_x.flatten(), grid_y.flatten()], 1)).reshape(grid_x.shape)
    z = z.double().cpu().numpy()
    if log and np.isscalar(levels):
        low, high = max(z.min(), 1e-6), z.max()
        levels = np.geomspace(low, high, levels) if high > low else levels
    cs = ax.contourf(grid_x.numpy(), grid_y.numpy(), z, levels=levels, cmap="Greys_r", alpha=0.55)
    fig.colorbar(cs, ax=ax, label="loss", format="%.2g")
    for i, (label, path) in enumerate((paths or {}).items()):
        color = COLORS.get(label, f"C{i}")
        group = path if isinstance(path, (list, tuple)) else [path]
        for j, p in enumerate(group):
            p = _numpy(p).reshape(-1, 2)
            ax.plot(p[:, 0], p[:, 1], "-o", ms=2.5, lw=1.2, color=color,
                    label=label if j == 0 else None)
    used = {label: f"C{i}" for i, label in enumerate(paths or {})}
    for i, (label, point) in enumerate((points or {}).items()):
        p = _numpy(point)
        color = COLORS.get(label, used.get(label, f"C{len(used) + i}"))
        ax.plot(p[0], p[1], "*", ms=16, mec="k", color=color,
                label=None if label in used else label)  # a path's label is in the legend already
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    if title:
        ax.set_title(title)
    if paths or points:
        ax.legend(loc="upper right", fontsize="small")
    return fig


# ---- few-shot images ------------------------------------------------------------
GOOD, BAD = "#1a9850", "#d73027"  # right and wrong predictions


def mosaic(images, cols: int, pad: int = 2) -> np.ndarray:
    """Paste images (N, H, W) into a grid with ``cols`` columns, ``pad`` pixels apart
    -> (rows*(H+pad) - pad, cols*(W+pad) - pad)."""
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
    fig = Figure(figsize=(0.6 * per_alphabet + 2.5, 0.6 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(mosaic(np.concatenate(rows), per_alphabet), cmap="gray", vmin=0, vmax=1)
    ax.set_yticks([h * i + h / 2 - 1 for i in range(len(names))], labels)
    ax.set_xticks([])
    ax.set_title("one drawing of random characters per alphabet (characters in the alphabet)",
                 fontsize=9)
    return fig


def plot_episode(batch, task: int = 0, ways: int | None = None, title: str = ""):
    """An episode as images: the support set (a column per label, a row per shot) on the
    left, the query set on the right, each image titled with its label."""
    ways = int(batch.y_support[task].max()) + 1 if ways is None else ways
    shots = batch.y_support.shape[1] // ways
    queries = batch.y_query.shape[1] // ways
    side = batch.x_support.shape[-1] + 2
    # (ways*shots) ordered label by label -> grid with a column per label
    sup = _as_float(batch.x_support[task]).reshape(ways, shots, side - 2, side - 2)
    sup = sup.transpose(1, 0, 2, 3).reshape(-1, side - 2, side - 2)
    qry = _as_float(batch.x_query[task]).reshape(ways, queries, side - 2, side - 2)
    qry = qry.transpose(1, 0, 2, 3).reshape(-1, side - 2, side - 2)
    fig = Figure(figsize=(0.55 * ways * 2 + 1, 0.6 * max(shots, queries) + 1))
    a1, a2 = fig.subplots(1, 2, gridspec_kw={"wspace": 0.08})
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
