"""Write the train prompt sets of the world tasks: tasks/{geneval,ocr}/train.jsonl (deterministic; the former
eval sets below became ``val``, and ``test`` was added: ``opd-bench world prompts``).

    python -m opd_bench.world.make_prompts [--seed 0] [--samples docs/img/world_samples.png]

geneval (GenEval metadata format, classes = shapes). With 4 shapes x 6 colours most categories have few
distinct combinations, so: eval = every combination of single_object (4), two_object (12), counting (12),
colors (24) and position (48) plus 120 of the 360 color_attr combinations, all in GenEval's wording
("a photo of ..."); train = the same small-category combinations in other wordings ("an image of ...",
"a picture of ...", bare) plus the other 240 color_attr combinations in a random wording. Prompt strings
are disjoint; color_attr combinations are too.
ocr: eval = 250 texts, train = 2000 other texts (1-3 chars), each with a random template.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List

import numpy as np

from ...paths import TASKS_DIR
from ..prompts import CATEGORIES, GENEVAL_TEMPLATES, OCR_TEMPLATES, Record, geneval_metadata, geneval_record, ocr_record
from ..scenes import TEXT_ALPHABET

N_COLOR_ATTR_EVAL = 120
N_OCR_EVAL, N_OCR_TRAIN = 250, 2000
OCR_LENGTHS = (1, 2, 3)
OCR_LENGTH_P = (0.1, 0.4, 0.5)


def geneval_splits(seed: int) -> tuple[List[Record], List[Record]]:
    rng = np.random.default_rng(seed)
    train, evals = [], []
    for tag in CATEGORIES:
        metas = geneval_metadata(tag)
        if tag == "color_attr":
            order = rng.permutation(len(metas))
            evals += [geneval_record(metas[i]) for i in sorted(order[:N_COLOR_ATTR_EVAL])]
            train += [geneval_record(metas[i], int(rng.integers(1, len(GENEVAL_TEMPLATES))))
                      for i in sorted(order[N_COLOR_ATTR_EVAL:])]
        else:
            evals += [geneval_record(m) for m in metas]
            train += [geneval_record(m, t) for m in metas for t in range(1, len(GENEVAL_TEMPLATES))]
    return train, evals


def _texts(rng: np.random.Generator, n: int, exclude: set) -> List[str]:
    out: List[str] = []
    while len(out) < n:
        length = int(rng.choice(OCR_LENGTHS, p=OCR_LENGTH_P))
        t = "".join(TEXT_ALPHABET[i] for i in rng.integers(len(TEXT_ALPHABET), size=length))
        if t not in exclude:
            exclude.add(t)
            out.append(t)
    return out


def ocr_splits(seed: int) -> tuple[List[Record], List[Record]]:
    rng = np.random.default_rng(seed + 1)
    seen: set = set()
    evals, train = _texts(rng, N_OCR_EVAL, seen), _texts(rng, N_OCR_TRAIN, seen)
    rec = lambda t: ocr_record(t, int(rng.integers(len(OCR_TEMPLATES))))  # noqa: E731
    return [rec(t) for t in train], [rec(t) for t in evals]


def write_jsonl(path: Path, records: List[Record]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def render_truth_grid(path: Path, seed: int = 0, size: int = 32, cols: int = 8, zoom: int = 3) -> None:
    """Save a grid of ground-truth renders: one row per GenEval category (eval prompts, in CATEGORIES
    order; val prompts), then an OCR row and a row of varied ("any") scenes."""
    from PIL import Image

    from .. import load_records
    from ..prompts import scene_for_record
    from ..scenes import random_scene, render

    rng = np.random.default_rng(seed)
    geneval, ocr = load_records("geneval", "val"), load_records("ocr", "val")
    rows = [[r for r in geneval if r["tag"] == tag] for tag in CATEGORIES] + [ocr]
    scenes = [[scene_for_record(rs[i], rng) for i in rng.choice(len(rs), cols, replace=len(rs) < cols)]
              for rs in rows]
    scenes.append([random_scene(rng, "any") for _ in range(cols)])
    grid = np.concatenate([np.concatenate([render(s, size) for s in row], 1) for row in scenes], 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * zoom, grid.shape[0] * zoom), Image.Resampling.NEAREST).save(path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=TASKS_DIR)
    ap.add_argument("--samples", type=Path, default=None, help="also save a grid of ground-truth renders here")
    args = ap.parse_args(argv)
    for task, (train, evals) in {"geneval": geneval_splits(args.seed), "ocr": ocr_splits(args.seed)}.items():
        assert not {r["prompt"] for r in train} & {r["prompt"] for r in evals}
        write_jsonl(args.out / task / "train.jsonl", train)
        print(f"{task}: {len(train)} train prompts -> {args.out / task} (val and test: opd-bench world prompts)")
    if args.samples:
        render_truth_grid(args.samples, args.seed)
        print(f"samples -> {args.samples}")


if __name__ == "__main__":
    main()
