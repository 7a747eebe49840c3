"""The README's result tables, generated from the committed reports so that no number is copied by hand:

- the claims table: one row per claim of the paper, from reports/claims/claims.json (`opd-bench claims`), the same
  rows as the top of reports/claims/report.md;
- the default comparison: DiffusionOPD, multi-reward RL and cascade RL at every training seed of
  reports/default_5seed/report.json (`opd-bench report ... --protocol full`), raw scores first (aesthetic and
  preference by their gold scorers), and DiffusionOPD's paired differences against each baseline with their
  verdicts and eval-seed-halves checks from claims.json (the same runs, the same evaluations).

    python scripts/readme_results.py     # prints both tables; paste them into README.md

tests/test_readme_numbers.py checks that README.md holds exactly these lines.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLAIMS = ROOT / "reports" / "claims" / "claims.json"
DEFAULT = ROOT / "reports" / "default_5seed" / "report.json"
METHODS = {"opd": "DiffusionOPD", "multi-reward": "multi-reward RL", "cascade": "cascade RL"}
BASELINES = ("multi-reward", "cascade")


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def claims_table(doc: dict) -> List[str]:
    from opd_bench.claims import summary_table

    return ["| claim (arXiv 2605.15055) | verdict | evidence (first measured part) |", "|---|---|---|",
            *(_row(r) for r in summary_table(doc))]


def _score(t: dict) -> str:
    lo, hi = t.get("ci") or (None, None)
    return f"{t['mean']:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")


def _interval(m: dict) -> str:
    return f"{m['estimate']:+.3f} [{m['low']:+.3f}, {m['high']:+.3f}]"


def _beats(doc: dict) -> dict:
    """The claims' DiffusionOPD-vs-baseline sub-claims by part ("vs cascade: ocr", ...)."""
    return {r["part"]: r for r in doc["claims"] if r["claim"] == "beats-multitask-and-cascade"}


def _diff(row: dict) -> str:
    m = row["measurement"]
    return "–" if m is None else f"{_interval(m)} (MDE {m['mde']:.3f})"


def _verdict(row: dict) -> str:
    s = row.get("seed_split") or {}
    return f"{row.get('headline', row['verdict'])}; halves: {s.get('status', '-')}"


def raw_average(entry: dict, tasks) -> dict:
    """A method's per-seed mean over ``tasks`` of its raw (gold-first) final scores: mean and 95% t-interval."""
    from opd_bench.stats import t_interval

    seeds = entry["seeds"]
    per_seed = [sum(entry["tasks"][t]["values"][k] for t in tasks) / len(tasks) for k in range(len(seeds))]
    m, lo, hi = t_interval(per_seed)
    return {"mean": m, "ci": [lo, hi] if len(seeds) > 1 else None}


def comparison_table(report: dict, doc: dict) -> List[str]:
    """Per task (and the raw average): each method's final score (mean [95% t-interval] over its seeds), then
    DiffusionOPD minus each baseline, paired by seed, with the claims' verdict and eval-seed-halves status."""
    beats = _beats(doc)
    ft = report["final_table"]
    head = ["task (scored by)", *(f"{METHODS[m]} ({len(ft[m]['seeds'])} seeds)"
                                  for m in METHODS)]
    for b in BASELINES:
        head += [f"DiffusionOPD − {METHODS[b]} [95% CI]", "verdict"]
    lines = [_row(head), "|" + "---|" * len(head)]
    for task in doc["tasks"]:
        cells = ft["opd"]["tasks"][task]
        by = "gold scorer" if cells.get("metric") == "gold" else "task metric"
        row = [f"{task} ({by})", *(_score(ft[m]["tasks"][task]) for m in METHODS)]
        for b in BASELINES:
            r = beats[f"vs {b}: {task}"]
            row += [_diff(r), _verdict(r)]
        lines.append(_row(row))
    row = ["average over tasks (raw)", *(_score(raw_average(ft[m], doc["tasks"])) for m in METHODS)]
    for b in BASELINES:
        r = beats[f"vs {b}: average"]
        row += [_diff(r), _verdict(r)]
    lines.append(_row(row))
    return lines


def prose_numbers(report: dict, doc: dict) -> dict:
    """The numbers README's "what changed" paragraph quotes, by placeholder name: each method's normalised average
    [95% CI], DiffusionOPD's paired raw lead on the average and on preference, each method's OCR score."""
    ft = report["final_table"]
    beats = _beats(doc)
    na = lambda m: "{:.3f} [{:.3f}, {:.3f}]".format(ft[m]["normalized_avg"]["mean"], *ft[m]["normalized_avg"]["ci"])
    d = lambda k: _interval(beats[k]["measurement"])
    ocr = lambda m: f"{ft[m]['tasks']['ocr']['mean']:.3f}"
    return {"OPD_NORM": na("opd"), "CAS_NORM": na("cascade"), "MR_NORM": na("multi-reward"),
            "MR_DIFF": d("vs multi-reward: average"), "CAS_DIFF": d("vs cascade: average"),
            "MR_OCR": ocr("multi-reward"), "CAS_OCR": ocr("cascade"), "OPD_OCR": ocr("opd"),
            "PREF_MR": d("vs multi-reward: preference"), "PREF_CAS": d("vs cascade: preference")}


def main() -> None:
    doc, report = json.loads(CLAIMS.read_text()), json.loads(DEFAULT.read_text())
    print("\n".join(claims_table(doc)))
    print()
    print("\n".join(comparison_table(report, doc)))
    print()
    for k, v in prose_numbers(report, doc).items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
