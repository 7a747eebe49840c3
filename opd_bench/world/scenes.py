"""Procedural scenes of the embedded world: coloured shapes and short text on a flat background.

A :class:`Scene` is its own structured ground truth. :func:`render` draws it deterministically (4x
supersampled, box-filtered down, so edges are anti-aliased like a generated image's) at any size.
Positions and sizes are fractions of the image side, so one scene renders at 32 or 64 px alike.

Design constraints (docs/world.md): object colours are far from each other and from every background
and text colour (so the parser can segment by colour); the smallest object is >= 6 px at 32 px
(``MIN_SIZE``), the largest fills most of the image (``MAX_SIZE``), so both "one big centred object"
and "four small objects" are drawable; objects never overlap and keep a gap of ``GAP``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 230),
    "yellow": (245, 215, 0),
    "purple": (150, 40, 190),
    "orange": (250, 130, 0),
}

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "gray": (150, 150, 150),
    "dark": (35, 35, 40),
    "beige": (235, 225, 200),
}

#: text colours: achromatic, so text never parses as an object.
TEXT_COLORS: dict[str, tuple[int, int, int]] = {"black": (10, 10, 10), "white": (250, 250, 250)}

#: characters used for text: A-Z0-9 without the glyph pairs no OCR can tell apart (O/0, I/1).
TEXT_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

MIN_SIZE = 0.2      # 6.4 px at 32 px
MAX_SIZE = 0.7
GAP = 0.07          # minimum gap between object boxes (about 2 px at 32 px)
_SS = 4             # supersampling factor of render()
_FONTS = Path(__import__("matplotlib").get_data_path()) / "fonts" / "ttf"
_FONT = _FONTS / "DejaVuSans-Bold.ttf"            # free text beside objects
_SIGN_FONT = _FONTS / "DejaVuSansMono-Bold.ttf"   # signs: one monospace cell per character
#: width of one character's cell on a sign, as a fraction of the image side (8 px at 32 px)
SIGN_CELL = 0.25


@dataclass(frozen=True)
class Obj:
    """One shape; centre and size (side of its bounding square) are fractions of the image side."""

    shape: str
    color: str
    cx: float
    cy: float
    size: float

    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) as fractions of the image side."""
        h = self.size / 2
        return (self.cx - h, self.cy - h, self.cx + h, self.cy + h)


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...] = ()
    text: str = ""
    text_color: str = "black"
    text_cx: float = 0.5
    text_cy: float = 0.5
    background: str = "white"
    #: the text is a centred sign: set in a monospace bold font, one :data:`SIGN_CELL`-wide cell per
    #: character (else free text in a proportional bold font, sized by its length)
    sign: bool = False


def contrast_text_color(background: str) -> str:
    """The text colour that is legible on ``background``."""
    return "white" if sum(BACKGROUNDS[background]) < 3 * 128 else "black"


# ----------------------------------------------------------------------------------------------- render
def _shape_polygon(shape: str, x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    w, h = x1 - x0, y1 - y0
    if shape == "triangle":            # apex up, base at the bottom
        return [(x0 + w / 2, y0), (x1, y1), (x0, y1)]
    if shape == "cross":               # plus sign, arm thickness 1/3 of the side
        a, b = x0 + w / 3, x0 + 2 * w / 3
        c, d = y0 + h / 3, y0 + 2 * h / 3
        return [(a, y0), (b, y0), (b, c), (x1, c), (x1, d), (b, d), (b, y1), (a, y1), (a, d), (x0, d), (x0, c), (a, c)]
    raise ValueError(shape)


def _draw_obj(draw: ImageDraw.ImageDraw, obj: Obj, side: int) -> None:
    x0, y0, x1, y1 = (v * side for v in obj.box())
    # PIL fills up to and including the last coordinate: shrink by one pixel to keep the exact extent
    x1, y1 = x1 - 1, y1 - 1
    fill = COLORS[obj.color]
    if obj.shape == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=fill)
    elif obj.shape == "square":
        draw.rectangle([x0, y0, x1, y1], fill=fill)
    elif obj.shape in SHAPES:
        draw.polygon(_shape_polygon(obj.shape, x0, y0, x1, y1), fill=fill)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")


