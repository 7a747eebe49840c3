"""Forgetting and backward transfer (method.md section 7; Chaudhry et al. 2018, Lopez-Paz & Ranzato 2017).

R[k][i] = eval score on task i at checkpoint k. For cascade RL the checkpoints are the ends of the stages
(the ``end of stage k`` evals, then ``final`` for the last stage); for the other methods every eval of the run
in order (``start``, ``round k`` ..., ``final``).

- forgetting F_i = max_{first_i <= k < K} R[k][i] - R[K][i] (K = the last checkpoint, first_i the first
  checkpoint after task i was trained: for cascade the end of its stage, else the first eval after ``start``);
- backward transfer (cascade, tasks in stage order) BWT = mean_{i<T} (R[T][i] - R[i][i]), T = the last stage.

Scores may be normalised per task first (``n = (score - base) / (teacher - base)``, :func:`normalize_matrix`).
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..methods import method_class
from . import RunInfo, budget_x, curve_rows, is_normalized, normalize

_STAGE = re.compile(r"^end of stage (\d+)$")

#: stated next to every forgetting table
FORGETTING_DEFINITION = (
    "F_i = max over checkpoints k after task i was first trained and before the last of R[k][i], minus the last "
    "checkpoint's R[K][i] (positive = forgotten, negative = still improving; '-' = no such checkpoint). "
    "BWT = mean over earlier stages i of R[T][i] - R[i][i] (negative = forgetting).")


# ----------------------------------------------------------------------------------------------- pure math


def forgetting(R, first_trained: Optional[Sequence[int]] = None) -> np.ndarray:
    """F_i = max_{first_i <= k < K} R[k][i] - R[K][i] per task (column), where ``first_trained[i]`` is the first
    checkpoint row at which task i had been trained (default 0: every row). Only checkpoints after task i was
    trained count: a score the model had before learning the task cannot be forgotten. Positive = forgotten,
    negative = still improving. NaN where no such earlier checkpoint exists."""
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] < 2:
        return np.full(R.shape[-1] if R.ndim == 2 else 0, np.nan)
    K = R.shape[0] - 1
    first = [0] * R.shape[1] if first_trained is None else list(first_trained)
    return np.array([R[f:K, i].max() - R[K, i] if f < K else np.nan for i, f in enumerate(first)])


def forgetting_resolution(half_widths, first_trained: Optional[Sequence[int]] = None) -> np.ndarray:
    """Per task (column), the smallest |F_i| one run resolves: the 95% half-width of a difference of two of its
    checkpoint evaluations, sqrt(2) x the median per-evaluation half-width ``half_widths[k][i]`` over the rows F_i
    reads (``first_trained[i]`` on). The checkpoints share prompts and noise, so a paired difference would be
    tighter: this resolution is conservative. NaN where no half-width is known."""
    H = np.asarray(half_widths, dtype=np.float64)
    if H.ndim != 2 or H.shape[0] == 0:
        return np.full(H.shape[-1] if H.ndim == 2 else 0, np.nan)
    first = [0] * H.shape[1] if first_trained is None else list(first_trained)
    out = []
    for i, f in enumerate(first):
        col = H[min(f, H.shape[0] - 1):, i]
        col = col[np.isfinite(col)]
        out.append(np.sqrt(2.0) * float(np.median(col)) if col.size else np.nan)
    return np.array(out)


def first_trained_rows(labels: Sequence[str], n_tasks: int, cascade: bool) -> List[int]:
    """Per task, the first row of :func:`score_matrix` at which it had been trained: for cascade the row after
    its own stage (row i for the task of stage i); for joint methods the first row after the start evaluation
    (``start``, or ``start curve`` on the learning curve)."""
    if cascade:
        return list(range(n_tasks))
    first = next((k for k, lab in enumerate(labels) if lab not in ("start", "start curve")), len(labels))
    return [first] * n_tasks


def backward_transfer(R, columns: Optional[Sequence[int]] = None) -> float:
    """BWT = mean_{i<T} (R[T][i] - R[i][i]) for a square matrix whose row k is the checkpoint after stage k
    and whose column i is the task trained in stage i (T = the last index); over ``columns`` only when given (the
    tasks on one scale: never a mean of raw and normalised scores)."""
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] < 2:
        return float("nan")
    T = R.shape[0] - 1
    cols = [i for i in range(T) if columns is None or i in set(columns)]
    return float(np.mean([R[T, i] - R[i, i] for i in cols])) if cols else float("nan")


def normalize_matrix(R, tasks: Sequence[str], base: Dict[str, float], teacher: Dict[str, float]) -> np.ndarray:
    """Each column normalised with its task's base and teacher scores (raw where no teacher is known)."""
    R = np.asarray(R, dtype=np.float64)
    out = R.copy()
    for i, t in enumerate(tasks):
        out[:, i] = [normalize(v, base.get(t), teacher.get(t)) for v in R[:, i]]
    return out


