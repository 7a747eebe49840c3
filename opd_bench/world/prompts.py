"""Prompts and captions of the embedded world.

- GenEval-style prompt records (GenEval's metadata format; our classes are the shapes) for the six
  categories, and :func:`scene_for_record`, a generator of a scene that satisfies a record (geneval or
  OCR) -- the ground truth the evaluators are tested against.
- :func:`caption`: an imperfect, web-style caption of a scene, and :func:`pretraining_pairs`, the
  (caption, image) pairs the base text-to-image model is pretrained on.
"""
from __future__ import annotations

import itertools
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..scoring.geneval_rules import RELATIONS, relative_position
from ..scoring.records import PromptRecord
from .scenes import (BACKGROUNDS, COLORS, SHAPES, Obj, Scene, place_objects, random_scene, random_text, render,
                     text_scene)

Record = PromptRecord
CATEGORIES = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four"}
#: GenEval's phrasing ("a photo of ...") is template 0, used for eval; the others only for training.
GENEVAL_TEMPLATES = ("a photo of {}", "an image of {}", "a picture of {}", "{}")
OCR_TEMPLATES = ('a sign that says "{}"', 'the text "{}"', 'a poster with the word "{}"',
                 'a label reading "{}"', '"{}" written in bold letters', 'a logo with the letters "{}"')
#: margin used when *generating* position scenes: stricter than the judge's 0.1, so a parse that is
#: off by a pixel still satisfies the relation.
GEN_POSITION_THRESHOLD = 0.2


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _plural(noun: str) -> str:
    return noun + ("es" if noun.endswith(("s", "x")) else "s")


def _noun(req: Record) -> str:
    cls = _plural(req["class"]) if req["count"] > 1 else req["class"]
    words = ([NUMBERS[req["count"]]] if req["count"] > 1 else []) + ([req["color"]] if req.get("color") else []) + [cls]
    return " ".join(words) if req["count"] > 1 else _a(" ".join(words))


def geneval_prompt(meta: Record, template: int = 0) -> str:
    """The prompt text of a GenEval metadata record (GenEval's own wording with template 0)."""
    inc = meta["include"]
    if meta["tag"] == "position":
        desc = f"{_noun(inc[1])} {inc[1]['position'][0]} {_noun(inc[0])}"
    else:
        desc = " and ".join(_noun(r) for r in inc)
    return GENEVAL_TEMPLATES[template].format(desc)


def geneval_metadata(tag: str) -> List[Record]:
    """Every distinct metadata record (without prompt) of one GenEval category, in a fixed order."""
    one = lambda cls, **kw: {"class": cls, "count": 1, **kw}  # noqa: E731
    if tag == "single_object":
        metas = [{"include": [one(s)]} for s in SHAPES]
    elif tag == "two_object":
        metas = [{"include": [one(a), one(b)]} for a, b in itertools.permutations(SHAPES, 2)]
    elif tag == "counting":
        metas = [{"include": [{"class": s, "count": n}], "exclude": [{"class": s, "count": n + 1}]}
                 for s in SHAPES for n in (2, 3, 4)]
    elif tag == "colors":
        metas = [{"include": [one(s, color=c)]} for s in SHAPES for c in COLORS]
    elif tag == "position":
        metas = [{"include": [one(b), one(a, position=[rel, 0])]}
                 for a, b in itertools.permutations(SHAPES, 2) for rel in RELATIONS]
    elif tag == "color_attr":
        metas = [{"include": [one(a, color=ca), one(b, color=cb)]}
                 for a, b in itertools.permutations(SHAPES, 2) for ca, cb in itertools.permutations(COLORS, 2)]
    else:
        raise ValueError(f"unknown GenEval category {tag!r}")
    return [{"tag": tag, **m} for m in metas]


def geneval_record(meta: Record, template: int = 0) -> Record:
    return {"prompt": geneval_prompt(meta, template), **meta}


def ocr_record(text: str, template: int = 0) -> Record:
    return {"prompt": OCR_TEMPLATES[template].format(text), "text": text}


# ------------------------------------------------------------------------------ scenes for a record
def _random_background(rng: np.random.Generator) -> str:
    return list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]


