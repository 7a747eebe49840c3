"""Final comparison: raw scores first (gold scorer where a task has one, the learned proxy beside it), each
task's resolution (MDE), which tasks can be normalised and why not, the normalised average with its joint
uncertainty, and ranks that separate two methods only where their paired difference is significant after
Holm's correction. Both budget views sit in the same table."""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Sequence

import numpy as np

from ..analysis import RunInfo
from ..protocol import MDE_TARGET
from ..comparison import normalisation_test, normalised_average_ci, pairwise, ranks_from_pairs
from ..stats import iqm, t_interval
from .budget import spend_cell
from .document import Doc, ci_cell, fmt, seeds_cell
from .references import GOLD, headline_value, proxy_value

#: the row of the pairwise table that ranks methods
AVERAGE = "normalised average"


def task_order(groups: Mapping[str, Sequence[RunInfo]]) -> List[str]:
    return list(dict.fromkeys(t for runs in groups.values() for r in runs for t in r.tasks))


def target_cell(task: str, mde: float) -> str:
    """The protocol's MDE target for ``task`` (issue 19) and whether the measured MDE reaches it."""
    if task not in MDE_TARGET:
        return "–"
    return f"{MDE_TARGET[task]:.2f} ({'reached' if np.isfinite(mde) and mde <= MDE_TARGET[task] else 'not reached'})"


def normalisation_plan(tasks: Sequence[str], base: Mapping[str, dict], teachers: Mapping[str, dict],
                       n_boot: int = 2000) -> Dict[str, dict]:
    """Per task: {normalised, gain, mde, low, high, reason}. A task is normalised only where the teacher beats the
    base, paired per prompt on the headline metric, by more than the comparison's MDE; otherwise it is shown
    raw and left out of the normalised average, with the reason."""
    out = {}
    nan = float("nan")
    for t in tasks:
        b, tt = base.get(t, {}), teachers.get(t, {})
        if not tt:
            out[t] = {"normalised": False, "gain": nan, "mde": nan, "low": nan, "high": nan,
                      "reason": "no teacher for this task: shown raw, left out of the normalised average"}
        elif not b.get("per_prompt") or not tt.get("per_prompt") or len(b["per_prompt"]) != len(tt["per_prompt"]):
            th, bh = tt.get("headline"), b.get("headline")
            gain = th - bh if th is not None and bh is not None else nan
            out[t] = {"normalised": False, "gain": gain, "mde": nan, "low": nan, "high": nan,
                      "reason": "no per-prompt scores of the base and the teacher on the same prompts, so the "
                                "teacher's gain cannot be tested against the task's MDE: shown raw, left out of "
                                "the normalised average"}
        else:
            bp, tp, cats = list(b["per_prompt"]), list(tt["per_prompt"]), None
            if tt.get("strata"):    # the prompts of the task's score only (not a separately reported category)
                keep = sorted((i, f"{k:03d}") for k, idx in enumerate(tt["strata"]) for i in idx)
                bp, tp, cats = [bp[i] for i, _ in keep], [tp[i] for i, _ in keep], [c for _, c in keep]
            out[t] = normalisation_test(bp, tp, cats, n_boot=n_boot)
    return out


def seed_values(runs: Sequence[RunInfo], task: str, value=headline_value) -> Dict[int, float]:
    """{seed: final score} of a method's runs on one task (runs without the task left out)."""
    out = {}
    for r in runs:
        v = value(r.final_row, task) if r.final_row else None
        if v is not None:
            out[r.seed] = float(v)
    return out


def _cell_stats(vals: Dict[int, float], runs: Sequence[RunInfo], task: str, eval_ci: bool) -> dict:
    """Mean and 95% CI: a t-interval over seeds (>= 2 seeds), else the single run's eval CI over prompts where
    the shown metric is the one the eval bootstrapped (the primary score), else no interval."""
    v = list(vals.values())
    if len(v) >= 2:
        m, lo, hi = t_interval(v)
        over = "seeds (t)"
    else:
        m = float(v[0]) if v else math.nan
        ci = runs[0].final_row.get("ci", {}).get(task) if (eval_ci and runs[0].final_row) else None
        lo, hi = ci if ci else (math.nan, math.nan)
        over = "prompts" if ci else "none"
    return {"mean": m, "ci": [float(lo), float(hi)], "n": len(v), "ci_over": over, "values": v,
            "seeds": list(vals)}


