"""``opd-bench claims``: the verdict rule, claims.json's verdicts following from its own numbers, the cost-to-reach
computation, and the campaign's resumable orchestration."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from opd_bench import claims as cl
from opd_bench.claims import CONFIRMED, NOT_MEASURED, REFUTED, UNRESOLVED, Measurement

TASKS = ["aesthetic", "geneval", "ocr", "preference"]


def test_verdict_rule_by_hand():
    m = lambda lo, hi, p=None: Measurement((lo + hi) / 2, lo, hi, 5, "u", "", p)
    assert cl.verdict(m(0.1, 0.3), 0.0, +1) == CONFIRMED
    assert cl.verdict(m(-0.3, -0.1), 0.0, +1) == REFUTED
    assert cl.verdict(m(-0.1, 0.3), 0.0, +1) == UNRESOLVED
    assert cl.verdict(m(-0.3, -0.1), 0.0, -1) == CONFIRMED        # "BWT < 0"
    assert cl.verdict(m(0.96, 1.1), 0.95, +1) == CONFIRMED         # "normalised >= 0.95"
    assert cl.verdict(m(0.5, 0.94), 0.95, +1) == REFUTED
    assert cl.verdict(m(0.1, 0.3, p=0.2), 0.0, +1) == UNRESOLVED  # a Holm-adjusted p above 0.05 decides nothing
    assert cl.verdict(None, 0.0, +1) == NOT_MEASURED
    assert cl.verdict(m(math.nan, 0.3), 0.0, +1) == NOT_MEASURED


def test_one_sample_matches_scipy():
    from scipy import stats

    x = [0.91, 0.97, 1.02, 0.99, 0.95]
    m = cl.one_sample(x, 0.95, "normalised", "")
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert (m.estimate, m.low, m.high) == pytest.approx((np.mean(x), lo, hi))
    assert m.p == pytest.approx(stats.ttest_1samp(x, 0.95).pvalue)


def test_a_measurement_without_spread_reads_as_such_not_as_a_zero_mde():
    from dataclasses import asdict

    zero = cl.one_sample([0.0, 0.0, 0.0], 0.0, "resolved conflict rate", "")
    assert cl.verdict(zero, 0.0, +1) == UNRESOLVED           # every seed at the null: nothing shown either way
    text = cl._fmt(asdict(zero))
    assert "no spread" in text and "MDE" not in text.replace("no MDE", "")
    spread = asdict(cl.one_sample([0.1, 0.2, 0.3], 0.0, "u", ""))
    assert "no spread" not in cl._fmt(spread) and f"MDE {spread['mde']:.3f}" in cl._fmt(spread)
    assert "``" not in cl.VERDICT_RULE and "Holm" in cl.VERDICT_RULE


def test_reach_cost_interpolates_between_eval_points():
    curve = [(0, 0.2), (100, 0.3), (200, 0.5), (300, 0.45)]
    assert cl.reach_cost(curve, 0.4) == pytest.approx(150.0)
    assert cl.reach_cost(curve, 0.1) == 0.0
    assert cl.reach_cost(curve, 0.6) == math.inf


def _group(label, method, finals, rng, sd=0.01, curve_scale=1.0, bwt=None):
    g = cl.GroupRuns(label, method)
    for s in range(5):
        g.scores[s] = {t: finals + rng.normal(0, sd) for t in TASKS}
        g.proxy[s] = {t: v + 0.05 for t, v in g.scores[s].items()}
        g.spent[s] = {"images": 2000.0}
        g.curves[s] = [(x * curve_scale, finals * x / 2000) for x in (0, 500, 1000, 1500, 2000)]
        if bwt is not None:
            g.bwt[s] = bwt + rng.normal(0, 0.01)
    return g


def planted_evidence():
    """DiffusionOPD +0.1 over multi-reward (clear), equal to cascade (noisy), -0.1 below MT-NFT (clear); cascade
    forgets; OPD's curve reaches multi-reward's final score at 1,000 student images after 1,000 teacher images."""
    rng = np.random.default_rng(0)
    common = 0.5
    opd = _group("opd", "opd", common, rng)
    # pair the seeds: the baselines share OPD's per-seed noise, then a planted offset
    def shifted(label, method, delta, sd, **kw):
        g = _group(label, method, common, rng, **kw)
        for s in g.scores:
            g.scores[s] = {t: opd.scores[s][t] + delta + rng.normal(0, sd) for t in TASKS}
        return g
    groups = {"opd": opd,
              "multi-reward": shifted("multi-reward", "multi-reward", -0.25, 0.005),
              "cascade": shifted("cascade", "cascade", 0.0, 0.05, bwt=-0.08),
              "mt-nft": shifted("mt-nft", "multi-reward", +0.1, 0.005)}
    base = {t: 0.3 for t in TASKS}
    teacher = {t: 0.5 for t in TASKS}
    return cl.Evidence(TASKS, groups, base, teacher, {"images": 1000.0}, "images", {},
                       {t: 0.35 for t in TASKS}, {t: 0.6 for t in TASKS})


def test_planted_claims_get_the_planted_verdicts(tmp_path):
    doc = cl.write_claims(planted_evidence(), tmp_path, {"done": ["x"], "partial": [], "missing": []}, 1.5, "cmd")
    v = {(r["claim"], r["part"]): r["verdict"] for r in doc["claims"]}
    assert v[("beats-multitask-and-cascade", "vs multi-reward: average")] == CONFIRMED
    assert v[("beats-multitask-and-cascade", "vs mt-nft: average")] == REFUTED
    assert v[("beats-multitask-and-cascade", "vs cascade: average")] == UNRESOLVED
    assert v[("beats-multitask-and-cascade", "vs mt-grpo-guard: average")] == NOT_MEASURED
    assert v[("cascade-forgets", "cascade")] == CONFIRMED
    assert v[("beats-sft", "final average")] == NOT_MEASURED
    # the best baseline is MT-NFT (0.6): OPD never reaches it -> an upper bound, never "confirmed"
    assert v[("cheaper-at-equal-total-cost", "total-cost ratio")] != CONFIRMED
    for name in ("claims.json", "report.md", "report.html"):
        assert (tmp_path / name).stat().st_size > 500


def test_reaching_the_teacher_propagates_the_denominator_and_leaves_an_unresolved_one_unbounded():
    """With the references' per-prompt scores the student's normalised score carries the teacher - base
    denominator's uncertainty (a wider interval than the seeds alone give); a task whose teacher does not beat the
    base by more than its MDE has an unbounded interval: below resolution, with the reason."""
    import copy

    ev = planted_evidence()                              # opd ~0.5 per task, base 0.3, teacher 0.5 (normalised ~1)
    rng = np.random.default_rng(3)
    n = 200
    base_pp = 0.3 + rng.normal(0, 0.1, n)
    clear = base_pp + 0.2 + rng.normal(0, 0.05, n)       # teacher gain +0.2, far above its MDE
    weak = base_pp + 0.001 + rng.normal(0, 0.05, n)      # gain ~0: below its MDE
    without = cl._reach_teacher(ev)
    ev2 = copy.deepcopy(ev)
    ev2.base = {t: float(base_pp.mean()) for t in TASKS}
    ev2.teacher = {t: float((clear if t != TASKS[-1] else base_pp + 0.2).mean()) for t in TASKS}
    ev2.base_entries = {t: {"per_prompt": base_pp.tolist(), "strata": None} for t in TASKS}
    ev2.teacher_entries = {t: {"per_prompt": (clear if t != TASKS[-1] else weak).tolist(), "strata": None}
                           for t in TASKS}
    with_pp = cl._reach_teacher(ev2)
    t0 = TASKS[0]
    assert "taken as exact" in without[t0].detail and "propagated" in with_pp[t0].detail
    assert with_pp[t0].high - with_pp[t0].low > without[t0].high - without[t0].low
    last = with_pp[TASKS[-1]]
    assert (last.low, last.high) == (-math.inf, math.inf) and "not more than the task's MDE" in last.detail
    assert cl.verdict(last, 0.95, +1) == UNRESOLVED


def test_reference_strata_leave_out_separately_reported_categories():
    """GenEval's held-out compositions are reported on their own row and left out of its score; the strata the
    normalised denominators are computed on leave them out too, so the denominator is the headline scores'."""
    from opd_bench.report.references import strata_indices

    cats = {"a": "one", "b": "heldout", "c": "two", "d": "one"}
    assert strata_indices(list("abcd"), cats, ("heldout",)) == [[0, 3], [2]]
    assert strata_indices(list("abcd"), cats) == [[1], [0, 3], [2]]
    assert strata_indices(["b"], cats, ("heldout",)) == [[0]]       # nothing else left: kept


