"""Few-shot image sets indexed by class: the shipped glyph dataset and an Omniglot folder reader.

Both give a `ClassImages`: `images[c, k]` is drawing k of class c, uint8, ink bright on black.

    glyphs = load_glyphs("background")   # data/glyphs_28.npz, made by `python -m mlkit make-glyphs`
    omniglot = load_omniglot("~/omniglot", "evaluation")
"""
from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checks import check_choice, check_int

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
GLYPHS_FILE = DATA_DIR / "glyphs_28.npz"
REBUILD_COMMAND = "python -m mlkit make-glyphs"
GLYPH_SPLITS = ("background", "evaluation", "all")
OMNIGLOT_SPLITS = ("background", "evaluation", "background_small1", "background_small2", "all")


@dataclass(frozen=True, eq=False)
class ClassImages:
    """Images grouped by class.

    images:      uint8 tensor (classes, samples, H, W), ink 255 on background 0
    class_names: one unique name per class, e.g. "U+0041" (glyphs), "Greek/character03" (Omniglot)
    alphabets:   the alphabet of each class
    """
    images: torch.Tensor
    class_names: list[str]
    alphabets: list[str]

    def __post_init__(self):
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 \
                or self.images.dim() != 4:
            raise ValueError("images must be a uint8 tensor (classes, samples, H, W), got "
                             f"{getattr(self.images, 'dtype', type(self.images))} "
                             f"{tuple(getattr(self.images, 'shape', ()))}")
        n = len(self.images)
        if len(self.class_names) != n or len(self.alphabets) != n:
            raise ValueError(f"need one class name and one alphabet per class ({n}), got "
                             f"{len(self.class_names)} and {len(self.alphabets)}")
        if len(set(self.class_names)) != n:
            raise ValueError("class_names must be unique")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def samples_per_class(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[2:])

    @property
    def alphabet_names(self) -> list[str]:
        """The distinct alphabets, in the order they first appear."""
        return list(dict.fromkeys(self.alphabets))

    def __repr__(self) -> str:
        c, s, h, w = self.images.shape
        return (f"ClassImages({c} classes x {s} samples of {h}x{w}, "
                f"{len(self.alphabet_names)} alphabets)")


# ------------------------------------------------------------------------------ glyphs: loading
def load_glyphs(split: str = "background", path=None) -> ClassImages:
    """The shipped glyph classes of one split ("background", "evaluation" or "all").

    path defaults to data/glyphs_28.npz; `python -m mlkit make-glyphs` rebuilds it."""
    check_choice("split", split, GLYPH_SPLITS)
    path = GLYPHS_FILE if path is None else Path(path)
    rebuild = REBUILD_COMMAND if path == GLYPHS_FILE else f"{REBUILD_COMMAND} --out {path}"
    if not path.is_file():
        raise FileNotFoundError(f"glyph dataset {path} not found; rebuild it with: {rebuild}")
    try:
        with np.load(path, allow_pickle=False) as f:
            images, codepoints = f["images"], f["codepoints"]
            alphabet_index, names = f["alphabet_index"], f["alphabet_names"]
            splits = f["alphabet_splits"]
        ok = (images.dtype == np.uint8 and images.ndim == 4
              and codepoints.shape == alphabet_index.shape == images.shape[:1]
              and names.shape == splits.shape
              and (len(images) == 0 or 0 <= alphabet_index.min() <= alphabet_index.max()
                   < len(names)))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"glyph dataset {path} is damaged ({type(e).__name__}: {e}); "
                         f"rebuild it with: {rebuild}") from e
    if not ok:
        raise ValueError(f"glyph dataset {path} has inconsistent arrays; "
                         f"rebuild it with: {rebuild}")
    keep = np.ones(len(images), bool) if split == "all" else splits[alphabet_index] == split
    return ClassImages(torch.from_numpy(np.ascontiguousarray(images[keep])),
                       [f"U+{cp:04X}" for cp in codepoints[keep]],
                       [str(names[a]) for a in alphabet_index[keep]])


# ------------------------------------------------------------------------------ Omniglot
def _omniglot_layouts(root: Path, folder: str) -> str:
    return (f"  {root}/{folder}/<alphabet>/<character>/*.png   (the zips from "
            "github.com/brendenlake/omniglot, unzipped)\n"
            f"  {root}/omniglot-py/{folder}/<alphabet>/<character>/*.png   (torchvision's "
            "Omniglot(root, download=True))")


def find_omniglot_folder(root, split: str = "background") -> Path:
    """The images_<split> folder under `root` (or root itself if it is that folder)."""
    check_choice("split", split, OMNIGLOT_SPLITS[:-1])
    root = Path(root).expanduser()
    folder = f"images_{split}"
    for candidate in (root / folder, root / "omniglot-py" / folder, root):
        if candidate.name == folder and candidate.is_dir():
            return candidate
    hint = ""
    if (root / f"{folder}.zip").is_file() or (root / "omniglot-py" / f"{folder}.zip").is_file():
        hint = f"\n{folder}.zip is there: unzip it first."
    raise FileNotFoundError(f"no Omniglot folder {folder} under {root}; expected one of:\n"
                            f"{_omniglot_layouts(root, folder)}{hint}")


def load_omniglot(root, split: str = "background", size: int = 28) -> ClassImages:
    """Omniglot characters read from a folder you downloaded (Lake et al. 2015).

    split: "background" (30 alphabets, 964 characters), "evaluation" (20, 659),
    "background_small1" / "background_small2" (5 alphabets each) or "all" (background +
    evaluation). Images (105x105, black ink on white) are inverted so ink is bright, like the
    glyphs, and resized to size x size by area averaging. Class names: "<alphabet>/<character>".
    """
    from PIL import Image
    check_choice("split", split, OMNIGLOT_SPLITS)
    size = check_int("size", size, 8, 512)
    if split == "all":
        parts = [load_omniglot(root, s, size) for s in ("background", "evaluation")]
        return ClassImages(torch.cat([p.images for p in parts]),
                           sum((p.class_names for p in parts), []),
                           sum((p.alphabets for p in parts), []))
    folder = find_omniglot_folder(root, split)
    names, alphabets, files = [], [], []
    for alphabet in sorted(p for p in folder.iterdir() if p.is_dir()):
        for character in sorted(p for p in alphabet.iterdir() if p.is_dir()):
            pngs = sorted(character.glob("*.png"))
            if pngs:
                names.append(f"{alphabet.name}/{character.name}")
                alphabets.append(alphabet.name)
                files.append(pngs)
    if not files:
        layouts = _omniglot_layouts(folder.parent, folder.name)
        raise FileNotFoundError(f"{folder} holds no <alphabet>/<character>/*.png images; "
                                f"expected one of:\n{layouts}")
    samples = min(len(f) for f in files)
    if any(len(f) != samples for f in files):
        warnings.warn(f"characters in {folder} have {samples} to {max(len(f) for f in files)} "
                      f"drawings; keeping the first {samples} of each")
    images = np.zeros((len(files), samples, size, size), np.uint8)
    for c, pngs in enumerate(files):
        for k, png in enumerate(pngs[:samples]):
            with Image.open(png) as im:
                ink = Image.fromarray(255 - np.asarray(im.convert("L")))
            if ink.size != (size, size):
                ink = ink.resize((size, size), Image.BOX)
            images[c, k] = np.asarray(ink)
    return ClassImages(torch.from_numpy(images), names, alphabets)
