"""Handwritten-looking characters drawn from the DejaVu fonts that matplotlib ships.

An offline stand-in for Omniglot (Lake et al. 2015, "Human-level concept learning through
probabilistic program induction", Science 350): every Unicode script or symbol block is an
*alphabet*, every character a *class*, and every class has 20 samples that look drawn by hand.

How one sample is drawn (Omniglot images are rendered from pen strokes, so we make strokes too):
  1. render the character with a DejaVu font (one of six styles) and scale it into a box;
  2. thin it to a one-pixel skeleton (Zhang & Suen 1984, "A fast parallel algorithm for thinning
     digital patterns", CACM 27(3)) and keep the skeleton as a cloud of points;
  3. move the points with a random affine map plus a smooth elastic field (Simard et al. 2003,
     "Best practices for convolutional neural networks applied to visual document analysis");
  4. ink the moved points with a round pen of random width and average down to `size` pixels.
Sample k of the character with code point c uses the random generator
`numpy.random.default_rng([seed, c, k])`, so any subset of classes can be regenerated on its own
and comes out bit for bit the same.

Which characters become classes: glyphs that render empty, tiny or as filled blobs are dropped,
so are glyphs too intricate to read when drawn by hand at 28 pixels and near-duplicates of a
character kept before (Cyrillic A after Latin A); each alphabet keeps at most 40 characters,
spread evenly over its block.
"""
from __future__ import annotations

import io
import math
import os
import unicodedata
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from ..checks import check_float, check_int
from ..data import DATA_DIR

FORMAT_VERSION = 1

FONT_DIR = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"
# style -> (font file, how often a sample uses it); "sans" is the reference every class must have
STYLES = {
    "sans": ("DejaVuSans.ttf", 3.0),
    "sans-bold": ("DejaVuSans-Bold.ttf", 1.0),
    "sans-oblique": ("DejaVuSans-Oblique.ttf", 1.0),
    "serif": ("DejaVuSerif.ttf", 1.5),
    "serif-italic": ("DejaVuSerif-Italic.ttf", 1.0),
    "mono": ("DejaVuSansMono.ttf", 1.0),
}
SAMPLES_PER_CLASS = 20
MAX_CLASSES_PER_ALPHABET = 40
DEFAULT_STRENGTH = 1.5  # distortion strength; 1.5 looks about as varied as Omniglot's drawers
CANVAS = 105            # strokes live in Omniglot's 105 x 105 pixel frame
CLEAN = 210             # resolution of the clean rendering that gets thinned
BOX = 0.6               # a character's longer side, as a fraction of the frame (Omniglot: ~0.6)


@dataclass(frozen=True)
class Alphabet:
    """A Unicode block (or a few) whose characters form one alphabet.

    layout "glyph": each character is scaled to its own bounding box, as a person drawing it in a
    box would; "block": one box for the whole alphabet, where the position inside the cell
    carries the meaning (Braille dots, hexagram lines).
    """
    name: str
    kind: str                              # "script" or "symbol"
    ranges: tuple[tuple[int, int], ...]    # inclusive code point ranges
    layout: str = "glyph"

    def codepoints(self) -> list[int]:
        """Code points in the ranges that are base characters the sans font can draw."""
        return [cp for lo, hi in self.ranges for cp in range(lo, hi + 1)
                if _is_base_character(cp) and font_has("sans", cp)]


def _a(name, kind, *ranges, layout="glyph"):
    return Alphabet(name, kind, tuple(ranges), layout)


