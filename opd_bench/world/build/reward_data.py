"""Training data for the learned reward models: rendered scenes over a broad quality range, gold-labelled.

Images imitate what a weak-to-good generator produces for a prompt: a faithful clean render, renders of a
*perturbed* spec (wrong colour or shape, a missing or extra object, missing text, wrong background) and
pixel degradations (blur, noise, colour shift, low contrast, smears, stray blobs, erased patches). Every
function is deterministic given its ``numpy.random.Generator``.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Sequence

import cv2
import numpy as np

from ..gold import gold_aesthetic, gold_preference
from ..scenes import BACKGROUNDS, COLORS, SHAPES, Obj, Scene, place_objects, random_scene, render, text_box, text_scene

Spec = Dict[str, Any]


# ------------------------------------------------------------------------------------------------- scenes
def expand_objects(spec: Spec) -> List[tuple[str, str]]:
    """The spec's objects as a flat list of (shape, colour), one per instance."""
    return [(o["shape"], o["color"]) for o in spec["objects"] for _ in range(o["count"])]


def scene_from_spec(rng: np.random.Generator, spec: Spec, hero: bool = False) -> Scene:
    """A random scene that satisfies ``spec``. ``hero``: a lone object is drawn large and near the centre
    (the composition the aesthetic taste likes)."""
    bg = spec["background"] or list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    items = expand_objects(spec)
    if spec["text"]:
        base = text_scene(rng, spec["text"], background=bg)
        taken = [text_box(spec["text"], base.text_cx, base.text_cy)]
        try:
            objs = place_objects(rng, items, taken=taken, tries=20) if items else ()
        except RuntimeError:  # no room beside the caption: drop the caption's position constraint
            return Scene(objects=place_objects(rng, items), background=bg)
        return Scene(objects=objs, text=base.text, text_color=base.text_color,
                     text_cx=base.text_cx, text_cy=base.text_cy, background=bg)
    if hero and len(items) == 1:
        size = float(rng.uniform(0.45, 0.7))
        cx, cy = (float(v) for v in 0.5 + rng.uniform(-0.08, 0.08, size=2))
        return Scene(objects=(Obj(items[0][0], items[0][1], cx, cy, size),), background=bg)
    return Scene(objects=place_objects(rng, items) if items else (), background=bg)


def _other(rng: np.random.Generator, options: Sequence[str], current: str) -> str:
    choices = [o for o in options if o != current]
    return choices[int(rng.integers(len(choices)))]


def perturb_spec(rng: np.random.Generator, spec: Spec) -> Spec:
    """One unfaithful variant of ``spec``: recolour, reshape, drop or add an object, recount, drop the
    caption or change the background."""
    s = copy.deepcopy(spec)
    ops = ["add", "background"]
    if s["objects"]:
        ops += ["recolour", "reshape", "drop", "recount"]
    if s["text"]:
        ops += ["untext"]
    op = ops[int(rng.integers(len(ops)))]
    if op in ("recolour", "reshape", "drop", "recount"):
        i = int(rng.integers(len(s["objects"])))
        o = s["objects"][i]
        if op == "recolour":
            o["color"] = _other(rng, list(COLORS), o["color"])
        elif op == "reshape":
            o["shape"] = _other(rng, SHAPES, o["shape"])
        elif op == "drop":
            if o["count"] > 1:
                o["count"] -= 1
            else:
                del s["objects"][i]
        else:
            o["count"] = int(_other(rng, ["1", "2", "3", "4"], str(o["count"])))
    elif op == "add":
        s["objects"].append({"shape": SHAPES[int(rng.integers(len(SHAPES)))],
                             "color": list(COLORS)[int(rng.integers(len(COLORS)))], "count": 1})
    elif op == "background":
        s["background"] = _other(rng, list(BACKGROUNDS), s["background"])
    else:
        s["text"] = ""
    if sum(o["count"] for o in s["objects"]) > 4:   # keep it drawable at 32 px
        s["objects"] = s["objects"][:1]
        s["objects"][0]["count"] = min(s["objects"][0]["count"], 4)
    return s


# -------------------------------------------------------------------------------------------- degradations
def _blur(img, rng):
    return cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 1.6)))


def _noise(img, rng):
    return img.astype(np.float32) + rng.normal(0.0, float(rng.uniform(3.0, 28.0)), img.shape)


def _colour_shift(img, rng):
    return img.astype(np.float32) + rng.uniform(-45.0, 45.0, size=3)


def _low_contrast(img, rng):
    x = img.astype(np.float32)
    return x.mean() + (x - x.mean()) * float(rng.uniform(0.3, 0.75))


