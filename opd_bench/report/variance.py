"""Gradient variance: the results of ``opd-bench analyze variance`` found in the run folders or given."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from ..analysis import RunInfo
from ..analysis import variance as var
from ..stats import t_interval
from .document import Doc, fmt
from .runs import find_variance_files


def compute(runs: Sequence[RunInfo], given: Sequence[Path] = ()) -> Dict[str, dict]:
    """{path: variance.json contents}: the given files first, then those in the run folders."""
    files = list(given) + [p for p in find_variance_files(runs) if p not in list(given)]
    return {str(f): var.load_variance(f) for f in files}


def _vdeb_cell(r: dict) -> str:
    if "V_debiased" not in r:
        return "–"
    v, lo, hi = (var._f(r.get(k)) for k in ("V_debiased", "V_debiased_low", "V_debiased_high"))
    return f"{fmt(v, 4)} [{fmt(lo, 4)}, {fmt(hi, 4)}]"


def ratio_rows(data: Dict[str, dict]) -> List[List[str]]:
    """Across two or more variance results: per pair (first estimator of the studies, each other one they all
    share) and task, the ratio V(first) / V(other) of each result (:func:`var.variance_ratio`), their geometric
    mean with a 95% Student-t interval on log10 over the results, and what it says; the row "all tasks" takes each
    result's mean log10 ratio over its tasks (the claims' per-seed number). [] for fewer than two results."""
    if len(data) < 2:
        return []
    studies = list(data.values())
    ests = [e for e in studies[0]["estimators"] if all(e in v["estimators"] for v in studies)]
    tasks = [t for t in studies[0]["results"] if all(t in v["results"] for v in studies)]
    g = lambda x: f"{10 ** x:.3g}" if math.isfinite(x) else "–"   # a log10 value shown as its ratio
    rows = []
    for other in ests[1:]:
        pair = (ests[0], other)
        logs = {t: [] for t in tasks}
        for v in studies:
            for t in tasks:
                r = var.variance_ratio(v["results"][t], pair)
                logs[t].append(math.log10(r) if r is not None else float("nan"))
        per_run_avg = [float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")
                       for x in np.asarray([logs[t] for t in tasks]).T]
        for label, vals in [*logs.items(), ("all tasks (mean log10)", per_run_avg)]:
            fin = [x for x in vals if math.isfinite(x)]
            m, lo, hi = t_interval(fin)
            reading = ("below resolution" if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 <= hi
                       else f"{pair[0]} lower" if hi < 0 else f"{pair[0]} higher")
            cell = f"{g(m)} [{g(lo)}, {g(hi)}]" if math.isfinite(lo) else g(m)
            rows.append([f"V({pair[0]}) / V({pair[1]})", label, str(len(fin)), ", ".join(g(x) for x in vals), cell,
                         reading])
    return rows


def render(doc: Doc, data: Dict[str, dict], out: Path) -> None:
    rows = ratio_rows(data)
    if rows:
        doc.h3(f"Across the {len(data)} results: estimator variance ratios")
        doc.sign("A ratio below 1: the first estimator's gradient is less noisy than the other's at equal samples.")
        doc.table(["ratio", "task", "results", "each result", "geometric mean [95% CI]", "reading"], rows)
        doc.p("Each result's ratio uses the debiased relative variances where both are resolved, else both plug-in "
              "V (capped at K − 1: a ratio pulled towards 1, conservative). The interval is Student-t on log10 over "
              "the results (one per run), back-transformed; 'below resolution' when it covers 1.", note=True)
    if data:
        k = next(iter(data.values()))["k"]
        doc.sign(f"V = mean_k ‖g_k − ḡ‖² / ‖ḡ‖² over K = {k} mini-batch gradients: lower is a less noisy "
                 f"gradient estimate; V near K − 1 = {k - 1} means the mean gradient is noise. SNR = 1 / V: "
                 "higher is better.")
        doc.p("V_debiased = S / (‖ḡ‖² − S/K) with S the unbiased per-batch variance: it removes the noise in "
              "‖ḡ‖² that caps V at K − 1, with a 95% leave-one-block-out jackknife interval; ∞ = the mean "
              "gradient is not distinguishable from 0 at this K.", note=True)
        for i, (vf, v) in enumerate(data.items()):
            prefix = f"variance{i}"
            doc.h3(f"{vf} (K = {v['k']} mini-batches)")
            n = v["batch_sizes"][-1]
            doc.table(["task", "estimator", f"V ({n} samples)", "V_debiased [95% CI]", "SNR", "V by batch size"],
                      [[t, e, fmt(var._f(r[e]["V"]), 4), _vdeb_cell(r[e]), fmt(var._f(r[e]["SNR"]), 4),
                        ", ".join(f"{b}: {var._f(x['V']):.3g}" for b, x in r[e]["by_batch_size"].items())]
                       for t, r in v["results"].items() for e in v["estimators"] if e in r])
            if i == 0:   # the first result's figures only: the others' numbers are in their tables and report.json
                var.plot_variance(v, out, prefix=prefix)
                for kind, cap in (("overall", "relative variance per estimator"),
                                  ("per_step", "per trained timestep"), ("batch", "against the batch size")):
                    doc.image(out / f"{prefix}_{kind}.png", f"Gradient variance: {cap}")
    else:
        doc.p("No variance results found (variance/variance.json in the run folders, or --variance). Produce them "
              "with: opd-bench analyze variance --checkpoint <run folder> [--tasks ...] [--k 16]; they are written "
              "to <run folder>/variance/ and picked up by the next report.", note=True)
