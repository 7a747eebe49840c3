"""Reward hacking: the learned proxy (what the methods trained on) against the hidden gold scorer over training
(:mod:`opd_bench.analysis.hacking`)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..analysis import RunInfo
from ..analysis import hacking as hk
from .budget import spend_cell
from .document import Doc, ci_cell, fmt


def compute(runs: Sequence[RunInfo]) -> dict:
    series = {}
    for r in runs:
        s = hk.run_series(r)
        if s:
            series[f"{r.label} s{r.seed}"] = s
    return {k: {"series": s, "summary": hk.hacking_summary(s)} for k, s in series.items()}


def final_proxy_gold(headline: dict) -> list:
    """Rows (method, task, proxy cell, gold cell) of the headline table's tasks that have both scores."""
    out = []
    for lab, r in headline["rows"].items():
        for t, d in r["tasks"].items():
            if d.get("proxy"):
                out.append([lab, t, ci_cell(d["proxy"]), ci_cell(d), spend_cell(r["budget"], "student"),
                            spend_cell(r["budget"], "total")])
    return out


def render(doc: Doc, data: dict, unit: str, headline: dict, out: Path) -> None:
    finals = final_proxy_gold(headline)
    if finals:
        doc.table(["method", "task", "final proxy (trained on) [95% CI]", "final gold [95% CI]", "student spend",
                   "total incl. teachers"], finals)
        doc.p("The headline table scores these tasks with the gold scorer; the proxy column feeds this section.",
              note=True)
    if data:
        hk.plot_hacking({k: d["series"] for k, d in data.items()}, unit, out / "hacking.png")
        doc.image(out / "hacking.png", "Learned proxy reward (left) vs hidden gold score (right) over training "
                                       "(Gao et al. 2022)")
        doc.sign("gains are final − start (positive = rose). Reward hacking shows as a proxy gain with a smaller or "
                 "negative gold gain, or a positive gold drop from peak (the gold score fell after its best).")
        doc.table(["run", "task", "proxy gain", "gold gain", "gold drop from peak"],
                  [[k, t, fmt(v["proxy_gain"]), fmt(v["gold_gain"]), fmt(v["gold_drop_from_peak"])]
                   for k, d in data.items() for t, v in d["summary"].items()])
    else:
        doc.p("No task with a learned proxy reward and a gold score (aesthetic, preference) in these runs.", note=True)