def _smear(img, rng):
    """Motion-blur a random patch (a half-formed object)."""
    h, w = img.shape[:2]
    k = int(rng.integers(3, 8))
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0 / k
    if rng.random() < 0.5:
        kernel = kernel.T
    out = img.copy()
    y0, x0 = (int(v) for v in rng.integers(0, h // 2, size=2))
    sl = np.s_[y0:y0 + h // 2, x0:x0 + w // 2]
    out[sl] = cv2.filter2D(img, -1, kernel)[sl]
    return out


def _stray_blobs(img, rng):
    """Paint 1-4 small blobs of random palette colours (generator artefacts)."""
    out = img.copy()
    h, w = img.shape[:2]
    palette = list(COLORS.values())
    for _ in range(int(rng.integers(1, 5))):
        r = int(rng.integers(1, 4))
        c = tuple(int(v) for v in palette[int(rng.integers(len(palette)))])
        cv2.circle(out, (int(rng.integers(0, w)), int(rng.integers(0, h))), r, c, -1)
    return out


def _erase(img, rng):
    """Cover a random rectangle with the border colour (partial objects / partial text)."""
    out = img.copy()
    h, w = img.shape[:2]
    bg = np.median(np.concatenate([img[0], img[-1]]), axis=0)
    y0, x0 = (int(v) for v in rng.integers(0, h - 4, size=2))
    hh, ww = (int(v) for v in rng.integers(4, h // 2, size=2))
    out[y0:y0 + hh, x0:x0 + ww] = bg
    return out


DEGRADATIONS: Dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "blur": _blur, "noise": _noise, "colour_shift": _colour_shift, "low_contrast": _low_contrast,
    "smear": _smear, "stray_blobs": _stray_blobs, "erase": _erase,
}


def degrade(img: np.ndarray, rng: np.random.Generator, p: float = 0.3) -> np.ndarray:
    """Apply each degradation independently with probability ``p`` (in a fixed order); uint8 out."""
    out = img
    for fn in DEGRADATIONS.values():
        if rng.random() < p:
            out = np.clip(fn(out, rng), 0, 255).astype(np.uint8)
    return out


# ---------------------------------------------------------------------------------------------- samples
def candidate_image(rng: np.random.Generator, spec: Spec, size: int = 32) -> np.ndarray:
    """One image a generator might produce for ``spec``: faithful or perturbed, hero-composed or not,
    clean or degraded (quality spread roughly uniform)."""
    quality = rng.random()
    s = spec if rng.random() < 0.5 else perturb_spec(rng, spec)
    if rng.random() < 0.25:
        s = perturb_spec(rng, s)
    img = render(scene_from_spec(rng, s, hero=rng.random() < 0.5), size)
    return degrade(img, rng, p=0.6 * quality)


def aesthetic_image(rng: np.random.Generator, records: Sequence[Dict[str, Any]], size: int = 32) -> np.ndarray:
    """An image for aesthetic training: for a random prompt record (70%) or a random world scene (30%)."""
    if rng.random() < 0.3:
        return degrade(render(random_scene(rng, "any"), size), rng, p=0.6 * rng.random())
    return candidate_image(rng, records[int(rng.integers(len(records)))]["spec"], size)


def aesthetic_dataset(records: Sequence[Dict[str, Any]], n: int, seed: int):
    """(images uint8 [n, H, W, 3], gold aesthetic float32 [n])."""
    rng = np.random.default_rng(seed)
    images = np.stack([aesthetic_image(rng, records) for _ in range(n)])
    return images, np.array([gold_aesthetic(im) for im in images], np.float32)


def preference_dataset(records: Sequence[Dict[str, Any]], per_prompt: int, seed: int):
    """(images uint8 [P, K, H, W, 3], gold preference float32 [P, K]): K candidates per prompt record."""
    rng = np.random.default_rng(seed)
    images = np.stack([np.stack([candidate_image(rng, r["spec"]) for _ in range(per_prompt)]) for r in records])
    gold = np.array([[gold_preference(im, r) for im in ims] for ims, r in zip(images, records)], np.float32)
    return images, gold


def comparison_pairs(gold: np.ndarray, margin: float) -> np.ndarray:
    """All (prompt, i, j) with gold[p, i] - gold[p, j] > margin: i is preferred. int64 [N, 3]."""
    p, i, j = np.nonzero(gold[:, :, None] - gold[:, None, :] > margin)
    return np.stack([p, i, j], axis=1).astype(np.int64)
