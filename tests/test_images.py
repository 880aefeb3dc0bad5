"""Few-shot images: the episode family, batched MAML on Conv-4, the glyph CLI, the explorer."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from mlkit import cli
from mlkit.data import ClassImages, load_glyphs
from mlkit.evaluate import meta_test
from mlkit.images import EpisodeFamily, meta_test_images, predictions
from mlkit.maml import FOMAML, MAML
from mlkit.models import Conv4
from mlkit.protonet import ProtoNet
from mlkit.train import make_learner


@pytest.fixture(scope="module")
def glyphs():
    return load_glyphs("evaluation")


def toy_set(classes=12, samples=6, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(classes, samples, size, size, generator=g) * 255).to(torch.uint8)
    return ClassImages(images, [f"c{i}" for i in range(classes)], ["a"] * 6 + ["b"] * 6)


def test_family_shapes_labels_and_protocol(glyphs):
    family = EpisodeFamily(glyphs, ways=5, rotations=True, split="evaluation")
    b = family.sample(4, 2, 3, generator=torch.Generator().manual_seed(0))
    assert b.x_support.shape == (4, 10, 1, 28, 28) and b.x_query.shape == (4, 15, 1, 28, 28)
    assert b.y_support.shape == (4, 10) and b.y_query.shape == (4, 15)
    assert b.y_support.dtype == torch.long and b.x_support.dtype == torch.float32
    assert torch.equal(b.y_support[0], torch.arange(5).repeat_interleave(2))
    assert 0 <= b.x_query.min() and b.x_query.max() <= 1
    assert b.info["classes"].shape == (4, 5) and b.tasks == 4
    assert family.sample(1, 1, 1, ways=20).x_support.shape == (1, 20, 1, 28, 28)
    p = family.protocol()
    assert (p["task"], p["split"], p["ways"], p["rotations"]) == ("glyphs", "evaluation", 5, True)
    assert family.metric == "accuracy"
    again = family.sample(4, 2, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.x_query, b.x_query)


@pytest.mark.parametrize("ways", [1, 10**6, 2.5])
def test_family_refuses_bad_ways(ways):
    with pytest.raises(ValueError, match="ways"):
        EpisodeFamily(toy_set(), ways)


def maml_setup(seed=0):
    torch.manual_seed(seed)
    model = Conv4(ways=3, hidden=8, image_size=16).double()
    batch = EpisodeFamily(toy_set(), ways=3).sample(4, 2, 2, generator=seed)
    return model, type(batch)(batch.x_support.double(), batch.y_support,
                              batch.x_query.double(), batch.y_query, {})


def reference_meta_grad(model, batch, lr, steps, first_order):
    """A per-task loop with torch.autograd.grad, independent of the batched code."""
    theta = dict(model.named_parameters())
    total = 0.0
    for t in range(batch.tasks):
        params = dict(theta)
        for _ in range(steps):
            loss = F.cross_entropy(functional_call(model, params, (batch.x_support[t],)),
                                   batch.y_support[t])
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=not first_order)
            params = {n: p - lr * g for (n, p), g in zip(params.items(), grads)}
        total = total + F.cross_entropy(functional_call(model, params, (batch.x_query[t],)),
                                        batch.y_query[t])
    return torch.autograd.grad(total / batch.tasks, list(theta.values()))


def flat(grads):
    return torch.cat([g.flatten() for g in grads])


@pytest.mark.parametrize("cls, steps", [(MAML, 1), (MAML, 2), (FOMAML, 1)])
def test_batched_conv4_meta_gradient_matches_per_task_loop(cls, steps):
    model, batch = maml_setup()
    learner = cls(model, "cross_entropy", inner_lr=0.4, inner_steps=steps)
    learner.zero_grad()
    learner.meta_loss(batch).backward()
    ours = flat(p.grad for p in model.parameters())
    ref = flat(reference_meta_grad(model, batch, 0.4, steps, cls.first_order))
    assert ((ours - ref).norm() / ref.norm()).item() < 1e-8


def test_second_order_differs_from_first_order_on_conv4():
    model, batch = maml_setup(1)
    grads = {}
    for cls in (MAML, FOMAML):
        learner = cls(model, "cross_entropy", inner_lr=0.4, inner_steps=1)
        learner.zero_grad()
        learner.meta_loss(batch).backward()
        grads[cls.name] = flat(p.grad for p in model.parameters())
    assert (grads["maml"] - grads["fomaml"]).norm() / grads["maml"].norm() > 1e-3


def test_meta_test_and_predictions_on_images():
    torch.manual_seed(0)
    maml = make_learner("maml", Conv4(ways=3, hidden=8, image_size=16), "cross_entropy", 0.4, 1)
    family = EpisodeFamily(toy_set(), ways=3)
    r = meta_test(maml, family, shots=1, steps=2, tasks=6, queries=2)
    assert set(r["accuracy"]) == {"0", "1", "2"} and r["protocol"]["ways"] == 3
    ours = meta_test_images(maml, family, 1, steps=2, tasks=6, queries=2)
    assert ours["accuracy"] == r["accuracy"]  # same episodes, same numbers
    batch = family.sample(2, 1, 2, generator=0)
    pred, diverged = predictions(maml, batch, steps=2)
    assert pred.shape == (2, 6, 3) and not diverged.any()
    _, diverged = predictions(maml, batch, steps=2, lr=1e30)
    assert diverged.all()
    proto = ProtoNet(Conv4(ways=None, hidden=8, image_size=16))
    r = meta_test_images(proto, family, 2, tasks=5, queries=2)
    assert set(r["accuracy"]) == {"0"} and r["protocol"]["steps"] == 0
    with pytest.raises(ValueError, match="ways=5"):
        meta_test_images(maml, EpisodeFamily(toy_set(), ways=5), 1)


def run_cli(capsys, *args):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_train_and_evaluate_glyphs(tmp_path, capsys):
    proto, maml = tmp_path / "p.pt", tmp_path / "m.pt"
    code, out, err = run_cli(capsys, "train", "--task", "glyphs", "--algo", "protonet",
                             "--ways", "3", "--iterations", "3", "--queries", "2",
                             "--threads", "1", "--out", proto)
    assert code == 0 and "saved" in out, err
    code, out, err = run_cli(capsys, "evaluate", proto, "--ways", "5", "--shots", "1",
                             "--tasks", "10", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert set(r["accuracy"]) == {"0"} and set(r["accuracy"]["0"]) == {"mean", "ci95"}
    assert (r["protocol"]["split"], r["protocol"]["ways"], r["protocol"]["tasks"]) == \
        ("evaluation", 5, 10)
    assert "--algo protonet --ways 3" in r["checkpoint"]["command"]

    code, out, err = run_cli(capsys, "train", "--task", "glyphs", "--algo", "maml", "--ways", "2",
                             "--iterations", "2", "--meta-batch", "2", "--queries", "1",
                             "--threads", "1", "--out", maml)
    assert code == 0, err
    meta = torch.load(maml, weights_only=True)["meta"]
    assert meta["task"] == "glyphs" and meta["ways"] == 2 and meta["iterations"] == 2
    assert "--inner-steps 1 --inner-lr 0.4" in meta["command"]
    code, out, err = run_cli(capsys, "evaluate", maml, "--ways", "2", "--tasks", "4", "--json")
    r = json.loads(out)
    assert code == 0 and set(r["accuracy"]) == {"0", "1", "2", "3"}
    assert r["protocol"]["inner_lr"] == 0.4
    code, out, err = run_cli(capsys, "evaluate", maml, "--ways", "5", "--tasks", "4")
    assert code == 2 and "head has 2 outputs" in err and "Traceback" not in err
    code, out, err = run_cli(capsys, "evaluate", proto, "--steps", "3", "--tasks", "4")
    assert code == 2 and "steps" in err


def test_image_explorer_responds_to_sliders(glyphs):
    pytest.importorskip("ipywidgets")
    from mlkit.image_widgets import ImageExplorer
    torch.manual_seed(0)
    small = dict(hidden=8, image_size=28)
    maml = make_learner("maml", Conv4(ways=5, **small), "cross_entropy", 0.4, 1)
    proto = ProtoNet(Conv4(ways=None, **small))
    panel = ImageExplorer({5: maml}, proto, glyphs)
    assert "mlkit-image-explorer" in panel.widget._dom_classes
    assert "mlkit-plot" in panel.image._dom_classes and "mlkit-status" in panel.status._dom_classes
    assert "ways=5 K=1 steps=3 lr=0.400 | MAML" in panel.status.value
    for name, value, text in [("inner steps", 1, "steps=1"), ("K (shots)", 2, "K=2"),
                              ("ways", 7, "MAML n/a for 7-way"), ("ways", 20, "ways=20")]:
        before = panel.image.value
        panel.sliders[name].value = value
        assert text in panel.status.value and panel.image.value != before
    panel.sliders["ways"].value = 5
    panel.sliders["inner lr"].value = 1e30  # beyond the slider: clipped to its maximum, safe
    assert "lr=100.000" in panel.status.value
    assert set(panel.sliders) == {"ways", "K (shots)", "inner steps", "inner lr"}


def test_cli_evaluates_on_an_omniglot_folder(tmp_path, capsys):
    from PIL import Image, ImageDraw
    for a in range(2):
        for c in range(3):
            d = tmp_path / "omniglot" / "images_evaluation" / f"Alphabet{a}" / f"character{c:02d}"
            d.mkdir(parents=True)
            for k in range(4):
                im = Image.new("1", (105, 105), 1)
                ImageDraw.Draw(im).line([(10 + 12 * c, 20 + 9 * a), (60 + k, 90)], fill=0, width=6)
                im.save(d / f"{k:02d}.png")
    torch.manual_seed(0)
    from mlkit.checkpoints import save_checkpoint
    ck = save_checkpoint(tmp_path / "p.pt", ProtoNet(Conv4(ways=None)), {"task": "glyphs"})
    code, out, err = run_cli(capsys, "evaluate", ck, "--ways", "3", "--queries", "2", "--tasks",
                             "5", "--data", tmp_path / "omniglot", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["protocol"]["task"] == "omniglot" and r["protocol"]["classes"] == 6
    code, out, err = run_cli(capsys, "evaluate", ck, "--data", tmp_path / "nothing", "--tasks", "5")
    assert code == 2 and "images_evaluation" in err
