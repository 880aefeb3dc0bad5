"""The notebook panels, driven programmatically. Every number a panel shows is checked
against an independent computation for the same settings, not only that it changed."""
import base64

import pytest
import torch
import torch.nn.functional as F

from mlkit import toy
from mlkit.algorithms import make_learner
from mlkit.evaluate import meta_test
from mlkit.learner import fine_tune
from mlkit.models import MLP
from mlkit.tasks import SinusoidFamily
from mlkit.train import History, meta_train
from mlkit.widgets import (AdaptationExplorer, FamilyPanel, LandscapePanel, LiveLossPlot,
                           TrainingPanel)


def tiny_learners(seed=0):
    torch.manual_seed(seed)
    return {"MAML": make_learner("maml", MLP(), inner_lr=0.01),
            "Meta-SGD": make_learner("metasgd", MLP(), inner_lr=0.02),
            "pretrained": make_learner("pretrain", MLP())}


def sgd_query_mse(learner, x, y, x_query, y_query, lr, steps):
    """Plain per-task SGD, written out (Meta-SGD: its own per-weight rates)."""
    model = learner.model
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    rates = {n: learner.lrs[n.replace(".", "_")].detach() for n in params} \
        if learner.learned_inner_lr else {n: lr for n in params}
    for _ in range(steps):
        live = {n: p.requires_grad_() for n, p in params.items()}
        loss = F.mse_loss(torch.func.functional_call(model, live, (x,)), y)
        grads = torch.autograd.grad(loss, list(live.values()))
        params = {n: (p - rates[n] * g).detach() for (n, p), g in zip(live.items(), grads)}
    return F.mse_loss(torch.func.functional_call(model, params, (x_query,)), y_query).item()


def check_parts(panel, css_class):
    assert css_class in panel.widget._dom_classes
    assert "mlkit-plot" in panel.image._dom_classes
    assert "mlkit-status" in panel.status._dom_classes
    assert panel.image.value[:4] == b"\x89PNG"
    bundle = panel._repr_mimebundle_()  # what a notebook stores: widget, first PNG, text
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"])[:4] == b"\x89PNG"
    for control in panel.controls.values():
        assert getattr(control, "continuous_update", False) is False


@pytest.fixture(scope="module")
def explorer():
    return AdaptationExplorer(tiny_learners())


SETTINGS = [  # (inner steps, inner lr, K, support, amplitude, phase)
    (3, 0.02, 7, "spread over [-5, 5]", 2.5, 0.3),
    (5, 0.005, 4, "only x in [0, 5]", 6.5, 4.0),   # a task outside the training range
    (0, 0.01, 10, "spread over [-5, 5]", 1.0, 1.0),
]


@pytest.mark.parametrize("steps, lr, k, support, amplitude, phase", SETTINGS)
def test_explorer_shows_the_error_of_exactly_its_settings(explorer, steps, lr, k, support,
                                                          amplitude, phase):
    for name, value in (("inner steps", steps), ("inner lr", lr), ("K (shots)", k),
                        ("support", support), ("amplitude", amplitude), ("phase", phase)):
        explorer.controls[name].value = value
    lr = explorer.value("inner lr")  # a log slider rounds its value
    lo, hi = explorer.SUPPORT[support]
    x = explorer.pools[support][0, :k]
    assert x.shape == (k, 1) and (x >= lo).all() and (x <= hi).all()
    a, p = torch.tensor(amplitude), torch.tensor(phase)
    grid = torch.linspace(-5, 5, 200).view(-1, 1)
    for name, learner in explorer.learners.items():
        expected = sgd_query_mse(learner, x, a * torch.sin(x - p), grid, a * torch.sin(grid - p),
                                 lr, steps)
        assert explorer.result[name]["mse"] == pytest.approx(expected, rel=1e-4), name
        assert f"{name} {explorer.result[name]['mse']:.3g}" in explorer.status.value
    outside = not (0.1 <= amplitude <= 5)
    assert ("outside" in explorer.status.value) == outside


def test_explorer_parts_and_divergence(explorer):
    check_parts(explorer, "mlkit-explorer")
    explorer.controls["inner steps"].value = 10
    explorer.controls["inner lr"].value = 5.0
    for name, learner in explorer.learners.items():  # Meta-SGD keeps its learned rates
        assert explorer.result[name]["diverged"] == (not learner.learned_inner_lr), name
    assert "diverged" in explorer.status.value


