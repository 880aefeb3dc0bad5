"""Interactive panels for the sinusoid notebooks (ipywidgets).

Every panel is a small class with the same parts:

    .widget    the root box to display (its CSS class names it for browser tests)
    .sliders   description -> slider, e.g. ``panel.sliders["inner lr"]``
    .image     the plot: a PNG rendered from one matplotlib Figure made once
    .status    one line with the current values and the result,
               e.g. ``steps=5 lr=0.0100 K=10 | MSE after 5 steps: MAML 0.041, ...``
    .update()  recompute and redraw (the sliders call it when released)

A panel holds no learning logic: it calls ``learner.adapt``, ``adaptation_curves``,
``meta_train`` and ``meta_test``. A setting that diverges (a huge inner lr) shows a
message on the plot and "diverged" in the status; it never raises.
"""
from __future__ import annotations

import copy
import html
import io
import math
import time
import warnings

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure  # no pyplot: panels never pop up extra figures
from matplotlib.ticker import MaxNLocator

from .checkpoints import load_shipped
from .checks import check_int
from .evaluate import adaptation_curves, meta_test
from .models import MLP
from .runtime import torch_threads
from .tasks import SinusoidFamily
from .train import make_learner, meta_train

COLORS = {"MAML": "C0", "pretrained": "C1", "random init": "C7", "FOMAML": "C2", "Reptile": "C3",
          "ANIL": "C4", "Meta-SGD": "C5"}
BLOWN_UP = 1e3  # a |prediction| or MSE above this (sinusoid amplitudes <= 5): diverged