@lru_cache(maxsize=64)
def _font(px: int, sign: bool = False) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_SIGN_FONT if sign else _FONT), px)


def _glyphs(text: str, cx: float, sign: bool, side: int) -> tuple[ImageFont.FreeTypeFont, list[tuple[str, float]]]:
    """The font and the (string, x centre in px) pieces that set ``text`` centred at ``cx``: one piece per
    character on a sign (each centred in its cell), else the whole string."""
    if not sign:
        return _font(_text_px(text, side)), [(text, cx * side)]
    font = _font(_sign_px(side), True)
    x0 = cx - len(text) * SIGN_CELL / 2
    return font, [(c, (x0 + (k + 0.5) * SIGN_CELL) * side) for k, c in enumerate(text)]


def text_box(text: str, cx: float, cy: float, sign: bool = False) -> tuple[float, float, float, float]:
    """Box (fractions) that ``text`` covers when centred at (cx, cy): free text's ink (its font size depends on
    its length); a sign's cells, as high as its ink."""
    ref = 256  # measure at a reference resolution, with the anchor render() uses
    font, pieces = _glyphs(text, cx, sign, ref)
    boxes = [font.getbbox(t, anchor="mm") for t, _ in pieces]
    top, bottom = cy + min(b[1] for b in boxes) / ref, cy + max(b[3] for b in boxes) / ref
    if sign:
        return (cx - len(text) * SIGN_CELL / 2, top, cx + len(text) * SIGN_CELL / 2, bottom)
    return (cx + boxes[0][0] / ref, top, cx + boxes[0][2] / ref, bottom)


def _text_px(text: str, side: int) -> int:
    """Font size in pixels for an image of ``side``: large and bold, at most 88% of the width wide."""
    frac = {1: 0.6, 2: 0.48}.get(len(text), 0.4)
    ref = _font(100)
    width = ref.getlength(text) / 100  # width per pixel of font size
    return max(1, int(min(frac, 0.88 / max(width, 1e-6)) * side))


def _sign_px(side: int) -> int:
    """Font size in pixels whose monospace advance is one :data:`SIGN_CELL`."""
    return max(1, int(round(SIGN_CELL * side / (_font(100, True).getlength("A") / 100))))


def _draw_text(draw: ImageDraw.ImageDraw, scene: Scene, side: int) -> None:
    font, pieces = _glyphs(scene.text, scene.text_cx, scene.sign, side)
    for t, x in pieces:
        draw.text((x, scene.text_cy * side), t, font=font, fill=TEXT_COLORS[scene.text_color], anchor="mm")


def render(scene: Scene, size: int = 32) -> np.ndarray:
    """Render ``scene`` as an HxWx3 uint8 array (deterministic; anti-aliased by 4x supersampling)."""
    side = size * _SS
    img = Image.new("RGB", (side, side), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        _draw_obj(draw, obj, side)
    if scene.text:
        _draw_text(draw, scene, side)
    return np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.uint8).copy()


# -------------------------------------------------------------------------------------------- layout
def _boxes_clear(box, others: Iterable[tuple[float, float, float, float]], gap: float = GAP) -> bool:
    x0, y0, x1, y1 = box
    return all(x0 >= b[2] + gap or b[0] >= x1 + gap or y0 >= b[3] + gap or b[1] >= y1 + gap for b in others)


def free_spot(rng: np.random.Generator, size: float, taken: Sequence[tuple[float, float, float, float]],
              tries: int = 200, margin: float = 0.03) -> tuple[float, float] | None:
    """A random centre for a box of ``size`` inside the image (``margin`` from the edge) clear of ``taken``."""
    lo, hi = margin + size / 2, 1 - margin - size / 2
    if hi < lo:
        return None
    for _ in range(tries):
        cx, cy = rng.uniform(lo, hi, size=2)
        if _boxes_clear((cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2), taken):
            return float(cx), float(cy)
    return None


