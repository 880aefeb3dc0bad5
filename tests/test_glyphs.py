"""The shipped glyph dataset: loading, splits, and regeneration bit for bit."""
import numpy as np
import pytest
import torch

from mlkit import glyphs
from mlkit.data import (GLYPHS_FILE, ClassImages, _library_versions, content_hash, load_glyphs,
                        make_glyphs)


@pytest.fixture(scope="module")
def shipped():
    return load_glyphs("all")


def test_shipped_file_shapes_and_labels(shipped):
    assert shipped.images.dtype == torch.uint8
    assert shipped.images.shape[1:] == (20, 28, 28)
    assert len(shipped) >= 1400 and len(shipped.alphabet_names) >= 40
    assert len(set(shipped.class_names)) == len(shipped)
    assert all(name.startswith("U+") for name in shipped.class_names)
    # every class has ink, and not too much of it
    ink = shipped.images.float().mean(dim=(1, 2, 3)) / 255
    assert ink.min() > 0.01 and ink.max() < 0.4


def test_splits_are_disjoint_alphabets_and_roughly_60_40(shipped):
    background, evaluation = load_glyphs("background"), load_glyphs("evaluation")
    assert len(background) + len(evaluation) == len(shipped)
    assert not set(background.alphabet_names) & set(evaluation.alphabet_names)
    assert set(background.alphabet_names) <= {a.name for a in glyphs.BACKGROUND_ALPHABETS}
    assert set(evaluation.alphabet_names) <= {a.name for a in glyphs.EVALUATION_ALPHABETS}
    assert 0.55 < len(background) / len(shipped) < 0.7
    counts = np.unique(shipped.alphabets, return_counts=True)[1]
    assert counts.max() <= glyphs.MAX_CLASSES_PER_ALPHABET
    for split in (background, evaluation):  # scripts and symbols on both sides
        kinds = {glyphs.ALPHABETS[a].kind for a in split.alphabet_names}
        assert kinds == {"script", "symbol"}


def test_regenerating_a_subset_reproduces_the_shipped_images(shipped, tmp_path):
    with np.load(GLYPHS_FILE) as f:
        seed, strength = int(f["seed"]), float(f["strength"])
        versions = str(f["library_versions"])
    if versions != _library_versions():
        pytest.skip(f"shipped file made with {versions}; here {_library_versions()}")
    # three classes of a per-glyph alphabet and of a whole-block alphabet
    names = (shipped.subset(alphabets="Greek").class_names[:3]
             + shipped.subset(alphabets="Braille").class_names[:3])
    out = make_glyphs(tmp_path / "part.npz", seed=seed, strength=strength, classes=names,
                      progress=False)
    assert content_hash(load_glyphs("all", out)) == content_hash(shipped.subset(names))


def test_make_glyphs_writes_identical_bytes(tmp_path):
    a = make_glyphs(tmp_path / "a.npz", size=16, classes=["U+0041"], progress=False)
    b = make_glyphs(tmp_path / "b.npz", size=16, classes=[0x41], progress=False)
    assert a.read_bytes() == b.read_bytes()
    data = load_glyphs("all", a)
    assert data.images.shape == (1, 20, 16, 16) and data.alphabets == ["Latin"]


def test_seed_changes_the_drawings():
    a = glyphs.draw_character("Latin", 0x41, size=20, seed=0, samples=3)
    b = glyphs.draw_character("Latin", 0x41, size=20, seed=1, samples=3)
    assert a.shape == (3, 20, 20) and a.dtype == np.uint8
    assert np.array_equal(a, glyphs.draw_character("Latin", 0x41, size=20, seed=0, samples=3))
    assert not np.array_equal(a, b)


def test_thinning_gives_one_pixel_lines():
    bar = np.zeros((20, 40), bool)
    bar[8:13, 5:35] = True
    skeleton = glyphs.thin(bar)
    assert skeleton.sum(axis=0)[8:32].tolist() == [1] * 24


def test_missing_or_damaged_file_says_how_to_rebuild(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m mlkit make-glyphs"):
        load_glyphs(path=tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(ValueError, match="damaged.*python -m mlkit make-glyphs"):
        load_glyphs(path=bad)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(GLYPHS_FILE.read_bytes()[:100_000])
    with pytest.raises(ValueError, match=str(cut)):
        load_glyphs(path=cut)


@pytest.mark.parametrize("kwargs, name", [
    (dict(size=0), "size"), (dict(size=2.5), "size"), (dict(seed=-1), "seed"),
    (dict(strength="x"), "strength"), (dict(classes=["U+0000"]), "classes"),
    (dict(classes=["A"]), "classes"), (dict(classes=[]), "classes"),
    (dict(workers=0), "workers"),
])
def test_make_glyphs_rejects_bad_arguments(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        make_glyphs(tmp_path / "x.npz", progress=False, **kwargs)


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_glyphs("train")


def test_subset(shipped):
    greek = shipped.subset(alphabets=["Greek"])
    assert set(greek.alphabets) == {"Greek"}
    two = shipped.subset([greek.class_names[1], 0])
    assert two.class_names == [greek.class_names[1], shipped.class_names[0]]
    assert torch.equal(two.images[1], shipped.images[0])
    with pytest.raises(ValueError, match="classes"):
        shipped.subset(["U+FFFF"])
    with pytest.raises(ValueError, match="alphabets"):
        shipped.subset(alphabets=["Klingon"])
    with pytest.raises(ValueError, match="exactly one"):
        shipped.subset()


def test_class_images_checks_its_fields():
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    assert len(ClassImages(images, ["a", "b"], ["x", "x"])) == 2
    with pytest.raises(ValueError, match="uint8"):
        ClassImages(images.float(), ["a", "b"], ["x", "x"])
    with pytest.raises(ValueError, match="one class name"):
        ClassImages(images, ["a"], ["x", "x"])
    with pytest.raises(ValueError, match="unique"):
        ClassImages(images, ["a", "a"], ["x", "x"])
