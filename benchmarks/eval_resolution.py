"""Resolution of the paired evaluation: how many noise seeds per prompt reach a target minimum detectable effect.

Reads several evaluations (one eval.json per noise seed, identical prompts) of a reference model and of a
candidate, forms the paired per-prompt differences, splits their variance into a between-prompt part and the
within-prompt (noise) part (one-way random-effects ANOVA), and prints the paired MDE (alpha 0.05, power 0.8)
at 1..16 seeds per prompt and the seeds needed for the target (the evaluation protocol's 0.02 raw for
aesthetic, OCR and preference, 0.03 for GenEval). The score is the plain per-prompt mean (GenEval's category
average weights small categories up and needs more).

    python benchmarks/eval_resolution.py --task geneval \
        --reference reports/teachers_vs_base/evals/base/geneval_12* \
        --candidate reports/teachers_vs_base/evals/teacher_geneval/geneval_12*
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from opd_bench.stats import mde_paired, seeds_for_mde, variance_components

TARGETS = {"aesthetic": 0.02, "ocr": 0.02, "preference": 0.02, "geneval": 0.03}


def per_prompt(dirs, task: str, metric: str) -> dict:
    out: dict = {}
    for d in sorted(dirs):
        rows = json.loads((Path(d) / "eval.json").read_text())["tasks"][task]["per_prompt"]
        for r in rows:
            out.setdefault(r["prompt"], []).append(float(r[metric]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", required=True)
    ap.add_argument("--metric", default="score")
    ap.add_argument("--reference", nargs="+", required=True, help="eval folders of the reference, one per seed")
    ap.add_argument("--candidate", nargs="+", required=True, help="eval folders of the candidate, same seeds")
    ap.add_argument("--target", type=float, default=None)
    args = ap.parse_args()
    ref, cand = per_prompt(args.reference, args.task, args.metric), per_prompt(args.candidate, args.task, args.metric)
    prompts = sorted(p for p in ref if p in cand and len(ref[p]) == len(cand[p]))
    d = np.array([np.subtract(cand[p], ref[p]) for p in prompts])
    between, within = variance_components(d)
    target = args.target or TARGETS.get(args.task, 0.02)
    print(f"task {args.task} ({args.metric}): {len(prompts)} prompts x {d.shape[1]} seeds, mean paired difference "
          f"{d.mean():+.4f}; variance between prompts {between:.5f}, within (one image) {within:.5f}")
    print("| seeds per prompt | " + " | ".join(str(s) for s in (1, 2, 4, 8, 16)) + " |")
    print("|---|" + "---|" * 5)
    print("| paired MDE | " + " | ".join(f"{mde_paired(np.sqrt(between + within / s), len(prompts)):.4f}"
                                        for s in (1, 2, 4, 8, 16)) + " |")
    need = seeds_for_mde(between, within, len(prompts), target)
    print(f"seeds per prompt for MDE <= {target}: {need if need else 'not reachable with <= 64 seeds on these prompts'}")


if __name__ == "__main__":
    main()
