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

# the same colour for the same method in every notebook
COLORS = {"MAML": "C0", "pretrained": "C1", "random init": "C7", "FOMAML": "C2", "Reptile": "C3",
          "ANIL": "C4", "Meta-SGD": "C5", "first order": "C2", "second order": "C0",
          "plain training": "C1"}


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
    ax.legend(loc="upper right")
    return fig


# ---- evaluation -------------------------------------------------------------
def _curve_with_ci(result, metric):
    """(metric name, mean (S+1,), ci95 (S+1,)) from a meta_test result, an
    adaptation_curves result or a (tasks, S+1) tensor."""
    if torch.is_tensor(result) or isinstance(result, np.ndarray):
        per_task = torch.as_tensor(result, dtype=torch.float64)
        metric = metric or "loss"
    elif "protocol" in result:  # meta_test: {"mse": {"0": {"mean", "ci95"}, ...}}
        metric = metric or ("accuracy" if "accuracy" in result else "mse")
        table = result[metric]
        steps = sorted(table, key=int)
        return (metric, np.array([table[s]["mean"] for s in steps]),
                np.array([table[s]["ci95"] for s in steps]))
    else:  # adaptation_curves: {"loss": (T, S+1), ["accuracy": (T, S+1)]}
        metric = metric or ("accuracy" if "accuracy" in result else "loss")
        per_task = result[metric].double()
    n = per_task.shape[0]
    mean = per_task.mean(0)
    ci = 1.96 * per_task.std(0) / math.sqrt(n) if n > 1 else torch.full_like(mean, float("nan"))
    return metric, mean.cpu().numpy(), ci.cpu().numpy()


def plot_adaptation_curves(results_by_name, ax=None, metric=None, title=None, log=False):
    """Error (or accuracy) after 0, 1, ..., S fine-tuning steps, mean with a 95% CI band.

    results_by_name: label -> one of
      * a ``mlkit.meta_test`` result (mean and ci95 per step are read from it),
      * an ``mlkit.adaptation_curves`` result ({"loss": (tasks, S+1), ...}),
      * a (tasks, S+1) tensor of per-task values;
    the CI is 1.96 * std / sqrt(tasks) for the last two.
    metric: "mse", "loss" or "accuracy"; default: accuracy when present, else the error.
    Draws one line (and one band) per entry, labelled, in the kit's colours.
    """
    if not results_by_name:
        raise ValueError("results_by_name must hold at least one result, got an empty dict")
    fig, ax = _axes(ax)
    metrics = []
    for name, result in results_by_name.items():
        metric_used, mean, ci = _curve_with_ci(result, metric)
        metrics.append(metric_used)
        steps = np.arange(len(mean))
        line = ax.plot(steps, mean, marker="o", ms=3, label=name, color=COLORS.get(name))[0]
        if np.all(np.isfinite(ci)):
            ax.fill_between(steps, mean - ci, mean + ci, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("fine-tuning steps on the support set")
    ax.set_ylabel({"mse": "query MSE", "loss": "query loss",
                   "accuracy": "query accuracy"}.get(metrics[0], metrics[0]))
    if log:
        ax.set_yscale("log")
    ax.set_title(title or "Adaptation to new tasks (mean, 95% CI band)")
    ax.legend()
    return fig


# ---- tasks --------------------------------------------------------------------
def plot_tasks(batch, max_tasks=20, x_range=(-5.0, 5.0), ax=None, mean_curve=None,
               title="Tasks of the sinusoid family"):
    """The true curve of up to ``max_tasks`` sinusoid tasks of ``batch`` (a TaskBatch
    whose ``info`` holds amplitude and phase (T,)). ``mean_curve``: optional callable
    x (N,) -> y (N,) drawn thick in black (e.g. the average task). One line per task."""
    from .tasks import SinusoidFamily

    fig, ax = _axes(ax)
    n = min(int(max_tasks), batch.tasks)
    x = torch.linspace(*x_range, 200)
    y = SinusoidFamily.curve(batch.info["amplitude"][:n], batch.info["phase"][:n],
                             x.expand(n, -1).unsqueeze(-1))
    for i in range(n):
        ax.plot(x, _numpy(y[i]), lw=1, alpha=0.6)
    if mean_curve is not None:
        ax.plot(x, _numpy(mean_curve(x)), color="k", lw=3, label="average task")
        ax.legend(loc="upper right")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    return fig


def plot_support_query(batch, task=0, x_range=(-5.0, 5.0), ax=None, title=None):
    """One sinusoid task: its true curve (line), support points (filled) and query points
    (open circles). batch: TaskBatch with x_support (T, K, 1) and info amplitude, phase (T,)."""
    from .tasks import SinusoidFamily

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
    ax.legend(loc="best", fontsize="small")
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
    ax.legend(loc="best", fontsize="small")
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
    log: contour levels spaced in log scale (losses spanning decades).
    One line per path; one star per point.
    """
    fig, ax = _axes(ax, figsize=(5.5, 4.5))
    gx = torch.linspace(*xlim, resolution, dtype=torch.float64)
    gy = torch.linspace(*ylim, resolution, dtype=torch.float64)
    grid_x, grid_y = torch.meshgrid(gx, gy, indexing="xy")
    with torch.no_grad():
        z = loss_fn(torch.stack([grid_x.flatten(), grid_y.flatten()], 1)).reshape(grid_x.shape)
    z = z.double().cpu().numpy()
    if log:
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