# ----------------------------------------------------------------------------------------------- from runs


def cascade_order(run: RunInfo) -> List[str]:
    """The order the run's method trains its tasks in (cascade: its stages)."""
    return method_class(run.method).task_order(run.cfg, run.tasks)


def matrix_rows(history: Sequence[dict], cascade: bool = False) -> Tuple[List[str], List[dict]]:
    """(row labels, eval rows) of the score matrix. Cascade: one row per completed stage (``end of stage k`` in
    stage order, then ``final`` for the last stage). Otherwise the learning curve's evals in order
    (:func:`curve_rows`: the periodic val evaluations when the run has them; duplicates at one point merged)."""
    if cascade:
        stages: Dict[int, dict] = {}
        for r in history:
            m = _STAGE.match(r.get("label", ""))
            if m:
                stages[int(m.group(1))] = r
        finals = [r for r in history if r.get("label") == "final"]
        rows = [stages[k] for k in sorted(stages)] + finals[-1:]
        return [f"after stage {k}" for k in sorted(stages)] + (["final"] if finals else []), rows
    rows = curve_rows(history)
    return [r.get("label", "") for r in rows], rows


def score_matrix(history: Sequence[dict], tasks: Sequence[str], cascade: bool = False) -> Tuple[List[str], np.ndarray]:
    """(row labels, R): R[k][i] = row k's (:func:`matrix_rows`) score on task i."""
    labels, rows = matrix_rows(history, cascade)
    return labels, _scores(rows, tasks)


def _scores(rows: Sequence[dict], tasks: Sequence[str]) -> np.ndarray:
    R = np.array([[float(r["scores"].get(t, np.nan)) for t in tasks] for r in rows], dtype=np.float64)
    return R.reshape(len(rows), len(tasks))


def half_width_matrix(rows: Sequence[dict], tasks: Sequence[str]) -> np.ndarray:
    """The 95% half-widths of the score matrix of ``rows`` (:func:`matrix_rows`'s eval rows): each evaluation's
    interval over its prompts, as the eval recorded it. NaN where it recorded none or a degenerate one (zero width: a
    stratified bootstrap over categories of one prompt each, as GenEval's 8-prompt curve evaluations have, cannot
    vary): unknown, not 0."""
    def hw(r, t):
        ci = (r.get("ci") or {}).get(t)
        ok = isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(c, (int, float)) for c in ci)
        w = (float(ci[1]) - float(ci[0])) / 2 if ok else np.nan
        return w if w > 0 else np.nan

    return np.array([[hw(r, t) for t in tasks] for r in rows], dtype=np.float64).reshape(len(rows), len(tasks))


def run_forgetting(run: RunInfo, base: Dict[str, float], teacher: Dict[str, float]) -> dict:
    """The forgetting summary of one run (JSON-able): matrix (raw and normalised), F_i, and BWT for cascade.
    ``teacher`` holds only the tasks that are normalised (the report's plan); the others stay raw, and the
    normalised BWT averages the normalised tasks only (``bwt_tasks``); ``bwt_raw`` averages every task raw."""
    cascade = method_class(run.method).trains_tasks_in_sequence
    tasks = cascade_order(run) if cascade else run.tasks
    labels, rows = matrix_rows(run.history, cascade)
    R = _scores(rows, tasks)
    N = normalize_matrix(R, tasks, base, teacher)
    first = first_trained_rows(labels, len(tasks), cascade)
    F = forgetting(N, first)
    res_raw = forgetting_resolution(half_width_matrix(rows, tasks), first)
    scale = [abs(teacher[t] - base[t]) if is_normalized(base.get(t), teacher.get(t)) else 1.0 for t in tasks]
    out = {
        "run": str(run.path), "label": run.label, "seed": run.seed, "tasks": list(tasks), "rows": labels,
        "R": R.tolist(), "R_normalized": N.tolist(),
        "forgetting": {t: _num(f) for t, f in zip(tasks, F)},
        "forgetting_raw": {t: _num(f) for t, f in zip(tasks, forgetting(R, first))},
        # the smallest |F| the run's evaluations resolve, in F's units (normalised where F is) and raw
        "forgetting_resolution": {t: _num(r / c) for t, r, c in zip(tasks, res_raw, scale)},
        "forgetting_resolution_raw": {t: _num(r) for t, r in zip(tasks, res_raw)},
        "forgetting_definition": FORGETTING_DEFINITION,
        "bwt": None, "bwt_raw": None, "bwt_tasks": [],
    }
    if cascade and R.shape[0] == len(tasks):
        norm = [i for i, t in enumerate(tasks) if is_normalized(base.get(t), teacher.get(t))]
        out["bwt"], out["bwt_raw"] = _num(backward_transfer(N, norm)), _num(backward_transfer(R))
        out["bwt_tasks"] = [tasks[i] for i in norm]
    return out