# Chosen by hand: scripts and symbols on both sides, related alphabets kept on one side
# (all of Georgian, all of Cyrillic, all arrows ...) so evaluation alphabets are really new.
BACKGROUND_ALPHABETS = (
    _a("Latin", "script", (0x41, 0x5A), (0x61, 0x7A)),
    _a("Latin_Supplement", "script", (0xA1, 0x17F)),
    _a("Latin_Extended-B", "script", (0x180, 0x24F)),
    _a("Greek", "script", (0x370, 0x3FF)),
    _a("Cyrillic", "script", (0x400, 0x45F)),
    _a("Cyrillic_Extended", "script", (0x460, 0x52F)),
    _a("Cyrillic_Extended-B", "script", (0xA640, 0xA69F)),
    _a("Hebrew", "script", (0x590, 0x5FF)),
    _a("Arabic", "script", (0x600, 0x66F)),
    _a("Arabic_Extended", "script", (0x670, 0x6FF)),
    _a("Lao", "script", (0xE80, 0xEFF)),
    _a("Canadian_Syllabics_1", "script", (0x1400, 0x14FF)),
    _a("Canadian_Syllabics_2", "script", (0x1500, 0x167F)),
    _a("Tifinagh", "script", (0x2D30, 0x2D7F)),
    _a("Old_Italic", "script", (0x10300, 0x1032F)),
    _a("ASCII_Symbols", "symbol", (0x21, 0x40), (0x5B, 0x60), (0x7B, 0x7E)),
    _a("Arrows", "symbol", (0x2190, 0x21FF)),
    _a("Supplemental_Arrows", "symbol", (0x27F0, 0x27FF), (0x2900, 0x297F), (0x2B00, 0x2BFF)),
    _a("Math_Operators_1", "symbol", (0x2200, 0x227F)),
    _a("Math_Operators_2", "symbol", (0x2280, 0x22FF)),
    _a("Misc_Technical", "symbol", (0x2300, 0x23FF)),
    _a("Box_Drawing", "symbol", (0x2500, 0x257F)),
    _a("Misc_Symbols_1", "symbol", (0x2600, 0x267F)),
    _a("Misc_Symbols_2", "symbol", (0x2680, 0x26FF)),
    _a("Braille", "symbol", (0x2801, 0x283F), layout="block"),
    _a("Yijing_Hexagrams", "symbol", (0x4DC0, 0x4DFF), layout="block"),
)
EVALUATION_ALPHABETS = (
    _a("IPA", "script", (0x250, 0x2AF)),
    _a("Phonetic_Extensions", "script", (0x1D00, 0x1D7F)),
    _a("Latin_Extended-C_D", "script", (0x2C60, 0x2C7F), (0xA720, 0xA7FF)),
    _a("Armenian", "script", (0x530, 0x58F)),
    _a("NKo", "script", (0x7C0, 0x7FF)),
    _a("Georgian_Asomtavruli", "script", (0x10A0, 0x10CF)),
    _a("Georgian_Mkhedruli", "script", (0x10D0, 0x10FF)),
    _a("Georgian_Nuskhuri", "script", (0x2D00, 0x2D2F)),
    _a("Ogham", "script", (0x1680, 0x169F)),
    _a("Currency_Letterlike", "symbol", (0x20A0, 0x20CF), (0x2100, 0x218F)),
    _a("Punctuation", "symbol", (0x2010, 0x205E), (0x2E00, 0x2E7F)),
    _a("Misc_Math_Symbols", "symbol", (0x27C0, 0x27EF), (0x2980, 0x29FF)),
    _a("Supplemental_Math", "symbol", (0x2A00, 0x2AFF)),
    _a("Geometric_Shapes", "symbol", (0x25A0, 0x25FF)),
    _a("Dingbats", "symbol", (0x2700, 0x27BF)),
    _a("Emoticons", "symbol", (0x1F600, 0x1F64F)),
    _a("Tai_Xuan_Jing", "symbol", (0x1D306, 0x1D356), layout="block"),
)
ALPHABETS = {a.name: a for a in BACKGROUND_ALPHABETS + EVALUATION_ALPHABETS}

_DRAWABLE = {"Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Nl", "No", "Sm", "Sc", "Sk", "So",
             "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"}


def _is_base_character(cp: int) -> bool:
    """Letters, digits, symbols, punctuation; not accented forms (they duplicate their base)."""
    ch = chr(cp)
    return unicodedata.category(ch) in _DRAWABLE and not unicodedata.decomposition(ch)


