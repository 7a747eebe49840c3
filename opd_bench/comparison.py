"""The one paired comparison engine behind ``opd-bench check``, ``opd-bench compare`` and the report.

Two models evaluated on identical prompts with identical per-prompt noise are compared per prompt: the
difference candidate - reference of each prompt (several noise seeds of a prompt averaged first). For a task
with categories (GenEval) the statistic is the weighted mean of the per-stratum mean differences -- the same
aggregate as the task score -- and prompts are resampled within their stratum. Every comparison carries

- a stratified percentile bootstrap CI of the difference (over prompts: many values),
- a stratified paired t-interval with its two-sided p-value and the minimum detectable difference (MDE, alpha
  0.05, power 0.8) of the pairs, with the within-stratum variance pooled,
- optionally the unpaired bootstrap CI (the two sides resampled independently), for contrast.

Two verdict rules read it, chosen by the caller:

- :func:`regression_verdict` (``check``'s gate): the CI of new - old entirely below ``-margin`` is a
  ``REGRESSION``, entirely above ``+margin`` is ``improved``, else ``pass``; no margin = ``info``.
- :func:`difference_verdict` (``compare`` and the report): ``better`` when the interval lies above 0 (and the
  difference is at least ``margin``), ``worse`` when it lies below 0, otherwise ``below resolution`` when
  |diff| is under the MDE (the data could not have seen a difference that small) and ``no clear difference``
  when it is not. A multiplicity-adjusted p-value (Holm) can be given; then significance also needs p < alpha.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .stats import holm, stratified_bootstrap_ci

# verdicts of compare / the report
BETTER, WORSE, NO_CLEAR, BELOW_RESOLUTION = "better", "worse", "no clear difference", "below resolution"
#: a pair with fewer than two shared units and no known resolution: nothing can be said
UNTESTED = "not tested (fewer than 2 paired units)"
# statuses of the regression gate
REGRESSION, IMPROVED, PASS, INFO = "REGRESSION", "improved", "pass", "info"


@dataclass(frozen=True)
class PairedComparison:
    """candidate - reference on identical units (prompts). Means are stratum-weighted."""

    reference: float
    candidate: float
    diff: float
    ci: Tuple[float, float]                      # paired bootstrap 95% CI of diff
    t_ci: Tuple[float, float]                    # paired (stratified) t 95% CI of diff
    p: float                                     # two-sided p of the paired t test
    mde: float                                   # minimum detectable difference (alpha, power) of the pairs
    n: int
    wins: float                                  # share of units where the candidate is higher
    losses: float
    unpaired_ci: Optional[Tuple[float, float]] = None
    strata: Dict[str, dict] = field(default_factory=dict)  # per stratum: n, reference, candidate, diff


def strata_of(values: np.ndarray, cats: Optional[Sequence[str]]) -> Dict[str, np.ndarray]:
    """Values split by category (sorted); one stratum ``all`` without categories."""
    values = np.asarray(values, dtype=np.float64)
    if not cats:
        return {"all": values}
    return {c: values[[i for i, x in enumerate(cats) if x == c]] for c in sorted(set(cats))}


def weighted_strata_ci(groups: Mapping[str, np.ndarray], weights: Mapping[str, float], n_boot: int,
                       seed: int) -> Tuple[float, float, float]:
    """Point estimate and stratified-bootstrap 95% CI of ``sum_k w_k * mean(groups[k])``.

    Paired difference: groups = per-stratum differences, weights summing to 1. Unpaired: groups ``new/<s>`` and
    ``old/<s>`` resampled independently, weights +-w."""
    keys = sorted(groups)
    w = np.array([weights[k] for k in keys])
    point = float(sum(weights[k] * np.mean(groups[k]) for k in keys))
    lo, hi = stratified_bootstrap_ci({k: groups[k] for k in keys}, n_boot, seed, stat=lambda m: float(np.dot(w, m)))
    return point, lo, hi


def stratified_t(diffs: Mapping[str, np.ndarray], weights: Mapping[str, float], alpha: float = 0.05,
                 power: float = 0.8) -> Tuple[float, float, float, float]:
    """(low, high, p, mde) of the paired t comparison of ``sum_k w_k mean(diffs[k])``, with the within-stratum
    variance pooled over strata (df = n - strata). One stratum: exactly the paired t-test (scipy's ttest_rel)."""
    from scipy import stats as st

    keys = sorted(diffs)
    arrs = [np.asarray(diffs[k], dtype=np.float64) for k in keys]
    n = sum(a.size for a in arrs)
    df = n - len(arrs)
    est = float(sum(weights[k] * a.mean() for k, a in zip(keys, arrs)))
    if df < 1:
        return float("nan"), float("nan"), float("nan"), float("inf")
    pooled = sum(float(((a - a.mean()) ** 2).sum()) for a in arrs) / df
    se = float(np.sqrt(pooled * sum(weights[k] ** 2 / a.size for k, a in zip(keys, arrs))))
    q = float(st.t.ppf(1 - alpha / 2, df))
    mde = float((q + st.t.ppf(power, df)) * se)
    if se == 0:
        return est, est, (1.0 if est == 0 else 0.0), mde
    p = float(2 * st.t.sf(abs(est) / se, df))
    return est - q * se, est + q * se, p, mde


def compare_strata(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                   weights: Optional[Mapping[str, float]] = None, *, n_boot: int = 2000, seed: int = 0,
                   unpaired: bool = False, alpha: float = 0.05, power: float = 0.8) -> PairedComparison:
    """Paired comparison of per-unit scores grouped in strata (same keys and sizes on both sides); the
    statistic is ``sum_k w_k mean(candidate_k - reference_k)`` (default weights: equal per stratum)."""
    keys = sorted(reference)
    if sorted(candidate) != keys:
        raise ValueError("compare_strata: the two sides have different strata")
    ref = {k: np.asarray(reference[k], dtype=np.float64) for k in keys}
    cand = {k: np.asarray(candidate[k], dtype=np.float64) for k in keys}
    for k in keys:
        if ref[k].shape != cand[k].shape:
            raise ValueError(f"compare_strata: stratum {k} has {ref[k].size} vs {cand[k].size} units")
    w = dict(weights) if weights is not None else {k: 1 / len(keys) for k in keys}
    diff = {k: cand[k] - ref[k] for k in keys}
    delta, lo, hi = weighted_strata_ci(diff, w, n_boot, seed)
    t_lo, t_hi, p, mde = stratified_t(diff, w, alpha, power)
    uci = None
    if unpaired:
        both = {**{f"new/{k}": v for k, v in cand.items()}, **{f"old/{k}": v for k, v in ref.items()}}
        bw = {f"{s}/{k}": (1 if s == "new" else -1) * w[k] for k in keys for s in ("new", "old")}
        _, ulo, uhi = weighted_strata_ci(both, bw, n_boot, seed)
        uci = (ulo, uhi)
    d_all = np.concatenate([diff[k] for k in keys])
    return PairedComparison(
        reference=float(sum(w[k] * ref[k].mean() for k in keys)),
        candidate=float(sum(w[k] * cand[k].mean() for k in keys)),
        diff=delta, ci=(lo, hi), t_ci=(t_lo, t_hi), p=p, mde=mde, n=int(d_all.size),
        wins=float((d_all > 0).mean()), losses=float((d_all < 0).mean()), unpaired_ci=uci,
        strata={k: {"n": int(ref[k].size), "reference": float(ref[k].mean()), "candidate": float(cand[k].mean()),
                    "diff": float(diff[k].mean())} for k in keys})


def compare_values(reference: Sequence[float], candidate: Sequence[float], cats: Optional[Sequence[str]] = None,
                   **kw) -> PairedComparison:
    """:func:`compare_strata` of two aligned per-prompt arrays, stratified by ``cats`` (equal stratum weights)."""
    return compare_strata(strata_of(np.asarray(reference), cats), strata_of(np.asarray(candidate), cats), **kw)


# ----------------------------------------------------------------------------------------------- verdict rules


def regression_verdict(ci: Tuple[float, float], margin: Optional[float]) -> str:
    """The regression gate's rule on the CI of new - old: below -margin = REGRESSION, above +margin = improved."""
    if margin is None:
        return INFO
    if ci[1] < -margin:
        return REGRESSION
    if ci[0] > margin:
        return IMPROVED
    return PASS


def difference_verdict(diff: float, ci: Tuple[float, float], mde: float, margin: float = 0.0,
                       p: Optional[float] = None, alpha: float = 0.05) -> str:
    """better / worse / below resolution / no clear difference (module docstring). ``p`` (e.g. Holm-adjusted)
    must also be below ``alpha`` for better / worse when given."""
    significant = p is None or (np.isfinite(p) and p < alpha)
    if significant and ci[0] > 0 and diff >= margin:
        return BETTER
    if significant and ci[1] < 0:
        return WORSE
    if not np.isfinite(mde) or abs(diff) < mde:
        return BELOW_RESOLUTION
    return NO_CLEAR


def pairwise(values: Mapping[str, Mapping], alpha: float = 0.05, power: float = 0.8,
             resolution: float = float("nan")) -> Dict[str, dict]:
    """Every pair of methods compared on paired units (e.g. training seeds, each evaluated on the same prompts
    and noise): ``values[m][u]`` is method m's score on unit u; a pair is compared on the units both have.
    Returns {"a vs b": {diff, low, high, p, p_holm, mde, n, verdict}} (a - b, paired t) with Holm's correction
    over all pairs when more than two methods are compared. With fewer than 2 shared units no test is possible
    (p nan): the MDE is then ``resolution`` (e.g. the eval's own per-prompt MDE), and the verdict is below
    resolution when |diff| is under it; without a resolution the pair is :data:`UNTESTED`."""
    from .stats import paired_t

    names = list(values)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    res = {}
    for a, b in pairs:
        units = [u for u in values[a] if u in values[b]]
        res[(a, b)] = paired_t([values[a][u] for u in units], [values[b][u] for u in units], alpha, power)
    ps = [r.p for r in res.values()]
    finite = [i for i, p in enumerate(ps) if np.isfinite(p)]
    adj = list(ps)
    if len(names) > 2 and finite:
        for i, q in zip(finite, holm([ps[i] for i in finite])):
            adj[i] = q
    out = {}
    for (a, b), r, q in zip(res, res.values(), adj):
        mde = r.mde if r.n >= 2 else resolution
        verdict = (UNTESTED if r.n < 2 and not np.isfinite(mde) else
                   difference_verdict(r.diff, (r.low, r.high), mde, p=q, alpha=alpha))
        out[f"{a} vs {b}"] = {"a": a, "b": b, "diff": r.diff, "low": r.low, "high": r.high, "p": r.p, "p_holm": q,
                              "mde": mde, "n": r.n, "holm": len(names) > 2, "verdict": verdict}
    return out


def ranks_from_pairs(names: Sequence[str], pairs: Mapping[str, dict]) -> Dict[str, int]:
    """Rank 1 + the number of methods significantly better than this one (after Holm): ties where untested."""
    better_than = {n: 0 for n in names}
    for r in pairs.values():
        if r["verdict"] == BETTER:
            better_than[r["b"]] += 1
        elif r["verdict"] == WORSE:
            better_than[r["a"]] += 1
    return {n: 1 + better_than[n] for n in names}


# ----------------------------------------------------------------------------------------------- normalised scores


def normalisation_test(base: Sequence[float], teacher: Sequence[float], cats: Optional[Sequence[str]] = None,
                       n_boot: int = 2000, seed: int = 0) -> dict:
    """Whether a task can be normalised by (teacher - base): the teacher must beat the base, paired per prompt,
    by more than the comparison's MDE. Returns {gain, low, high, mde, normalised, reason}."""
    c = compare_values(base, teacher, cats, n_boot=n_boot, seed=seed)
    ok = bool(np.isfinite(c.mde) and c.diff > c.mde)
    reason = "" if ok else (f"the teacher beats the base by {c.diff:+.3f}, not more than the task's MDE "
                            f"{c.mde:.3f}: shown raw, left out of the normalised average")
    return {"gain": c.diff, "low": c.t_ci[0], "high": c.t_ci[1], "mde": c.mde, "normalised": ok, "reason": reason}


def _strata_mean(x: np.ndarray, strata: Sequence[np.ndarray], idx: Sequence[np.ndarray]) -> float:
    return float(np.mean([x[s[i]].mean() for s, i in zip(strata, idx)]))


def normalised_average_ci(seed_scores: Mapping[str, Sequence[float]], base: Mapping[str, np.ndarray],
                          teacher: Mapping[str, np.ndarray], strata: Optional[Mapping[str, Sequence]] = None,
                          one_seed_se: Optional[Mapping[str, float]] = None, n_boot: int = 2000, seed: int = 0,
                          alpha: float = 0.05) -> Tuple[float, float, float]:
    """(estimate, low, high) of the mean over tasks of n_k = (x_k - b_k) / (t_k - b_k), with the uncertainty of
    the numerator and the denominator propagated jointly.

    ``seed_scores[k]``: the method's score on task k per training seed (seeds aligned across tasks);
    ``base[k]``, ``teacher[k]``: per-prompt scores of the base and the teacher on the same prompts (``strata[k]``:
    index arrays of the prompts of each category; the task score is the mean of the category means). Each draw
    resamples the prompts (within strata, the same draw for base and teacher, which are paired) and, for the
    seeds, draws the seed mean of the per-seed normalised average from its t-distribution (n - 1 df) -- never a
    percentile bootstrap over a handful of seeds. With one seed the seed term is the run's own eval noise:
    x_k + ``one_seed_se[k]`` * N(0, 1)."""
    tasks = list(seed_scores)
    n_s = min(len(seed_scores[k]) for k in tasks)
    X = np.array([np.asarray(seed_scores[k], dtype=np.float64)[:n_s] for k in tasks])   # [tasks, seeds]
    B = [np.asarray(base[k], dtype=np.float64) for k in tasks]
    T = [np.asarray(teacher[k], dtype=np.float64) for k in tasks]
    S = [[np.asarray(i) for i in (strata or {}).get(k) or [np.arange(b.size)]] for k, b in zip(tasks, B)]
    full = [[np.arange(s.size) for s in st_] for st_ in S]
    b0 = np.array([_strata_mean(b, s, f) for b, s, f in zip(B, S, full)])
    t0 = np.array([_strata_mean(t, s, f) for t, s, f in zip(T, S, full)])
    est = float(((X - b0[:, None]) / (t0 - b0)[:, None]).mean())
    rng = np.random.default_rng(seed)
    se1 = np.array([(one_seed_se or {}).get(k, 0.0) for k in tasks])
    out = np.empty(n_boot)
    for j in range(n_boot):
        idx = [[rng.integers(0, s.size, s.size) for s in st_] for st_ in S]
        bb = np.array([_strata_mean(b, s, i) for b, s, i in zip(B, S, idx)])
        tt = np.array([_strata_mean(t, s, i) for t, s, i in zip(T, S, idx)])
        if n_s >= 2:
            per_seed = ((X - bb[:, None]) / (tt - bb)[:, None]).mean(axis=0)
            out[j] = per_seed.mean() + per_seed.std(ddof=1) / np.sqrt(n_s) * rng.standard_t(n_s - 1)
        else:
            out[j] = float(((X[:, 0] + se1 * rng.standard_normal(len(tasks)) - bb) / (tt - bb)).mean())
    return est, float(np.quantile(out, alpha / 2)), float(np.quantile(out, 1 - alpha / 2))
