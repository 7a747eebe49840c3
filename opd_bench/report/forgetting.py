"""Learning curves and forgetting: eval curves over the budget, the per-round training signal, forgetting F_i
and backward transfer (definitions in :mod:`opd_bench.analysis.forgetting`)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..analysis import RunInfo
from ..analysis import forgetting as fg
from .document import Doc, fmt


def compute(runs: Sequence[RunInfo], bm: Mapping[str, float], tm: Mapping[str, float]) -> dict:
    """Curves per run and forgetting per run (normalised by the base and teacher primary scores)."""
    curves = {f"{r.label} s{r.seed}": fg.curves(r) for r in runs}
    return {"curves": curves, "forgetting": [fg.run_forgetting(r, dict(bm), dict(tm)) for r in runs]}


def f_cell(f: dict, t: str) -> str:
    """A forgetting table cell: F_t, marked † where it is below the run's resolution on t, ? where that is unknown."""
    v, r = f["forgetting"].get(t), (f.get("forgetting_resolution") or {}).get(t)
    if v is None:
        return fmt(v)
    return fmt(v) + (" ?" if r is None else " †" if abs(v) < r else "")


def render(doc: Doc, data: dict, tasks: Sequence[str], bm: Mapping[str, float], tm: Mapping[str, float],
           out: Path) -> None:
    curves, forg = data["curves"], data["forgetting"]
    fg.plot_curves(curves, dict(bm), dict(tm), out / "curves.png")
    n_evals = min((len(c["x"]) for c in curves.values()), default=0)
    doc.image(out / "curves.png", "Top: eval score per task over the training budget spent (one point per eval; "
                                  "grey dashed = base, black solid = single-task teacher; dotted verticals = cascade "
                                  "stage ends). Bottom: the training signal logged every round (faint: raw; bold: "
                                  "moving average)")
    if n_evals <= 2:
        doc.p(f"Some runs have only {n_evals} eval points (the start and final evals): for a denser eval curve "
              "run with --set eval.every=N (an eval every N rounds; evals do not change the training).", note=True)
    doc.sign("F > 0 is forgetting: the final score is below the run's best earlier checkpoint by F (normalised "
             "units). F < 0 means the final checkpoint is the run's best on that task: it improved by |F| over "
             "every earlier one. BWT < 0 is forgetting of the earlier cascade stages' tasks, BWT > 0 improvement.")
    doc.table(["run", "checkpoints"] + [f"F {t}" for t in tasks] + ["BWT (normalised tasks)", "BWT raw"],
              [[f"{f['label']} s{f['seed']}", str(len(f["rows"])),
                *[f_cell(f, t) for t in tasks], fmt(f["bwt"]), fmt(f["bwt_raw"])] for f in forg])
    res = {t: [f["forgetting_resolution"].get(t) for f in forg if f.get("forgetting_resolution", {}).get(t) is not None]
           for t in tasks}
    doc.p("† below resolution: |F| is smaller than the 95% half-width of a difference of two of the run's checkpoint "
          "evaluations (sqrt(2) x the median half-width of its evaluations, over their prompts; conservative, "
          "since the checkpoints share prompts and noise), so it is not told apart from 0. Resolution per task "
          "(median over runs, F's units): " + ", ".join(f"{t} {fmt(float(np.median(v)))}" if v else f"{t} unknown"
                                                      for t, v in res.items()) + ". ? resolution unknown: the "
          "evaluations recorded no interval, or a degenerate one (too few prompts per category to vary), so F "
          "cannot be told apart from noise either way.", note=True)
    doc.p(fg.FORGETTING_DEFINITION + " F is in normalised units for the tasks the headline normalises (teacher gain "
          "above its MDE) and raw for the others; the normalised BWT averages only the normalised tasks, never raw "
          "and normalised scores together, and BWT raw averages every task raw. Checkpoints: every eval of the run "
          "(cascade: the end of each stage, tasks in stage order; BWT for cascade only).", note=True)
    for f in forg:
        if f["bwt_raw"] is not None:   # a method that trains its tasks in sequence (stage matrix)
            doc.h3(f"score matrix R (normalised): {f['label']} seed {f['seed']}")
            doc.table(["checkpoint"] + f["tasks"], [[lab] + [fmt(v) for v in row] for lab, row in
                                                    zip(f["rows"], f["R_normalized"])])
