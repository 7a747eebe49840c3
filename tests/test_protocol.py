"""The one evaluation protocol (issue #19 items 1, 2, 5): config and evaluate share the type; several noise seeds
per prompt, seeded by (prompt, seed index) only, so every model is paired; named quick / full protocols; the
run's final eval is quick and marked so; learning-curve evals on val that leave the training bit-identical."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_world import make_tiny_world

from opd_bench.backbones import load_backbone
from opd_bench.config import EvalConfig, build_config
from opd_bench.evaluate import evaluate, prompt_noise
from opd_bench.methods import METHODS
from opd_bench.protocol import (FULL_SEEDS, EvalProtocol, curve_due, curve_protocol, full_seeds_rationale, label,
                                named)
from opd_bench.runner import Runner


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_tiny_world(tmp_path_factory.mktemp("world"))


def test_config_and_evaluate_share_one_protocol_type():
    cfg = build_config({}, [])
    assert isinstance(cfg.eval, EvalProtocol) and issubclass(EvalConfig, EvalProtocol)
    p = EvalProtocol.from_config(cfg)
    assert type(p) is EvalProtocol and p.shift == cfg.sampler.shift and label(p) == "quick"
    assert p.split == "test" and p.prompts_per_task == 64 and p.seeds("ocr") == 1
    cfg = build_config({}, ["eval.shift=3.0", "eval.seeds_per_prompt.ocr=3", "eval.split=val"])
    p = EvalProtocol.from_config(cfg)
    assert p.shift == 3.0 and p.seeds("ocr") == 3 and p.seeds("geneval") == 1 and p.split == "val"
    assert label(p) == "val, 64 prompts x 3 seeds"


@pytest.mark.parametrize("bad", ["eval.seeds_per_prompt.ocr=0", "eval.split=eval", "eval.shift=-1",
                                 "eval.curve_every=-5"])
def test_bad_protocol_fields_are_config_errors(bad):
    from opd_bench.errors import ConfigError

    with pytest.raises(ConfigError, match=".".join(bad.split("=")[0].split(".")[:2])):
        build_config({}, [bad])


def test_named_protocols_and_the_full_seeds_rationale():
    full, quick = named("full"), named("quick")
    assert label(full) == "full" and label(quick) == "quick"
    assert full.split == quick.split == "test" and full.prompts_per_task == 0 and quick.prompts_per_task == 64
    assert full.seeds_per_prompt == FULL_SEEDS
    # a protocol's cache key and recorded form hold the seeds only where they are not 1
    assert quick.to_dict()["seeds_per_prompt"] == {} and EvalProtocol.from_dict(full.to_dict()) == full
    # the full seeds are the seeds each MDE target needs on the test split (256 in-distribution prompts a task)
    # with the measured noise, capped by the CPU budget: OCR reaches 0.02, GenEval and the proxies do not
    r = full_seeds_rationale({t: 256 for t in FULL_SEEDS})
    assert {t: v["chosen"] for t, v in r.items()} == FULL_SEEDS
    assert r["ocr"]["needed"] == 8 and r["ocr"]["mde"] <= 0.02
    assert r["geneval"]["needed"] > FULL_SEEDS["geneval"] and r["geneval"]["mde"] > 0.03
    assert r["aesthetic"]["needed"] is None and r["preference"]["needed"] is None


def test_curve_schedule_is_a_function_of_the_spend():
    assert [curve_due(a, a + 32, 200) for a in (0, 160, 192, 384, 400)] == [False, False, True, True, False]
    assert not curve_due(0, 10_000, 0)
    pts = [s for s in range(0, 2000, 32) if curve_due(s, s + 32, 200) and s + 32 < 2000]
    assert len(pts) >= 8     # the main job's 2,000 images give at least 8 curve points inside the run


def test_seeds_per_prompt_pair_every_model(world):
    """Seed index j of prompt i is prompt_noise(seed + j, task, i): independent of the model, so two models are
    paired sample by sample; a prompt's score is the mean over its seeds, and seed index j equals --seed seed+j."""
    base, teacher = load_backbone(world / "base"), load_backbone(world / "teacher")
    p = EvalProtocol(split="val", prompts_per_task=3, seeds_per_prompt={"brightness": 3}, steps=3, guidance=2.0,
                     bootstrap=50)
    res = evaluate(base, ["brightness"], p, show_progress=False, keep_images=True)
    t = res["tasks"]["brightness"]
    assert t["n"] == 3 and t["images"] == 9 and t["seeds_per_prompt"] == 3 and t["split"] == "val"
    assert res["protocol_label"] == "val, 3 prompts x 3 seeds"
    for row, draws in zip(t["per_prompt"], t["per_seed"]["score"]):
        assert len(draws) == 3 and row["score"] == pytest.approx(np.mean(draws))
    one = {j: evaluate(base, ["brightness"], EvalProtocol(split="val", prompts_per_task=3, steps=3, guidance=2.0,
                                                          bootstrap=50, seed=1234 + j), show_progress=False)
           for j in (0, 2)}
    for j, r in one.items():
        assert [row["score"] for row in r["tasks"]["brightness"]["per_prompt"]] == \
            pytest.approx([draws[j] for draws in t["per_seed"]["score"]], abs=1e-6)
    # the other model saw the very same initial noises
    shape = base.latent_shape
    assert torch.equal(prompt_noise(1235, "brightness", 1, shape), prompt_noise(1235, "brightness", 1, shape))
    other = evaluate(teacher, ["brightness"], p, show_progress=False)["tasks"]["brightness"]
    assert [r["prompt"] for r in other["per_prompt"]] == [r["prompt"] for r in t["per_prompt"]]
    assert other["per_prompt"] != t["per_prompt"]


