"""Statistics used by evaluation, reports and the regression gate (Agarwal et al. 2021 conventions)."""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> Tuple[float, float]:
    """Percentile bootstrap CI of the mean."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return (float("nan"), float("nan"))
    if v.size == 1 or n_boot <= 0:
        return (float(v.mean()), float(v.mean()))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    return (float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2)))


def stratified_bootstrap_ci(
    groups: Dict[str, Sequence[float]], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
    stat=None,
) -> Tuple[float, float]:
    """Bootstrap CI resampling within each stratum (e.g. task or GenEval category), of ``stat`` over the
    stratum means (default: the mean of the stratum means)."""
    stat = stat or (lambda means: float(np.mean(means)))
    keys = sorted(groups)
    arrs = [np.asarray(groups[k], dtype=np.float64) for k in keys]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(max(1, n_boot)):
        out.append(stat([a[rng.integers(0, a.size, a.size)].mean() for a in arrs]))
    return (float(np.quantile(out, alpha / 2)), float(np.quantile(out, 1 - alpha / 2)))


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean: the mean of the middle 50% of the values."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if v.size == 0:
        return float("nan")
    lo, hi = int(np.floor(0.25 * v.size)), int(np.ceil(0.75 * v.size))
    return float(v[lo:hi].mean()) if hi > lo else float(v.mean())


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """P(X > Y) + 0.5 P(X = Y) over all pairs (the Mann-Whitney statistic, normalised)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size == 0 or y.size == 0:
        return float("nan")
    gt = (x[:, None] > y[None, :]).mean()
    eq = (x[:, None] == y[None, :]).mean()
    return float(gt + 0.5 * eq)
