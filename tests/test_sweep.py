"""``opd-bench sweep`` (issue 20): equal tuning -- the same number of trials and per-trial budget for every
method, selection on the eval split, the chosen recipe written with its sweep table. Tiny grid, tiny budget."""
import json

import numpy as np
import pytest
import yaml
from tiny_world import make_tiny_world

from opd_bench.cli import main
from opd_bench.config import load_config, to_flat_dict
from opd_bench.errors import UserError
from opd_bench.sweep import SweepSpec, draw_trials, load_spec, run_sweep

TINY = ["sampler.steps=2", "sampler.guidance=2.0", "train.prompts_per_step=2", "grpo.group_size=2", "eval.steps=2",
        "eval.prompts_per_task=2", "eval.bootstrap=20", "eval.guidance=2.0", "train.checkpoint_every=100"]


def write_spec(path, **doc):
    path.write_text(yaml.safe_dump(doc))
    return path


def test_draw_trials_is_seeded_distinct_and_refuses_a_small_grid():
    spec = SweepSpec(trials=3, budget="8:images", seed=1, grid={"train.lr": [1e-4, 3e-4], "grpo.beta": [0.0, 0.04]})
    a, b = draw_trials(spec), draw_trials(spec)
    assert a == b and len(a) == 3 and len({tuple(sorted(t.items())) for t in a}) == 3
    with pytest.raises(UserError, match="fewer than trials=5"):
        draw_trials(SweepSpec(trials=5, budget="8:images", grid=spec.grid))


def test_every_method_gets_the_same_trials_and_budget(tmp_path):
    spec_file = write_spec(tmp_path / "s.yaml", trials=2, budget="16:images", seed=0,
                           grid={"train.lr": [1e-4, 3e-4]}, methods={"nft": {"nft.beta": [0.1, 1.0]}})
    seen = {}

    def fake_run(cfg, run_dir, resume=False):   # records what each trial would train; scores favour a higher lr
        seen.setdefault(cfg.method, []).append(cfg)
        return {"final": {"scores": {"ocr": cfg.train.lr * 1000 + (cfg.nft.beta if cfg.method == "nft" else 0)}}}

    for m in ("grpo", "nft"):
        res = run_sweep(m, "ocr", load_spec(spec_file, m), None, [], tmp_path / "runs", tmp_path / "recipes", fake_run)
        assert res["split"] == "val" and (tmp_path / "runs" / f"sweep_{m}" / "sweep.json").is_file()
    assert len(seen["grpo"]) == len(seen["nft"]) == 2
    # selection reads val: every trial's final evaluation (the score the sweep ranks) is on the val split
    assert {c.eval.split for cs in seen.values() for c in cs} == {"val"}
    assert {(c.budget.value, c.budget.unit) for cs in seen.values() for c in cs} == {(16.0, "images")}
    chosen = load_config(str(tmp_path / "recipes" / "grpo.yaml"))
    assert chosen.method == "grpo" and chosen.train.lr == 3e-4 and chosen.eval.split == "test"
    # a named recipe (multi-reward with the NFT objective) takes the grid keys and file of its name
    res = run_sweep("multi-reward", "ocr", load_spec(spec_file, "nft"), None, ["grpo.objective=nft"],
                    tmp_path / "runs", tmp_path / "recipes", fake_run, recipe_name="nft")
    assert all(c.grpo.objective == "nft" for c in seen["multi-reward"]) and res["recipe"].endswith("nft.yaml")
    assert len(seen["multi-reward"]) == 2 and "nft.beta" in res["grid"]
    head = (tmp_path / "recipes" / "nft.yaml").read_text().splitlines()[0]
    assert head.startswith("# Recipe for nft (method multi-reward), chosen")
    assert (tmp_path / "recipes" / "grpo.yaml").read_text().startswith("# Recipe for grpo, chosen")