def test_threats_say_when_the_teachers_cost_decides_the_total_cost_claim():
    """A threat written from the ledgers: teachers costing more than a baseline's whole budget decide the
    equal-total-cost claim by accounting; cheap teachers raise no such threat."""
    ev = planted_evidence()                              # baselines spend 2,000 images; teachers 1,000
    assert not any("decided by how the teachers were trained" in t for t in cl.threats(ev, [], []))
    ev.teacher_cost = {"images": 95360.0}
    said = [t for t in cl.threats(ev, [], []) if "decided by how the teachers were trained" in t]
    assert len(said) == 1 and "95,360 images" in said[0] and "48x" in said[0]
    assert not any("No baseline was trained at" in t for t in cl.threats(ev, [], []))   # no recorded seconds
    for g in ev.groups.values():
        for s in g.spent:
            g.spent[s]["seconds"] = 500.0                # 4 images/s: 97,360 images take 6.76 h
    said = [t for t in cl.threats(ev, [], []) if "No baseline was trained at" in t]
    assert len(said) == 1 and "97,360 images a run, about 6.8 h" in said[0]


def _halves_of(ev, edit_b, sd=0.002):
    """Two copies of the evidence as the halves of its eval seeds: every final score drawn again with a little
    eval noise (``sd``), half b then edited."""
    import copy

    rng = np.random.default_rng(9)
    halves = [copy.deepcopy(ev), copy.deepcopy(ev)]
    for h in halves:
        for g in h.groups.values():
            g.scores = {s: {t: v + rng.normal(0, sd) for t, v in sc.items()} for s, sc in g.scores.items()}
    edit_b(halves[1])
    return halves[0], halves[1], []


def test_seed_split_keeps_stable_effects_and_flags_one_half_effects(tmp_path):
    """Planted halves: DiffusionOPD's -0.25 gap to multi-reward is in both halves of the eval seeds except on OCR,
    where only one half has it; MT-NFT's +0.1 lead is reversed in the second half. The stable verdicts hold, the
    one-half effect is flagged, the sign disagreement is demoted to 'unstable across eval seeds' in the headline;
    numbers that do not come from the test evaluations (BWT) are recognised as such."""
    ev = planted_evidence()
    opd = ev.groups["opd"]
    rng = np.random.default_rng(5)

    def edit(b):
        for s in opd.scores:
            b.groups["multi-reward"].scores[s]["ocr"] = opd.scores[s]["ocr"] + rng.normal(0, 0.05)
            b.groups["mt-nft"].scores[s] = {t: opd.scores[s][t] - 0.1 + rng.normal(0, 0.005) for t in TASKS}

    doc = cl.write_claims(ev, tmp_path, {"done": [], "partial": [], "missing": []}, 0.0, "cmd", _halves_of(ev, edit))
    rows = {(r["claim"], r["part"]): r for r in json.loads((tmp_path / "claims.json").read_text())["claims"]}
    stable = rows[("beats-multitask-and-cascade", "vs multi-reward: aesthetic")]
    assert stable["verdict"] == stable["headline"] == CONFIRMED
    assert stable["seed_split"]["status"] == cl.HOLDS and stable["seed_split"]["verdicts"] == [CONFIRMED] * 2
    one_half = rows[("beats-multitask-and-cascade", "vs multi-reward: ocr")]
    assert one_half["verdict"] == CONFIRMED and one_half["seed_split"]["status"] in (cl.LOSES, cl.FLIPS)
    assert one_half["seed_split"]["verdicts"][0] == CONFIRMED != one_half["seed_split"]["verdicts"][1]
    flipped = rows[("beats-multitask-and-cascade", "vs mt-nft: average")]
    assert flipped["verdict"] == REFUTED and flipped["seed_split"]["status"] == cl.FLIPS
    assert flipped["seed_split"]["verdicts"] == [REFUTED, CONFIRMED] and flipped["headline"] == cl.UNSTABLE
    est = flipped["seed_split"]["estimates"]
    assert est[0] == pytest.approx(flipped["measurement"]["estimate"], abs=0.01) and est[0] < 0 < est[1]
    assert rows[("cascade-forgets", "cascade")]["seed_split"]["status"] == cl.NOT_SEEDED
    # the headline counts the demoted verdict; the sub-claim table shows both and the halves
    md = (tmp_path / "report.md").read_text()
    summary = next(r for r in cl.summary_table(doc) if r[0].startswith("DiffusionOPD beats"))
    assert f"{cl.UNSTABLE} 5" in summary[1]       # vs MT-NFT: the average and each of the 4 tasks
    assert f"**{cl.UNSTABLE} (rule: refuted)** | flips (refuted / confirmed;" in md
    assert "eval-seed halves" in md and "eval-seed halves" in (tmp_path / "report.html").read_text()
    assert any("vs mt-nft: average" in t for t in doc["threats"])


