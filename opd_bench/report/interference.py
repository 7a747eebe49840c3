"""Interference: per-task gradient cosines and lookahead affinity at each multi-task method's final checkpoint
(:mod:`opd_bench.analysis.interference`), and negative transfer against the single-task teachers."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from ..analysis import RunInfo
from ..analysis import interference as itf
from ..errors import UserError
from ..evalcache import INTERFERENCE_RECORD
from ..methods import method_class
from .budget import spend_cell
from .document import Doc, fmt


def compute(groups: Mapping[str, Sequence[RunInfo]], rows: Mapping[str, dict], tm: Mapping[str, float],
            enabled: bool = True, say: Callable[[str], None] = lambda m: None) -> dict:
    """{"results": {label: interference result}, "notes": [...], "negative_transfer": {label: {task: diff}}}:
    negative transfer compares the headline scores (``rows``: gold first) with the teachers' (``tm``)."""
    inter: Dict[str, dict] = {}
    notes: List[str] = []
    if enabled:
        def at_final(r: RunInfo) -> bool:   # its final weights, or their interference recorded (weights gone)
            return r.final_checkpoint is not None or (r.path / INTERFERENCE_RECORD).is_file()

        for lab, rs in groups.items():
            r = next((r for r in rs if at_final(r)), rs[0])    # the first seed measurable at its final checkpoint
            if method_class(r.method).single_task or len(r.tasks) < 2:
                continue
            final = at_final(r)
            if not final and r.state_checkpoint is None:
                notes.append(f"{lab}: no checkpoint (none yet, or its weights are gone and no run folder records its "
                             "interference)")
                continue
            say(f"interference of {lab} (seed {r.seed})")
            try:   # at the final checkpoint: recorded in the run folder (read back once its weights are gone)
                inter[lab] = (itf.recorded_interference(r.path, r.cfg.device) if final
                              else itf.run_interference(r.path, r.cfg.device, which="state"))
            except UserError as e:
                notes.append(f"{lab}: {e}")
    neg = {lab: itf.negative_transfer({t: d["mean"] for t, d in r["tasks"].items()}, dict(tm))
           for lab, r in rows.items()}
    return {"results": inter, "notes": notes, "negative_transfer": neg, "enabled": enabled}


def _conflict_cells(c: Optional[dict]) -> List[str]:
    """Report cells of :func:`~opd_bench.analysis.interference.conflict_over_batches` (absent in old results)."""
    if not c:
        return ["–", "–", "–"]
    v = c["pair_verdicts"]
    pairs = [v[i][j] for i in range(len(v)) for j in range(i + 1, len(v))]
    counts = " / ".join(str(pairs.count(k)) for k in ("conflict", "aligned", "indistinguishable from 0"))
    return [fmt(c["resolved_conflict_rate"]), counts, fmt(c["same_task_cosine"])]


def render(doc: Doc, data: dict, tasks: Sequence[str], tm: Mapping[str, float], budgets: Mapping[str, dict],
           out: Path) -> None:
    inter, notes, interference = data["results"], data["notes"], data["enabled"]
    if inter:
        itf.plot_matrices(inter, out / "interference.png")
        doc.image(out / "interference.png", "Per-task gradient cosines C_ij and one-step lookahead affinity "
                                            "Z_{j→i} at each method's final checkpoint (seed shown in the table)")
        doc.sign("C_ij < 0: the gradients of tasks i and j conflict (a step for one hurts the other), C_ij > 0: "
                 "they agree. Z_{j→i} > 0: a step on task j raises task i's objective, < 0 lowers it. Conflict "
                 "rate: lower is better; magnitude imbalance = largest / smallest gradient norm (1 = balanced).")
        doc.table(["method", "objective", "conflict rate (1 batch)", "resolved conflicts (8 batches)",
                   "pairs: conflict / aligned / indistinguishable", "same-task cosine (noise floor)",
                   "magnitude imbalance", "‖g‖ per task"],
                  [[lab, v["objective"], fmt(v["conflict_rate"]), *_conflict_cells(v.get("conflict_over_batches")),
                    fmt(v["magnitude_imbalance"], 2),
                    ", ".join(f"{t}: {n:.3g}" for t, n in v["grad_norms"].items())] for lab, v in inter.items()])
        doc.p("Gradients of each method's own loss per task (DiffusionOPD's closed-form loss; GRPO's loss for "
              "multi-reward and cascade RL) on fixed fresh batches. Conflict rate = share of task pairs with C_ij < 0 "
              "on one batch. Resolved conflicts: pairs whose cosine between the tasks' mean gradients over 8 fresh "
              "batches has a 95% interval (bias-corrected jackknife over batches) below 0; a pair whose interval "
              "covers 0 is indistinguishable from 0. The same-task cosine between two batches of one task is what "
              "gradient noise alone gives. "
              "Affinity: " + "; ".join(sorted({v['affinity_definition'] for v in inter.values()})) + ".", note=True)
    else:
        doc.p("No multi-task run with a checkpoint" + (" (interference disabled by --no-interference)"
                                                       if not interference else "") + ".", note=True)
    for n in notes:
        doc.p(n, note=True)
    doc.h3("negative transfer vs the single-task teachers")
    neg = data["negative_transfer"]
    if tm:
        doc.sign("method score − teacher score: negative = worse than the single-task teacher (negative "
                 "transfer), positive = better than it.")
        doc.table(["method"] + list(tasks) + ["student spend", "total incl. teachers"],
                  [[lab] + [fmt(v.get(t)) for t in tasks] + [spend_cell(budgets[lab], "student"),
                                                             spend_cell(budgets[lab], "total")]
                   for lab, v in neg.items()])
        doc.p("Per task: method final score − teacher score (same eval protocol); negative = worse than the "
              "single-task teacher.", note=True)
    else:
        doc.p("No teacher scores: negative transfer needs the single-task teachers.", note=True)