def test_the_declared_equal_tuning_protocol_gives_every_recipe_the_same_trials_and_budget():
    from opd_bench.paths import CONFIGS_DIR

    path = CONFIGS_DIR / "sweeps" / "equal_tuning.yaml"
    names = ["opd", "multi-reward", "cascade", "sft-distill", "mt-nft", "mt-grpo-guard", "cascade-nft"]
    specs = [load_spec(path, n) for n in names]
    assert {(s.trials, s.budget) for s in specs} == {(8, "2000:images")}   # the comparison's student budget
    assert all(len(draw_trials(s)) == 8 for s in specs)
    # 8 drawn + 1 reference trial for every recipe, and the reference is a ninth setting, not a drawn one again
    assert all(s.reference is not None for s in specs)
    for name, s in zip(names, specs):
        over = ["grpo.objective=nft"] if "nft" in name else []
        ref = to_flat_dict(load_config(None, over + [f"{k}={v}" for k, v in s.reference.items()]))
        assert all(any(ref[k] != v for k, v in t.items()) for t in draw_trials(s)), name
    # the RL baselines' reference is the teachers' documented recipe (configs/teacher_ocr.yaml, teacher.yaml)
    ocr = load_config("teacher_ocr")
    for s in (specs[1], specs[2], specs[5]):
        assert (s.reference["grpo.group_noise"], s.reference["grpo.beta"], s.reference["train.ema.enabled"],
                s.reference["train.lr"]) == (ocr.grpo.group_noise, ocr.grpo.beta, ocr.train.ema.enabled, ocr.train.lr)
    assert specs[0].reference == specs[3].reference == {}                  # opd, sft-distill: the shipped default
    # GRPO-Guard's clip range is tuned, in trials where the clip can act (a batch's 2nd optimizer step on)
    guard = specs[5]
    assert len(guard.grid["grpo.clip_range"]) >= 3 and guard.grid["grpo.minibatches"] == [2]


def test_the_started_sweeps_keep_their_trials():
    """A campaign in progress reads its trial folders back by index: trial_k of opd, multi-reward, cascade and
    sft-distill must keep the settings it was started with (adding the reference trial must not redraw them)."""
    from opd_bench.paths import CONFIGS_DIR

    path = CONFIGS_DIR / "sweeps" / "equal_tuning.yaml"
    lrs = [3e-5, 3e-5, 3e-4, 3e-5, 1e-4, 3e-4, 1e-4, 3e-4]
    assert [(t["opd.sampler"], t["train.ema.enabled"], t["train.lr"], t["train.prompts_per_step"])
            for t in draw_trials(load_spec(path, "opd"))] == list(zip(
                ["ode"] * 6 + ["sde"] * 2, [False] * 3 + [True] * 3 + [False, True], lrs, [4, 16, 16, 4, 16, 16, 4, 16]))
    assert [(t["opd.task_reduction"], t["train.prompts_per_step"], t["train.lr"])
            for t in draw_trials(load_spec(path, "sft-distill"))] == list(zip(
                ["sum"] * 6 + ["mean"] * 2, [4, 16, 16, 4, 16, 16, 4, 16], lrs))
    for m in ("multi-reward", "cascade"):
        assert [(t["grpo.beta"], t["grpo.group_noise"], t["train.ema.enabled"], t["train.lr"])
                for t in draw_trials(load_spec(path, m))] == [
            (0.004, "independent", False, 3e-5), (0.004, "independent", False, 1e-4),
            (0.004, "independent", True, 3e-4), (0.004, "shared", False, 3e-5), (0.004, "shared", True, 3e-5),
            (0.004, "shared", True, 3e-4), (0.04, "independent", False, 3e-4), (0.04, "shared", True, 3e-4)]


def test_the_reference_trial_is_selected_on_val_like_any_trial(tmp_path):
    """The documented recipe runs as one more trial at the same budget, evaluated on val: it wins when it is best
    (so the chosen recipe is never worse on val than it), and the table marks it."""
    seen = []

    def fake_run(cfg, run_dir, resume=False):   # scores favour a higher lr
        seen.append((run_dir.name, cfg))
        return {"final": {"scores": {"ocr": cfg.train.lr * 1000}}}

    for ref_lr, wins in ((1e-3, True), (3e-5, False)):
        seen.clear()
        spec = write_spec(tmp_path / "s.yaml", trials=2, budget="16:images", seed=0, grid={"train.lr": [1e-4, 3e-4]},
                          reference={"grpo": {"train.lr": ref_lr, "grpo.beta": 0.04}})
        rec = tmp_path / f"rec{ref_lr}"
        res = run_sweep("grpo", "ocr", load_spec(spec, "grpo"), None, [], tmp_path / f"runs{ref_lr}", rec, fake_run)
        assert [d for d, _ in seen] == ["trial_0", "trial_1", "trial_ref"]
        ref_cfg = seen[-1][1]
        assert ref_cfg.eval.split == "val" and (ref_cfg.budget.value, ref_cfg.budget.unit) == (16.0, "images")
        assert ref_cfg.train.lr == ref_lr and ref_cfg.grpo.beta == 0.04
        assert [r["trial"] for r in res["table"]] == [0, 1, "ref"]
        # every row shows every column (a drawn trial's value of a key only the reference sets: its default)
        assert res["table"][0]["params"] == {"grpo.beta": 0.004, "train.lr": 1e-4}
        chosen = next(r for r in res["table"] if r["chosen"])
        assert (chosen["trial"] == "ref") == wins
        assert chosen["mean"] >= res["table"][-1]["mean"]
        text = (rec / "grpo.yaml").read_text()
        assert "+ 1 reference trial" in text and "# ref | 0.04 | " in text and "(reference)" in text
        assert load_config(str(rec / "grpo.yaml")).train.lr == (ref_lr if wins else 3e-4)
    with pytest.raises(UserError, match="reference.nft is missing"):
        load_spec(spec, "nft")


