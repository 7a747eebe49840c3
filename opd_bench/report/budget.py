"""Budget section: each method's student-phase spend and its total including the teachers' recorded training
(the runs' ``teacher`` phase plus the ledgers recorded with the teacher checkpoints they loaded), and a plot of
score against total cost, where the teachers' cost is DiffusionOPD's starting offset."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..analysis import RunInfo, curve_rows
from .document import Doc, num

#: the ledger units both views show
UNITS = ("images", "nfe", "flops", "seconds")


def add_spend(*spends: Mapping[str, float]) -> Dict[str, float]:
    """Unit-wise sum of ledgers (a unit missing from one counts 0 there)."""
    out: Dict[str, float] = {}
    for s in spends:
        for u, v in s.items():
            if isinstance(v, (int, float)):
                out[u] = out.get(u, 0.0) + float(v)
    return out


def teachers_spend(run: RunInfo) -> Dict[str, Dict[str, float]]:
    """The recorded training spend of each teacher the run loaded ({task: ledger}; an empty ledger = unknown),
    from the run's own ledger report (summary.json): empty for methods that use no teachers."""
    led = (run.summary or {}).get("ledger", {})
    return dict(led.get("opd_teacher_cost", {}).get("teachers", {}))


def run_budget(run: RunInfo) -> dict:
    """{student, teachers, total, unknown}: student = the run's train phase; teachers = its teacher phase plus
    the loaded teachers' recorded ledgers (added up, as if trained one after another)."""
    student = {u: float(run.spent("train").get(u, 0.0)) for u in UNITS}
    loaded = teachers_spend(run)
    teachers = add_spend(run.spent("teacher"), *loaded.values())
    teachers = {u: teachers.get(u, 0.0) for u in UNITS}
    return {"student": student, "teachers": teachers, "per_teacher": loaded,
            "total": {u: student[u] + teachers[u] for u in UNITS},
            "unknown": sorted(t for t, v in loaded.items() if not v)}


def compute(groups: Mapping[str, Sequence[RunInfo]]) -> Dict[str, dict]:
    """Per method label: the mean over its runs of both views, the budget unit and value."""
    out = {}
    for lab, runs in groups.items():
        per_run = [run_budget(r) for r in runs]
        unit = runs[0].unit
        view = {k: {u: float(np.mean([b[k][u] for b in per_run])) for u in UNITS}
                for k in ("student", "teachers", "total")}
        out[lab] = {"unit": unit, "value": runs[0].ledger.get("budget", {}).get("value"),
                    "spent": float(np.mean([r.spent("train").get(unit, math.nan) for r in runs])),
                    "images": view["student"]["images"], "teacher_phase": view["teachers"], **view,
                    "per_teacher": per_run[0]["per_teacher"],
                    "unknown": sorted({t for b in per_run for t in b["unknown"]})}
    return out


def spend_cell(b: dict, view: str) -> str:
    """One view of a method's spend in a table cell: images, then FLOPs and seconds."""
    s = b[view]
    return f"{num(s['images'])} images · {num(s['flops'], 3)} FLOPs · {num(s['seconds'], 3)} s"


def curve_points(runs: Sequence[RunInfo], offset: Mapping[str, float], score_of, unit: str = "images") -> dict:
    """Score against total cost for one method: every eval of every run, x = the train spend in ``unit`` plus
    ``offset[unit]`` (the teachers' cost), y = ``score_of(row)``; averaged over runs per eval index."""
    xs: List[List[float]] = []
    ys: List[List[float]] = []
    for r in runs:
        rows = curve_rows(r.history)   # one protocol per curve (val learning-curve evals when present)
        xs.append([float(row.get("budget", {}).get(unit, math.nan)) + offset.get(unit, 0.0) for row in rows])
        ys.append([score_of(row) for row in rows])
    n = min((len(x) for x in xs), default=0)
    return {"x": [float(np.mean([x[i] for x in xs])) for i in range(n)],
            "y": [float(np.nanmean([y[i] for y in ys])) if any(np.isfinite(y[i]) for y in ys) else math.nan
                  for i in range(n)]}


def plot(curves: Mapping[str, Mapping[str, dict]], ylabel: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = list(next(iter(curves.values())).keys()) if curves else ["images"]
    fig, axes = plt.subplots(1, len(units), figsize=(5.5 * len(units), 4), squeeze=False)
    for ax, u in zip(axes[0], units):
        for lab, by_unit in curves.items():
            c = by_unit[u]
            ax.plot(c["x"], c["y"], marker="o", label=lab)
        ax.set_xlabel(f"total {u} (student + teachers)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("score against total cost (a method using teachers starts at their recorded cost)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def compute_curves(groups: Mapping[str, Sequence[RunInfo]], budgets: Mapping[str, dict], score_of,
                   units: Sequence[str] = ("images", "flops")) -> Dict[str, Dict[str, dict]]:
    return {lab: {u: curve_points(runs, budgets[lab]["teachers"], score_of, u) for u in units}
            for lab, runs in groups.items()}


def render(doc: Doc, budgets: Mapping[str, dict], curves: Optional[Mapping[str, Mapping[str, dict]]],
           ylabel: str, out: Path) -> None:
    doc.sign("lower cost is cheaper. Student phase = what the method itself spent; total = plus the recorded "
             "training of the teachers it loaded (DiffusionOPD, SFT distillation), added up as if trained one "
             "after another.")
    rows = []
    for lab, b in budgets.items():
        for view, name in (("student", "student phase"), ("teachers", "teachers (recorded)"),
                           ("total", "total incl. teachers")):
            rows.append([lab, name, *[num(b[view][u]) for u in UNITS]])
    doc.table(["method", "view", *UNITS], rows)
    unknown = {lab: b["unknown"] for lab, b in budgets.items() if b["unknown"]}
    if unknown:
        doc.p("Teachers without a recorded ledger (their cost is missing from the total): "
              + "; ".join(f"{lab}: {', '.join(ts)}" for lab, ts in unknown.items()) + ".", note=True)
    if curves:
        plot(curves, ylabel, out / "budget.png")
        doc.image(out / "budget.png", f"{ylabel} at each eval against the total cost spent so far (mean over "
                                      "seeds); a method using teachers starts at the teachers' recorded cost")
    doc.p("Ledger units: images generated, network forward evaluations (NFE; CFG counts both halves), FLOPs "
          "(forward and backward), wall-clock seconds. Means over each method's seeds.", note=True)


__all__ = ["UNITS", "add_spend", "compute", "compute_curves", "curve_points", "render", "run_budget", "spend_cell",
           "teachers_spend"]
