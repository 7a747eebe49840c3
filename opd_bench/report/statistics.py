"""Statistics section: every pair of methods compared per task and on the normalised average as a paired
difference over training seeds (same prompts and noise), with a t-interval, the MDE, Holm-adjusted p-values
when more than two methods are ranked, and a verdict; plus IQM and the probability of improvement."""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np

from ..stats import probability_of_improvement
from .budget import spend_cell
from .document import Doc, ci_cell, fmt, seeds_cell


def improvement_matrix(rows: Mapping[str, dict]) -> Dict[str, Dict[str, Optional[float]]]:
    """P(X > Y) between methods: per normalised task over seeds (Mann-Whitney), averaged over the common tasks."""
    out: Dict[str, Dict[str, Optional[float]]] = {}
    for a, ra in rows.items():
        out[a] = {}
        for b, rb in rows.items():
            common = [t for t in ra["normalized"] if t in rb["normalized"]]
            if a == b or not common:
                out[a][b] = None
                continue
            out[a][b] = float(np.mean([probability_of_improvement(ra["normalized"][t], rb["normalized"][t])
                                       for t in common]))
    return out


def compute(headline: dict) -> dict:
    return {"probability_of_improvement": improvement_matrix(headline["rows"]), "pairs": headline["pairs"]}


def _p(x) -> str:
    return "–" if x is None or not np.isfinite(x) else (f"{x:.3g}" if x >= 1e-3 else "<0.001")


def render(doc: Doc, data: dict, headline: dict) -> None:
    rows = headline["rows"]
    labs = list(rows)
    doc.sign("normalised scores: 0 = base, 1 = teacher, higher = better. A difference is row method − column "
             "method (a − b): positive = a scores higher. P(row > column) above 0.5 means the row's method tends "
             "to beat the column's.")
    doc.table(["method", "seeds", "normalised avg [95% CI]", "IQM (seeds × tasks)", "student spend",
               "total incl. teachers"],
              [[lab, seeds_cell(rows[lab]["seeds"]), ci_cell(rows[lab]["normalized_avg"]), fmt(rows[lab]["iqm"]),
                spend_cell(rows[lab]["budget"], "student"), spend_cell(rows[lab]["budget"], "total")] for lab in labs])
    pairs = data["pairs"]
    if pairs:
        doc.h3("paired method comparisons")
        doc.table(["task", "a vs b", "a − b [95% t CI]", "MDE", "seeds", "p", "p (Holm)", "verdict"],
                  [[t, k, f"{fmt(v['diff'])} [{fmt(v['low'])}, {fmt(v['high'])}]", fmt(v["mde"]), str(v["n"]),
                    _p(v["p"]), _p(v["p_holm"]) if v["holm"] else "–", v["verdict"]]
                   for t, ps in pairs.items() for k, v in ps.items()])
        doc.p("Paired by training seed: seed s of each method is scored on the same eval prompts with the same "
              "noise, so prompt difficulty cancels in a − b. Interval: paired t over the shared seeds; MDE: the "
              "smallest difference this test detects (α 0.05, power 0.8; with one seed, the task's per-prompt "
              "MDE of teacher vs base). Holm's correction over the pairs of each row family when more than two "
              "methods are compared. Verdict: better / worse when significant; below resolution when |a − b| is "
              "under the MDE; no clear difference otherwise.", note=True)
    poi = data["probability_of_improvement"]
    if len(labs) > 1:
        doc.h3("probability of improvement P(row > column)")
        doc.table(["method"] + labs, [[a] + [fmt(poi[a][b]) for b in labs] for a in labs])
    doc.p("IQM = mean of the middle 50% of the normalised scores over seeds × tasks; probability of improvement "
          "= P(X > Y) + ½ P(X = Y) over seed pairs, averaged over the common normalised tasks (Agarwal et al. "
          "2021). method.md asks for ≥ 3 seeds.", note=True)