def compute(groups: Mapping[str, Sequence[RunInfo]], base: Mapping[str, dict], teachers: Mapping[str, dict],
            budgets: Mapping[str, dict], n_boot: int = 2000) -> dict:
    """{"plan": per-task normalisation plan, "rows": per method, "pairs": {task or AVERAGE: pairwise}}."""
    tasks = task_order(groups)
    plan = normalisation_plan(tasks, base, teachers, n_boot)
    norm_tasks = [t for t in tasks if plan[t]["normalised"]]
    bh = {t: base[t]["headline"] for t in norm_tasks}
    th = {t: teachers[t]["headline"] for t in norm_tasks}
    rows: Dict[str, dict] = {}
    values: Dict[str, Dict[str, Dict[int, float]]] = {t: {} for t in tasks + [AVERAGE]}
    for lab, runs in groups.items():
        per_task = {}
        for t in dict.fromkeys(t for r in runs for t in r.tasks):
            vals = seed_values(runs, t)
            if not vals:
                continue
            proxy = seed_values(runs, t, proxy_value)
            per_task[t] = {"metric": GOLD if proxy else "score",
                           **_cell_stats(vals, runs, t, eval_ci=not proxy),
                           "proxy": _cell_stats(proxy, runs, t, eval_ci=True) if proxy else None}
            values[t][lab] = vals
        mine = [t for t in norm_tasks if t in per_task]
        normalized = {t: [(v - bh[t]) / (th[t] - bh[t]) for v in per_task[t]["values"]] for t in mine}
        seeds = [s for s in per_task[mine[0]]["seeds"] if all(s in per_task[t]["seeds"] for t in mine)] if mine else []
        per_seed = {s: float(np.mean([(per_task[t]["values"][per_task[t]["seeds"].index(s)] - bh[t])
                                      / (th[t] - bh[t]) for t in mine])) for s in seeds}
        if mine and seeds:
            se1 = {t: (per_task[t]["ci"][1] - per_task[t]["ci"][0]) / (2 * 1.96)
                   if per_task[t]["ci_over"] == "prompts" else 0.0 for t in mine}
            avg, lo, hi = normalised_average_ci(
                {t: [per_task[t]["values"][per_task[t]["seeds"].index(s)] for s in seeds] for t in mine},
                {t: base[t]["per_prompt"] for t in mine}, {t: teachers[t]["per_prompt"] for t in mine},
                {t: teachers[t].get("strata") for t in mine}, se1, n_boot=n_boot)
            values[AVERAGE][lab] = per_seed
        else:
            avg, lo, hi = math.nan, math.nan, math.nan
        rows[lab] = {"method": runs[0].method, "seeds": [r.seed for r in runs], "runs": [str(r.path) for r in runs],
                     "tasks": per_task, "normalized": normalized,
                     "normalized_avg": {"mean": avg, "ci": [lo, hi], "tasks": mine, "per_seed": per_seed},
                     "iqm": iqm([x for v in normalized.values() for x in v]) if normalized else math.nan,
                     "budget": dict(budgets[lab]), "finished": all(r.finished for r in runs)}
    pairs = {t: pairwise(values[t], resolution=plan[t]["mde"]) for t in tasks if len(values[t]) > 1}
    if len(values[AVERAGE]) > 1:
        pairs[AVERAGE] = pairwise(values[AVERAGE])
    ranks = ranks_from_pairs(list(rows), pairs.get(AVERAGE, {}))
    for lab in rows:
        rows[lab]["rank"] = ranks[lab]
    return {"tasks": tasks, "plan": plan, "rows": rows, "pairs": pairs}


def _ref_cell(ref: Mapping[str, dict], t: str) -> str:
    d = ref.get(t)
    if not d or d.get("headline") is None:
        return "–"
    if d.get("headline_metric") == GOLD or "ci" not in d:
        return fmt(d["headline"])
    return ci_cell(d)


