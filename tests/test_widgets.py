"""The notebook panels, driven programmatically: every slider changes the status text and
the picture; extreme values report divergence instead of raising; Train trains."""
import pytest
import torch

from mlkit.widgets import AdaptationExplorer, FamilyPanel, TrainingPanel, LiveLossPlot
from mlkit.train import History


@pytest.fixture(scope="module")
def explorer():
    return AdaptationExplorer()


@pytest.fixture(scope="module")
def family():
    return FamilyPanel(tasks=10)


@pytest.fixture(scope="module")
def training():
    return TrainingPanel(iterations=15, eval_tasks=20, progress=False)


def check_parts(panel, css_class):
    assert css_class in panel.widget._dom_classes
    assert "mlkit-plot" in panel.image._dom_classes
    assert "mlkit-status" in panel.status._dom_classes
    assert panel.image.value[:4] == b"\x89PNG"
    for slider in panel.sliders.values():
        assert slider.continuous_update is False


def move(panel, description, value):
    """Set a slider; return (status text, whether the picture changed)."""
    before = panel.image.value
    panel.sliders[description].value = value
    return panel.status.value, panel.image.value != before


NEW_VALUES = [("inner steps", 3, "steps=3"), ("inner lr", 0.02, "lr=0.0200"),
              ("K (shots)", 5, "K=5"), ("amplitude", 1.5, "amplitude=1.50"),
              ("phase", 2.0, "phase=2.00")]


def test_explorer_parts(explorer):
    check_parts(explorer, "mlkit-explorer")
    assert set(explorer.sliders) == {"inner steps", "inner lr", "K (shots)", "amplitude", "phase"}
    assert "MAML" in explorer.status.value and "pretrained" in explorer.status.value


@pytest.mark.parametrize("description, value, text", NEW_VALUES)
def test_explorer_sliders(explorer, description, value, text):
    status, changed = move(explorer, description, value)
    assert text in status and changed
    assert "diverged" not in status


def test_explorer_extremes(explorer):
    for description, slider in explorer.sliders.items():
        for value in (slider.min, slider.max):
            move(explorer, description, value)  # never raises
    status, _ = move(explorer, "inner steps", explorer.sliders["inner steps"].max)
    assert "diverged" in status  # inner lr is at its maximum, 10
    status, _ = move(explorer, "inner lr", 0.01)
    assert "diverged" not in status


def test_adapted_prediction_is_the_learner_adapt():
    """The explorer's fine-tuning is exactly ``learner.adapt`` with another step size."""
    from mlkit.widgets import adapted_prediction, shipped
    learner = shipped({"m": "sinusoid_maml"})["m"]
    x = torch.linspace(-5, 5, 7).view(1, -1, 1)
    y = torch.sin(x)
    old = learner.inner_lr
    learner.inner_lr = 0.05
    params = learner.adapt(x, y, steps=3, create_graph=False)
    learner.inner_lr = old
    expected = learner.model.forward_tasks(params, x)
    assert torch.allclose(adapted_prediction(learner, x, y, x, 3, 0.05), expected)
    assert learner.inner_lr == old  # the learner itself is unchanged


def test_family_parts(family):
    check_parts(family, "mlkit-family-panel")
    assert set(family.sliders) == {"inner steps", "inner lr"}
    for name in ("MAML", "FOMAML", "Reptile", "ANIL", "Meta-SGD", "pretrained"):
        assert name in family.status.value


@pytest.mark.parametrize("description, value, text",
                         [("inner steps", 2, "steps=2"), ("inner lr", 0.005, "lr=0.0050")])
def test_family_sliders(family, description, value, text):
    status, changed = move(family, description, value)
    assert text in status and changed


def test_family_extremes(family):
    for description, slider in family.sliders.items():
        for value in (slider.min, slider.max):
            move(family, description, value)
    family.sliders["inner steps"].value = family.sliders["inner steps"].max
    assert "diverged" in family.status.value  # lr 10 for 20 steps


TRAINING_VALUES = [("inner steps", 2, "steps=2"), ("inner lr", 0.02, "lr=0.0200"),
                   ("outer lr", 0.002, "outer lr=0.00200"), ("meta-batch", 5, "meta-batch=5"),
                   ("K (shots)", 5, "K=5")]


def test_training_parts(training):
    check_parts(training, "mlkit-training-panel")
    assert set(training.sliders) == {"inner steps", "inner lr", "outer lr", "meta-batch",
                                     "K (shots)"}
    assert training.train_button.description == "Train"
    assert "press Train" in training.status.value


@pytest.mark.parametrize("description, value, text", TRAINING_VALUES)
def test_training_sliders(training, description, value, text):
    status, changed = move(training, description, value)
    assert status.startswith(text) or f" {text}" in status.split("|")[0]
    assert changed


def test_training_train_button(training):
    before = training.image.value
    training.train_button.click()
    status = training.status.value
    assert "15 iterations" in status and "MSE after 1 step" in status
    assert training.image.value != before
    assert "press Train" not in status  # trained with the current settings
    status, changed = move(training, "K (shots)", 7)
    assert "K=7" in status.split("|")[0] and "press Train" in status and changed
    status, changed = move(training, "meta-batch", 6)  # a second change redraws too
    assert "meta-batch=6" in status.split("|")[0] and changed


def test_training_divergence(training):
    training.sliders["inner lr"].value = 1.0
    training.sliders["inner steps"].value = 5
    training.train_button.click()  # warns nothing, raises nothing
    assert "diverged" in training.status.value
    for description, slider in training.sliders.items():
        for value in (slider.min, slider.max):
            move(training, description, value)


def test_live_loss_plot():
    plot = LiveLossPlot(window=5)
    first = plot.image.value
    plot(History(losses=[3.0, 2.0, float("nan"), 1.0]))
    assert plot.image.value != first and plot.image.value[:4] == b"\x89PNG"
