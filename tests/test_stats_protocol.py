"""The evaluation protocol's statistics (opd_bench/stats.py) against scipy and by planted-effect simulation."""
import numpy as np
import pytest
from scipy import stats as st

from opd_bench.stats import (BELOW_RESOLUTION, BETTER, WORSE, hierarchical_bootstrap, holm, mde_paired,
                             normalised_ci, paired_t, seeds_for_mde, t_interval, variance_components)


def test_t_interval_equals_scipys():
    v = np.array([0.31, 0.27, 0.35, 0.29, 0.40])
    m, lo, hi = t_interval(v)
    slo, shi = st.t.interval(0.95, v.size - 1, loc=v.mean(), scale=st.sem(v))
    assert m == pytest.approx(v.mean()) and lo == pytest.approx(slo, abs=1e-12) and hi == pytest.approx(shi, abs=1e-12)
    # three seeds: the t-interval is much wider than [min, max] (what a percentile bootstrap over 3 gives)
    three = np.array([0.249, 0.337, 0.397])
    _, lo3, hi3 = t_interval(three)
    assert lo3 < three.min() - 0.05 and hi3 > three.max() + 0.05
    assert np.isnan(t_interval([0.5])[1])


def test_paired_t_matches_scipys_ttest_rel():
    rng = np.random.default_rng(0)
    a = rng.normal(0.5, 0.1, 40)
    b = a + rng.normal(0.03, 0.05, 40)
    r = paired_t(b, a)
    ref = st.ttest_rel(b, a)
    assert r.p == pytest.approx(ref.pvalue, rel=1e-10)
    ci = ref.confidence_interval(0.95)
    assert (r.low, r.high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert r.diff == pytest.approx((b - a).mean()) and r.n == 40
    assert r.verdict == (BETTER if ci.low > 0 else BELOW_RESOLUTION)
    assert paired_t(a, a + 0.01).verdict == WORSE      # constant difference: exact


def test_mde_formula_and_seeds_for_it():
    # (t_.975,99 + t_.8,99) * 0.1 / 10 = (1.984 + 0.845) * 0.01
    assert mde_paired(0.1, 100) == pytest.approx((st.t.ppf(0.975, 99) + st.t.ppf(0.8, 99)) * 0.01)
    assert mde_paired(0.1, 1) == float("inf")
    # between 0.0004 (sd 0.02), within 0.04 (sd 0.2) over 250 prompts: S seeds until the MDE <= 0.02
    s = seeds_for_mde(0.0004, 0.04, 250, 0.02)
    assert mde_paired(np.sqrt(0.0004 + 0.04 / s), 250) <= 0.02 < mde_paired(np.sqrt(0.0004 + 0.04 / (s - 1)), 250)
    assert seeds_for_mde(0.01, 0.04, 50, 0.02) is None      # between-prompt spread alone is too large


def test_variance_components_recover_planted_values():
    rng = np.random.default_rng(1)
    true_between, true_within = 0.01, 0.04
    x = rng.normal(0, np.sqrt(true_between), (4000, 1)) + rng.normal(0, np.sqrt(true_within), (4000, 4))
    between, within = variance_components(x)
    assert between == pytest.approx(true_between, rel=0.1) and within == pytest.approx(true_within, rel=0.05)


def test_holm_against_a_hand_computation():
    # p sorted 0.01, 0.02, 0.04, 0.30 (m = 4): 0.04, 0.06, 0.08, 0.30 -> monotone: 0.04, 0.06, 0.08, 0.30
    assert holm([0.04, 0.01, 0.30, 0.02]) == pytest.approx([0.08, 0.04, 0.30, 0.06])
    # monotonicity enforced: 0.01*3=0.03, 0.011*2=0.022 -> 0.03, 0.5
    assert holm([0.011, 0.01, 0.5]) == pytest.approx([0.03, 0.03, 0.5])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_planted_effects_false_positive_rate_and_power_at_the_stated_mde():
    """400 synthetic paired comparisons per arm: no effect -> verdicts other than 'below resolution' <= 7%;
    an effect equal to the stated MDE -> 'better' in >= 75% (design power 0.8)."""
    rng = np.random.default_rng(2)
    n, sd, trials = 60, 0.15, 400
    mde = mde_paired(sd, n)
    fp = hits = 0
    for _ in range(trials):
        prompt = rng.normal(0.5, 0.2, n)                 # shared prompt difficulty (cancels in the pairing)
        ref = prompt + rng.normal(0, sd / np.sqrt(2), n)
        null = prompt + rng.normal(0, sd / np.sqrt(2), n)
        fp += paired_t(null, ref).verdict != BELOW_RESOLUTION
        alt = prompt + mde + rng.normal(0, sd / np.sqrt(2), n)
        hits += paired_t(alt, ref).verdict == BETTER
    assert fp / trials <= 0.07
    assert hits / trials >= 0.75


def test_hierarchical_bootstrap_covers_the_truth_at_the_nominal_rate():
    """Seeds x prompts with a seed effect: the hierarchical interval covers the true mean in ~95% of 200 trials
    (>= 88%), while resampling prompts only (ignoring seeds) under-covers."""
    rng = np.random.default_rng(3)
    covered = naive = 0
    trials = 200
    for _ in range(trials):
        x = 0.5 + rng.normal(0, 0.03, (5, 1)) + rng.normal(0, 0.1, (1, 80)) + rng.normal(0, 0.05, (5, 80))
        _, lo, hi = hierarchical_bootstrap(x, n_boot=300, seed=int(rng.integers(1 << 30)))
        covered += lo <= 0.5 <= hi
        m = x.mean(axis=0)
        means = m[rng.integers(0, 80, (300, 80))].mean(axis=1)
        naive += np.quantile(means, 0.025) <= 0.5 <= np.quantile(means, 0.975)
    assert covered / trials >= 0.88
    assert naive < covered


def test_normalised_score_interval_propagates_the_denominator():
    rng = np.random.default_rng(4)
    n_p = 100
    base = rng.normal(0.30, 0.1, n_p)
    teacher = base + 0.05 + rng.normal(0, 0.05, n_p)       # a small, noisy denominator
    score = base[None] + 0.04 + rng.normal(0, 0.05, (5, n_p))
    est, lo, hi = normalised_ci(score, base, teacher, n_boot=500)
    assert est == pytest.approx((score.mean() - base.mean()) / (teacher.mean() - base.mean()))
    # the numerator alone (denominator fixed) gives a narrower interval than the joint bootstrap
    _, nlo, nhi = hierarchical_bootstrap(score - base[None], n_boot=500)
    den = teacher.mean() - base.mean()
    assert (hi - lo) > (nhi - nlo) / den
