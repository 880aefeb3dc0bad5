"""The image explorer of notebook 06: its numbers against fine_tune called directly."""
import pytest
import torch

from mlkit.algorithms import make_learner
from mlkit.data import load_glyphs
from mlkit.image_widgets import ImageExplorer
from mlkit.learner import fine_tune
from mlkit.models import Conv4
from mlkit.protonet import ProtoNet


@pytest.fixture(scope="module")
def explorer():
    torch.manual_seed(0)
    maml = {w: make_learner("maml", Conv4(w, hidden=8, pool=False), "cross_entropy",
                            inner_lr=0.4) for w in (5, 7)}
    proto = ProtoNet(Conv4(None, hidden=8))
    return ImageExplorer(maml=maml, protonet=proto, dataset=load_glyphs("evaluation"))


@pytest.mark.parametrize("ways, shots, steps, lr", [(5, 1, 3, 0.4), (7, 2, 1, 0.1),
                                                    (5, 3, 0, 0.4), (4, 1, 2, 0.4)])
def test_explorer_accuracy_is_that_of_its_settings(explorer, ways, shots, steps, lr):
    for name, value in (("ways", ways), ("K (shots)", shots), ("inner steps", steps),
                        ("inner lr", lr)):
        explorer.controls[name].value = value
    lr = explorer.value("inner lr")
    batch = explorer.episode(ways, shots)
    assert batch.x_support.shape[1] == ways * shots
    truth = batch.y_query[0]
    proto = fine_tune(explorer.protonet, batch, 0)["outputs"][0, 0].argmax(-1)
    assert explorer.result["accuracy"]["ProtoNet"] == pytest.approx(
        (proto == truth).double().mean().item())
    if ways not in explorer.maml:  # no head for this many ways: MAML is not shown
        assert explorer.result["accuracy"]["MAML"] is None and "n/a" in explorer.status.value
        return
    direct = fine_tune(explorer.maml[ways], batch, steps, lr)
    guess = direct["outputs"][0, steps].argmax(-1)
    assert explorer.result["accuracy"]["MAML"] == pytest.approx(
        (guess == truth).double().mean().item())
    assert f"steps={steps}" in explorer.status.value
    assert f"MAML {100 * explorer.result['accuracy']['MAML']:.0f}%" in explorer.status.value


def test_explorer_shows_divergence_from_fine_tune(explorer):
    explorer.controls["ways"].value = 5
    explorer.controls["inner steps"].value = 5
    explorer.controls["inner lr"].value = 100.0
    direct = fine_tune(explorer.maml[5], explorer.episode(5, explorer.value("K (shots)")), 5,
                       explorer.value("inner lr"))
    assert explorer.result["maml_diverged"] == bool(direct["diverged"][0, 5])
    assert ("diverged" in explorer.status.value) == explorer.result["maml_diverged"]


def test_explorer_episode_comes_from_the_held_out_alphabets(explorer):
    evaluation = set(load_glyphs("evaluation").class_names)
    background = set(load_glyphs("background").class_names)
    batch = explorer.episode(5, 1)
    names = [explorer.family.dataset.class_names[c] for c in batch.info["classes"][0].tolist()]
    assert set(names) <= evaluation and not set(names) & background


def test_explorer_title_names_each_checkpoints_own_inner_loop():
    """A 20-way checkpoint meta-trained for 5 steps of 2.0 beside a 5-way one trained for 1
    step of 0.4: the title names the loop of the model shown, not the sliders' values."""
    torch.manual_seed(0)
    maml = {5: make_learner("maml", Conv4(5, hidden=8, pool=False), "cross_entropy",
                            inner_lr=0.4, inner_steps=1),
            20: make_learner("maml", Conv4(20, hidden=8, pool=False), "cross_entropy",
                             inner_lr=2.0, inner_steps=5)}
    panel = ImageExplorer(maml=maml, protonet=ProtoNet(Conv4(None, hidden=8)),
                          dataset=load_glyphs("evaluation"), steps=2, lr=0.1)
    assert "meta-trained for 1 step(s) of lr 0.4" in panel.ax.get_title()
    panel.controls["ways"].value = 20
    assert "meta-trained for 5 step(s) of lr 2" in panel.ax.get_title()
    assert "after 2 step(s) of lr 0.1" in panel.ax.get_title()
    panel.controls["ways"].value = 19  # no MAML head: nothing to name
    assert "meta-trained" not in panel.ax.get_title()
