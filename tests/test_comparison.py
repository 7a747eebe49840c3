"""The one comparison engine (opd_bench.comparison): its statistics against scipy, both verdict rules, and
Holm-corrected pairwise ranking."""
import numpy as np
import pytest
from scipy import stats as st

from opd_bench import comparison as cmp
from opd_bench.stats import holm


def test_unstratified_t_is_scipys_paired_t_and_mde_matches_the_formula():
    rng = np.random.default_rng(1)
    ref = rng.normal(0.5, 0.2, 40)
    cand = ref + 0.03 + rng.normal(0, 0.05, 40)
    c = cmp.compare_values(ref, cand, n_boot=500)
    d = cand - ref
    res = st.ttest_rel(cand, ref)
    lo, hi = res.confidence_interval(0.95)
    assert c.diff == pytest.approx(d.mean()) and c.p == pytest.approx(res.pvalue)
    assert c.t_ci == pytest.approx((lo, hi))
    sd = d.std(ddof=1)
    assert c.mde == pytest.approx((st.t.ppf(0.975, 39) + st.t.ppf(0.8, 39)) * sd / np.sqrt(40))
    assert c.ci[0] < c.diff < c.ci[1] and c.n == 40
    assert c.wins == pytest.approx((d > 0).mean())


def test_stratified_statistic_is_the_mean_of_stratum_means():
    ref = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    cand = np.array([1.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    cats = ["a", "a", "a", "b", "b", "b"]
    c = cmp.compare_values(ref, cand, cats, n_boot=200, unpaired=True)
    # a: ref 1/3 -> cand 1; b: ref 1/3 -> cand 2/3; mean of stratum means
    assert c.reference == pytest.approx(1 / 3) and c.candidate == pytest.approx((1 + 2 / 3) / 2)
    assert c.diff == pytest.approx(0.5) and c.strata["b"]["diff"] == pytest.approx(1 / 3)
    # pooled within-stratum variance, df = n - strata
    da, db = (cand - ref)[:3], (cand - ref)[3:]
    pooled = (((da - da.mean()) ** 2).sum() + ((db - db.mean()) ** 2).sum()) / 4
    se = np.sqrt(pooled * (0.25 / 3 + 0.25 / 3))
    q = st.t.ppf(0.975, 4)
    assert c.t_ci == pytest.approx((0.5 - q * se, 0.5 + q * se))
    assert c.unpaired_ci is not None and c.unpaired_ci[1] - c.unpaired_ci[0] > 0


def test_both_verdict_rules():
    # regression gate: CI of new - old vs the margin
    assert cmp.regression_verdict((-0.2, -0.06), 0.05) == cmp.REGRESSION
    assert cmp.regression_verdict((-0.2, -0.04), 0.05) == cmp.PASS
    assert cmp.regression_verdict((0.06, 0.2), 0.05) == cmp.IMPROVED
    assert cmp.regression_verdict((-1, -0.5), None) == cmp.INFO
    # compare / report: better / worse / below resolution / no clear difference
    assert cmp.difference_verdict(0.1, (0.05, 0.15), 0.02) == cmp.BETTER
    assert cmp.difference_verdict(0.1, (0.05, 0.15), 0.02, margin=0.2) == cmp.NO_CLEAR
    assert cmp.difference_verdict(-0.1, (-0.15, -0.05), 0.02) == cmp.WORSE
    assert cmp.difference_verdict(0.01, (-0.01, 0.03), 0.02) == cmp.BELOW_RESOLUTION
    assert cmp.difference_verdict(0.03, (-0.01, 0.07), 0.02) == cmp.NO_CLEAR
    # an adjusted p above alpha takes significance away
    assert cmp.difference_verdict(0.1, (0.05, 0.15), 0.02, p=0.2) == cmp.NO_CLEAR
    assert cmp.difference_verdict(0.1, (0.05, 0.15), float("inf")) == cmp.BETTER


def test_pairwise_applies_holm_with_three_methods_and_ranks_by_significance():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 5)
    vals = {"a": base + 1.0 + rng.normal(0, 0.01, 5), "b": base + rng.normal(0, 0.3, 5),
            "c": base + 0.1 + rng.normal(0, 0.3, 5)}
    pairs = cmp.pairwise({k: dict(enumerate(v)) for k, v in vals.items()})
    raw = [st.ttest_rel(vals[a], vals[b]).pvalue for a, b in (("a", "b"), ("a", "c"), ("b", "c"))]
    assert [pairs[k]["p"] for k in ("a vs b", "a vs c", "b vs c")] == pytest.approx(raw)
    assert [pairs[k]["p_holm"] for k in ("a vs b", "a vs c", "b vs c")] == pytest.approx(holm(raw))
    assert all(p["holm"] for p in pairs.values())
    assert pairs["a vs b"]["verdict"] == cmp.BETTER
    ranks = cmp.ranks_from_pairs(list(vals), pairs)
    assert ranks["a"] == 1 and ranks["b"] == ranks["c"] == 2
    # two methods: no correction
    two = cmp.pairwise({"a": dict(enumerate(vals["a"])), "b": dict(enumerate(vals["b"]))})
    assert two["a vs b"]["p_holm"] == pytest.approx(two["a vs b"]["p"]) and not two["a vs b"]["holm"]
    # pairs on shared units only; one shared unit: untested, judged against the given resolution
    one = cmp.pairwise({"a": {0: 0.5, 1: 0.9}, "b": {0: 0.49}}, resolution=0.02)["a vs b"]
    assert one["n"] == 1 and one["verdict"] == cmp.BELOW_RESOLUTION and one["mde"] == 0.02
    assert cmp.pairwise({"a": {0: 0.5}, "b": {0: 0.4}}, resolution=0.02)["a vs b"]["verdict"] == cmp.NO_CLEAR
    assert cmp.pairwise({"a": {0: 0.5}, "b": {0: 0.4}})["a vs b"]["verdict"] == cmp.UNTESTED


def test_planted_effect_false_positive_rate_and_power_at_the_mde():
    """200 synthetic paired comparisons per arm: no effect -> 'better'/'worse' at most ~5% (<= 7%); an effect of
    the stated MDE -> detected in about 80% (>= 75%)."""
    rng = np.random.default_rng(7)
    n, sd = 60, 0.1
    mde = cmp.compare_values(np.zeros(n), rng.normal(0, sd, n), n_boot=1).mde  # ~ one draw's MDE
    mde_true = (st.t.ppf(0.975, n - 1) + st.t.ppf(0.8, n - 1)) * sd / np.sqrt(n)
    fp = power = 0
    for _ in range(200):
        ref = rng.normal(0.5, 0.3, n)
        null = cmp.compare_values(ref, ref + rng.normal(0, sd, n), n_boot=1)
        fp += null.t_ci[0] > 0 or null.t_ci[1] < 0
        eff = cmp.compare_values(ref, ref + mde_true + rng.normal(0, sd, n), n_boot=1)
        power += eff.t_ci[0] > 0
    assert fp / 200 <= 0.07 and power / 200 >= 0.75
    assert mde == pytest.approx(mde_true, rel=0.3)


def test_teacher_gain_below_the_mde_is_not_normalised_with_the_reason():
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 1, 64)
    weak = cmp.normalisation_test(base, base + 0.002 + rng.normal(0, 0.2, 64))
    assert not weak["normalised"] and "MDE" in weak["reason"] and weak["gain"] < weak["mde"]
    strong = cmp.normalisation_test(base, base + 0.3 + rng.normal(0, 0.05, 64))
    assert strong["normalised"] and strong["reason"] == "" and strong["gain"] > strong["mde"]


