"""Does each released teacher beat the base on its own task, under the full protocol the report and the claims
score with (every test prompt at the protocol's noise seeds, 40-step ODE, CFG 4.5), gold scorer first?

Reads the shipped full-protocol evaluations (checkpoints/evals/, `scripts/ship_evals.py --protocol full`; nothing
is sampled when they are there) and writes reports/teachers_vs_base_full/ (README.md, table.json): per task the
headline (gold where the task has one) means of base and teacher, their paired difference with its 95% interval
and minimum detectable effect (`opd_bench.report.headline.normalisation_plan`, the same test that decides which
tasks the report normalises), and the learned proxy's difference beside it.

    python scripts/teachers_vs_base_full.py
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from opd_bench.checkpoint import atomic_write_json, atomic_write_text
from opd_bench.claims import reference_scores
from opd_bench.config import load_config
from opd_bench.evaluate import EvalProtocol
from opd_bench.protocol import named
from opd_bench.report.headline import normalisation_plan

TASKS = ("aesthetic", "geneval", "ocr", "preference")
OUT = Path("reports/teachers_vs_base_full")


def table() -> dict:
    protocol = named("full", EvalProtocol.from_config(load_config(None)))
    base, base_proxy, base_e = reference_scores({t: "base" for t in TASKS}, protocol)
    teacher, teacher_proxy, teacher_e = reference_scores({t: f"teacher_{t}" for t in TASKS}, protocol)
    plan = normalisation_plan(TASKS, base_e, teacher_e)
    rows = {}
    for t in TASKS:
        p = plan[t]
        gold = base_proxy[t] != base[t]
        rows[t] = {"scored_by": "gold scorer" if gold else "task metric", "base": base[t], "teacher": teacher[t],
                   "gain": p["gain"], "low": p["low"], "high": p["high"], "mde": p["mde"],
                   "beats_base_beyond_mde": p["normalised"], "reason": p["reason"],
                   "proxy_gain": teacher_proxy[t] - base_proxy[t] if gold else None,
                   "prompts": len(base_e[t]["per_prompt"] or []), "seeds_per_prompt": protocol.seeds(t)}
    return {"protocol": protocol.to_dict(), "tasks": rows}


def markdown(doc: dict) -> str:
    lines = ["# Released teachers vs the base, full protocol, gold first", "",
             "Written by `python scripts/teachers_vs_base_full.py` from the shipped full-protocol evaluations "
             "(checkpoints/evals/: every test prompt x the protocol's noise seeds, 40-step ODE, CFG 4.5). Paired per "
             "prompt; 95% t-interval (GenEval stratified by category, its held-out compositions left out as its "
             "score leaves them out); MDE at alpha 0.05, power 0.8. A teacher beats the base when its gain exceeds "
             "the MDE (the report normalises only those tasks).", "",
             "| task | scored by | prompts x seeds | base | teacher | teacher − base [95% CI] | MDE | verdict | "
             "learned proxy: teacher − base |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t, r in doc["tasks"].items():
        verdict = "**beats the base**" if r["beats_base_beyond_mde"] else "below resolution (gain <= MDE)"
        proxy = f"{r['proxy_gain']:+.3f}" if r["proxy_gain"] is not None else "–"
        lines.append(f"| {t} | {r['scored_by']} | {r['prompts']} x {r['seeds_per_prompt']} | {r['base']:.3f} | "
                     f"{r['teacher']:.3f} | {r['gain']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] | {r['mde']:.3f} | "
                     f"{verdict} | {proxy} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    doc = table()
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "table.json", json.loads(json.dumps(doc)))
    atomic_write_text(args.out / "README.md", markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
