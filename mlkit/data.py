"""Few-shot image sets indexed by class: the shipped glyph dataset and an Omniglot folder reader.

Both give a `ClassImages`: `images[c, k]` is drawing k of class c, uint8, ink bright on black.

    glyphs = load_glyphs("background")          # data/glyphs_28.npz, made by `make_glyphs`
    omniglot = load_omniglot("~/omniglot", "evaluation")
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .checks import check_choice, check_float, check_int

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
GLYPHS_FILE = DATA_DIR / "glyphs_28.npz"
REBUILD_COMMAND = "python -m mlkit make-glyphs"
GLYPH_SPLITS = ("background", "evaluation", "all")
OMNIGLOT_SPLITS = ("background", "evaluation", "background_small1", "background_small2", "all")
FORMAT_VERSION = 1


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
    def num_classes(self) -> int:
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

    def subset(self, classes=None, alphabets=None) -> "ClassImages":
        """The classes given by index or name (in that order), or all classes of `alphabets`."""
        if (classes is None) == (alphabets is None):
            raise ValueError("subset needs exactly one of classes=... or alphabets=...")
        if alphabets is not None:
            alphabets = [alphabets] if isinstance(alphabets, str) else list(alphabets)
            unknown = [a for a in alphabets if a not in self.alphabet_names]
            if unknown:
                raise ValueError(f"alphabets {unknown} not in this set; it has "
                                 f"{self.alphabet_names}")
            index = [i for i, a in enumerate(self.alphabets) if a in alphabets]
        else:
            position = {name: i for i, name in enumerate(self.class_names)}
            index = []
            for c in ([classes] if isinstance(classes, (str, int)) else classes):
                if isinstance(c, str) and c in position:
                    index.append(position[c])
                elif isinstance(c, (int, np.integer)) and -len(self) <= c < len(self):
                    index.append(int(c) % len(self))
                else:
                    raise ValueError(f"classes must hold class names of this set or indices in "
                                     f"[0, {len(self)}), got {c!r}")
        return ClassImages(self.images[index], [self.class_names[i] for i in index],
                           [self.alphabets[i] for i in index])

    def __repr__(self) -> str:
        c, s, h, w = self.images.shape
        return (f"ClassImages({c} classes x {s} samples of {h}x{w}, "
                f"{len(self.alphabet_names)} alphabets)")


def content_hash(data: ClassImages) -> str:
    """sha256 of the images and the labels (class names, alphabets): equal sets, equal hashes."""
    h = hashlib.sha256()
    h.update(str(tuple(data.images.shape)).encode())
    h.update(data.images.contiguous().numpy().tobytes())
    h.update("\n".join(data.class_names).encode())
    h.update("\n".join(data.alphabets).encode())
    return h.hexdigest()


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


# ------------------------------------------------------------------------------ glyphs: making
def _library_versions() -> str:
    import PIL
    import scipy
    from PIL import features
    return (f"numpy {np.__version__}, scipy {scipy.__version__}, pillow {PIL.__version__}, "
            f"freetype {features.version('freetype2')}")


def _codepoint(c) -> int:
    if isinstance(c, str) and c.upper().startswith("U+"):
        try:
            return int(c[2:], 16)
        except ValueError:
            pass
    elif isinstance(c, (int, np.integer)) and not isinstance(c, bool):
        return int(c)
    raise ValueError(f"classes must hold code points (int) or class names like 'U+0041', got {c!r}")


def _find_classes(classes, alphabets) -> list[tuple[str, int]]:
    """(alphabet name, code point) of the given classes, in the order of a full run."""
    classes = [classes] if isinstance(classes, (str, int)) else list(classes)
    if not classes:
        raise ValueError("classes must name at least one character, or be None for all")
    wanted = {_codepoint(c) for c in classes}
    home = {cp: a.name for a in alphabets for cp in a.codepoints() if cp in wanted}
    missing = [f"U+{cp:04X}" for cp in sorted(wanted - home.keys())]
    if missing:
        raise ValueError(f"classes {missing} are in no glyph alphabet (see "
                         "mlkit.glyphs.BACKGROUND_ALPHABETS and EVALUATION_ALPHABETS)")
    rank = {a.name: i for i, a in enumerate(alphabets)}
    return sorted(((home[cp], cp) for cp in wanted), key=lambda job: (rank[job[0]], job[1]))


def _draw(job, size, seed, strength):
    from . import glyphs
    alphabet, cp = job
    return glyphs.draw_character(alphabet, cp, size=size, seed=seed, strength=strength)


def make_glyphs(out_path=None, size: int = 28, seed: int = 0, strength: float | None = None,
                classes=None, workers: int | None = None, progress: bool = True) -> Path:
    """Generate the glyph dataset and write it to `out_path` (default data/glyphs_<size>.npz).

    size: image side in pixels; seed: the random seed of every drawing; strength: distortion
    (default glyphs.DEFAULT_STRENGTH, Omniglot-like); classes: None for the full selection, or
    code points / class names ("U+0041") to draw just those, exactly as the full run draws them;
    workers: processes (default: up to 2). The file is byte-for-byte the same on every run with
    the same library versions (stored in the file). About a minute on 2 cores.
    """
    from tqdm.auto import tqdm

    from . import glyphs
    size = check_int("size", size, 8, 256)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    strength = check_float("strength", glyphs.DEFAULT_STRENGTH if strength is None else strength,
                           0, 5)
    workers = min(2, os.cpu_count() or 1) if workers is None else check_int("workers", workers, 1)
    out_path = DATA_DIR / f"glyphs_{size}.npz" if out_path is None else Path(out_path)
    alphabets = glyphs.BACKGROUND_ALPHABETS + glyphs.EVALUATION_ALPHABETS
    chosen = None if classes is None else _find_classes(classes, alphabets)

    pool, imap = None, map  # a small job is faster without starting processes
    if workers > 1 and (chosen is None or len(chosen) >= 50):
        import multiprocessing
        pool = multiprocessing.get_context().Pool(workers)
        imap = partial(pool.imap, chunksize=8)
    try:
        if chosen is None:
            chosen, _ = glyphs.select_characters(alphabets, screen_map=lambda f, jobs: tqdm(
                imap(f, jobs), total=len(jobs), desc="screening characters",
                disable=not progress))
        drawings = tqdm(imap(partial(_draw, size=size, seed=seed, strength=strength), chosen),
                        total=len(chosen), desc="drawing classes", disable=not progress)
        images = np.stack(list(drawings))
    finally:
        if pool is not None:
            pool.close()
            pool.join()

    used = [a for a in alphabets if a.name in {name for name, _ in chosen}]
    position = {a.name: i for i, a in enumerate(used)}
    background = {a.name for a in glyphs.BACKGROUND_ALPHABETS}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_npz(out_path, {
        "images": images,                                   # (classes, 20, size, size) uint8
        "codepoints": np.array([cp for _, cp in chosen], np.int32),
        "alphabet_index": np.array([position[name] for name, _ in chosen], np.int16),
        "alphabet_names": np.array([a.name for a in used], dtype="U"),
        "alphabet_kinds": np.array([a.kind for a in used], dtype="U"),
        "alphabet_splits": np.array(["background" if a.name in background else "evaluation"
                                     for a in used], dtype="U"),
        "seed": np.array(seed, np.int64),
        "strength": np.array(strength, np.float64),
        "format_version": np.array(FORMAT_VERSION, np.int64),
        "library_versions": np.array(_library_versions()),
    })
    return out_path


def write_npz(path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed, but byte-for-byte reproducible: numpy stamps each member with
    the current time, we use a fixed date (and fixed file attributes)."""
    tmp = Path(f"{path}.partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3             # "unix", whatever the platform
            info.external_attr = 0o644 << 16
            zf.writestr(info, buffer.getvalue(), compresslevel=9)
    os.replace(tmp, path)


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