def _num(x) -> Optional[float]:
    x = float(x)
    return None if not np.isfinite(x) else x


def curves(run: RunInfo, tasks: Optional[Sequence[str]] = None) -> dict:
    """Every task's score over the budget spent (x in the run's budget unit), plus the cascade stage
    boundaries (the budget at each ``end of stage k`` eval)."""
    tasks = list(tasks or run.tasks)
    rows = curve_rows(run.history)   # one protocol per curve
    x = [budget_x(r, run.unit) for r in rows]
    ys = {t: [float(r["scores"].get(t, np.nan)) for r in rows] for t in tasks}
    bounds = [budget_x(r, run.unit) for r in run.history if _STAGE.match(r.get("label", ""))]
    return {"unit": run.unit, "x": x, "scores": ys, "stage_bounds": bounds, "train": train_signal(run, tasks)}


def train_signal(run: RunInfo, tasks: Sequence[str]) -> Dict[str, dict]:
    """Per task, the training signal logged every round (metrics.jsonl): the rollouts' mean reward (GRPO
    methods, ``reward/<task>``) or the distillation loss (DiffusionOPD, ``loss/<task>``), over the budget."""
    out: Dict[str, dict] = {}
    for t in tasks:
        for key, kind in ((f"reward/{t}", "training reward (rollouts)"), (f"loss/{t}", "distillation loss")):
            rows = [r for r in run.metrics if isinstance(r.get(key), (int, float)) and "budget" in r]
            if rows:
                out[t] = {"kind": kind, "x": [budget_x(r, run.unit) for r in rows], "y": [float(r[key]) for r in rows]}
                break
    return out


def smooth(y: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average (the first points average what there is)."""
    y = np.asarray(y, dtype=np.float64)
    if window <= 1 or len(y) == 0:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


# ----------------------------------------------------------------------------------------------- plots


def plot_curves(curves_by_run: Dict[str, dict], base: Dict[str, float], teacher: Dict[str, float], path) -> None:
    """One column per task. Top row: eval score vs budget (a line with markers per run; base grey dashed,
    teacher black solid; cascade stage ends dotted). Then one row per kind of per-round training signal
    (rollout reward, distillation loss; faint raw, bold smoothed). One legend for the figure, below it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({t for c in curves_by_run.values() for t in c["scores"]})
    n = max(1, len(tasks))
    kinds = sorted({sig["kind"] for c in curves_by_run.values() for sig in c.get("train", {}).values()})
    nrows = 1 + len(kinds)
    height = 3.2 * nrows + 0.6
    width = (4.4 if n <= 2 else 3.3) * n
    fig, axes = plt.subplots(nrows, n, figsize=(width, height), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    unit = next(iter(curves_by_run.values()))["unit"] if curves_by_run else "budget"
    handles: Dict[str, object] = {}
    for col, t in enumerate(tasks):
        ax = axes[0][col]
        for k, (lab, c) in enumerate(curves_by_run.items()):
            if t not in c["scores"]:
                continue
            colr = colors[k % len(colors)]
            (h,) = ax.plot(c["x"], c["scores"][t], marker="o", ms=5, lw=1.8, color=colr)
            handles.setdefault(lab, h)
            for b in c["stage_bounds"]:
                ax.axvline(b, color=colr, ls=":", lw=1, alpha=0.8)
        if t in base:
            handles.setdefault("base", ax.axhline(base[t], color="0.45", ls="--", lw=1.4))
        if t in teacher:
            handles.setdefault("teacher (single-task)", ax.axhline(teacher[t], color="black", ls="-", lw=1.4))
        ax.set_title(f"{t}: eval score", fontsize=11)
        ax.set_ylabel("score", fontsize=10)
        for row, kind in enumerate(kinds, start=1):
            ax = axes[row][col]
            for k, (lab, c) in enumerate(curves_by_run.items()):
                sig = c.get("train", {}).get(t)
                if not sig or sig["kind"] != kind:
                    continue
                colr = colors[k % len(colors)]
                ax.plot(sig["x"], sig["y"], color=colr, lw=0.6, alpha=0.3)
                ax.plot(sig["x"], smooth(sig["y"], max(1, len(sig["y"]) // 15)), color=colr, lw=1.8)
            ax.set_title(f"{t}: {kind} per round", fontsize=10)
            ax.set_ylabel(kind.split(" (")[0], fontsize=10)
        axes[-1][col].set_xlabel(f"budget spent ({unit})", fontsize=10)
    for ax in axes.ravel():
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.3)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(5, len(handles)),
                   fontsize=10, frameon=False)
    fig.tight_layout(rect=(0, 0.5 / height, 1, 1))
    fig.savefig(path, dpi=min(110, 1150 / width))  # at most the report page's width: shown at its own size
    plt.close(fig)
