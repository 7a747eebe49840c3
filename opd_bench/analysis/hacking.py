"""Reward hacking (method.md section 7; Gao et al. 2022): the learned proxy reward vs the hidden gold score over
training. Tasks with a learned reward (aesthetic, preference) report both in their eval metrics
(``metrics[task]['score']`` = proxy, ``metrics[task]['gold']`` = gold); any task that does is included."""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from . import RunInfo, budget_x, curve_rows


def proxy_gold_series(history: Sequence[dict], unit: str) -> Dict[str, dict]:
    """Per task with both metrics: x (budget spent in ``unit``), proxy and gold, one point per eval."""
    rows = curve_rows(history)   # one protocol: the val learning-curve evals when the run has them
    tasks = sorted({t for r in rows for t, m in r.get("metrics", {}).items() if "score" in m and "gold" in m})
    out = {}
    for t in tasks:
        pts = [(budget_x(r, unit), r["metrics"][t]["score"], r["metrics"][t]["gold"])
               for r in rows if "gold" in r.get("metrics", {}).get(t, {})]
        out[t] = {"x": [p[0] for p in pts], "proxy": [float(p[1]) for p in pts], "gold": [float(p[2]) for p in pts]}
    return out


def hacking_summary(series: Dict[str, dict]) -> Dict[str, dict]:
    """Per task: proxy and gold gains from the first to the last eval, and the gold at the best proxy point
    (a proxy that keeps rising while gold falls is over-optimisation)."""
    out = {}
    for t, s in series.items():
        if not s["x"]:
            continue
        best = int(np.argmax(s["gold"]))
        out[t] = {"proxy_gain": s["proxy"][-1] - s["proxy"][0], "gold_gain": s["gold"][-1] - s["gold"][0],
                  "gold_peak_x": s["x"][best], "gold_drop_from_peak": s["gold"][best] - s["gold"][-1]}
    return out


def run_series(run: RunInfo) -> Dict[str, dict]:
    return proxy_gold_series(run.history, run.unit)


def plot_hacking(series_by_label: Dict[str, Dict[str, dict]], unit: str, path) -> List[str]:
    """One row per task: proxy (left) and gold (right) against the budget, a line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({t for s in series_by_label.values() for t in s})
    fig, axes = plt.subplots(max(1, len(tasks)), 2, figsize=(9, 3.4 * max(1, len(tasks))), squeeze=False)
    for row, t in zip(axes, tasks):
        for lab, s in series_by_label.items():
            if t in s:
                row[0].plot(s[t]["x"], s[t]["proxy"], marker="o", ms=3, label=lab)
                row[1].plot(s[t]["x"], s[t]["gold"], marker="s", ms=3, ls="--", label=lab)
        for ax, what in zip(row, ("proxy reward (learned)", "gold score (hidden)")):
            ax.set_title(f"{t}: {what}")
            ax.set_xlabel(f"budget spent ({unit})")
            ax.set_ylabel(what.split(" (")[0])
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return tasks