# ---------------------------------------------------------------------------------- rendering
@lru_cache(maxsize=None)
def _drawable_codepoints(style: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont  # glyphs with outlines (a cmap entry can be an empty box)
    font = TTFont(FONT_DIR / STYLES[style][0], lazy=True)
    glyf = font["glyf"]
    return frozenset(cp for cp, g in font.getBestCmap().items() if glyf[g].numberOfContours != 0)


def font_has(style: str, cp: int) -> bool:
    """True if the DejaVu font of `style` has an outline for code point `cp`."""
    return cp in _drawable_codepoints(style)


@lru_cache(maxsize=None)
def _font(style: str, px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_DIR / STYLES[style][0]), px,
                              layout_engine=ImageFont.Layout.BASIC)


def render(cp: int, style: str, px: int = 140) -> np.ndarray:
    """Anti-aliased character on a (3 px, 3 px) canvas -> float32 in [0, 1], ink = 1."""
    im = Image.new("L", (3 * px, 3 * px), 0)
    ImageDraw.Draw(im).text((px, px), chr(cp), fill=255, font=_font(style, px))
    return np.asarray(im, dtype=np.float32) / 255


def ink_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) bounding box of the ink, or None if there is none."""
    ys, xs = np.nonzero(mask > 0.25)
    if len(ys) == 0:
        return None
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


def fit_to_frame(mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Crop `box` out of `mask`, scale its longer side to BOX * CLEAN, centre -> (CLEAN, CLEAN)."""
    y0, y1, x0, x1 = box
    scale = BOX * CLEAN / max(y1 - y0, x1 - x0)
    h, w = max(1, round((y1 - y0) * scale)), max(1, round((x1 - x0) * scale))
    crop = Image.fromarray(np.round(mask[y0:y1, x0:x1] * 255).astype(np.uint8))
    out = np.zeros((CLEAN, CLEAN), np.float32)
    oy, ox = (CLEAN - h) // 2, (CLEAN - w) // 2
    out[oy:oy + h, ox:ox + w] = np.asarray(crop.resize((w, h), Image.LANCZOS), np.float32) / 255
    return out


# ---------------------------------------------------------------------------------- thinning
def _zhang_suen_tables() -> tuple[np.ndarray, np.ndarray]:
    """For each of the 256 neighbourhoods: may the centre go in sub-iteration 1, 2?"""
    first, second = np.zeros(256, bool), np.zeros(256, bool)
    for code in range(256):
        p2, p3, p4, p5, p6, p7, p8, p9 = ((code >> i) & 1 for i in range(8))  # N, NE, E, ... NW
        ring = (p2, p3, p4, p5, p6, p7, p8, p9, p2)
        neighbours = sum(ring[:8])
        rises = sum(a == 0 and b == 1 for a, b in zip(ring, ring[1:]))
        ok = 2 <= neighbours <= 6 and rises == 1
        first[code] = ok and p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0
        second[code] = ok and p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0
    return first, second


_ZS_TABLES = _zhang_suen_tables()


