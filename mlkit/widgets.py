"""Interactive panels for the notebooks (ipywidgets): sliders that call the library.

Every panel is a small class with the same parts:

    .widget    the root box to display (its CSS class names it for browser tests)
    .controls  description -> slider / dropdown / toggle, e.g. ``panel.controls["inner lr"]``
    .image     the plot: a PNG rendered from one matplotlib Figure made once
    .status    one line with the current settings and the numbers shown
    .result    those numbers, for tests and for code
    .update()  recompute and redraw (a control calls it when released)

A panel holds no learning logic: it calls ``fine_tune``, ``meta_train``, ``meta_test``
and ``mlkit.toy``, and shows what they return, the ``diverged`` flags included. A
notebook cell ending in a panel shows the live widgets where a kernel runs, and a PNG of
the panel's first state where none does (GitHub, nbviewer, a notebook not yet run).
"""
from __future__ import annotations

import base64
import html
import io
import math
import time

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from .algorithms import make_learner
from .checkpoints import load_shipped
from .checks import check_choice, check_int
from .evaluate import meta_test
from .learner import fine_tune
from .models import MLP
from .plots import COLORS, style
from .runtime import torch_threads
from .tasks import SinusoidFamily, TaskBatch
from .train import meta_train
from . import toy

STYLE = {"description_width": "90px"}


