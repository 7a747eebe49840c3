"""Gradient variance: the results of ``opd-bench analyze variance`` found in the run folders or given."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

from ..analysis import RunInfo
from ..analysis import variance as var
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


def render(doc: Doc, data: Dict[str, dict], out: Path) -> None:
    if data:
        for i, (vf, v) in enumerate(data.items()):
            prefix = f"variance{i}"
            var.plot_variance(v, out, prefix=prefix)
            doc.h3(f"{vf} (K = {v['k']} mini-batches)")
            n = v["batch_sizes"][-1]
            doc.sign(f"V = mean_k ‖g_k − ḡ‖² / ‖ḡ‖² over K = {v['k']} mini-batch gradients: lower is a less noisy "
                     f"gradient estimate; V near K − 1 = {v['k'] - 1} means the mean gradient is noise. SNR = 1 / V: "
                     "higher is better.")
            doc.p("V_debiased = S / (‖ḡ‖² − S/K) with S the unbiased per-batch variance: it removes the noise in "
                  "‖ḡ‖² that caps V at K − 1, with a 95% leave-one-block-out jackknife interval; ∞ = the mean "
                  "gradient is not distinguishable from 0 at this K.", note=True)
            doc.table(["task", "estimator", f"V ({n} samples)", "V_debiased [95% CI]", "SNR", "V by batch size"],
                      [[t, e, fmt(var._f(r[e]["V"]), 4), _vdeb_cell(r[e]), fmt(var._f(r[e]["SNR"]), 4),
                        ", ".join(f"{b}: {var._f(x['V']):.3g}" for b, x in r[e]["by_batch_size"].items())]
                       for t, r in v["results"].items() for e in v["estimators"] if e in r])
            for kind, cap in (("overall", "relative variance per estimator"), ("per_step", "per trained timestep"),
                              ("batch", "against the batch size")):
                doc.image(out / f"{prefix}_{kind}.png", f"Gradient variance: {cap}")
    else:
        doc.p("No variance results found (variance/variance.json in the run folders, or --variance). Produce them "
              "with: opd-bench analyze variance --checkpoint <run folder> [--tasks ...] [--k 16]; they are written "
              "to <run folder>/variance/ and picked up by the next report.", note=True)