def test_without_per_seed_scores_the_split_says_it_cannot_split(tmp_path):
    doc = cl.write_claims(planted_evidence(), tmp_path, {"done": [], "partial": [], "missing": []}, 0.0, "cmd")
    assert {r["seed_split"]["status"] for r in doc["claims"]} == {cl.CANNOT}
    assert all(r["headline"] == r["verdict"] for r in doc["claims"])
    # a per-task sub-claim of a task evaluated at one seed cannot be split, whatever the other tasks
    rows = cl.evaluate_claims(planted_evidence())
    cl.seed_split(rows, _halves_of(planted_evidence(), lambda b: None)[:2] + (["ocr"],), TASKS)
    part = {r["part"]: r["seed_split"] for r in rows if r["claim"] == "beats-multitask-and-cascade"}
    assert part["vs multi-reward: ocr"]["status"] == cl.CANNOT
    assert part["vs multi-reward: aesthetic"]["status"] == cl.HOLDS
    assert part["vs multi-reward: average"]["unsplit_tasks"] == ["ocr"]


def test_seed_half_resummarises_each_half_of_the_seeds():
    """An evaluation's per-seed scores split into seed indices 0..k/2-1 and k/2..k-1 (k odd: the second half is
    the larger); a one-seed evaluation is kept whole and reported as unsplittable."""
    from opd_bench.evaluate import EvalProtocol

    prompts = [{"prompt": r["prompt"]} for r in Glow().prompts("test")]
    per_seed = np.arange(len(prompts) * 3, dtype=float).reshape(len(prompts), 3) / 10
    res = {"rpt_glow": {"split": "test", "mean": float(per_seed.mean()), "per_prompt": prompts,
                        "per_seed": {"score": per_seed.tolist(), "gold": (1 - per_seed).tolist()}},
           "clm_dim": {"split": "test", "mean": 0.5, "per_prompt": [{"prompt": r["prompt"]}
                                                                   for r in ClaimsDim().prompts("test")]}}
    protocol = EvalProtocol(prompts_per_task=0, bootstrap=20)
    unsplit = set()
    a, b = (cl.seed_half(res, h, protocol, unsplit) for h in (0, 1))
    assert a["rpt_glow"]["mean"] == pytest.approx(per_seed[:, :1].mean())
    assert b["rpt_glow"]["mean"] == pytest.approx(per_seed[:, 1:].mean())
    assert b["rpt_glow"]["metrics"]["gold"] == pytest.approx(1 - per_seed[:, 1:].mean())
    assert (a["rpt_glow"]["seed_indices"], b["rpt_glow"]["seed_indices"]) == ([0], [1, 2])
    assert a["clm_dim"] is res["clm_dim"] and unsplit == {"clm_dim"}


def test_cost_ratio_from_curves():
    ev = planted_evidence()
    del ev.groups["mt-nft"]
    # best baseline: cascade (its curve ends at 0.5 after 2,000 images); OPD's curve is 0.5 * x / 2000 -> reaches
    # the target at 2,000 student images, plus 1,000 teacher images -> ratio 2000 / 3000
    rows = {r["part"]: r for r in cl.evaluate_claims(ev) if r["claim"] == "cheaper-at-equal-total-cost"}
    m = rows["total-cost ratio"]["measurement"]
    target = np.mean([ev.groups["cascade"].curves[s][-1][1] for s in range(5)])   # its last curve point
    reach = [cl.reach_cost(ev.groups["opd"].curves[s], target) for s in range(5)]
    if all(math.isfinite(c) for c in reach):
        assert m["estimate"] == pytest.approx(np.mean([math.log10(2000 / (1000 + c)) for c in reach]))
    else:   # some seed never reached it: an upper bound from the final spend (2,000 + 1,000 teacher images)
        assert m["low"] == -math.inf and m["high"] == pytest.approx(math.log10(2000 / 3000))
    assert m["estimate"] < 0 and rows["total-cost ratio"]["verdict"] != CONFIRMED


def test_claims_json_verdicts_follow_from_its_numbers(tmp_path):
    cl.write_claims(planted_evidence(), tmp_path, {"done": [], "partial": [], "missing": []}, 0.0, "cmd")
    assert_verdicts_follow_from_numbers(json.loads((tmp_path / "claims.json").read_text()))


def test_the_committed_claims_report_verdicts_follow_from_its_numbers():
    """reports/claims/claims.json (the campaign's report, README's claims table): every verdict from its own
    numbers, and every headline either that verdict or, for a decided one, 'unstable across eval seeds' when its
    two eval-seed halves lie on opposite sides of the null."""
    doc = json.loads((Path(__file__).resolve().parents[1] / "reports" / "claims" / "claims.json").read_text())
    assert_verdicts_follow_from_numbers(doc)
    for r in doc["claims"]:
        if r["headline"] != r["verdict"]:
            assert r["verdict"] in (CONFIRMED, REFUTED) and r["headline"] == cl.UNSTABLE, r
            est = r["seed_split"]["estimates"]
            assert (est[0] - r["null"]) * (est[1] - r["null"]) < 0, r