# ---- small helpers --------------------------------------------------------------
def render_png(fig: Figure, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (small dpi keeps a redraw fast)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def int_slider(description, value, low, high):
    return widgets.IntSlider(value=value, min=low, max=high, description=description,
                             continuous_update=False, style={"description_width": "90px"})


def float_slider(description, value, low, high, step):
    return widgets.FloatSlider(value=value, min=low, max=high, step=step, description=description,
                               continuous_update=False, style={"description_width": "90px"})


def log_slider(description, value, low_exp, high_exp):
    """A slider over 10**low_exp .. 10**high_exp (its step moves the exponent)."""
    return widgets.FloatLogSlider(value=value, base=10, min=low_exp, max=high_exp, step=0.1,
                                  description=description, continuous_update=False,
                                  readout_format=".4f", style={"description_width": "90px"})


def shipped(names: dict) -> dict:
    """label -> learner loaded from ``data/checkpoints`` (e.g. {"MAML": "sinusoid_maml"})."""
    return {label: load_shipped(name)[0] for label, name in names.items()}


def random_init(seed: int = 0):
    """A fresh 1-40-40-1 MLP that is only fine-tuned (no pre- or meta-training)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return make_learner("pretrain", MLP())


def adapted_prediction(learner, x_support, y_support, x, steps: int, lr: float):
    """Fine-tune ``learner`` on a support set with ``steps`` SGD steps of size ``lr`` and
    predict at ``x``. Shapes: x_support, y_support (T, K, 1), x (T, N, 1) -> (T, N, 1).

    Meta-SGD keeps its learned step sizes (``lr`` does not apply to it).
    """
    tuned = copy.copy(learner)  # shares the weights; only the step size differs
    tuned.inner_lr = lr
    params = tuned.adapt(x_support, y_support, steps=steps, create_graph=False)
    with torch.no_grad():
        return learner.model.forward_tasks(params, x)


def blew_up(pred: torch.Tensor) -> bool:
    return not bool(torch.isfinite(pred).all()) or pred.abs().max().item() > BLOWN_UP


def widget_bundle(widget, **kwargs):
    """The widget's display data, with a plain-text line for where widgets cannot show
    (a saved notebook opened before its cells are run, a repository page)."""
    data = widget._repr_mimebundle_(**kwargs) or {}
    data["text/plain"] = "Interactive panel: run the notebook's cells to use it."
    return data


class Panel:
    """What every panel shares: sliders, an image, a status line, a root box."""

    css_class = "mlkit-panel"

    def __init__(self, sliders: list, figsize=(6.0, 3.0), extra: tuple = ()):
        self.sliders = {s.description: s for s in sliders}
        self.fig = Figure(figsize=figsize)  # made once; update() changes its artists
        self.image = widgets.Image(format="png")
        self.image.add_class("mlkit-plot")
        self.status = widgets.HTML()
        self.status.add_class("mlkit-status")
        grid = widgets.GridBox(sliders, layout=widgets.Layout(
            grid_template_columns="repeat(2, 330px)"))
        self.widget = widgets.VBox([grid, *extra, self.image, self.status])
        self.widget.add_class(self.css_class)
        for s in sliders:
            s.observe(lambda change: self.update(), names="value")

    def value(self, description):
        return self.sliders[description].value

    def show(self, status: str):
        """Render the figure into the image and set the status line."""
        self.image.value = render_png(self.fig)
        self.status.value = html.escape(status)

    def _repr_mimebundle_(self, **kwargs):  # a cell ending in ``panel`` shows the panel
        return widget_bundle(self.widget, **kwargs)

    def update(self):
        raise NotImplementedError


# ---- notebook 05: the adaptation explorer -----------------------------------------
class AdaptationExplorer(Panel):
    """One sinusoid task, its K support points, and each model's prediction after
    fine-tuning on them: move a slider, see the adaptation at once.

    learners: label -> learner; default the shipped MAML and pretrained checkpoints
    and a random initialisation. Every model gets the same SGD fine-tuning.
    """

    css_class = "mlkit-explorer"

    def __init__(self, learners: dict | None = None, max_steps: int = 20, seed: int = 0):
        check_int("max_steps", max_steps, low=1)
        self.learners = learners or {**shipped({"MAML": "sinusoid_maml",
                                                "pretrained": "sinusoid_pretrain"}),
                                     "random init": random_init(seed)}
        g = torch.Generator().manual_seed(seed)
        self.x_pool = (10 * torch.rand(1, 40, 1, generator=g) - 5)  # support = the first K
        self.x = torch.linspace(-5, 5, 200).view(1, -1, 1)
        super().__init__([int_slider("inner steps", 1, 0, max_steps),
                          log_slider("inner lr", 0.01, -4, 1),
                          int_slider("K (shots)", 10, 1, 40),
                          float_slider("amplitude", 3.0, 0.1, 5.0, 0.1),
                          float_slider("phase", 1.0, 0.0, round(math.pi, 2), 0.05)])
        ax = self.ax = self.fig.add_axes((0.1, 0.16, 0.6, 0.74))
        xs = self.x.flatten().numpy()
        self.true_line, = ax.plot(xs, 0 * xs, "k-", lw=2, label="true curve")
        self.points, = ax.plot([], [], "k^", ms=6, label="K support points")
        self.lines = {}
        for name in self.learners:
            c = COLORS.get(name)
            self.lines[name] = (ax.plot(xs, 0 * xs, ":", color=c, lw=1)[0],
                                ax.plot(xs, 0 * xs, "-", color=c, lw=1.5, label=name)[0])
        ax.set(xlim=(-5, 5), ylim=(-6.5, 6.5), xlabel="x", ylabel="y")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        self.fig.text(0.72, 0.16, "dotted: before\nfine-tuning", fontsize=8)
        self.title = ax.set_title("", fontsize=9)
        self.message = ax.text(0, 0, "", ha="center", va="center", color="red", fontsize=10,
                               bbox={"facecolor": "white", "edgecolor": "red"})
        self.update()

    def update(self):
        steps, lr, k = self.value("inner steps"), self.value("inner lr"), self.value("K (shots)")
        amp, phase = self.value("amplitude"), self.value("phase")
        a, p = torch.tensor([amp]), torch.tensor([phase])
        x_s = self.x_pool[:, :k]
        y_s, y_true = SinusoidFamily.curve(a, p, x_s), SinusoidFamily.curve(a, p, self.x)
        self.true_line.set_ydata(y_true.flatten().numpy())
        self.points.set_data(x_s.flatten().numpy(), y_s.flatten().numpy())
        results, diverged = [], []
        with torch_threads(1):
            for name, learner in self.learners.items():
                before_line, after_line = self.lines[name]
                before = adapted_prediction(learner, x_s, y_s, self.x, 0, lr)
                after = adapted_prediction(learner, x_s, y_s, self.x, steps, lr)
                before_line.set_ydata(before.flatten().numpy())
                if blew_up(after):
                    diverged.append(name)
                    after_line.set_visible(False)
                    results.append(f"{name} diverged")
                else:
                    after_line.set_visible(True)
                    after_line.set_ydata(after.flatten().numpy())
                    mse = ((after - y_true) ** 2).mean().item()
                    results.append(f"{name} {mse:.3g}")
        self.title.set_text(f"after {steps} SGD step{'s' * (steps != 1)} of lr {lr:.4f} "
                            f"on K={k} points")
        self.message.set_text(f"{', '.join(diverged)} diverged:\nlr {lr:.3g} is too large"
                              if diverged else "")
        self.show(f"steps={steps} lr={lr:.4f} K={k} amplitude={amp:.2f} phase={phase:.2f} | "
                  f"MSE on the true curve after {steps} step{'s' * (steps != 1)}: "
                  + ", ".join(results))


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
                          log_slider("inner lr", 0.01, -4, 1)], figsize=(6.4, 3.3))
        ax = self.ax = self.fig.add_axes((0.12, 0.16, 0.6, 0.74))
        self.lines = {name: ax.plot([], [], "-o", ms=3, color=COLORS.get(name), label=name
                                    + " (learned lr)" * (learner.name == "metasgd"))[0]
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
        results, diverged = [], []
        with torch_threads(1):
            for name, learner in self.learners.items():
                own = learner.name == "metasgd"  # learned step sizes
                curves = adaptation_curves(learner, self.batch, steps, None if own else lr)
                mean = curves["loss"].mean(0)
                self.lines[name].set_data(np.arange(steps + 1), mean.numpy())
                final = curves["loss"][:, -1]
                bad = int((curves["diverged"] | ~(final < BLOWN_UP)).sum())
                if bad:  # non-finite, or an error no sinusoid fit can reach: blown up
                    diverged.append(f"{name} {bad}/{self.batch.tasks}")
                    results.append(f"{name} diverged on {bad} task{'s' * (bad > 1)}")
                else:
                    results.append(f"{name} {mean[-1].item():.3g}" + (" (learned lr)" * own))
        self.ax.set_xlim(-0.5, max(steps, 1) + 0.5)
        self.title.set_text(f"{self.batch.tasks} fresh tasks, K={self.shots}, lr {lr:.4f}")
        self.message.set_text("diverged, tasks:\n" + "\n".join(diverged)
                              if diverged else "")
        self.show(f"steps={steps} lr={lr:.4f} K={self.shots} | MSE after {steps} "
                  f"step{'s' * (steps != 1)}: "
                  + ", ".join(results))


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

    Shows the meta-loss of every iteration (faint) and its moving average.
    """

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
        self.widget = self.image
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
        return widget_bundle(self.widget, **kwargs)


class TrainingPanel(Panel):
    """Pick the meta-training settings, press Train: a short MAML run from scratch
    (``iterations`` outer steps), then its loss curve, its adapted prediction on one
    task and a quick meta-test (``eval_tasks`` fresh tasks, K shots, lr = inner lr)."""

    css_class = "mlkit-training-panel"

    def __init__(self, iterations: int = 250, algo: str = "maml", seed: int = 0,
                 eval_tasks: int = 200, progress: bool = True):
        self.iterations = check_int("iterations", iterations, low=1)
        self.eval_tasks = check_int("eval_tasks", eval_tasks, low=1)
        self.algo, self.seed, self.progress = algo, seed, progress
        self.family = SinusoidFamily()
        self.trained = None  # (settings, learner, history, test, seconds) of the last run
        g = torch.Generator().manual_seed(seed + 1)
        self.demo_amp, self.demo_phase = torch.tensor([3.5]), torch.tensor([0.5])
        self.x_pool = 10 * torch.rand(1, 40, 1, generator=g) - 5
        self.x = torch.linspace(-5, 5, 200).view(1, -1, 1)
        self.train_button = widgets.Button(description="Train", button_style="primary",
                                           tooltip=f"meta-train {iterations} iterations")
        self.train_button.on_click(lambda button: self.train())
        self.output = widgets.Output()  # the progress bar of the run
        super().__init__([int_slider("inner steps", 1, 1, 5),
                          log_slider("inner lr", 0.01, -3, 0),
                          log_slider("outer lr", 0.001, -4, -1),
                          int_slider("meta-batch", 25, 1, 50),
                          int_slider("K (shots)", 10, 1, 20)],
                         figsize=(7.0, 3.0), extra=(self.train_button, self.output))
        self.loss_ax = self.fig.add_axes((0.08, 0.17, 0.4, 0.62))
        self.pred_ax = self.fig.add_axes((0.57, 0.17, 0.41, 0.62))
        self.update()

    def settings(self) -> dict:
        return {"steps": self.value("inner steps"), "lr": self.value("inner lr"),
                "outer_lr": self.value("outer lr"), "meta_batch": self.value("meta-batch"),
                "K": self.value("K (shots)")}

    def describe(self, s: dict) -> str:
        return (f"steps={s['steps']} lr={s['lr']:.4f} outer lr={s['outer_lr']:.5f} "
                f"meta-batch={s['meta_batch']} K={s['K']}")

    def train(self):
        """Meta-train from a fresh seeded MLP with the current settings, then redraw."""
        s = self.settings()
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            learner = make_learner(self.algo, MLP(), inner_lr=s["lr"], inner_steps=s["steps"])
        if self.progress:
            self.output.clear_output()
        start = time.perf_counter()
        with self.output, torch_threads(1), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # divergence goes to the status
            history = meta_train(learner, self.family, self.iterations, meta_batch=s["meta_batch"],
                                 shots=s["K"], outer_lr=s["outer_lr"], seed=self.seed,
                                 progress=self.progress)
            test = meta_test(learner, self.family, shots=s["K"], steps=s["steps"],
                             tasks=self.eval_tasks, queries=50, seed=12345)
        self.trained = (s, learner, history, test, time.perf_counter() - start)
        self.update()

    def update(self):
        s = self.settings()
        for ax in (self.loss_ax, self.pred_ax):
            ax.clear()
        if self.trained is None:
            self.loss_ax.text(0.5, 0.5, "press Train", ha="center", va="center", fontsize=12)
            self.pred_ax.set_axis_off()
            self.fig.suptitle(f"next run: {self.describe(s)}", fontsize=9)
            return self.show(f"{self.describe(s)} | press Train to meta-train "
                             f"{self.iterations} iterations")
        ts, learner, history, test, seconds = self.trained
        pending = "" if ts == s else f"\nnext run: {self.describe(s)} (press Train)"
        self.fig.suptitle(f"last run: {self.describe(ts)}{pending}", fontsize=8)
        # left: the loss curve of the run
        self.loss_ax.set_axis_on()
        losses = history.losses
        if losses:
            it = np.arange(1, len(losses) + 1)
            self.loss_ax.plot(it, losses, color="C0", alpha=0.3, lw=0.6)
            self.loss_ax.plot(it, moving_average(losses, 25), color="C0", lw=1.6)
            finite = [v for v in losses if math.isfinite(v)]
            self.loss_ax.set_ylim(0, min(max(finite), 3 * np.median(finite)) * 1.1)
        self.loss_ax.set(xlabel="meta-iteration", title="meta-loss (query MSE)",
                         xlim=(0, self.iterations))
        # right: one task, before and after adapting
        self.pred_ax.set_axis_on()
        x_s = self.x_pool[:, :ts["K"]]
        y_s = SinusoidFamily.curve(self.demo_amp, self.demo_phase, x_s)
        xs = self.x.flatten().numpy()
        self.pred_ax.plot(xs, SinusoidFamily.curve(self.demo_amp, self.demo_phase, self.x)
                          .flatten().numpy(), "k-", lw=2, label="true")
        self.pred_ax.plot(x_s.flatten().numpy(), y_s.flatten().numpy(), "k^", ms=5)
        with torch_threads(1):
            before = adapted_prediction(learner, x_s, y_s, self.x, 0, ts["lr"])
            after = adapted_prediction(learner, x_s, y_s, self.x, ts["steps"], ts["lr"])
        self.pred_ax.plot(xs, before.flatten().numpy(), "C0:", label="before")
        if not blew_up(after):
            self.pred_ax.plot(xs, after.flatten().numpy(), "C0-", label=f"{ts['steps']} step(s)")
        self.pred_ax.set(ylim=(-6, 6), xlabel="x", title="one new task")
        self.pred_ax.legend(fontsize=7, loc="lower left")
        mse = test["mse"]
        one, last = mse["1"]["mean"], mse[str(ts["steps"])]["mean"]
        diverged = (history.stopped == "diverged" or not math.isfinite(one)
                    or not math.isfinite(last) or one > BLOWN_UP or blew_up(after))
        if diverged:
            why = (f"diverged after {history.iterations} iterations" if history.stopped ==
                   "diverged" else "diverged when adapting")
            self.loss_ax.text(0.5, 0.5, f"{why}:\nlower inner lr or outer lr", color="red",
                              ha="center", va="center", transform=self.loss_ax.transAxes)
            result = f"{why} (inner lr or outer lr too large)"
        else:
            result = (f"MSE after 1 step: {one:.3g} ± {mse['1']['ci95']:.2g}"
                      + (f", after {ts['steps']} steps: {last:.3g}" if ts["steps"] > 1 else "")
                      + f" (before: {mse['0']['mean']:.3g}; {self.eval_tasks} tasks)")
        run = f"{history.iterations} iterations in {seconds:.1f} s | {result}"
        self.show(f"{self.describe(s)} | {run}" if ts == s else
                  f"{self.describe(s)} | press Train to train with these settings | last run "
                  f"({self.describe(ts)}): {run}")