def geneval_scene(record: Record, rng: np.random.Generator) -> Scene:
    """A scene that satisfies a GenEval record exactly: the included objects (with the asked colours,
    counts and relation; unspecified colours random) and nothing else."""
    colors = list(COLORS)
    specs, owner = [], []
    for gi, req in enumerate(record["include"]):
        for _ in range(req["count"]):
            specs.append((req["class"], req.get("color") or colors[rng.integers(len(colors))]))
            owner.append(gi)
    rels = [(gi, req["position"]) for gi, req in enumerate(record["include"]) if req.get("position")]

    def accept(objs: Sequence[Obj]) -> bool:
        return all(rel in relative_position(a.box(), b.box(), GEN_POSITION_THRESHOLD)
                   for gi, (rel, target) in rels
                   for a, ga in zip(objs, owner) if ga == gi
                   for b, gb in zip(objs, owner) if gb == target)

    objs = place_objects(rng, specs, accept=accept if rels else None, tries=2000)
    return Scene(objects=objs, background=_random_background(rng))


def scene_for_record(record: Record, rng: np.random.Generator) -> Scene:
    """A correct scene for a prompt record of the geneval (``include``) or ocr (``text``) task."""
    if "text" in record and record["text"]:
        return text_scene(rng, record["text"], centred=True)
    if "include" in record:
        return geneval_scene(record, rng)
    raise ValueError(f"no scene generator for record {record!r}")


# ---------------------------------------------------------------------------------------- captions
SYNONYMS = {
    "circle": ("circle", "circle", "dot", "disc", "ball", "round shape"),
    "square": ("square", "square", "box", "block", "tile"),
    "triangle": ("triangle", "triangle", "pyramid", "triangular shape"),
    "cross": ("cross", "cross", "plus sign", "plus"),
}
VAGUE = ("some", "a few", "several", "a group of")
NOISE = ("hd", "4k", "stock image", "free download", "clipart", "illustration", "vector", "wallpaper",
         "minimal", "icon", "flat design", "#art", "high quality")
PREFIXES = ("a photo of", "an image of", "a picture of", "", "", "photo:", "simple drawing of")
TEXT_MENTIONS = ('with the text "{}"', 'that says "{}"', 'with the word "{}"', 'saying "{}"', '"{}"',
                 "with some text", "with letters")
QUOTED_MENTIONS = tuple(m for m in TEXT_MENTIONS if "{}" in m)


def _pick(rng: np.random.Generator, seq: Sequence[str]) -> str:
    return seq[rng.integers(len(seq))]


def _mention(rng: np.random.Generator, shape: str, colors: List[str]) -> str:
    """A noun phrase for ``len(colors)`` objects of one shape: exact or vague count, synonyms, colour
    sometimes dropped or (rarely) wrong."""
    n = len(colors)
    noun = shape if rng.random() < 0.6 else _pick(rng, SYNONYMS[shape])
    color = colors[0] if len(set(colors)) == 1 else ""
    if color and rng.random() < 0.05:
        color = _pick(rng, list(COLORS))          # wrong colour
    elif color and rng.random() < 0.2:
        color = ""                                # colour left out
    if n == 1:
        return _a(f"{color} {noun}".strip())
    count = NUMBERS[n] if rng.random() < 0.75 else _pick(rng, VAGUE)
    return f"{count} {color} {_plural(noun)}".replace("  ", " ")