def assert_verdicts_follow_from_numbers(doc: dict) -> None:
    assert doc["claims"]
    for r in doc["claims"]:
        m, null, d = r["measurement"], r["null"], r["direction"]
        if m is None:
            assert r["verdict"] == NOT_MEASURED
            continue
        low = -math.inf if m["low"] is None else m["low"]      # JSON writes infinite bounds as null
        high = math.inf if m["high"] is None else m["high"]
        lo, hi = sorted((d * (low - null), d * (high - null)))
        p_ok = m["p"] is None or m["p"] < 0.05
        if r["verdict"] == CONFIRMED:
            assert lo > 0 and p_ok, r          # never confirmed while the CI includes the null
        elif r["verdict"] == REFUTED:
            assert hi < 0 and p_ok, r
        elif r["verdict"] == UNRESOLVED:
            assert lo <= 0 <= hi or not p_ok, r


def test_null_comparisons_rarely_confirm():
    """200 planted null comparisons at 5 seeds: the rule confirms or refutes at most ~5% of them."""
    rng = np.random.default_rng(1)
    wrong = 0
    for _ in range(200):
        a = {s: v for s, v in enumerate(rng.normal(0.5, 0.05, 5))}
        b = {s: v for s, v in enumerate(rng.normal(0.5, 0.05, 5))}
        wrong += cl.verdict(cl.paired_seeds(a, b, "u", ""), 0.0, +1) != UNRESOLVED
    assert wrong / 200 <= 0.07


def test_holm_family_adjusts_in_place():
    ms = [Measurement(0.1, 0.01, 0.2, 5, "u", "", p) for p in (0.01, 0.04, 0.03)]
    cl.holm_family(ms, "average")
    assert [m.p for m in ms] == pytest.approx([0.03, 0.06, 0.06])
    assert [cl.verdict(m, 0.0, +1) for m in ms] == [CONFIRMED, UNRESOLVED, UNRESOLVED]


def test_campaign_file_validates_and_resumes(tmp_path):
    camp = cl.load_campaign("configs/claims.yaml")
    labels = {g.label for g in camp.groups}
    assert {"opd", "multi-reward", "mt-grpo-guard", "mt-nft", "cascade-nft", "sft-distill"} <= labels
    assert all(g.seeds >= 5 for g in camp.groups if g.label in cl.BASELINES + ("opd",))
    assert all(g.seeds >= 3 for g in camp.groups)
    for g in camp.groups:                       # every group's config is a valid run config
        cfg = cl.run_config(camp, g, 0)
        assert cfg.method == g.method and cfg.budget.value == 2000
    small = cl.Campaign("ocr", "8:images", 0, [cl.Group("opd", "opd", 3)])
    done, partial = cl.run_dir(tmp_path, small.groups[0], 0), cl.run_dir(tmp_path, small.groups[0], 1)
    done.mkdir(parents=True)
    (done / "summary.json").write_text("{}")
    (partial / "state").mkdir(parents=True)
    assert cl.status(small, tmp_path) == {"done": ["opd/s0"], "partial": ["opd/s1"], "missing": ["opd/s2"]}
    calls = []
    cl.run_campaign(small, tmp_path, run=lambda cfg, d, resume: calls.append((cfg.seed, d.name, resume)))
    assert calls == [(1, "s1", True), (2, "s2", False)]   # the finished run is not retrained


def test_nothing_starts_after_start_before_and_the_run_in_progress_finishes(tmp_path):
    """--start-before: runs (training or scoring) that would start at or after the time are left for the next
    invocation; the run in progress when it passes finishes; a complete run is still read back."""
    small = cl.Campaign("ocr", "8:images", 0, [cl.Group("opd", "opd", 3)])
    now = [100.0]
    trained, scored = [], []

    def run(cfg, d, resume):   # one run's training takes 10 s of the clock
        trained.append(d.name)
        now[0] += 10
        d.mkdir(parents=True, exist_ok=True)
        (d / "summary.json").write_text("{}")

    def after(g, d):
        scored.append(d.name)
        (d / cl.COMPLETE).write_text("{}")

    cl.run_campaign(small, tmp_path, run=run, after=after, start_before=105.0, clock=lambda: now[0])
    assert trained == ["s0"] and scored == ["s0"]      # started at 100, finished at 110: the others wait
    cl.run_campaign(small, tmp_path, run=run, after=after, start_before=105.0, clock=lambda: now[0])
    assert trained == ["s0"] and scored == ["s0", "s0"]   # past the time: only the complete run is read back
    cl.run_campaign(small, tmp_path, run=run, after=after, start_before=None, clock=lambda: now[0])
    assert trained == ["s0", "s1", "s2"]                 # no limit: the rest


def test_start_before_is_parsed_as_a_clock_time_today_or_an_iso_date_time():
    from datetime import datetime

    now = datetime(2026, 12, 2, 16, 30)
    assert cl.parse_start_before("17:50", now) == datetime(2026, 12, 2, 17, 50).timestamp()
    # already past today: past (a campaign's later process, e.g. its report step, must not read it as tomorrow)
    assert cl.parse_start_before("09:05", now) == datetime(2026, 12, 2, 9, 5).timestamp()
    assert cl.parse_start_before("2026-12-02T18:00", now) == datetime(2026, 12, 2, 18, 0).timestamp()
    assert cl.parse_start_before(None, now) is None
    for bad in ("25:00", "17:60", "soon", "", "17h50"):
        with pytest.raises(cl.UserError, match="--start-before"):
            cl.parse_start_before(bad, now)


def test_start_before_without_run_or_malformed_is_one_line_exit_2(tmp_path, capsys):
    from opd_bench.cli import main

    spec = tmp_path / "c.yaml"
    spec.write_text("tasks: ocr\nbudget: 8:images\nseeds: 1\ngroups: {opd: {method: opd}}\n")
    base = ["claims", "--spec", str(spec), "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    for argv, needle in ((base + ["--start-before", "17:50"], "add --run"),
                         (base + ["--run", "--start-before", "later"], "--start-before")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()
    # a time already past: nothing is trained or scored and no report written; it says so and exits 0
    assert main(base + ["--run", "--start-before", "2000-01-01T00:00"]) == 0
    assert "--start-before 2000-01-01T00:00 reached: 1 run(s) not complete" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "runs" / "opd").exists() and not (tmp_path / "out" / "claims.json").exists()


