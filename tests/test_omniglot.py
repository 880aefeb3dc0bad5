"""The Omniglot folder reader, on tiny trees in each layout people download."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from mlkit.data import find_omniglot_folder, load_omniglot
from mlkit.episodes import evaluation_family

ALPHABETS, CHARACTERS, DRAWINGS = 2, 3, 4


def drawing(c, k):
    """A 105x105 Omniglot-style PNG: black ink (0) on white (1), mode "1"."""
    im = Image.new("1", (105, 105), 1)
    ImageDraw.Draw(im).line([(10 + 10 * c, 20), (60 + k, 90)], fill=0, width=6)
    return im


def make_tree(folder, n_alphabets=ALPHABETS, drawings=DRAWINGS, name="Alphabet"):
    c = 0
    for a in range(n_alphabets):
        for ch in range(1, CHARACTERS + 1):
            d = folder / f"{name}_{a}" / f"character{ch:02d}"
            d.mkdir(parents=True)
            for k in range(drawings):
                drawing(c, k).save(d / f"{c:04d}_{k + 1:02d}.png")
            c += 1
    return folder


@pytest.mark.parametrize("split", ["background", "evaluation", "background_small1",
                                   "background_small2"])
@pytest.mark.parametrize("torchvision", [False, True])  # torchvision unzips into omniglot-py/
def test_reads_each_layout(tmp_path, split, torchvision):
    parent = tmp_path / "omniglot-py" if torchvision else tmp_path
    make_tree(parent / f"images_{split}")
    data = load_omniglot(tmp_path, split)
    assert data.images.shape == (ALPHABETS * CHARACTERS, DRAWINGS, 28, 28)
    assert data.images.dtype == torch.uint8
    assert data.class_names[0] == "Alphabet_0/character01"
    assert data.alphabet_names == ["Alphabet_0", "Alphabet_1"]
    # ink is bright on a dark background, as in the glyphs
    assert data.images[:, :, 0, 0].max() == 0 and data.images.amax(dim=(2, 3)).min() > 200


def test_root_may_be_the_split_folder_itself(tmp_path):
    folder = make_tree(tmp_path / "images_background")
    assert find_omniglot_folder(folder, "background") == folder
    assert len(load_omniglot(folder, "background")) == ALPHABETS * CHARACTERS


def test_full_size_is_the_inverted_image(tmp_path):
    make_tree(tmp_path / "images_background")
    data = load_omniglot(tmp_path, "background", size=105)
    expected = 255 - np.asarray(drawing(1, 2).convert("L"))
    assert np.array_equal(data.images[1, 2].numpy(), expected)


def test_all_is_background_then_evaluation(tmp_path):
    make_tree(tmp_path / "images_background")
    make_tree(tmp_path / "images_evaluation", n_alphabets=1, name="Other")
    data = load_omniglot(tmp_path, "all", size=20)
    assert data.images.shape == ((ALPHABETS + 1) * CHARACTERS, DRAWINGS, 20, 20)
    assert data.alphabet_names == ["Alphabet_0", "Alphabet_1", "Other_0"]


def test_wrong_folder_names_the_expected_layout(tmp_path):
    (tmp_path / "images_evaluation").mkdir()
    layout = r"images_background/<alphabet>/<character>/\*\.png"
    with pytest.raises(FileNotFoundError, match=layout):
        load_omniglot(tmp_path, "background")
    with pytest.raises(FileNotFoundError, match="omniglot-py"):
        load_omniglot(tmp_path / "missing", "background")
    (tmp_path / "images_background.zip").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="unzip"):
        load_omniglot(tmp_path, "background")
    with pytest.raises(FileNotFoundError, match="no <alphabet>/<character>/"):
        load_omniglot(tmp_path, "evaluation")  # the folder exists but holds no images


def test_uneven_drawings_keep_the_smallest_count(tmp_path):
    folder = make_tree(tmp_path / "images_background")
    next(folder.glob("*/*/*.png")).unlink()
    with pytest.warns(UserWarning, match="keeping the first 3"):
        data = load_omniglot(tmp_path)
    assert data.samples_per_class == DRAWINGS - 1


@pytest.mark.parametrize("kwargs, name", [
    (dict(split="train"), "split"), (dict(size=0), "size"), (dict(size="28"), "size"),
])
def test_bad_arguments(tmp_path, kwargs, name):
    make_tree(tmp_path / "images_background")
    with pytest.raises(ValueError, match=name):
        load_omniglot(tmp_path, **kwargs)


@pytest.mark.parametrize("split", ["evaluation", "background_small1"])
def test_evaluation_family_of_an_omniglot_folder(tmp_path, split):
    make_tree(tmp_path / "omniglot-py" / f"images_{split}")
    family = evaluation_family(3, tmp_path, split=split, image_size=20)
    assert family.protocol() == {"task": "omniglot", "split": split, "ways": 3,
                                 "rotations": False, "classes": ALPHABETS * CHARACTERS,
                                 "alphabets": ALPHABETS, "image_size": [20, 20]}
    e = family.sample(2, shots=1, queries=DRAWINGS - 1, generator=0)
    assert e.x_support.shape == (2, 3, 1, 20, 20)
    assert e.x_query.shape == (2, 3 * (DRAWINGS - 1), 1, 20, 20)
    assert e.x_support.max() > 0.8  # ink, scaled to [0, 1]
    with pytest.raises(FileNotFoundError, match="images_evaluation"):
        evaluation_family(3, tmp_path / "nowhere")


def test_cli_evaluates_on_omniglots_small_sets(tmp_path, capsys):
    """`evaluate --data PATH --split background_small1`: a user with only Omniglot's small
    sets tests a glyph checkpoint on real characters."""
    import json

    from mlkit.algorithms import make_learner
    from mlkit.checkpoints import save_checkpoint
    from mlkit.models import Conv4
    from mlkit.tools import cli

    make_tree(tmp_path / "images_background_small1", drawings=6)
    torch.manual_seed(0)
    learner = make_learner("protonet", Conv4(None, hidden=8), "cross_entropy")
    path = save_checkpoint(tmp_path / "p.pt", learner, {"task": "glyphs"})
    args = ["evaluate", str(path), "--data", str(tmp_path), "--split", "background_small1",
            "--ways", "3", "--shots", "1", "--queries", "2", "--tasks", "4", "--json"]
    assert cli.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["protocol"]["task"] == "omniglot" and out["protocol"]["split"] == "background_small1"
    assert out["protocol"]["classes"] == ALPHABETS * CHARACTERS
    assert cli.main(args[:2] + ["--split", "background_small1"]) == 2  # glyphs have no such split
    assert "--split background_small1 needs --data" in capsys.readouterr().err
