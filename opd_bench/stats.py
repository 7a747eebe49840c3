"""Statistics used by evaluation, reports and the regression gate (Agarwal et al. 2021 conventions)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

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


# --------------------------------------------------------------------------- the evaluation protocol's statistics
# Intervals that mean what they say at the number of values used: t-intervals across training seeds, paired
# differences on identical prompts and noise, the minimum detectable effect, a hierarchical bootstrap (seeds,
# then prompts) when per-prompt scores are available, Holm's correction for several comparisons, and a joint
# bootstrap for normalised scores whose denominator is itself measured (docs/method.md section 7).

#: verdicts of a two-sided comparison
BETTER, WORSE, BELOW_RESOLUTION = "better", "worse", "below resolution"


def t_interval(values: Sequence[float], alpha: float = 0.05) -> Tuple[float, float, float]:
    """(mean, low, high): Student-t confidence interval of the mean; (mean, nan, nan) for fewer than 2 values."""
    from scipy import stats as st

    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return (float("nan"),) * 3
    m = float(v.mean())
    if v.size < 2:
        return (m, float("nan"), float("nan"))
    half = float(st.t.ppf(1 - alpha / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return (m, m - half, m + half)


def mde_paired(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable mean difference of a two-sided paired t-test on ``n`` pairs whose differences have
    standard deviation ``sd``: (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n)."""
    from scipy import stats as st

    if n < 2:
        return float("inf")
    return float((st.t.ppf(1 - alpha / 2, n - 1) + st.t.ppf(power, n - 1)) * sd / np.sqrt(n))


def seeds_for_mde(var_between: float, var_within: float, n_prompts: int, target: float, alpha: float = 0.05,
                  power: float = 0.8, max_seeds: int = 64) -> Optional[int]:
    """Noise seeds per prompt so that the paired MDE over ``n_prompts`` prompts is at most ``target``.

    A prompt's paired difference averaged over S noise seeds has variance var_between + var_within / S
    (between-prompt spread of the true difference, plus the sampling noise of one image). None when even
    ``max_seeds`` seeds cannot reach the target (the between-prompt part alone is too large: more prompts
    are needed, not more seeds)."""
    for s in range(1, max_seeds + 1):
        if mde_paired(float(np.sqrt(var_between + var_within / s)), n_prompts, alpha, power) <= target:
            return s
    return None


def variance_components(scores: np.ndarray) -> Tuple[float, float]:
    """(between-prompt variance of the prompt means' expectation, within-prompt variance of one draw) from a
    [prompts, seeds] array, by the one-way random-effects ANOVA estimator (between clipped at 0)."""
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError("variance_components needs a [prompts, seeds>=2] array")
    within = float(x.var(axis=1, ddof=1).mean())
    between = float(max(0.0, x.mean(axis=1).var(ddof=1) - within / x.shape[1]))
    return between, within


@dataclass(frozen=True)
class Paired:
    """A paired comparison: candidate minus reference on identical units (prompts, or seeds)."""
    diff: float
    low: float
    high: float
    p: float
    n: int
    sd: float
    mde: float
    verdict: str

    def with_p(self, p: float) -> "Paired":
        return Paired(self.diff, self.low, self.high, p, self.n, self.sd, self.mde, verdict_of(self.low, self.high, p))


def verdict_of(low: float, high: float, p: float = 0.0, alpha: float = 0.05) -> str:
    """better / worse when the interval excludes 0 (and, after a multiplicity correction, p < alpha), else
    below resolution: the data cannot tell the difference from 0."""
    if low > 0 and p < alpha:
        return BETTER
    if high < 0 and p < alpha:
        return WORSE
    return BELOW_RESOLUTION


def paired_t(candidate: Sequence[float], reference: Sequence[float], alpha: float = 0.05,
             power: float = 0.8) -> Paired:
    """Paired t comparison (candidate - reference): mean difference, its t-interval, two-sided p, the MDE."""
    from scipy import stats as st

    c, r = np.asarray(candidate, dtype=np.float64).ravel(), np.asarray(reference, dtype=np.float64).ravel()
    if c.shape != r.shape:
        raise ValueError(f"paired comparison of {c.size} vs {r.size} values")
    d = c - r
    m, lo, hi = t_interval(d, alpha)
    sd = float(d.std(ddof=1)) if d.size > 1 else float("nan")
    if d.size < 2:
        p = float("nan")
    elif sd == 0:
        p = 1.0 if m == 0 else 0.0
    else:
        p = float(st.ttest_rel(c, r).pvalue)
    if d.size < 2:
        return Paired(m, lo, hi, p, int(d.size), sd, float("inf"), BELOW_RESOLUTION)
    return Paired(m, lo, hi, p, int(d.size), sd, mde_paired(sd, d.size, alpha, power), verdict_of(lo, hi, p, alpha))


def holm(pvalues: Sequence[float]) -> list:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input order."""
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = p.size
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def hierarchical_bootstrap(scores: np.ndarray, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05,
                           stat=np.mean) -> Tuple[float, float, float]:
    """(estimate, low, high) for ``stat`` of a [training seeds, prompts] array of per-prompt scores (each
    already averaged over its noise seeds): resample training seeds, then prompts (the same prompt draw for
    every seed, since all models are scored on identical prompts). The estimate is ``stat`` of all values."""
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError("hierarchical_bootstrap needs a [seeds, prompts] array")
    rng = np.random.default_rng(seed)
    n_s, n_p = x.shape
    out = np.empty(n_boot)
    for b in range(n_boot):
        rows = rng.integers(0, n_s, n_s)
        cols = rng.integers(0, n_p, n_p)
        out[b] = stat(x[np.ix_(rows, cols)])
    return (float(stat(x)), float(np.quantile(out, alpha / 2)), float(np.quantile(out, 1 - alpha / 2)))


def normalised_ci(score: np.ndarray, base: np.ndarray, teacher: np.ndarray, n_boot: int = 2000, seed: int = 0,
                  alpha: float = 0.05) -> Tuple[float, float, float]:
    """(n, low, high) for n = (score - base) / (teacher - base), bootstrapping numerator and denominator jointly:
    ``score`` is [training seeds, prompts], ``base`` and ``teacher`` are [prompts] on the same prompts. Seeds
    and prompts are resampled as in :func:`hierarchical_bootstrap`; the same prompt draw feeds all three."""
    s = np.asarray(score, dtype=np.float64)
    b, t = np.asarray(base, dtype=np.float64).ravel(), np.asarray(teacher, dtype=np.float64).ravel()
    if s.ndim == 1:
        s = s[None]
    if not (s.shape[1] == b.size == t.size):
        raise ValueError("normalised_ci: score, base and teacher must be on the same prompts")
    rng = np.random.default_rng(seed)
    n_s, n_p = s.shape
    est = float((s.mean() - b.mean()) / (t.mean() - b.mean()))
    out = np.empty(n_boot)
    for k in range(n_boot):
        rows, cols = rng.integers(0, n_s, n_s), rng.integers(0, n_p, n_p)
        out[k] = (s[np.ix_(rows, cols)].mean() - b[cols].mean()) / (t[cols].mean() - b[cols].mean())
    return (est, float(np.quantile(out, alpha / 2)), float(np.quantile(out, 1 - alpha / 2)))