def test_shards_split_the_campaign_and_its_evaluations_without_overlap(tmp_path, monkeypatch):
    """n processes with --shard i/n train every missing run exactly once between them and score every finished
    run's final checkpoint and every reference exactly once; each shard takes every n-th from the i-th."""
    import opd_bench.evalcache as ec

    small = cl.Campaign("ocr", "8:images", 0, [cl.Group("opd", "opd", 3), cl.Group("multi-reward", "multi-reward", 2)])
    trained = {}
    for i in range(2):
        cl.run_campaign(small, tmp_path, run=lambda cfg, d, resume, i=i: trained.setdefault(d, []).append(i),
                        shard=(i, 2))
    order = [cl.run_dir(tmp_path, g, s) for g, s in small.runs()]
    assert sorted(trained) == sorted(order) and all(len(v) == 1 for v in trained.values())
    assert [trained[d][0] for d in order] == [0, 1, 0, 1, 0]        # every 2nd run from the i-th
    for d in order[:3]:                                              # three runs finished
        d.mkdir(parents=True, exist_ok=True)
        (d / "summary.json").write_text("{}")
    scored = []
    monkeypatch.setattr(ec, "cached_eval", lambda ck, tasks, protocol: scored.append((str(ck), tuple(tasks))))
    monkeypatch.setattr(cl, "final_results", lambda d, tasks, protocol: scored.append((str(d / "final"), tuple(tasks))))
    refs = {"base": {"ocr": "base", "geneval": "base"}, "teachers": {"ocr": "teacher_ocr"}}
    counts = [cl.warm_evaluations(small, tmp_path, refs, ["ocr"], "full", (i, 2)) for i in range(2)]
    assert sum(counts) == len(scored) == 3 + 3 and len(set(scored)) == 6
    assert {ck for ck, _ in scored} >= {str(d / "final") for d in order[:3]}
    assert ("base", ("geneval",)) in scored and ("teacher_ocr", ("ocr",)) in scored