def test_the_sweep_selects_on_the_gold_scorer_first_like_the_report(tmp_path):
    """A trial that hacks a task's learned proxy (high proxy, low gold) loses to one that is better on the gold
    scorer: the selection reads each task as the report's headline does (gold first), and the table shows it."""
    def fake_run(cfg, run_dir, resume=False):   # lr 3e-4 hacks the aesthetic proxy; lr 1e-4 is better on gold
        hacks = cfg.train.lr > 2e-4
        final = {"scores": {"aesthetic": 0.7 if hacks else 0.4, "ocr": 0.2},
                 "metrics": {"aesthetic": {"score": 0.7 if hacks else 0.4, "gold": 0.3 if hacks else 0.45},
                             "ocr": {"score": 0.2}},
                 "ci": {"aesthetic": [0.65, 0.75] if hacks else [0.38, 0.42], "ocr": [0.1, 0.3]}}
        if hacks:   # recorded with the gold score's interval; the other trial, as archived before it, without
            final["metric_ci"] = {"aesthetic": {"score": [0.65, 0.75], "gold": [0.2, 0.4]}, "ocr": {"score": [0.1, 0.3]}}
        return {"final": final}

    spec = write_spec(tmp_path / "s.yaml", trials=2, budget="16:images", seed=0, grid={"train.lr": [1e-4, 3e-4]})
    res = run_sweep("grpo", "aesthetic,ocr", load_spec(spec, "grpo"), None, [], tmp_path / "runs", tmp_path / "rec",
                    fake_run)
    chosen = next(r for r in res["table"] if r["chosen"])
    assert chosen["params"]["train.lr"] == 1e-4 and chosen["scores"] == {"aesthetic": 0.45, "ocr": 0.2}
    assert chosen["mean"] == pytest.approx(0.325)
    text = (tmp_path / "rec" / "grpo.yaml").read_text()
    assert "gold scorer first" in text and load_config(str(tmp_path / "rec" / "grpo.yaml")).train.lr == 1e-4
    # the resolution reads the interval of the score selected on: the gold one where recorded (half-widths 0.1 and
    # 0.1 -> sqrt(0.02) / 2), else the proxy's in its place (0.02 and 0.1), and the header names those trials
    other = next(r for r in res["table"] if not r["chosen"])
    assert other["halfwidth"] == pytest.approx(0.02 ** 0.5 / 2) and other["proxy_interval"] == []
    assert chosen["halfwidth"] == pytest.approx(0.0104 ** 0.5 / 2) and chosen["proxy_interval"] == ["aesthetic"]
    assert (f"trial {chosen['trial']} was scored before a gold score's interval was recorded, so its takes "
            "the proxy's for aesthetic") in " ".join(line.lstrip("# ") for line in text.splitlines())