def test_normalised_average_ci_propagates_the_denominator():
    rng = np.random.default_rng(4)
    base = rng.normal(0.2, 0.2, 64)
    teacher = base + 0.2 + rng.normal(0, 0.05, 64)
    scores = {"t": [0.3, 0.31, 0.29]}
    est, lo, hi = cmp.normalised_average_ci(scores, {"t": base}, {"t": teacher}, n_boot=2000)
    assert est == pytest.approx((0.3 - base.mean()) / (teacher.mean() - base.mean()))
    assert lo < est < hi
    # a noisier denominator (same means) widens the interval
    noisy = teacher + rng.normal(0, 0.4, 64)
    noisy += teacher.mean() - noisy.mean()
    _, lo2, hi2 = cmp.normalised_average_ci(scores, {"t": base}, {"t": noisy}, n_boot=2000)
    assert hi2 - lo2 > hi - lo
    # the seed term is a t-interval: with an exact denominator it matches scipy's t-interval of n_s
    flat_b, flat_t = np.zeros(64), np.ones(64)
    _, lo3, hi3 = cmp.normalised_average_ci(scores, {"t": flat_b}, {"t": flat_t}, n_boot=20000)
    m, tl, th = (np.mean(scores["t"]), *st.t.interval(0.95, 2, loc=np.mean(scores["t"]), scale=st.sem(scores["t"])))
    assert (lo3, hi3) == pytest.approx((tl, th), abs=0.004)