# ---- small helpers --------------------------------------------------------------
def render_png(fig: Figure, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (a small dpi keeps a redraw fast)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def int_slider(description, value, low, high, step=1):
    return widgets.IntSlider(value=value, min=low, max=high, step=step, description=description,
                             continuous_update=False, style=STYLE)


def float_slider(description, value, low, high, step):
    return widgets.FloatSlider(value=value, min=low, max=high, step=step, description=description,
                               continuous_update=False, style=STYLE)


def log_slider(description, value, low_exp, high_exp):
    """A slider over 10**low_exp .. 10**high_exp (its step moves the exponent)."""
    return widgets.FloatLogSlider(value=value, base=10, min=low_exp, max=high_exp, step=0.1,
                                  description=description, continuous_update=False,
                                  readout_format=".4f", style=STYLE)


def dropdown(description, options, value):
    return widgets.Dropdown(options=options, value=value, description=description, style=STYLE)


def shipped(names: dict) -> dict:
    """label -> learner loaded from ``data/checkpoints`` (e.g. {"MAML": "sinusoid_maml"})."""
    return {label: load_shipped(name)[0] for label, name in names.items()}


def random_init(seed: int = 0):
    """A fresh 1-40-40-1 MLP that is only fine-tuned (no pre- or meta-training)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return make_learner("pretrain", MLP())


class Panel:
    """What every panel shares: controls, an image, a status line, a root box."""

    css_class = "mlkit-panel"

    def __init__(self, controls: list, figsize=(6.0, 3.0), extra: tuple = ()):
        self.controls = {c.description: c for c in controls}
        self.fig = Figure(figsize=figsize)  # made once; update() changes its artists
        self.image = widgets.Image(format="png")
        self.image.add_class("mlkit-plot")
        self.status = widgets.HTML()
        self.status.add_class("mlkit-status")
        self.result, self.first_png = {}, None
        grid = widgets.GridBox(controls, layout=widgets.Layout(
            grid_template_columns="repeat(2, 330px)"))
        self.widget = widgets.VBox([grid, *extra, self.image, self.status])
        self.widget.add_class(self.css_class)
        for c in controls:
            c.observe(lambda change: self.update(), names="value")

    def value(self, description):
        return self.controls[description].value

    def render(self):
        """Draw the figure into the image."""
        self.image.value = render_png(self.fig)
        self.first_png = self.first_png or self.image.value

    def say(self, status: str):
        """Set the status line."""
        self.status.value = html.escape(status)

    def show(self, status: str):
        """Render the figure into the image and set the status line."""
        self.render()
        self.say(status)

    def _repr_mimebundle_(self, **kwargs):  # a cell ending in ``panel`` shows the panel
        data = self.widget._repr_mimebundle_(**kwargs) or {}
        if self.first_png:  # what a notebook viewer without a kernel shows instead
            data["image/png"] = base64.b64encode(self.first_png).decode("ascii")
        data["text/plain"] = "Interactive panel: run the notebook's cells to use the sliders."
        return data

    def update(self):
        raise NotImplementedError


# ---- notebook 03: the two-weight landscape ------------------------------------------
class LandscapePanel(Panel):
    """The two-weight problem of ``mlkit.toy``: the MAML objective over the plane of
    starting points (a, p) for an inner lr alpha, the average loss (alpha = 0) as dashed
    contours, and the flow of the meta-gradient, second or first order. Stars: where plain
    training ends (the average loss's minimum) and where meta-training with the chosen
    gradient ends from there (``toy.train_start`` on the panel's tasks); the status gives
    the share of tasks whose step overshoots from that star."""

    css_class = "mlkit-landscape"
    XLIM, YLIM, GRID = (-1.0, 5.0), (-0.5, 3.5), 28
    DESCENT = {"iterations": 60, "outer_lr": 0.08}  # meta-training from the plain star

    def __init__(self, tasks: int = 50, seed: int = 1):
        batch = SinusoidFamily().sample(check_int("tasks", tasks, low=1), 10, 20,
                                        generator=torch.Generator().manual_seed(seed))
        self.batch = batch
        gx = torch.linspace(*self.XLIM, self.GRID)
        gy = torch.linspace(*self.YLIM, self.GRID)
        self.grid_x, self.grid_y = torch.meshgrid(gx, gy, indexing="xy")
        self.points = torch.stack([self.grid_x.flatten(), self.grid_y.flatten()], 1)
        average, _ = toy.objective(self.points, batch, 0.0, steps=0, gradient=False)
        self.average = average.view(self.grid_x.shape)
        self.plain_star = self.points[average.argmin()]
        order = widgets.ToggleButtons(options=["second order", "first order"],
                                      description="gradient", style=STYLE)
        super().__init__([float_slider("alpha", 0.2, 0.0, 0.3, 0.01), order],
                         figsize=(6.4, 4.6))
        self.ax = self.fig.add_axes((0.1, 0.25, 0.86, 0.65))
        self.update()

    def update(self):
        alpha, order = self.value("alpha"), self.value("gradient")
        steps = 1 if alpha > 0 else 0
        with torch_threads(1):
            values, grads = toy.objective(self.points, self.batch, alpha, steps,
                                          first_order=order == "first order")
            star = toy.train_start(self.plain_star, self.batch, lr=alpha, steps=steps,
                                   first_order=order == "first order", **self.DESCENT)[0]
            overshoot = toy.overshoot_fraction(star, self.batch, alpha)
        z, shape = values.view(self.grid_x.shape), self.grid_x.shape
        ax = self.ax
        ax.clear()
        levels = np.geomspace(max(float(z.min()), 1e-3), float(z.max()), 12)
        ax.contourf(self.grid_x, self.grid_y, z, levels=levels, cmap="Greys_r", alpha=0.6)
        ax.contour(self.grid_x, self.grid_y, self.average, levels=8, colors="C1",
                   linestyles="dashed", linewidths=0.8)
        step = -grads / grads.norm(dim=1, keepdim=True).clamp_min(1e-12)  # directions only
        every = (slice(1, None, 3), slice(1, None, 3))  # a coarser grid of arrows
        color = COLORS[order]
        ax.quiver(self.grid_x[every], self.grid_y[every], step[:, 0].view(shape)[every],
                  step[:, 1].view(shape)[every], color=color, width=0.004, scale=30,
                  alpha=0.8)
        ax.plot(*self.plain_star, "*", ms=15, mec="k", color=COLORS["plain training"],
                label="plain training (minimum of the average loss)")
        shown = star.clamp(torch.tensor([self.XLIM[0], self.YLIM[0]]),
                           torch.tensor([self.XLIM[1], self.YLIM[1]]))  # on the plot's edge
        ax.plot(*shown, "*", ms=17, mec="k", color=color,
                label=f"{order}: meta-trained from the plain-training star")
        ax.scatter(self.batch.info["amplitude"][:20], self.batch.info["phase"][:20], marker="x",
                   s=12, color="red", label="20 tasks' exact answers")
        ax.set(xlim=self.XLIM, ylim=self.YLIM, xlabel="a (amplitude)", ylabel="p (phase)",
               title=f"query loss after one step of alpha = {alpha:.2f} (grey), average loss "
                     f"(dashed)\narrows: the direction of minus the {order} meta-gradient")
        ax.title.set_fontsize(8)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=7,
                  frameon=False)
        self.result = {"alpha": alpha, "order": order, "star": star.tolist(),
                       "plain_star": self.plain_star.tolist(), "overshoot": overshoot}
        self.show(f"alpha={alpha:.2f} {order} | star at a={star[0]:.2f}, p={star[1]:.2f} "
                  f"(plain training: a={self.plain_star[0]:.2f}, p={self.plain_star[1]:.2f}) | "
                  f"one step overshoots on {overshoot:.0%} of {self.batch.tasks} tasks")


# ---- notebook 05: the adaptation explorer -----------------------------------------
class AdaptationExplorer(Panel):
    """One sinusoid task, its K support points, and each model's prediction after
    fine-tuning on them: move a slider, see the adaptation at once.

    learners: label -> learner; default the shipped MAML (paper recipe) and pretrained
    checkpoints and a random initialisation. Every model gets the same SGD fine-tuning
    (``fine_tune``; a learner with learned step sizes keeps its own). Amplitude and phase
    go beyond the training range (A in [0.1, 5], phase in [0, pi]) to probe new tasks;
    the support points can lie spread out or all on one side (Finn et al. 2017, figure 2).
    """

    css_class = "mlkit-explorer"
    SUPPORT = {"spread over [-5, 5]": (-5.0, 5.0), "only x in [0, 5]": (0.0, 5.0)}

    def __init__(self, learners: dict | None = None, max_steps: int = 20, seed: int = 0):
        check_int("max_steps", max_steps, low=1)
        self.learners = learners or {**shipped({"MAML": "sinusoid_maml_paper",
                                                "pretrained": "sinusoid_pretrain"}),
                                     "random init": random_init(seed)}
        self.family = SinusoidFamily()
        u = torch.rand(1, 40, 1, generator=torch.Generator().manual_seed(seed))
        self.pools = {name: lo + (hi - lo) * u for name, (lo, hi) in self.SUPPORT.items()}
        self.x = torch.linspace(-5, 5, 200).view(1, -1, 1)
        super().__init__([int_slider("inner steps", 1, 0, max_steps),
                          log_slider("inner lr", 0.01, -4, 1),
                          int_slider("K (shots)", 10, 1, 40),
                          dropdown("support", list(self.SUPPORT), "spread over [-5, 5]"),
                          float_slider("amplitude", 3.0, 0.1, 8.0, 0.1),
                          float_slider("phase", 1.0, -1.5, 4.6, 0.05)])
        ax = self.ax = self.fig.add_axes((0.1, 0.16, 0.6, 0.72))
        xs = self.x.flatten().numpy()
        a0, a1 = self.family.amplitude
        ax.axhspan(-a1, a1, color="C2", alpha=0.07, lw=0)
        ax.text(-4.9, a1 - 0.1, f"|y| <= {a1:g}: training amplitudes", fontsize=7, va="top",
                color="C2")
        self.true_line, = ax.plot(xs, 0 * xs, "k-", lw=2, label="true curve")
        self.points, = ax.plot([], [], "k^", ms=6, label="K support points")
        self.lines = {}
        for name in self.learners:
            c = COLORS.get(name)
            self.lines[name] = (ax.plot(xs, 0 * xs, ":", color=c, lw=1)[0],
                                ax.plot(xs, 0 * xs, "-", color=c, lw=1.5, label=name)[0])
        ax.set(xlim=(-5, 5), ylim=(-8.5, 8.5), xlabel="x", ylabel="y")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        self.fig.text(0.72, 0.16, "dotted: before\nfine-tuning", fontsize=8)
        self.title = ax.set_title("", fontsize=8)
        self.message = ax.text(0, 0, "", ha="center", va="center", color="red", fontsize=10,
                               bbox={"facecolor": "white", "edgecolor": "red"})
        self.update()

    def task(self) -> TaskBatch:
        """The task on screen: K support points, and the curve on a grid as the query set."""
        k, amp, phase = self.value("K (shots)"), self.value("amplitude"), self.value("phase")
        a, p = torch.tensor([amp]), torch.tensor([phase])
        x_s = self.pools[self.value("support")][:, :k]
        return TaskBatch(x_s, self.family.curve(a, p, x_s), self.x,
                         self.family.curve(a, p, self.x), {"amplitude": a, "phase": p})

    def update(self):
        steps, lr = self.value("inner steps"), self.value("inner lr")
        batch = self.task()
        self.true_line.set_ydata(batch.y_query.flatten().numpy())
        self.points.set_data(batch.x_support.flatten().numpy(), batch.y_support.flatten().numpy())
        self.result, texts, diverged = {}, [], []
        with torch_threads(1):
            for name, learner in self.learners.items():
                r = fine_tune(learner, batch, steps, None if learner.learned_inner_lr else lr)
                before_line, after_line = self.lines[name]
                before_line.set_ydata(r["outputs"][0, 0].flatten().numpy())
                after_line.set_ydata(r["outputs"][0, -1].flatten().numpy())
                mse, bad = r["loss"][0, -1].item(), bool(r["diverged"][0, -1])
                self.result[name] = {"mse": mse, "diverged": bad}
                after_line.set_visible(not bad)
                texts.append(f"{name} diverged" if bad else f"{name} {mse:.3g}")
                diverged += [name] * bad
        a0, a1 = self.family.amplitude
        p0, p1 = self.family.phase
        amp, phase = self.value("amplitude"), self.value("phase")
        outside = [f"amplitude {amp:g} outside [{a0:g}, {a1:g}]"] * (not a0 <= amp <= a1) + \
                  [f"phase {phase:g} outside [0, {p1:.2f}]"] * (not p0 <= phase <= p1)
        k = self.value("K (shots)")
        self.title.set_text(f"after {steps} SGD step{'s' * (steps != 1)} of lr {lr:.4f} on "
                            f"K={k} points" + ("\nnew task: " + ", ".join(outside) if outside
                                                else ""))
        self.title.set_color("C3" if outside else "k")
        self.message.set_text(f"{', '.join(diverged)} diverged:\nlr {lr:.3g} is too large"
                              if diverged else "")
        self.show(f"steps={steps} lr={lr:.4f} K={k} support={self.value('support')} "
                  f"amplitude={amp:.2f} phase={phase:.2f}"
                  + (f" ({'; '.join(outside)})" if outside else "")
                  + f" | MSE on the true curve after {steps} step{'s' * (steps != 1)}: "
                  + ", ".join(texts))


# ---- notebook 07: the MAML family side by side ------------------------------------
class FamilyPanel(Panel):
    """Each algorithm's adaptation curve (mean query MSE after 0..steps SGD steps) on the
    same fresh tasks. Meta-SGD keeps its learned per-weight step sizes."""

    css_class = "mlkit-family-panel"
    NAMES = {"MAML": "sinusoid_maml", "FOMAML": "sinusoid_fomaml", "Reptile": "sinusoid_reptile",
             "ANIL": "sinusoid_anil", "Meta-SGD": "sinusoid_metasgd",
             "pretrained": "sinusoid_pretrain"}

    def __init__(self, learners: dict | None = None, shots: int = 10, tasks: int = 50,
                 max_steps: int = 20, seed: int = 54321):
        self.learners = learners or shipped(self.NAMES)
        self.shots = check_int("shots", shots, low=1)
        self.batch = SinusoidFamily().sample(check_int("tasks", tasks, low=1), shots, 25,
                                             generator=torch.Generator().manual_seed(seed))
        super().__init__([int_slider("inner steps", 5, 0, max_steps),
                          log_slider("inner lr", 0.01, -4, 1)], figsize=(6.8, 3.3))
        ax = self.ax = self.fig.add_axes((0.1, 0.16, 0.56, 0.74))
        self.lines = {name: ax.plot([], [], ms=3.5, mfc="none", **style(name), label=name
                                    + " (learned lr)" * learner.learned_inner_lr)[0]
                      for name, learner in self.learners.items()}
        ax.set(yscale="log", ylim=(0.005, 50), xlabel="SGD steps on the support set",
               ylabel="query MSE (mean of tasks)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        self.title = ax.set_title("", fontsize=9)
        self.message = ax.text(1.03, 0.0, "", transform=ax.transAxes, ha="left", va="bottom",
                               color="red", fontsize=8)  # in the margin, under the legend
        self.update()

    def update(self):
        steps, lr = self.value("inner steps"), self.value("inner lr")
        self.result, texts, diverged = {}, [], []
        with torch_threads(1):
            for name, learner in self.learners.items():
                r = fine_tune(learner, self.batch, steps,
                              None if learner.learned_inner_lr else lr)
                mean = r["loss"].mean(0)
                bad = int(r["diverged"][:, -1].sum())
                self.lines[name].set_data(np.arange(steps + 1), mean.numpy())
                self.result[name] = {"mse": mean[-1].item(), "diverged_tasks": bad}
                texts.append(f"{name} {mean[-1].item():.3g}"
                             + f" ({bad}/{self.batch.tasks} diverged)" * (bad > 0))
                if bad:
                    diverged.append(f"{name} {bad}/{self.batch.tasks}")
        self.ax.set_xlim(-0.5, max(steps, 1) + 0.5)
        self.title.set_text(f"{self.batch.tasks} fresh tasks, K={self.shots}, lr {lr:.4f}")
        self.message.set_text("diverged, tasks:\n" + "\n".join(diverged) if diverged else "")
        self.show(f"steps={steps} lr={lr:.4f} K={self.shots} | MSE after {steps} "
                  f"step{'s' * (steps != 1)}: " + ", ".join(texts))


# ---- notebook 04: meta-training live ----------------------------------------------
def moving_average(values, window: int) -> np.ndarray:
    """Mean of each run of ``window`` consecutive values (shorter at the start)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


class LiveLossPlot:
    """A loss curve that redraws while ``meta_train`` runs: pass it as ``callback``.
    Shows the meta-loss of every iteration (faint) and its moving average."""

    def __init__(self, window: int = 100, title: str = "meta-training loss"):
        self.window = window
        self.fig = Figure(figsize=(6.0, 2.6))
        ax = self.ax = self.fig.add_axes((0.11, 0.2, 0.86, 0.68))
        self.raw, = ax.plot([], [], color="C0", alpha=0.25, lw=0.6, label="each iteration")
        self.avg, = ax.plot([], [], color="C0", lw=1.8, label=f"mean of last {window}")
        ax.set(yscale="log", xlabel="meta-iteration", ylabel="query MSE after adapting",
               title=title)
        ax.legend(loc="upper right", fontsize=8)
        self.image = widgets.Image(format="png")
        self.image.add_class("mlkit-plot")
        self(None)

    def __call__(self, history):
        losses = [] if history is None else history.losses
        it = np.arange(1, len(losses) + 1)
        self.raw.set_data(it, losses)
        self.avg.set_data(it, moving_average(losses, self.window))
        finite = [v for v in losses if math.isfinite(v) and v > 0]
        self.ax.set_xlim(0, max(len(losses), 10))
        if finite:
            self.ax.set_ylim(min(finite) * 0.8, max(finite) * 1.25)
        self.image.value = render_png(self.fig)

    def _repr_mimebundle_(self, **kwargs):
        data = self.image._repr_mimebundle_(**kwargs) or {}
        data["image/png"] = base64.b64encode(self.image.value).decode("ascii")
        data["text/plain"] = "Live loss plot: it redraws while meta_train runs."
        return data


class TrainingPanel(Panel):
    """Pick an algorithm and its settings, press Train: a run from a fresh seeded MLP with
    a progress bar, then a meta-test on ``eval_tasks`` fresh tasks (K shots, 0..10 steps of
    the run's inner lr, mean and 95% CI). Earlier runs stay on the plots to compare with."""

    css_class = "mlkit-training-panel"
    ALGOS = ("maml", "fomaml", "reptile", "anil", "metasgd", "pretrain")
    TEST_STEPS, KEEP = 10, 4

    def __init__(self, iterations: int = 500, algo: str = "maml", seed: int = 0,
                 eval_tasks: int = 1000, progress: bool = True):
        check_choice("algo", algo, self.ALGOS)
        self.eval_tasks = check_int("eval_tasks", eval_tasks, low=2)
        self.seed, self.progress = check_int("seed", seed, low=0), progress
        self.family = SinusoidFamily()
        self.runs = []  # dicts: settings, losses, test result, seconds, stopped
        self.train_button = widgets.Button(description="Train", button_style="primary")
        self.train_button.on_click(lambda button: self.train())
        self.output = widgets.Output()  # the progress bar of the run
        super().__init__([dropdown("algorithm", list(self.ALGOS), algo),
                          int_slider("iterations", check_int("iterations", iterations, 100, 5000),
                                     100, 5000, 100),
                          int_slider("inner steps", 1, 1, 5),
                          log_slider("inner lr", 0.01, -3, 0),
                          log_slider("outer lr", 0.001, -4, -1),
                          int_slider("meta-batch", 25, 1, 50),
                          int_slider("K (shots)", 10, 1, 20),
                          widgets.Checkbox(value=False, description="multi-step loss",
                                           style=STYLE)],
                         figsize=(7.4, 4.4), extra=(self.train_button, self.output))
        self.loss_ax = self.fig.add_axes((0.1, 0.42, 0.36, 0.5))
        self.test_ax = self.fig.add_axes((0.58, 0.42, 0.4, 0.5))
        self.draw()
        self.render()
        self.update()

    def settings(self) -> dict:
        names = {"algorithm": "algo", "iterations": "iterations", "inner steps": "inner_steps",
                 "inner lr": "inner_lr", "outer lr": "outer_lr", "meta-batch": "meta_batch",
                 "K (shots)": "shots", "multi-step loss": "multi_step_loss"}
        return {key: self.value(label) for label, key in names.items()}

    @staticmethod
    def describe(s: dict) -> str:
        return (f"{s['algo']} {s['iterations']} it, steps={s['inner_steps']} "
                f"lr={s['inner_lr']:.3g} outer={s['outer_lr']:.2g} batch={s['meta_batch']} "
                f"K={s['shots']}" + " msl" * s["multi_step_loss"])

    def train(self):
        """Meta-train from a fresh seeded MLP with the current settings, test, redraw."""
        s = self.settings()
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            learner = make_learner(s["algo"], MLP(), "mse", inner_lr=s["inner_lr"],
                                   inner_steps=s["inner_steps"],
                                   multi_step_loss=s["multi_step_loss"])
        self.output.clear_output()
        start = time.perf_counter()
        with self.output, torch_threads(1):
            history = meta_train(learner, self.family, s["iterations"], s["meta_batch"],
                                 s["shots"], 10, s["outer_lr"], seed=self.seed,
                                 progress=self.progress)
            test = meta_test(learner, self.family, s["shots"], self.TEST_STEPS, self.eval_tasks,
                             seed=12345)
        self.runs = (self.runs + [{"settings": s, "losses": history.losses, "test": test,
                                   "stopped": history.stopped,
                                   "seconds": time.perf_counter() - start}])[-self.KEEP:]
        self.draw()
        self.render()
        self.update()

    def update(self):
        """A control moved: only the status changes (the plots show runs already made)."""
        s = self.settings()
        if not self.runs:
            self.result = {}
            return self.say(f"next run: {self.describe(s)} | press Train to meta-train "
                            f"{s['iterations']} iterations")
        run = self.runs[-1]
        mse, steps = run["test"]["mse"], run["settings"]["inner_steps"]
        one, at = mse["1"], mse[str(steps)]
        trouble = {"diverged": " | meta-training diverged: lower the inner or outer lr",
                   "interrupted": " | interrupted"}.get(run["stopped"], "")
        bad = run["test"]["diverged_tasks"]
        self.result = {"settings": run["settings"], "mse": mse, "diverged_tasks": bad,
                       "stopped": run["stopped"]}
        pending = "" if s == run["settings"] else f" | next run: {self.describe(s)} (press Train)"
        self.say(f"last run ({self.describe(run['settings'])}): {len(run['losses'])} iterations "
                 f"in {run['seconds']:.1f} s; MSE after 1 step {one['mean']:.3f} ± "
                 f"{one['ci95']:.3f}" + (f", after {steps} steps {at['mean']:.3f} ± "
                                         f"{at['ci95']:.3f}" if steps > 1 else "")
                 + f" ({self.eval_tasks} tasks, K={run['settings']['shots']})"
                 + (f"; {bad} task{'s' * (bad > 1)} diverged" if bad else "") + trouble + pending)

    def draw(self):
        """Plot every kept run: its loss curve, and its test error after 0..10 steps."""
        self.loss_ax.clear()
        self.test_ax.clear()
        if not self.runs:
            self.loss_ax.text(0.5, 0.5, "press Train", ha="center", va="center", fontsize=12)
            self.test_ax.set_axis_off()
            return
        self.test_ax.set_axis_on()
        for i, run in enumerate(self.runs):
            last = i == len(self.runs) - 1
            color, label = f"C{i}", f"run {i + 1}"
            losses = run["losses"]
            if losses:
                self.loss_ax.plot(np.arange(1, len(losses) + 1), moving_average(losses, 25),
                                  color=color, lw=1.8 if last else 1.0, label=label)
            mse = run["test"]["mse"]
            steps = np.arange(len(mse))
            mean = np.array([mse[str(k)]["mean"] for k in steps])
            ci = np.array([mse[str(k)]["ci95"] for k in steps])
            self.test_ax.plot(steps, mean, "-o", ms=2.5, color=color, lw=1.8 if last else 1.0,
                              label=f"{label}: {self.describe(run['settings'])}")
            self.test_ax.fill_between(steps, mean - ci, mean + ci, color=color, alpha=0.2, lw=0)
        self.loss_ax.set(xlabel="meta-iteration", title="meta-loss (mean of 25)", yscale="log")
        self.test_ax.set(xlabel="SGD steps at test time", yscale="log",
                         title=f"query MSE on {self.eval_tasks} fresh tasks (95% CI)")
        for ax in (self.loss_ax, self.test_ax):
            ax.title.set_fontsize(8)
        for ax in (self.loss_ax, self.test_ax):  # plain numbers on the log axes
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.tick_params(axis="y", which="minor", labelsize=6)
        for old in list(self.fig.legends):
            old.remove()
        self.fig.legend(*self.test_ax.get_legend_handles_labels(), loc="lower left",
                        fontsize=7, frameon=False, bbox_to_anchor=(0.08, 0.0))