def render(doc: Doc, data: dict, base: Mapping[str, dict], teachers: Mapping[str, dict]) -> None:
    tasks, plan, rows = data["tasks"], data["plan"], data["rows"]
    gold = [t for t in tasks if any((r["tasks"].get(t) or {}).get("proxy") for r in rows.values())]
    cols: List[str] = []
    for t in tasks:
        cols += [f"{t} (gold)", f"{t} proxy"] if t in gold else [t]
    doc.sign("every score is higher = better. Raw scores first: learned-reward tasks show the hidden gold "
             "scorer, the learned proxy the methods trained on beside it. Normalised average: 0 = the base, 1 = the "
             "single-task teachers, over the tasks marked normalised below. Rank 1 is best.")
    headers = ["model", "rank", *cols, "normalised avg", "IQM", "student spend", "total incl. teachers", "seeds"]

    def task_cells(get) -> List[str]:
        out = []
        for t in tasks:
            out.append(get(t, False))
            if t in gold:
                out.append(get(t, True))
        return out

    trows = [["base", "", *task_cells(lambda t, p: _ref_cell(base, t) if not p else
                                      fmt(base.get(t, {}).get("mean"))),
              "0 (by definition)", "", "", "", ""],
             ["teachers (single-task)", "", *task_cells(lambda t, p: _ref_cell(teachers, t) if not p else
                                                        fmt(teachers.get(t, {}).get("mean"))),
              "1 (by definition)", "", "", "", ""]]
    for lab, r in sorted(rows.items(), key=lambda kv: (kv[1]["rank"], -np.nan_to_num(kv[1]["normalized_avg"]["mean"],
                                                                                       nan=-np.inf))):
        def cell(t, p, r=r):
            d = r["tasks"].get(t)
            if not d:
                return "–"
            return ci_cell(d["proxy"]) if p else ci_cell(d)
        trows.append([lab + ("" if r["finished"] else " (in progress)"), str(r["rank"]), *task_cells(cell),
                      ci_cell(r["normalized_avg"]), fmt(r["iqm"]), spend_cell(r["budget"], "student"),
                      spend_cell(r["budget"], "total"), seeds_cell(r["seeds"])])
    trows.append(["MDE (teacher vs base, paired per prompt)", "",
                  *task_cells(lambda t, p: "" if p else fmt(plan[t]["mde"])), "", "", "", "", ""])
    doc.table(headers, trows)
    doc.p("Cells: mean [95% CI]. Per task the CI is a t-interval over seeds when there are at least two (never a "
          "percentile bootstrap over a few seeds), else the eval's bootstrap over prompts (none for gold scores of a "
          "single run). The normalised average's CI propagates the teacher − base denominator (prompts resampled "
          "jointly for base and teacher) and the seeds (t-distributed). Ranks separate two methods only where their "
          "paired difference of the normalised average (same seeds, prompts and noise) is significant after Holm's "
          "correction (else they tie; one seed: all tie). MDE: the smallest teacher − base difference the paired "
          "per-prompt eval detects (α 0.05, power 0.8).", note=True)
    doc.table(["task", "teacher − base [95% CI]", "MDE", "MDE target", "normalised", "reason"],
              [[t, f"{fmt(p['gain'])} [{fmt(p['low'])}, {fmt(p['high'])}]", fmt(p["mde"]), target_cell(t, p["mde"]),
                "yes" if p["normalised"] else "no (raw)", p["reason"] or "teacher beats the base by more than the MDE"]
               for t, p in plan.items()])
    missed = [t for t in plan if t in MDE_TARGET and np.isfinite(plan[t]["mde"]) and plan[t]["mde"] > MDE_TARGET[t]]
    if missed:
        doc.p("Resolution not reached: " + ", ".join(f"{t}'s MDE {fmt(plan[t]['mde'])} is above the protocol's "
                                                     f"{MDE_TARGET[t]:.2f} target" for t in missed)
              + " (the full protocol's seeds per prompt are capped by the CPU budget, opd_bench/protocol.py); "
                "differences smaller than the MDE on these tasks are below resolution.", note=True)
    doc.p("Teachers: " + (", ".join(f"{t} = {v['source']}" for t, v in teachers.items()) or
                          "none found (scores are raw; train teachers or release teacher_<task>)") + ".", note=True)