def _run(world, tmp_path, name, **over):
    tasks = ["brightness"]
    overrides = ["method=opd", "tasks=brightness", f"model.checkpoint={world / 'base'}", "sampler.steps=3",
                 "sampler.guidance=2.0", "train.prompts_per_step=2", "eval.steps=3", "eval.prompts_per_task=2",
                 "eval.bootstrap=50", "eval.guidance=2.0", "budget.value=12", "train.checkpoint_every=1",
                 f"opd.teachers.brightness={world / 'teacher'}"] + [f"{k}={v}" for k, v in over.items()]
    cfg = build_config({}, overrides)
    summary = Runner(cfg, tmp_path / name, METHODS["opd"](), tasks, show_progress=False, log_tensorboard=False).run()
    hist = [json.loads(line) for line in (tmp_path / name / "eval_history.jsonl").read_text().splitlines()]
    return summary, hist, load_file(str(tmp_path / name / "final" / "model.safetensors"))


def test_curve_evals_on_val_leave_training_bit_identical(world, tmp_path):
    _, h0, w0 = _run(world, tmp_path, "plain", **{"eval.curve_every": 0})
    s1, h1, w1 = _run(world, tmp_path, "curves", **{"eval.curve_every": 4, "eval.curve_prompts": 2})
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    assert [r["label"] for r in h0] == ["start", "final"]
    curve = [r for r in h1 if r["split"] == "val"]
    test = [r for r in h1 if r["split"] == "test"]
    assert [r["label"] for r in test] == ["start", "final"] and all(r["protocol"] == "test, 2 prompts x 1 seed"
                                                                    for r in test)
    assert curve[0]["label"] == "start curve" and curve[-1]["label"] == "final curve"
    images = [r["budget"]["images"] for r in curve]
    assert images == sorted(images) and len(curve) >= 4 and all(r["protocol"] == "val, 2 prompts x 1 seed" for r in curve)
    # the curve evals' images are eval spend, never training spend; the start evaluation of the base was cached
    # by the first run (opd_bench.evalcache), so this run spent only its final and curve evaluations
    assert s1["ledger"]["spent"]["eval"]["images"] == 2 + 2 * len(curve)


def test_learning_curves_read_one_split(world, tmp_path):
    from opd_bench.analysis import load_run
    from opd_bench.analysis.forgetting import curves, score_matrix

    _run(world, tmp_path, "c", **{"eval.curve_every": 4, "eval.curve_prompts": 2})
    run = load_run(tmp_path / "c")
    c = curves(run)
    val = [r for r in run.history if r["split"] == "val"]
    assert len(c["x"]) == len(val)
    labels, _ = score_matrix(run.history, run.tasks)   # forgetting of a joint method: the same val curve
    assert labels == [r["label"] for r in val] and labels[0] == "start curve" and labels[-1] == "final curve"


def test_quick_final_eval_is_marked_in_the_final_table(world, capsys):
    from opd_bench.train import print_final_table

    cfg = build_config({}, ["tasks=brightness", f"model.checkpoint={world / 'base'}", "eval.steps=2",
                            "eval.bootstrap=50", f"opd.teachers.brightness={world / 'teacher'}"])
    final = {"scores": {"brightness": 0.5}, "ci": {"brightness": [0.4, 0.6]}}
    from opd_bench.ledger import Ledger

    print_final_table([cfg], {("opd", 0): {"final": final, "ledger": {"spent": {"train": Ledger(1.0).summary()}}}})
    out = capsys.readouterr()
    assert "quick protocol" in out.out + out.err and "QUICK" in out.out + out.err