def test_sweep_end_to_end_on_the_tiny_world_writes_the_recipe(tmp_path):
    world = make_tiny_world(tmp_path / "world")
    spec = write_spec(tmp_path / "s.yaml", trials=2, budget="4:images", seed=0, grid={"train.lr": [1e-4, 1e-3]})
    over = TINY + [f"model.checkpoint={world / 'base'}"]
    res = run_sweep("grpo", "brightness", load_spec(spec, "grpo"), None, over, tmp_path / "runs", tmp_path / "rec")
    assert [r["trial"] for r in res["table"]] == [0, 1] and sum(r["chosen"] for r in res["table"]) == 1
    best = next(r for r in res["table"] if r["chosen"])
    assert best["mean"] == max(r["mean"] for r in res["table"])
    text = (tmp_path / "rec" / "grpo.yaml").read_text()
    assert "on the val split" in text and text.count("| brightness |") == 1 and "<- chosen" in text
    assert all(r["halfwidth"] > 0 for r in res["table"]) and "# Resolution: the chosen trial's mean has a 95% half-width of " in text
    assert load_config(str(tmp_path / "rec" / "grpo.yaml")).train.lr == best["params"]["train.lr"]
    for k in (0, 1):
        assert (tmp_path / "runs" / "sweep_grpo" / f"trial_{k}" / "summary.json").is_file()
    # rerunning the command reuses the finished trials (nothing retrains) and picks the same recipe
    again = run_sweep("grpo", "brightness", load_spec(spec, "grpo"), None, over, tmp_path / "runs", tmp_path / "rec",
                      run=lambda *a, **k: pytest.fail("a finished trial was retrained"))
    assert again["table"] == res["table"]
    with pytest.raises(UserError, match="holds a different config"):
        run_sweep("grpo", "brightness", load_spec(spec, "grpo"), None, over + ["grpo.beta=0.5"], tmp_path / "runs",
                  tmp_path / "rec")
    # the sweep file gains a reference trial: resuming the folder trains only trial_ref (trial_0, trial_1 read back)
    from opd_bench.train import run_one

    ran = []
    write_spec(spec, trials=2, budget="4:images", seed=0, grid={"train.lr": [1e-4, 1e-3]},
               reference={"grpo": {"train.lr": 3e-4}})
    res = run_sweep("grpo", "brightness", load_spec(spec, "grpo"), None, over, tmp_path / "runs", tmp_path / "rec",
                    run=lambda cfg, d, resume=False: ran.append(d.name) or run_one(cfg, d, resume=resume))
    assert ran == ["trial_ref"] and res["table"][:2] == again["table"]
    ref = tmp_path / "runs" / "sweep_grpo" / "trial_ref"
    saved = yaml.safe_load((ref / "config.yaml").read_text())
    assert saved["eval"]["split"] == "val" and saved["train"]["lr"] == 3e-4 and (ref / "summary.json").is_file()
    assert res["table"][2]["trial"] == "ref" and res["table"][2]["scores"]["brightness"] == \
        pytest.approx(json.loads((ref / "summary.json").read_text())["final"]["scores"]["brightness"])


@pytest.mark.parametrize("doc,msg", [
    ({"trials": 2, "budget": "8:images", "grid": {"train.lr": [1e-4]}}, "fewer than trials=2"),
    ({"trials": 1, "grid": {"train.lr": [1e-4]}}, "'budget' must be VALUE:UNIT"),
    ({"trials": 1, "budget": "8:images", "grid": {"train.lr": 1e-4}}, "grid.train.lr must be a non-empty list"),
    ({"trials": 1, "budget": "8:images", "grid": {"train.lr": [-1.0]}}, "train.lr: must be > 0"),
    ({"trials": 1, "budget": "8:images", "gird": {}}, "unknown key 'gird'"),
    ({"trials": 1, "budget": "8:images", "grid": {"train.lr": [1e-4]}, "reference": {"nft": {}}},
     "reference.grpo is missing"),
    ({"trials": 1, "budget": "8:images", "grid": {"train.lr": [1e-4]}, "reference": {"grpo": {"train.lr": -1.0}}},
     "train.lr: must be > 0"),
])
def test_sweep_bad_input_is_one_line_exit_2(tmp_path, capsys, doc, msg):
    spec = write_spec(tmp_path / "s.yaml", **doc)
    rc = main(["sweep", "--method", "grpo", "--tasks", "ocr", "--grid", str(spec), "--runs-dir", str(tmp_path / "r"),
               "--recipes-dir", str(tmp_path / "rec")])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "rec").exists()


