"""What the default comparison (issue 19 item 8: 3 methods x 5 seeds, every evaluation) cost when the claims
campaign ran it, read from the archived runs' own records (experiments/claims_campaign/runs/<group>/s<seed>/:
ledger.json's training and run-evaluation seconds, claims_eval.json's full-protocol final evaluation seconds and
threads), against the 3-hour target with ``--jobs 2``. The campaign's analyses (interference, variance) are
claims-only work and are left out. The runs ran across sessions on machines whose speed differed, so the
per-run lines matter more than the total; ``eval_time.py`` projects the same from one run's measured rates.

    python benchmarks/campaign_time.py [--runs DIR ...] [--groups opd,multi-reward,cascade] [--jobs 2]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_seconds(d: Path) -> dict:
    """A run's recorded process seconds: training, its own (quick and learning-curve) evaluations, and the
    full-protocol final evaluation (at its thread count: CPU seconds over one thread's)."""
    spent = json.loads((d / "ledger.json").read_text())["spent"]
    rec = json.loads((d / "claims_eval.json").read_text())
    return {"train": float(spent["train"]["seconds"]) + float(spent["teacher"]["seconds"]),
            "evals": float(spent["eval"]["seconds"]),
            "full": float(rec["seconds"]) * int(rec.get("threads", 1))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", default=[str(ROOT / "experiments" / "claims_campaign" / "runs")],
                    help="archived campaign run folders (<group>/s<seed>/), searched in order")
    ap.add_argument("--groups", default="opd,multi-reward,cascade")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    total, n = 0.0, 0
    for g in args.groups.split(","):
        for d in sorted(d for r in args.runs for d in Path(r, g).glob("s*")):
            if not (d / "claims_complete.json").is_file():
                continue
            s = run_seconds(d)
            total, n = total + sum(s.values()), n + 1
            print(f"{g}/{d.name}: training {s['train']:.0f} s, run evals {s['evals']:.0f} s, full final eval "
                  f"{s['full']:.0f} s = {sum(s.values()) / 60:.1f} min")
    if not n:
        raise SystemExit(f"no complete runs of {args.groups} under {args.runs}")
    wall = total / args.jobs
    print(f"{n} runs: {total / 3600:.2f} process-hours; with --jobs {args.jobs} (the cores dividing evenly) "
          f"{wall / 3600:.2f} h against the 3 h target: ratio {wall / 10800:.2f}")


if __name__ == "__main__":
    main()