def caption(scene: Scene, rng: np.random.Generator, text_quote: Optional[float] = None) -> str:
    """An imperfect web-style caption of ``scene``: objects grouped by shape and sometimes omitted,
    counts exact or vague, synonyms, colours sometimes missing or wrong, the relation of two objects
    sometimes stated, the text sometimes quoted, stray words sometimes added.

    ``text_quote``: the probability that the caption quotes the scene's text. ``None`` (the default and the
    released base's data) mentions the text 80% of the time, with one of ``TEXT_MENTIONS``, two of whose
    seven phrasings ("with letters") do not quote it: the string is quoted in 57% of captions."""
    groups: Dict[str, List[str]] = {}
    for o in scene.objects:
        groups.setdefault(o.shape, []).append(o.color)
    parts = [_mention(rng, s, c) for s, c in groups.items() if len(groups) == 1 or rng.random() < 0.85]
    objs = scene.objects
    if len(objs) == 2 and len(parts) == 2 and objs[0].shape != objs[1].shape and rng.random() < 0.6:
        rels = sorted(relative_position(objs[1].box(), objs[0].box()))
        if rels:   # phrase as "<second> <relation> <first>", like the position prompts
            a, b = _mention(rng, objs[1].shape, [objs[1].color]), _mention(rng, objs[0].shape, [objs[0].color])
            parts = [f"{a} {_pick(rng, rels)} {b}"]
    if scene.text and text_quote is not None:
        if rng.random() < text_quote:
            parts.append(("a sign " if not parts and rng.random() < 0.5 else "") + _pick(rng, QUOTED_MENTIONS).format(scene.text))
    elif scene.text and rng.random() < 0.8:
        t = _pick(rng, TEXT_MENTIONS)
        parts.append(("a sign " if not parts and rng.random() < 0.5 else "") + t.format(scene.text))
    if not parts:
        parts = [_pick(rng, ("empty background", "blank", "plain background", "nothing"))]
    desc = " and ".join(parts)
    if rng.random() < 0.15:
        desc += f" on a {scene.background} background"
    prefix = _pick(rng, PREFIXES)
    out = f"{prefix} {desc}".strip()
    if rng.random() < 0.2:
        out += ", " + _pick(rng, NOISE)
    return out


#: share of text-only scenes in the default pretraining mix
TEXT_FRACTION = 0.15


def _pretraining_scene(rng: np.random.Generator, text_fraction: float = TEXT_FRACTION) -> Scene:
    """One scene of the pretraining mix: ``text_fraction`` text only (centred, like a sign); of the rest,
    80% built from a random GenEval-category record (so single and two objects, counts 2-4, colours,
    relations are all covered) and 20% varied scenes (0-4 objects, optional text). Default 15% / 60% / 25%."""
    u = rng.random()
    if u < text_fraction:
        return text_scene(rng, random_text(rng), centred=True)
    if u < text_fraction + 0.8 * (1 - text_fraction):
        metas = geneval_metadata(CATEGORIES[rng.integers(len(CATEGORIES))])
        return geneval_scene(metas[rng.integers(len(metas))], rng)
    return random_scene(rng, "any")


def pretraining_pairs(n: int, seed: int, size: int = 32, text_fraction: float = TEXT_FRACTION,
                      text_quote: Optional[float] = None) -> tuple[list[str], np.ndarray]:
    """``n`` (caption, image) pairs for pretraining; deterministic given ``seed``. Images: uint8 NxHxWx3.
    ``text_quote``: see :func:`caption` (``None`` keeps the released base's data)."""
    rng = np.random.default_rng(seed)
    captions, images = [], np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        scene = _pretraining_scene(rng, text_fraction)
        captions.append(caption(scene, rng, text_quote))
        images[i] = render(scene, size)
    return captions, images


def sign_pairs(n: int, seed: int, size: int = 32, text_fraction: float = 1.0) -> tuple[list[str], np.ndarray]:
    """``n`` clean (caption, image) pairs of text-only signs, deterministic given ``seed``: 1-3 random
    characters set as a sign (``Scene.sign``) on a random background, every caption quoting the text with one of
    the OCR task's templates. The base's sign stage trains on these (``opd-bench world pretrain --data signs``):
    clean, text-rich data first, the way text-rendering models are fine-tuned. ``text_fraction`` is accepted
    for the pretraining-data interface and must be 1."""
    if text_fraction != 1.0:
        raise ValueError("sign pairs are text only: text_fraction must be 1")
    rng = np.random.default_rng(seed)
    captions, images = [], np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        text = random_text(rng)
        bg = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
        captions.append(OCR_TEMPLATES[rng.integers(len(OCR_TEMPLATES))].format(text))
        images[i] = render(text_scene(rng, text, background=bg, centred=True), size)
    return captions, images


#: pretraining data sets by name (``PretrainConfig.data``, ``opd-bench world pretrain --data``)
PRETRAINING_DATA = {"mix": pretraining_pairs, "signs": sign_pairs}