def test_the_campaign_trains_stage_by_stage_and_seed_by_seed_within_a_stage():
    """A campaign cut short holds its early stages whole and the current stage balanced over its groups."""
    camp = cl.Campaign("ocr", "8:images", 0, [cl.Group("a", "opd", 3), cl.Group("abl", "opd", 2, stage=1),
                                              cl.Group("b", "multi-reward", 2)])
    assert [f"{g.label}/s{s}" for g, s in camp.runs()] == ["a/s0", "b/s0", "a/s1", "b/s1", "a/s2",
                                                           "abl/s0", "abl/s1"]
    shipped = cl.load_campaign("configs/claims.yaml")
    first = [f"{g.label}/s{s}" for g, s in shipped.runs()][:15]   # issue 19's default comparison at 5 seeds first
    assert first[:3] == ["opd/s0", "multi-reward/s0", "cascade/s0"]
    assert sorted(first) == sorted(f"{m}/s{s}" for m in ("opd", "multi-reward", "cascade") for s in range(5))


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "-1/2", "0/0"])
def test_a_bad_shard_is_one_line_exit_2(tmp_path, capsys, text):
    from opd_bench.cli import main

    assert main(["claims", "--run", "--shard", text, "--runs-dir", str(tmp_path / "r"),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--shard" in err[0]
    assert cl.parse_shard("1/2") == (1, 2) and cl.parse_shard(None) == (0, 1)
    assert main(["claims", "--shard", "0/2", "--runs-dir", str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--run" in err[0] and not (tmp_path / "o").exists()


@pytest.mark.parametrize("body, words", [("groups: {}\n", "no groups"), ("bogus: 1\n", "unknown key"),
                                         ("groups: {x: {seeds: 2}}\n", "needs a 'method'"),
                                         ("groups: {x: {method: opd, stgae: 1}}\n", "unknown key 'stgae'"),
                                         ("groups: {x: {method: opd, stage: first}}\n", "stage must be an integer")])
def test_bad_campaign_file_is_one_line_exit_2(tmp_path, capsys, body, words):
    from opd_bench.cli import main

    spec = tmp_path / "c.yaml"
    spec.write_text(body)
    assert main(["claims", "--spec", str(spec), "--runs-dir", str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------ end to end

from opd_bench.tasks import register_task, registry  # noqa: E402
from opd_bench.tasks.base import Task  # noqa: E402

from test_report import Glow  # noqa: E402  (the report tests' proxy/gold task, registered as rpt_glow)

if "clm_dim" not in registry():

    @register_task("clm_dim")
    class ClaimsDim(Glow):
        """Test-only task pulling the other way from rpt_glow: a dim image (proxy), gold as rpt_glow's."""

        def prompts(self, split):
            return [{"prompt": f"a dim image number {i}"} for i in range(8 if split == "train" else 4)]

        def reward(self, images, records):
            return 1 - images.mean(dim=(1, 2, 3))


def test_claims_command_end_to_end_on_tiny_runs(tmp_path, capsys, monkeypatch):
    """Train a tiny campaign with the real runner (2 seeds of opd, multi-reward, cascade), measure the analyses,
    write the report; a second invocation trains nothing and gives the same verdicts."""
    import yaml
    from tiny_world import make_tiny_world

    from opd_bench.cli import main

    make_tiny_world(tmp_path)
    monkeypatch.setenv("OPD_BENCH_EVAL_CACHE", str(tmp_path / "cache"))
    sets = {"model.checkpoint": str(tmp_path / "base"), "sampler.steps": 2, "sampler.guidance": 2.0,
            "train.prompts_per_step": 2, "grpo.group_size": 2, "eval.steps": 2, "eval.prompts_per_task": 4,
            "eval.bootstrap": 50, "eval.guidance": 2.0, "eval.every": 2, "train.checkpoint_every": 1,
            "train.lr": 3e-3, "grpo.beta": 0, "opd.teachers.rpt_glow": str(tmp_path / "teacher"),
            "opd.teachers.clm_dim": str(tmp_path / "teacher")}
    spec = tmp_path / "claims.yaml"
    spec.write_text(yaml.safe_dump({"tasks": "rpt_glow,clm_dim", "budget": "8:images", "seeds": 2, "set": sets,
                                    "groups": {"opd": {"method": "opd"}, "multi-reward": {"method": "multi-reward"},
                                               "cascade": {"method": "cascade"}}}, sort_keys=False))
    args = ["claims", "--spec", str(spec), "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
            "--variance-batches", "4", "--variance-batch-size", "2", "--protocol", "run"]
    assert main(args + ["--run"]) == 0
    doc = json.loads((tmp_path / "out" / "claims.json").read_text())
    assert doc["runs"]["done"] == [f"{g}/s{s}" for s in (0, 1) for g in ("opd", "multi-reward", "cascade")]
    rows = {(r["claim"], r["part"]): r for r in doc["claims"]}
    m = rows[("beats-multitask-and-cascade", "vs multi-reward: average")]["measurement"]
    summaries = {g: [json.loads((tmp_path / "runs" / g / f"s{s}" / "summary.json").read_text()) for s in (0, 1)]
                 for g in ("opd", "multi-reward")}
    gold = lambda s: np.mean([s["final"]["metrics"]["rpt_glow"]["gold"], s["final"]["metrics"]["clm_dim"]["gold"]])
    assert m["estimate"] == pytest.approx(np.mean([gold(a) - gold(b) for a, b in zip(summaries["opd"],
                                                                                      summaries["multi-reward"])]))
    assert rows[("cascade-forgets", "cascade")]["measurement"]["n"] == 2
    assert rows[("joint-rl-interferes", "multi-reward")]["measurement"] is not None   # measured at 2 seeds
    assert rows[("closed-form-lower-variance", "log10 V(closed)/V(ppo)")]["measurement"]["n"] == 2  # at opd's finals
    assert rows[("closed-form-trains-better", "final average")]["verdict"] == NOT_MEASURED   # needs opd-sde/opd-ppo
    assert doc["cpu_hours"] > 0 and doc["threats"]
    assert all((tmp_path / "runs" / "multi-reward" / f"s{s}" / "claims_interference.json").is_file() for s in (0, 1))
    capsys.readouterr()
    mtimes = {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("summary.json")}
    assert main(args + ["--run"]) == 0   # nothing left to train or measure: the same verdicts
    assert {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("summary.json")} == mtimes
    again = json.loads((tmp_path / "out" / "claims.json").read_text())
    assert [r["verdict"] for r in again["claims"]] == [r["verdict"] for r in doc["claims"]]
    # --protocol run: each run's own one-seed final evaluation, so the eval-seed split cannot run, and says so
    assert {r["seed_split"]["status"] for r in doc["claims"]} == {cl.CANNOT}
    # under a protocol with 2 seeds per prompt the halves are read from the cached evaluations: nothing is sampled
    # again, and a run's half-0 score is its evaluation's seed-0 score
    from dataclasses import replace

    import opd_bench.evalcache as ec
    from opd_bench.evaluate import EvalProtocol

    camp = cl.load_campaign(spec)
    cfg = cl.run_config(camp, camp.groups[0], 0)
    two = replace(EvalProtocol.from_config(cfg), seeds_per_prompt={"rpt_glow": 2, "clm_dim": 2})
    teachers = {t: str(tmp_path / "teacher") for t in cfg.tasks}
    base_ck = {t: cfg.model.checkpoint for t in cfg.tasks}
    cl.collect(camp, tmp_path / "runs", teachers, cl.reference_scores(base_ck, two),
               cl.reference_scores(teachers, two), {}, two)
    monkeypatch.setattr("opd_bench.evaluate.evaluate",
                        lambda *a, **k: pytest.fail("the halves must reuse the cached evaluations"))
    half_a, half_b, unsplit = cl.seed_halves(camp, tmp_path / "runs", base_ck, teachers, two)
    assert unsplit == []
    full = ec.cached_eval(tmp_path / "runs" / "opd" / "s1" / "final", ["rpt_glow"], two)["rpt_glow"]
    seed0 = np.mean([row[0] for row in full["per_seed"]["gold"]])
    seed1 = np.mean([row[1] for row in full["per_seed"]["gold"]])
    assert half_a.groups["opd"].scores[1]["rpt_glow"] == pytest.approx(seed0)
    assert half_b.groups["opd"].scores[1]["rpt_glow"] == pytest.approx(seed1)
    rows = cl.evaluate_claims(half_a)
    cl.seed_split(rows, (half_a, half_b, unsplit), ["rpt_glow", "clm_dim"])
    assert all(r["seed_split"]["status"] != cl.CANNOT for r in rows if r["measurement"] is not None)
    # each run folder records its final evaluation (cl.RECORD): an archived copy without its weights still gives
    # its scores under that protocol, and only under it; a record of other weights is computed again
    d = tmp_path / "runs" / "opd" / "s1"
    assert json.loads((d / cl.RECORD).read_text())["results"]["rpt_glow"] == full
    rec = json.loads((d / cl.RECORD).read_text())
    assert rec["seconds"] > 0 and rec["threads"] >= 1   # its cost, for the report's CPU hours
    # the same weights trained again after the folder was lost: its archived record, seeded into the cache, is taken
    # with the cost it recorded (no second evaluation); a file that is not a record seeds nothing
    archived = tmp_path / "archived_record.json"
    archived.write_text(json.dumps({**rec, "seconds": 1234.5, "results": {"rpt_glow": {"marker": 1}, "clm_dim": {}}}))
    assert not ec.seed_from_record(tmp_path / "missing.json") and not ec.seed_from_record(spec)
    odd = tmp_path / "odd.json"
    for bad in ([rec], {k: v for k, v in rec.items() if k != "digest"}, {**rec, "protocol": "full"}):
        odd.write_text(json.dumps(bad))   # a list; no digest; a protocol that is not a mapping
        assert not ec.seed_from_record(odd)
    (d / cl.RECORD).unlink()
    assert ec.seed_from_record(archived)
    assert cl.final_results(d, ["rpt_glow"], two) == {"rpt_glow": {"marker": 1}}
    assert json.loads((d / cl.RECORD).read_text())["seconds"] == 1234.5
    for f in (ec.eval_cache_dir() / "records").iterdir():   # the seeded copy would answer the next lines too
        f.unlink()
    (d / cl.RECORD).write_text(json.dumps({**rec, "digest": "0" * 64, "results": {"rpt_glow": {"stale": 1},
                                                                                  "clm_dim": {"stale": 1}}}))
    assert cl.final_results(d, ["rpt_glow"], two) == {"rpt_glow": full}        # other weights: read again
    # a scoring killed after its first task has recorded that task: scoring again computes only the rest, and the
    # record's cost adds both parts
    part = json.loads((d / cl.RECORD).read_text())
    assert set(part["results"]) == {"rpt_glow"}
    (d / cl.RECORD).write_text(json.dumps({**part, "seconds": 100.0, "threads": 1}))
    asked, real = [], ec.cached_eval
    monkeypatch.setattr(ec, "cached_eval", lambda ck, ts, *a, **k: asked.append(list(ts)) or real(ck, ts, *a, **k))
    assert cl.final_results(d, ["rpt_glow", "clm_dim"], two)["rpt_glow"] == full and asked == [["clm_dim"]]
    both = json.loads((d / cl.RECORD).read_text())
    assert set(both["results"]) == {"rpt_glow", "clm_dim"} and ec.cost_hours(both) >= 100.0 / 3600   # the first part kept
    assert cl.final_results(d, ["rpt_glow", "clm_dim"], two) and asked == [["clm_dim"]]   # complete: read back
    (d / "final" / "model.safetensors").unlink()
    assert cl.final_results(d, ["rpt_glow"], two) == {"rpt_glow": full}        # no weights: the record
    with pytest.raises(cl.UserError, match="cannot be read"):
        cl.final_results(d, ["rpt_glow"], replace(two, seeds_per_prompt={"rpt_glow": 3, "clm_dim": 3}))


def test_a_campaign_run_started_with_other_settings_is_refused(tmp_path):
    from opd_bench.config import dump_config
    from opd_bench.errors import UserError

    small = cl.Campaign("ocr", "8:images", 0, [cl.Group("opd", "opd", 1)])
    d = cl.run_dir(tmp_path, small.groups[0], 0)
    d.mkdir(parents=True)
    other = cl.run_config(cl.Campaign("ocr", "8:images", 0, [cl.Group("opd", "opd", 1, {"train.lr": 3e-4})]),
                          cl.Group("opd", "opd", 1, {"train.lr": 3e-4}), 0)
    (d / "config.yaml").write_text(dump_config(other))
    with pytest.raises(UserError, match="holds another config"):
        cl.run_campaign(small, tmp_path, run=lambda *a, **k: pytest.fail("must not train"))
    (d / "config.yaml").write_text(dump_config(cl.run_config(small, small.groups[0], 0)))
    calls = []
    cl.run_campaign(small, tmp_path, run=lambda cfg, dd, resume: calls.append(resume))
    assert calls == [False]


def test_a_recipe_written_while_a_shard_runs_is_taken_by_its_later_runs(tmp_path, monkeypatch):
    """A shard started while another recipe's sweep still runs: each run resolves its config when its turn
    comes, so a recipe written after the process started is the one its group's later runs take."""
    import opd_bench.plan as plan

    monkeypatch.setattr(plan, "RECIPES_DIR", tmp_path / "recipes")
    (tmp_path / "recipes").mkdir()
    small = cl.Campaign("ocr", "8:images", 0, [cl.Group("opd", "opd", 1), cl.Group("sft-distill", "sft-distill", 1)])
    lrs = {}

    def run(cfg, d, resume):
        lrs[cfg.method] = cfg.train.lr
        if cfg.method == "opd":   # the sweep of the next group's recipe finishes while this run trains
            (tmp_path / "recipes" / "sft-distill.yaml").write_text(
                "extends: default.yaml\nmethod: sft-distill\ntrain: {lr: 0.0007}\n")

    cl.run_campaign(small, tmp_path / "runs", run=run)
    assert lrs["sft-distill"] == 0.0007 and lrs["opd"] != 0.0007


def test_cpu_hours_count_runs_final_evaluations_and_the_groups_sweeps(tmp_path):
    """The report's CPU hours: every run's ledger (seconds of all phases x threads x processes), the recorded
    full-protocol evaluations (seconds x threads) and the sweep trials of the campaign's recipes only."""
    runs, sweeps = tmp_path / "runs", tmp_path / "sweeps"
    led = {"spent": {"train": {"seconds": 3600.0}, "eval": {"seconds": 1800.0}, "teacher": {"seconds": 0.0}},
           "threads": 2, "processes": 1}
    for s in (0, 1):
        (runs / "opd" / f"s{s}").mkdir(parents=True)
        (runs / "opd" / f"s{s}" / "ledger.json").write_text(json.dumps(led))
    (runs / "opd" / "s0" / cl.RECORD).write_text(json.dumps({"results": {}, "seconds": 7200.0, "threads": 1}))
    for name, k in (("opd", 2), ("mt-nft", 1), ("elsewhere", 3)):
        for i in range(k):
            (sweeps / f"sweep_{name}" / f"trial_{i}").mkdir(parents=True)
            (sweeps / f"sweep_{name}" / f"trial_{i}" / "summary.json").write_text(json.dumps(
                {"final": {}, "ledger": {"spent": {"train": {"seconds": 900.0}, "eval": {"seconds": 900.0}}}}))
    calls = []
    cl.recorded(runs / "opd" / "s1" / "claims_variance.json", lambda: calls.append(1) or {"tasks": []})
    cost = json.loads((runs / "opd" / "s1" / "claims_variance.json").read_text())["_cost"]
    assert cost["threads"] >= 1 and cost["seconds"] >= 0 and calls == [1]
    (runs / "opd" / "s1" / "claims_variance.json").write_text(json.dumps({"tasks": [], "_cost": {"seconds": 1800.0,
                                                                                              "threads": 1}}))
    h = cl.cpu_hours(runs, sweeps, ["opd", "mt-nft"])
    assert h["runs"] == pytest.approx(2 * 1.5 * 2) and h["final_evaluations"] == pytest.approx(2.0)
    assert h["analyses"] == pytest.approx(0.5)
    assert h["sweeps"] == pytest.approx(3 * 0.5) and h["sweep_trials"] == 3
    assert h["total"] == pytest.approx(6.0 + 2.0 + 0.5 + 1.5)
    assert cl.cpu_hours(runs)["sweeps"] == 0.0
    # runs superseded by a recipe change were spent too: counted, by part, from superseded/<reason>/
    old = tmp_path / "superseded" / "proxy-selected" / "mr" / "s0"
    old.mkdir(parents=True)
    (old / "ledger.json").write_text(json.dumps(led))
    (old / cl.RECORD).write_text(json.dumps({"results": {}, "seconds": 1800.0, "threads": 2}))
    with_old = cl.cpu_hours(runs, sweeps, ["opd", "mt-nft"], tmp_path / "superseded")
    assert with_old["superseded"] == pytest.approx(3.0 + 1.0) and with_old["total"] == pytest.approx(h["total"] + 4.0)
    assert cl.cpu_hours(runs, superseded_dir=tmp_path / "missing")["superseded"] == 0.0
    assert "4.0 in runs superseded by a recipe change" in cl.hours_text({"cpu_hours_by_part": with_old})
    assert "superseded" not in cl.hours_text({"cpu_hours_by_part": h})
    doc = cl.write_claims(planted_evidence(), tmp_path / "out", {"done": [], "partial": [], "missing": []}, h, "cmd")
    assert doc["cpu_hours"] == pytest.approx(10.0)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "10.0 CPU hours recorded: 6.0 training the runs" in md and "1.5 in 3 equal-tuning sweep trials" in md
    assert "0.5 in the analyses" in md
    assert "10.0 CPU hours recorded: 6.0 training the runs" in (tmp_path / "out" / "report.html").read_text()


def test_each_run_is_completed_as_soon_as_it_is_trained(tmp_path, monkeypatch):
    """`claims --run` scores and analyses a shard's run right after training it (and a run trained before, when its
    turn comes), while its weights exist, then marks the folder complete; the other shard's runs are left alone."""
    small = cl.Campaign("ocr", "8:images", 0, [cl.Group("opd", "opd", 3)])
    order = [cl.run_dir(tmp_path, g, s) for g, s in small.runs()]
    order[0].mkdir(parents=True)
    (order[0] / "summary.json").write_text("{}")          # trained in an earlier session
    events = []

    def run(cfg, d, resume):
        events.append(("train", d.name))
        d.mkdir(parents=True, exist_ok=True)
        (d / "summary.json").write_text("{}")

    monkeypatch.setattr(cl, "final_results", lambda d, tasks, protocol: events.append(("score", d.name)))
    monkeypatch.setattr(cl, "run_analyses", lambda g, d, k, b: events.append(("analyse", d.name)))
    protocol = __import__("opd_bench.evaluate", fromlist=["EvalProtocol"]).EvalProtocol()
    cl.run_campaign(small, tmp_path, run=run, shard=(0, 2),
                    after=lambda g, d: cl.complete_run(g, d, ["ocr"], protocol, (4, 2)))
    assert events == [("score", "s0"), ("analyse", "s0"), ("train", "s2"), ("score", "s2"), ("analyse", "s2")]
    assert (order[0] / cl.COMPLETE).is_file() and (order[2] / cl.COMPLETE).is_file()
    assert not order[1].exists()                             # shard 1's run
    assert json.loads((order[2] / cl.COMPLETE).read_text())["analyses"] == [4, 2]


def test_interference_is_recorded_for_every_joint_run_and_once_for_any_other_group(tmp_path, monkeypatch):
    """Joint groups' conflict is a claim (every seed); any other group records its interference once, in the first
    run scored while its weights exist, so `report` can show it after the weights are gone."""
    import opd_bench.analysis.interference as itf

    calls = []

    def fake(d, device="cpu"):
        calls.append(f"{d.parent.name}/{d.name}")
        (d / cl.INTERFERENCE_RECORD).write_text("{}")
        return {"conflict_over_batches": {"resolved_conflict_rate": 0.25}}

    monkeypatch.setattr(itf, "recorded_interference", fake)
    for label in ("cascade", "multi-reward"):
        for s in range(3):
            d = tmp_path / label / f"s{s}"
            (d / "final").mkdir(parents=True) if s else d.mkdir(parents=True)   # s0's weights are gone
    cascade, joint = cl.Group("cascade", "cascade", 3), cl.Group("multi-reward", "multi-reward", 3)
    for s in range(3):
        assert cl.run_analyses(cascade, tmp_path / "cascade" / f"s{s}") == {}
        assert cl.run_analyses(joint, tmp_path / "multi-reward" / f"s{s}") == {"conflict/multi-reward": 0.25}
    assert calls == ["multi-reward/s0", "cascade/s1", "multi-reward/s1", "multi-reward/s2"]


def test_the_campaign_script_restores_complete_runs_only(tmp_path):
    """scripts/claims_campaign.sh --restore-only: an archived run with its completion marker comes back into
    runs/claims/ (the report reads its records); one trained but never scored (no marker: its weights were not
    archived) does not, so the campaign trains it again instead of failing on missing weights."""
    import shutil
    import subprocess

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "scripts").mkdir()
    shutil.copy(root / "scripts" / "claims_campaign.sh", tmp_path / "scripts")
    arch = tmp_path / "experiments" / "claims_campaign"
    for seed, complete in ((0, True), (1, False)):
        d = arch / "runs" / "opd" / f"s{seed}"
        d.mkdir(parents=True)
        (d / "summary.json").write_text("{}")
        (d / cl.RECORD).write_text("{}")
        if complete:
            (d / cl.COMPLETE).write_text("{}")
    (arch / "sweeps" / "opd" / "trial_0").mkdir(parents=True)
    for n in ("summary.json", "config.yaml"):
        (arch / "sweeps" / "opd" / "trial_0" / n).write_text("{}")
    r = subprocess.run(["bash", str(tmp_path / "scripts" / "claims_campaign.sh"), "--restore-only"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "runs" / "claims" / "opd" / "s0" / cl.COMPLETE).is_file()
    assert not (tmp_path / "runs" / "claims" / "opd" / "s1").exists()
    assert (tmp_path / "runs" / "sweeps" / "sweep_opd" / "trial_0" / "summary.json").is_file()
    assert not (tmp_path / "configs").exists()   # the recipes are tracked in configs/recipes/: nothing to restore