def test_a_run_saved_before_a_new_field_still_matches_its_config():
    """A sweep or campaign spans sessions: a trial saved by code that lacked a field (new fields default to the
    old behaviour) still continues; any field it does hold must match."""
    import yaml

    from opd_bench.config import dump_config, load_config, same_settings

    cfg = load_config(None, ["method=grpo", "tasks=ocr"])
    saved = yaml.safe_load(dump_config(cfg))
    del saved["train"]["micro_batch"], saved["eval"]["curve_every"]          # written before those fields existed
    assert same_settings(yaml.safe_dump(saved), cfg)
    saved["train"]["lr"] = 3e-4
    assert not same_settings(yaml.safe_dump(saved), cfg)
    assert not same_settings(dump_config(load_config(None, ["method=grpo", "tasks=ocr", "grpo.beta=0.5"])), cfg)


def test_a_run_saved_under_another_same_weights_setting_still_matches():
    """opd.student_from_rollout changes no weight (tests/test_default_paths.py): trials and campaign runs written
    before its default changed are read back and continued; a setting that changes results is still refused."""
    from opd_bench.config import SAME_WEIGHTS_FIELDS, dump_config, load_config, same_settings

    assert SAME_WEIGHTS_FIELDS == {"opd.student_from_rollout"}
    cfg = load_config(None, ["method=opd", "tasks=ocr"])
    assert cfg.opd.student_from_rollout
    assert same_settings(dump_config(load_config(None, ["method=opd", "tasks=ocr", "opd.student_from_rollout=false"])), cfg)
    assert not same_settings(dump_config(load_config(None, ["method=opd", "tasks=ocr", "opd.student_from_rollout=false",
                                                            "opd.sampler=sde"])), cfg)


def test_the_sweep_says_which_trials_its_choice_does_not_resolve():
    """The mean's interval from each task's (independent tasks): sqrt(sum h^2) / T, by hand; a trial is not resolved
    from the chosen one when their means differ by no more than sqrt(h_a^2 + h_b^2)."""
    from opd_bench.sweep import mean_halfwidth, not_resolved_from_chosen

    assert mean_halfwidth({"a": [0.1, 0.3], "b": [0.5, 0.7]}, ["a", "b"]) == pytest.approx((0.02 ** 0.5) / 2)
    assert np.isnan(mean_halfwidth({"a": [0.1, 0.3]}, ["a", "b"]))
    table = [{"trial": 0, "mean": 0.40, "halfwidth": 0.03, "chosen": True},
             {"trial": 1, "mean": 0.36, "halfwidth": 0.04, "chosen": False},     # 0.04 <= 0.05: tied
             {"trial": 2, "mean": 0.34, "halfwidth": 0.04, "chosen": False},     # 0.06 > 0.05: resolved
             {"trial": "ref", "mean": 0.30, "halfwidth": float("nan"), "chosen": False}]
    assert not_resolved_from_chosen(table) == [1]


def test_an_eval_row_records_the_gold_scores_interval_the_sweep_reads():
    """summarize_task keeps every metric's interval (of its plain mean); eval_row passes it on, and the headline's
    interval of a gold-scored task is the gold metric's, of any other task the primary score's."""
    from opd_bench.evaluate import eval_row, summarize_task
    from opd_bench.protocol import EvalProtocol
    from opd_bench.report.references import headline_ci, headline_value
    from opd_bench.stats import bootstrap_ci
    from opd_bench.tasks import get_task

    rng = np.random.default_rng(0)
    proxy, gold = rng.uniform(0.3, 0.9, 40), rng.uniform(0.1, 0.5, 40)
    res = {"aesthetic": summarize_task(get_task("aesthetic"), [{}] * 40, {"score": proxy, "gold": gold}, 200, 3),
           "ocr": summarize_task(get_task("ocr"), [{}] * 40, {"score": proxy, "exact": gold}, 200, 3)}
    row = eval_row(res, "final", EvalProtocol())
    assert headline_value(row, "aesthetic") == pytest.approx(gold.mean())
    assert headline_ci(row, "aesthetic") == pytest.approx(bootstrap_ci(gold, 200, 3))
    assert headline_ci(row, "ocr") == pytest.approx(bootstrap_ci(proxy, 200, 3))
    assert list(headline_ci(row, "ocr")) == row["ci"]["ocr"]
    assert headline_ci(row, "aesthetic")[1] < 0.5 < row["ci"]["aesthetic"][0]   # not the proxy's
    del row["metric_ci"]   # a row recorded before the intervals were kept: no gold interval, not the proxy's
    assert headline_ci(row, "aesthetic") is None and headline_ci(row, "ocr") is not None
