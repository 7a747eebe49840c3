"""Prompt sets of the two learned-reward tasks of the embedded world: ``aesthetic`` and ``preference``.

A record is ``{"prompt": str, "spec": {...}}`` where the structured spec is what the gold preference scorer
checks an image against::

    spec = {"objects": [{"shape": "circle", "color": "red", "count": 2}, ...],
            "text": "AB" | "",                 # a short caption that must be present (content not checked)
            "background": "dark" | ""}         # a named background, or "" for any

Sets are generated deterministically from a seed; train and the former eval set are disjoint by prompt string.
``tasks/<task>/train.jsonl`` is rebuilt by ``python -m opd_bench.world.taste_prompts``; the former eval set became
``val`` and a fresh ``test`` was added (:mod:`opd_bench.world.build.splits`, ``opd-bench world prompts``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from ...paths import TASKS_DIR
from ..scenes import BACKGROUNDS, COLORS, SHAPES, random_text

NUMBER_WORDS = {1: "a", 2: "two", 3: "three", 4: "four"}
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}

#: probability of each spec kind per task: aesthetic prompts lean to single objects, preference prompts to
#: counts, pairs and captions (so faithfulness and taste pull against each other there).
KIND_WEIGHTS = {
    "aesthetic": {"single": 0.5, "count": 0.2, "pair": 0.2, "text": 0.1},
    "preference": {"single": 0.2, "count": 0.3, "pair": 0.3, "text": 0.2},
}
SPLIT_SIZES = {"train": 1024, "eval": 256}
SEEDS = {"aesthetic": 1701, "preference": 1702}


def _pick(rng: np.random.Generator, items):
    items = list(items)
    return items[int(rng.integers(len(items)))]


def random_spec(rng: np.random.Generator, kind: str) -> Dict[str, Any]:
    """A random structured spec of ``kind`` in {"single", "count", "pair", "text"}."""
    colors = list(COLORS)
    if kind == "single":
        objects = [{"shape": _pick(rng, SHAPES), "color": _pick(rng, colors), "count": 1}]
    elif kind == "count":
        objects = [{"shape": _pick(rng, SHAPES), "color": _pick(rng, colors), "count": int(rng.integers(2, 5))}]
    elif kind == "pair":
        c1, c2 = rng.choice(len(colors), size=2, replace=False)
        objects = [{"shape": _pick(rng, SHAPES), "color": colors[int(c)], "count": 1} for c in (c1, c2)]
    elif kind == "text":
        objects = [] if rng.random() < 0.5 else [
            {"shape": _pick(rng, SHAPES), "color": _pick(rng, colors), "count": 1}]
    else:
        raise ValueError(f"unknown spec kind {kind!r}")
    text = random_text(rng) if kind == "text" else ""
    background = _pick(rng, BACKGROUNDS) if rng.random() < 0.5 else ""
    return {"objects": objects, "text": text, "background": background}


def describe_objects(objects) -> str:
    """'two red circles and a blue square'."""
    parts = []
    for o in objects:
        noun = o["shape"] if o["count"] == 1 else PLURALS[o["shape"]]
        number = NUMBER_WORDS[o["count"]]
        if number == "a" and o["color"][0] in "aeiou":
            number = "an"
        parts.append(f"{number} {o['color']} {noun}")
    return " and ".join(parts)


def spec_to_prompt(spec: Dict[str, Any]) -> str:
    """The natural-language prompt of a spec (a deterministic template)."""
    subject = describe_objects(spec["objects"])
    if spec["text"]:
        caption = f'the text "{spec["text"]}"'
        subject = f"{subject} next to {caption}" if subject else caption
    if spec["background"]:
        subject += f" on a {spec['background']} background"
    return subject


def make_records(task: str, n: int, seed: int) -> List[Dict[str, Any]]:
    """``n`` records with distinct prompts, drawn with ``KIND_WEIGHTS[task]`` (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    kinds, probs = zip(*KIND_WEIGHTS[task].items())
    seen, records = set(), []
    for _ in range(200 * n):
        spec = random_spec(rng, kinds[int(rng.choice(len(kinds), p=probs))])
        prompt = spec_to_prompt(spec)
        if prompt not in seen:
            seen.add(prompt)
            records.append({"prompt": prompt, "spec": spec})
            if len(records) == n:
                return records
    raise RuntimeError(f"could only draw {len(records)} distinct prompts for {task}")


def make_splits(task: str) -> Dict[str, List[Dict[str, Any]]]:
    """Disjoint train/eval records of ``task`` ("aesthetic" or "preference")."""
    records = make_records(task, sum(SPLIT_SIZES.values()), SEEDS[task])
    n_eval = SPLIT_SIZES["eval"]
    return {"eval": records[:n_eval], "train": records[n_eval:]}


def split_path(task: str, split: str) -> Path:
    return TASKS_DIR / task / f"{split}.jsonl"


def write_prompt_sets(root: Path = TASKS_DIR) -> List[Path]:
    """Write ``tasks/{aesthetic,preference}/train.jsonl`` (val and test: :mod:`.splits`); returns the paths."""
    written = []
    for task in KIND_WEIGHTS:
        for split, records in make_splits(task).items():
            if split != "train":
                continue
            path = root / task / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
            written.append(path)
    return written


def load_prompt_set(task: str, split: str) -> List[Dict[str, Any]]:
    """Records of ``tasks/<task>/<split>.jsonl`` via ``datasets.load_dataset("json")``."""
    from .splits import SPLITS  # noqa: PLC0415

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    from datasets import load_dataset  # noqa: PLC0415

    path = split_path(task, split)
    if not path.is_file():
        from ...errors import UserError  # noqa: PLC0415
        raise UserError(f"prompt set missing: {path} (run opd-bench world prompts)")
    ds = load_dataset("json", data_files=str(path), split="train")
    return [{"prompt": r["prompt"], "spec": _clean_spec(r["spec"])} for r in ds]


def _clean_spec(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Undo the column unification ``datasets`` applies to the nested spec (None fields, typed lists)."""
    objects = [{"shape": o["shape"], "color": o["color"], "count": int(o["count"])} for o in (spec["objects"] or [])]
    return {"objects": objects, "text": spec.get("text") or "", "background": spec.get("background") or ""}


if __name__ == "__main__":
    for p in write_prompt_sets():
        print(p)