def object_size_range(n: int) -> tuple[float, float]:
    """Sizes that let ``n`` objects fit: one object may be large, four must be small."""
    hi = {1: MAX_SIZE, 2: 0.42, 3: 0.34}.get(n, 0.3)
    return MIN_SIZE, hi


def place_objects(rng: np.random.Generator, specs: Sequence[tuple[str, str]],
                  taken: Sequence[tuple[float, float, float, float]] = (), tries: int = 50,
                  accept: Callable[[tuple[Obj, ...]], bool] | None = None) -> tuple[Obj, ...]:
    """Place objects given as (shape, colour) at random non-overlapping spots, clear of ``taken`` boxes;
    ``accept`` (optional) must approve the layout (e.g. a spatial relation), else it is redrawn."""
    lo, hi = object_size_range(len(specs))
    for _ in range(tries):
        boxes, objs = list(taken), []
        for shape, color in specs:
            size = float(rng.uniform(lo, hi))
            spot = free_spot(rng, size, boxes)
            if spot is None:
                break
            obj = Obj(shape, color, spot[0], spot[1], size)
            objs.append(obj)
            boxes.append(obj.box())
        else:
            if accept is None or accept(tuple(objs)):
                return tuple(objs)
            continue
        hi = max(lo, hi * 0.9)   # crowded: retry with smaller objects
    raise RuntimeError(f"could not place {len(specs)} objects")


def random_specs(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    return [(SHAPES[rng.integers(len(SHAPES))], list(COLORS)[rng.integers(len(COLORS))]) for _ in range(n)]


def random_text(rng: np.random.Generator, max_len: int = 3) -> str:
    n = int(rng.integers(1, max_len + 1))
    return "".join(TEXT_ALPHABET[i] for i in rng.integers(len(TEXT_ALPHABET), size=n))


def text_scene(rng: np.random.Generator, text: str, taken: Sequence = (), background: str | None = None,
               centred: bool = False) -> Scene:
    """A scene with ``text`` on a random background: centred like a sign or label (``centred``), else at a
    random legible spot clear of ``taken`` boxes."""
    bg = background or list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    if centred and not taken:
        return Scene(text=text, text_color=contrast_text_color(bg), text_cx=0.5, text_cy=0.5, background=bg,
                     sign=True)
    l, t, r, b = (v - 0.5 for v in text_box(text, 0.5, 0.5))   # extent around the anchor
    for _ in range(200):
        cx = float(rng.uniform(0.04 - l, 0.96 - r)) if r - l < 0.9 else 0.5
        cy = float(rng.uniform(0.06 - t, 0.94 - b))
        if _boxes_clear((cx + l, cy + t, cx + r, cy + b), taken, gap=0.04):
            return Scene(text=text, text_color=contrast_text_color(bg), text_cx=cx, text_cy=cy, background=bg)
    raise RuntimeError("no room for text")


def random_scene(rng: np.random.Generator, kind: str = "any") -> Scene:
    """A random scene. ``kind``: "geneval" (1-4 objects, no text), "ocr" (1-3 chars of centred text, no objects),
    "any" (0-4 objects and optional text; at most 2 objects alongside text)."""
    bg = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
    if kind == "geneval":
        return Scene(objects=place_objects(rng, random_specs(rng, int(rng.integers(1, 5)))), background=bg)
    if kind == "ocr":
        return text_scene(rng, random_text(rng), background=bg, centred=True)
    if kind != "any":
        raise ValueError(f"unknown scene kind {kind!r}")
    with_text = rng.random() < 0.4
    n = int(rng.integers(0, 3 if with_text else 5))
    if not with_text:
        return Scene(objects=place_objects(rng, random_specs(rng, n)) if n else (), background=bg)
    text = random_text(rng)
    scene = text_scene(rng, text, background=bg)
    tb = text_box(text, scene.text_cx, scene.text_cy)
    try:
        objs = place_objects(rng, random_specs(rng, n), taken=[tb], tries=10) if n else ()
    except RuntimeError:
        objs = ()
    return Scene(objects=objs, text=scene.text, text_color=scene.text_color,
                 text_cx=scene.text_cx, text_cy=scene.text_cy, background=bg)