def test_family_panel_matches_fine_tune_called_directly():
    panel = FamilyPanel(tiny_learners(1), tasks=12)
    check_parts(panel, "mlkit-family-panel")
    for steps, lr in ((4, 0.03), (2, 0.01)):
        panel.controls["inner steps"].value = steps
        panel.controls["inner lr"].value = lr
        lr = panel.value("inner lr")
        for name, learner in panel.learners.items():
            r = fine_tune(learner, panel.batch, steps,
                          None if learner.learned_inner_lr else lr)
            assert panel.result[name]["mse"] == pytest.approx(r["loss"][:, steps].mean().item())
            assert panel.result[name]["diverged_tasks"] == int(r["diverged"][:, -1].sum())
    panel.controls["inner lr"].value = 8.0
    assert any(r["diverged_tasks"] for r in panel.result.values())
    assert "diverged" in panel.status.value


def test_training_panel_shows_the_run_it_was_asked_for():
    panel = TrainingPanel(iterations=100, eval_tasks=50, progress=False)
    check_parts(panel, "mlkit-training-panel")
    assert "press Train" in panel.status.value
    settings = {"algorithm": "fomaml", "iterations": 200, "inner steps": 2, "inner lr": 0.02,
                "outer lr": 0.003, "meta-batch": 10, "K (shots)": 5, "multi-step loss": True}
    for name, value in settings.items():
        panel.controls[name].value = value
    panel.train()
    s = panel.settings()
    torch.manual_seed(panel.seed)  # the same run, done directly
    learner = make_learner("fomaml", MLP(), "mse", inner_lr=s["inner_lr"], inner_steps=2,
                           multi_step_loss=True)
    meta_train(learner, SinusoidFamily(), 200, 10, 5, 10, s["outer_lr"], seed=panel.seed,
               progress=False)
    direct = meta_test(learner, SinusoidFamily(), 5, panel.TEST_STEPS, 50, seed=12345)
    assert panel.result["settings"] == s
    for step in ("0", "1", "2", "10"):
        assert panel.result["mse"][step]["mean"] == pytest.approx(direct["mse"][step]["mean"],
                                                                  rel=1e-6)
    assert f"{direct['mse']['2']['mean']:.3f}" in panel.status.value
    panel.controls["algorithm"].value = "maml"  # a second run is overlaid on the first
    panel.train()
    assert len(panel.runs) == 2 and panel.result["settings"]["algo"] == "maml"


def test_training_panel_reports_a_diverging_run():
    panel = TrainingPanel(iterations=100, eval_tasks=20, progress=False)
    panel.controls["outer lr"].value = 0.1
    panel.controls["inner lr"].value = 1.0
    panel.train()
    assert panel.result["diverged_tasks"] > 0
    assert f"{panel.result['diverged_tasks']} tasks diverged" in panel.status.value


def test_landscape_panel_numbers_come_from_toy():
    panel = LandscapePanel(tasks=30)
    check_parts(panel, "mlkit-landscape")
    for alpha, order in ((0.25, "second order"), (0.25, "first order"), (0.05, "second order")):
        panel.controls["alpha"].value = alpha
        panel.controls["gradient"].value = order
        star = torch.tensor(panel.result["star"])
        expected = toy.train_start(panel.plain_star, panel.batch, lr=alpha, steps=1,
                                   first_order=order == "first order", **panel.DESCENT)[0]
        torch.testing.assert_close(star, expected.float(), rtol=1e-5, atol=1e-5)
        assert panel.result["overshoot"] == pytest.approx(
            toy.overshoot_fraction(star, panel.batch, alpha))
        assert f"{panel.result['overshoot']:.0%}" in panel.status.value
    # the plain-training star is the minimum of the average loss over the grid
    values, _ = toy.objective(panel.points, panel.batch, 0.0, 0, gradient=False)
    torch.testing.assert_close(panel.plain_star, panel.points[values.argmin()])
    big, small = panel.result["overshoot"], None
    panel.controls["alpha"].value = 0.3
    assert panel.result["overshoot"] >= big


def test_live_loss_plot_redraws_with_the_history():
    plot = LiveLossPlot(window=5)
    empty = plot.image.value
    plot(History(losses=[3.0, 2.0, 1.5, 1.0, 0.8, 0.5]))
    assert plot.image.value != empty and plot.image.value[:4] == b"\x89PNG"
    assert list(plot.raw.get_ydata()) == [3.0, 2.0, 1.5, 1.0, 0.8, 0.5]