def thin(binary: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a bool image to one-pixel-wide lines (each pass is vectorised)."""
    im = np.pad(binary.astype(np.uint8), 1)
    changed = True
    while changed:
        changed = False
        for table in _ZS_TABLES:
            code = (im[:-2, 1:-1] | im[:-2, 2:] << 1 | im[1:-1, 2:] << 2 | im[2:, 2:] << 3
                    | im[2:, 1:-1] << 4 | im[2:, :-2] << 5 | im[1:-1, :-2] << 6 | im[:-2, :-2] << 7)
            remove = (im[1:-1, 1:-1] == 1) & table[code]
            if remove.any():
                im[1:-1, 1:-1][remove] = 0
                changed = True
    return im[1:-1, 1:-1].astype(bool)


def skeleton_points(clean: np.ndarray) -> tuple[np.ndarray, int]:
    """Skeleton of a (CLEAN, CLEAN) rendering -> points (n, 2) as (y, x) in the 105-px frame,
    and the skeleton length in pixels. Midpoints of linked pixels make the cloud dense enough
    to ink as a continuous stroke; dots (tiny components) keep their filled shape instead of
    collapsing into one dab of the pen."""
    ink = clean > 0.5
    ys, xs = np.nonzero(ink)
    if len(ys) == 0:
        return np.zeros((0, 2), np.float32), 0
    y0, x0 = max(ys.min() - 1, 0), max(xs.min() - 1, 0)  # thin only the inked box (faster)
    crop = ink[y0:ys.max() + 2, x0:xs.max() + 2]
    skel = thin(crop)
    h, w = skel.shape
    points = [np.argwhere(skel).astype(np.float32)]
    padded = np.pad(skel, 1)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        linked = skel & padded[1 + dy:h + 1 + dy, 1 + dx:w + 1 + dx]
        points.append(np.argwhere(linked) + np.float32([dy / 2, dx / 2]))
    labels, n = ndimage.label(crop)
    if n:
        skeleton_per_part = ndimage.sum(skel, labels, index=np.arange(1, n + 1))
        for i in np.flatnonzero(skeleton_per_part < 12):
            dot = ndimage.binary_erosion(labels == i + 1, iterations=2)
            points.append(np.argwhere(dot).astype(np.float32))
    pts = np.concatenate(points) + np.float32([y0 + 0.5, x0 + 0.5])
    return (pts * (CANVAS / CLEAN)).astype(np.float32), int(skel.sum())


# ---------------------------------------------------------------------------------- strokes
@dataclass
class Glyph:
    """One character: its skeleton points (n, 2) in the 105-px frame, per available style."""
    codepoint: int
    alphabet: str
    strokes: dict[str, np.ndarray] = field(default_factory=dict)


@lru_cache(maxsize=None)
def _block_box(alphabet: str, style: str) -> tuple[int, int, int, int] | None:
    """One bounding box around every character of a "block"-layout alphabet."""
    boxes = [ink_box(render(cp, style)) for cp in ALPHABETS[alphabet].codepoints()
             if font_has(style, cp)]
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return (min(b[0] for b in boxes), max(b[1] for b in boxes),
            min(b[2] for b in boxes), max(b[3] for b in boxes))


def clean_rendering(alphabet: str, cp: int, style: str = "sans") -> np.ndarray | None:
    """The character fitted to the (CLEAN, CLEAN) frame, or None if it renders empty."""
    if not font_has(style, cp):
        return None
    mask = render(cp, style)
    block = ALPHABETS[alphabet].layout == "block"
    box = _block_box(alphabet, style) if block else ink_box(mask)
    if box is None or mask.max() < 0.5:
        return None
    return fit_to_frame(mask, box)


def trace(alphabet: str, cp: int, styles=tuple(STYLES)) -> Glyph:
    """Skeletons of character `cp` in each of `styles` that the fonts have."""
    glyph = Glyph(cp, alphabet)
    for style in styles:
        clean = clean_rendering(alphabet, cp, style)
        if clean is not None:
            pts, _ = skeleton_points(clean)
            if len(pts):
                glyph.strokes[style] = pts
    return glyph


def screen(alphabet: str, cp: int, min_skeleton: int = 40, max_thickness: float = 0.075,
           max_ink: float = 0.13):
    """Check the sans rendering: -> (Glyph with sans strokes, None) or (None, reason dropped).

    Dropped: "empty" (nothing to draw), "tiny" (skeleton under `min_skeleton` pixels: dashes,
    dots, accents), "blob" (filled shapes thicker than `max_thickness` of the frame, whose
    skeleton would be a lie), "dense" (drawn at 28 px with a medium pen, more than `max_ink` of
    the image is ink: grids, faces, keyboards, too intricate to read when drawn by hand)."""
    clean = clean_rendering(alphabet, cp, "sans")
    if clean is None:
        return None, "empty"
    pts, length = skeleton_points(clean)
    if ALPHABETS[alphabet].layout == "glyph":
        if length < min_skeleton:
            return None, "tiny"
        if ndimage.distance_transform_edt(clean > 0.5).max() / CLEAN > max_thickness:
            return None, "blob"
    if ink(pts, pen_radius=2.0, size=28).mean() > max_ink:
        return None, "dense"
    return Glyph(cp, alphabet, {"sans": pts}), None


def canonical_image(points: np.ndarray, size: int = 32) -> np.ndarray:
    """The undistorted character drawn with a medium pen -> float (size, size)."""
    return ink(points, pen_radius=3.0, size=size)


# Two characters are near-duplicates when their blurred canonical images correlate this much.
# Characters of a "block" alphabet differ by design (one dot or one broken line), so only exact
# copies count there.
DUPLICATE_CORRELATION = {"glyph": 0.96, "block": 0.99}


def shape_features(glyph: Glyph) -> np.ndarray:
    """Blurred canonical image of the sans strokes, centred, unit length -> (32 * 32,)."""
    return _features(canonical_image(glyph.strokes["sans"]))


def _features(image: np.ndarray, blur: float = 1.0) -> np.ndarray:
    x = ndimage.gaussian_filter(image, blur).ravel()
    x = x - x.mean()
    return x / (np.linalg.norm(x) + 1e-8)


def deduplicate(candidates: list[Glyph], kept: np.ndarray, threshold: float):
    """Drop candidates whose features correlate >= `threshold` with a row of `kept` (features of
    characters kept before) or with an earlier candidate -> (unique candidates, their features)."""
    unique, features = [], []
    for glyph in candidates:
        f = shape_features(glyph)
        r = np.concatenate([kept @ f, np.array(features).reshape(-1, f.size) @ f])
        if len(r) and r.max() >= threshold:
            continue
        unique.append(glyph)
        features.append(f)
    return unique, np.array(features).reshape(-1, kept.shape[1])


def evenly_spaced(items: list, cap: int) -> list:
    """At most `cap` items spread evenly over `items` (all of them if there are few)."""
    if len(items) <= cap:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, cap).round().astype(int)]


def screen_job(job: tuple[str, int]):
    """screen(*job), for process pools."""
    return screen(*job)


# An evaluation character is dropped when a quarter turn, a half turn or a mirror image of a
# background character (any of the square's 8 symmetries, identity included) correlates this
# much with it: the turned letters of IPA (a, h, k turned 180 degrees: 0.99) and a mirrored c
# (0.99) all score above 0.93; meta-training sees every background class turned as well.
LEAK_CORRELATION = 0.92
SYMMETRIES = {"same": lambda a: a, "quarter turn": lambda a: np.rot90(a, 1),
              "half turn": lambda a: np.rot90(a, 2), "three quarter turns": lambda a: np.rot90(a, 3),
              "mirror": lambda a: a[:, ::-1], "mirror, quarter turn": lambda a: np.rot90(a[:, ::-1]),
              "upside down": lambda a: a[::-1],
              "mirror, three quarter turns": lambda a: np.rot90(a[:, ::-1], 3)}


def symmetric_features(glyphs: list) -> np.ndarray:
    """shape_features of every glyph under each of the 8 SYMMETRIES -> (8, n, 32 * 32)."""
    images = [canonical_image(g.strokes["sans"]) for g in glyphs]
    return np.stack([np.array([_features(turn(im).copy()) for im in images]).reshape(-1, 32 * 32)
                     for turn in SYMMETRIES.values()])


def leaks(candidates: list, background: np.ndarray) -> np.ndarray:
    """For each candidate Glyph, its highest correlation with a background character under
    any symmetry (background: symmetric_features of the background) -> (n,)."""
    if not candidates or not background.shape[1]:
        return np.zeros(len(candidates))
    f = np.array([shape_features(g) for g in candidates])
    return np.einsum("sbd,cd->scb", background, f).max(axis=(0, 2))


def select_characters(alphabets=BACKGROUND_ALPHABETS + EVALUATION_ALPHABETS,
                      max_per_alphabet: int = MAX_CLASSES_PER_ALPHABET, screen_map=map):
    """The characters that become classes -> (list of (alphabet name, code point), drop counts).

    Alphabets are deduplicated in order, so an earlier alphabet keeps a character that a later
    one repeats; an evaluation alphabet also loses every character that a turned or mirrored
    background character matches (LEAK_CORRELATION). `screen_map(screen_job, jobs)` screens
    the candidates (a pool's imap works)."""
    jobs = [(a.name, cp) for a in alphabets for cp in a.codepoints()]
    screened = list(screen_map(screen_job, jobs))
    held_out = {a.name for a in EVALUATION_ALPHABETS}
    chosen, background = [], []
    kept = np.zeros((0, 32 * 32))  # features of every character kept so far
    turned = None                  # symmetric_features of the background, once it is complete
    dropped = {"empty": 0, "tiny": 0, "blob": 0, "dense": 0, "duplicate": 0,
               "turned or mirrored background": 0, "over cap": 0}
    for alphabet in alphabets:
        candidates = []
        for (name, _), (glyph, reason) in zip(jobs, screened):
            if name != alphabet.name:
                continue
            if glyph is None:
                dropped[reason] += 1
            else:
                candidates.append(glyph)
        if alphabet.name in held_out:
            turned = symmetric_features(background) if turned is None else turned
            fresh = [g for g, r in zip(candidates, leaks(candidates, turned))
                     if r < LEAK_CORRELATION]
            dropped["turned or mirrored background"] += len(candidates) - len(fresh)
            candidates = fresh
        unique, features = deduplicate(candidates, kept, DUPLICATE_CORRELATION[alphabet.layout])
        keep = evenly_spaced(list(range(len(unique))), max_per_alphabet)
        dropped["duplicate"] += len(candidates) - len(unique)
        dropped["over cap"] += len(unique) - len(keep)
        kept = np.concatenate([kept, features[keep]])
        chosen += [(alphabet.name, unique[i].codepoint) for i in keep]
        if alphabet.name not in held_out:
            background += [unique[i] for i in keep]
    return chosen, dropped


# ---------------------------------------------------------------------------------- handwriting
def random_hand(rng: np.random.Generator, strength: float = DEFAULT_STRENGTH) -> dict:
    """Random distortion of one drawing: affine part, coarse and fine elastic grids, pen size."""
    return dict(
        rotation=float(np.clip(rng.normal(0, 7), -18, 18)) * strength,  # degrees
        scale=float(np.exp(rng.normal(0, 0.10) * strength)),
        aspect=float(np.exp(rng.normal(0, 0.07) * strength)),
        shear=float(np.clip(rng.normal(0, 0.12), -0.3, 0.3)) * strength,
        shift=rng.normal(0, 3.0, size=2) * strength,                   # (dy, dx) pixels of 105
        elastic=rng.normal(0, 2.2 * strength, size=(2, 4, 4)),        # slow bends
        wobble=rng.normal(0, 0.7 * strength, size=(2, 9, 9)),         # shaky hand
        pen_radius=float(rng.uniform(1.3, 2.8)),
    )


def _smooth_field(grid: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Displacements (n, 2) at `points`: cubic interpolation of a coarse (2, g, g) grid."""
    at = (points * ((grid.shape[-1] - 1) / CANVAS)).T
    return np.stack([ndimage.map_coordinates(g, at, order=3, mode="nearest") for g in grid], 1)


def warp(points: np.ndarray, hand: dict) -> np.ndarray:
    """Move (n, 2) points by the hand's affine map about the frame centre plus its fields."""
    t = math.radians(hand["rotation"])
    rotate = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    shear = np.array([[1.0, 0.0], [hand["shear"], 1.0]])
    stretch = np.diag([hand["scale"] * hand["aspect"], hand["scale"] / hand["aspect"]])
    centre = CANVAS / 2
    moved = (points - centre) @ (rotate @ shear @ stretch).T + centre + hand["shift"]
    return moved + _smooth_field(hand["elastic"], points) + _smooth_field(hand["wobble"], points)


def ink(points: np.ndarray, pen_radius: float, size: int) -> np.ndarray:
    """Draw a round pen at every point (105-px frame) -> float (size, size) in [0, 1].

    Drawn `ss` times larger (pen edge anti-aliased by the distance transform), then averaged
    down in ss x ss blocks."""
    ss = max(2, math.ceil(128 / size))
    big = size * ss
    at = np.round(points * (big / CANVAS)).astype(int)
    inside = ((at >= 0) & (at < big)).all(1)
    empty = np.ones((big, big), bool)
    empty[at[inside, 0], at[inside, 1]] = False
    distance = ndimage.distance_transform_edt(empty)
    canvas = np.clip(pen_radius * big / CANVAS + 0.5 - distance, 0, 1)
    return canvas.reshape(size, ss, size, ss).mean(axis=(1, 3))


def draw_samples(glyph: Glyph, size: int = 28, seed: int = 0, strength: float = DEFAULT_STRENGTH,
                 samples: int = SAMPLES_PER_CLASS) -> np.ndarray:
    """`samples` handwritten drawings of `glyph` -> uint8 (samples, size, size), ink = 255.

    Drawing k uses rng = default_rng([seed, code point, k]): it picks a font style (weighted by
    STYLES), a random hand and inks the warped skeleton."""
    styles = sorted(glyph.strokes)
    weights = np.array([STYLES[s][1] for s in styles])
    out = np.zeros((samples, size, size), np.uint8)
    for k in range(samples):
        rng = np.random.default_rng([seed, glyph.codepoint, k])
        style = styles[rng.choice(len(styles), p=weights / weights.sum())]
        hand = random_hand(rng, strength)
        image = ink(warp(glyph.strokes[style], hand), hand["pen_radius"], size)
        out[k] = np.round(image * 255).astype(np.uint8)
    return out


def draw_character(alphabet: str, cp: int, size: int = 28, seed: int = 0,
                   strength: float = DEFAULT_STRENGTH,
                   samples: int = SAMPLES_PER_CLASS) -> np.ndarray:
    """Trace character `cp` of `alphabet` in every style and draw it.

    -> uint8 (samples, size, size), ink = 255."""
    return draw_samples(trace(alphabet, cp), size, seed, strength, samples)


# ---------------------------------------------------------------------------------- the file
def library_versions() -> str:
    """The versions of the libraries that decide the pixels (stored in the file)."""
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
                         "mlkit.BACKGROUND_ALPHABETS and EVALUATION_ALPHABETS)")
    rank = {a.name: i for i, a in enumerate(alphabets)}
    return sorted(((home[cp], cp) for cp in wanted), key=lambda job: (rank[job[0]], job[1]))


def _draw(job, size, seed, strength):
    alphabet, cp = job
    return draw_character(alphabet, cp, size=size, seed=seed, strength=strength)


def make_glyphs(out_path=None, size: int = 28, seed: int = 0, strength: float | None = None,
                classes=None, workers: int | None = None, progress: bool = True) -> Path:
    """Generate the glyph dataset and write it to `out_path` (default data/glyphs_<size>.npz).

    size: image side in pixels; seed: the random seed of every drawing; strength: distortion
    (default DEFAULT_STRENGTH, Omniglot-like); classes: None for the full selection, or
    code points / class names ("U+0041") to draw just those, exactly as the full run draws them;
    workers: processes (default: up to 2). The file is byte-for-byte the same on every run with
    the same library versions (stored in the file). About a minute on 2 cores.
    """
    from tqdm.auto import tqdm

    size = check_int("size", size, 8, 256)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    strength = check_float("strength", DEFAULT_STRENGTH if strength is None else strength,
                           0, 5)
    workers = min(2, os.cpu_count() or 1) if workers is None else check_int("workers", workers, 1)
    out_path = DATA_DIR / f"glyphs_{size}.npz" if out_path is None else Path(out_path)
    alphabets = BACKGROUND_ALPHABETS + EVALUATION_ALPHABETS
    chosen = None if classes is None else _find_classes(classes, alphabets)

    pool, imap = None, map  # a small job is faster without starting processes
    if workers > 1 and (chosen is None or len(chosen) >= 50):
        import multiprocessing
        pool = multiprocessing.get_context().Pool(workers)
        imap = partial(pool.imap, chunksize=8)
    try:
        if chosen is None:
            chosen, _ = select_characters(alphabets, screen_map=lambda f, jobs: tqdm(
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
    background = {a.name for a in BACKGROUND_ALPHABETS}
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
        "library_versions": np.array(library_versions()),
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


