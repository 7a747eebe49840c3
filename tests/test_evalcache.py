"""Evaluations of fixed checkpoints are computed once (opd_bench/evalcache.py), and the shipped ones match the
released checkpoints they claim to evaluate."""
import json
from pathlib import Path

import pytest

from opd_bench import evalcache
from opd_bench.evaluate import EvalProtocol

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = EvalProtocol(steps=2, prompts_per_task=2, bootstrap=10)


def test_a_shipped_entry_is_used_and_a_missing_one_computed_into_the_local_cache(tmp_path, monkeypatch):
    from tiny_world import make_tiny_world

    world = make_tiny_world(tmp_path / "world")
    shipped, local = tmp_path / "shipped", tmp_path / "local"
    shipped.mkdir()
    monkeypatch.setattr(evalcache, "SHIPPED_EVALS", shipped)
    monkeypatch.setenv("OPD_BENCH_EVAL_CACHE", str(local))
    key = evalcache.cache_key(world / "base", PROTOCOL)
    planted = {"mean": 0.123, "n": 2, "ci_low": 0.1, "ci_high": 0.2, "metrics": {}}
    (shipped / f"{key}_brightness.json").write_text(json.dumps(planted))
    res, computed = evalcache.evaluate_cached(world / "base", ["brightness", "geneval"], PROTOCOL, show_progress=False)
    assert res["brightness"] == planted and computed == ["geneval"]        # shipped tier read, never re-scored
    assert (local / f"{key}_geneval.json").is_file() and not (shipped / f"{key}_geneval.json").exists()
    again, computed = evalcache.evaluate_cached(world / "base", ["geneval"], PROTOCOL, show_progress=False)
    assert computed == [] and again["geneval"] == res["geneval"]            # the local tier now has it
    # another protocol is another key: nothing is reused across protocols
    assert evalcache.cache_key(world / "base", EvalProtocol(steps=3, prompts_per_task=2, bootstrap=10)) != key


@pytest.mark.parametrize("a, b", [({"seconds": 10.0, "threads": 2}, {"seconds": 5.5, "threads": 2}),
                                  ({"seconds": 10.0, "threads": 2}, {"seconds": 5.5, "threads": 1}), ({}, {"seconds": 3})])
def test_two_costs_added_keep_their_cpu_hours(a, b):
    total = evalcache.add_costs(a, b)
    assert evalcache.cost_hours(total) == pytest.approx(evalcache.cost_hours(a) + evalcache.cost_hours(b))
    assert total["threads"] == (a.get("threads", 1) if a.get("threads", 1) == b.get("threads", 1) else 1)


def test_shipped_evaluations_match_the_released_checkpoints():
    index_file = evalcache.SHIPPED_EVALS / "index.json"
    if not index_file.is_file():
        pytest.skip("no shipped evaluations")
    index = json.loads(index_file.read_text())
    files = {p.stem for p in evalcache.SHIPPED_EVALS.glob("*.json") if p.name != "index.json"}
    assert files == set(index), "every shipped file is indexed and every index entry is shipped"
    for stem, entry in index.items():
        protocol = EvalProtocol(**entry["protocol"])
        assert stem == f"{evalcache.cache_key(entry['checkpoint'], protocol)}_{entry['task']}", (
            f"{stem}: {entry['checkpoint']} changed since its evaluation was shipped; run scripts/ship_evals.py")


def test_a_start_evaluation_is_served_from_the_cache_and_changes_nothing_else(tmp_path, monkeypatch):
    """The start evaluation scores the starting checkpoint: the first run computes and caches it, a second run
    reads it (no images evaluated) and draws the same sample grid; both runs' start rows and final weights are
    identical, so serving it from the cache does not touch training."""
    import torch
    from safetensors.torch import load_file
    from tiny_world import make_tiny_world

    from opd_bench.config import build_config
    from opd_bench.evaluate import first_images, evaluate
    from opd_bench.methods import METHODS
    from opd_bench.runner import Runner

    world = make_tiny_world(tmp_path / "world")
    monkeypatch.setenv("OPD_BENCH_EVAL_CACHE", str(tmp_path / "cache"))
    over = ["method=grpo", "tasks=brightness", f"model.checkpoint={world / 'base'}", "sampler.steps=2",
            "sampler.guidance=2.0", "train.prompts_per_step=2", "grpo.group_size=2", "eval.steps=2",
            "eval.prompts_per_task=3", "eval.bootstrap=20", "eval.guidance=2.0", "budget.value=8",
            "eval.curve_every=0"]
    rows, weights, ledgers = [], [], []
    for name in ("first", "second"):
        d = tmp_path / name
        Runner(build_config({}, over), d, METHODS["grpo"](), ["brightness"], show_progress=False,
               log_tensorboard=False).run()
        rows.append(json.loads((d / "eval_history.jsonl").read_text().splitlines()[0]))
        weights.append(load_file(str(d / "final" / "model.safetensors")))
        ledgers.append(json.loads((d / "ledger.json").read_text())["spent"]["eval"]["images"])
    assert rows[0]["label"] == "start" and rows[0]["scores"] == rows[1]["scores"] and rows[0]["ci"] == rows[1]["ci"]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert ledgers[0] - ledgers[1] == 3   # the second run evaluated no start images
    # the grid drawn for a cached start eval is the evaluation's own first images (batch size aside: float
    # rounding of a batch of 2 vs 3 differs in the last bits)
    from opd_bench.backbones import load_backbone

    model = load_backbone(world / "base")
    protocol = EvalProtocol(steps=2, prompts_per_task=3, bootstrap=20, guidance=2.0, split="test")
    full = evaluate(model, ["brightness"], protocol, show_progress=False, keep_images=True)
    assert torch.allclose(first_images(model, "brightness", protocol, 2), full["_images"]["brightness"][0][:2],
                          atol=1e-5)


def test_ship_evals_ships_a_named_protocol_one_task_at_a_time(tmp_path, monkeypatch):
    """scripts/ship_evals.py --protocol full: each released model's tasks scored one at a time under the named full
    protocol, each file and its index entry written as soon as it is scored (an interruption keeps them), and the
    existing entries of other protocols kept."""
    import importlib.util
    import sys

    from opd_bench.config import load_config
    from opd_bench.protocol import named

    spec = importlib.util.spec_from_file_location("ship_evals", ROOT / "scripts" / "ship_evals.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    shipped = tmp_path / "evals"
    shipped.mkdir()
    (shipped / "index.json").write_text(json.dumps({"old_ocr": {"checkpoint": "base", "task": "ocr", "protocol": {}}}))
    (shipped / "old_ocr.json").write_text("{}")
    monkeypatch.setattr(ship, "SHIPPED_EVALS", shipped)
    calls = []

    def fake(name, tasks, protocol):
        calls.append((name, tuple(tasks), protocol.to_dict()))
        if len(calls) == 3:
            raise KeyboardInterrupt   # interrupted while scoring the third task
        return {t: {"mean": 0.5} for t in tasks}, list(tasks)

    monkeypatch.setattr(ship, "evaluate_cached", fake)
    monkeypatch.setattr(ship, "cache_key", lambda name, protocol: f"k{name}")
    monkeypatch.setattr(sys, "argv", ["ship_evals.py", "--checkpoints", "base", "--protocol", "full"])
    with pytest.raises(KeyboardInterrupt):
        ship.main()
    full = named("full", EvalProtocol.from_config(load_config(None))).to_dict()
    a, b, c = ship.parse_tasks("all")[:3]   # every registered task (other tests' worlds register more)
    assert [c_[:2] for c_ in calls] == [("base", (a,)), ("base", (b,)), ("base", (c,))]
    assert all(c_[2] == full for c_ in calls)
    index = json.loads((shipped / "index.json").read_text())
    assert set(index) == {"old_ocr", f"kbase_{a}", f"kbase_{b}"}     # the two scored tasks kept
    assert index[f"kbase_{b}"]["protocol"] == full and (shipped / f"kbase_{b}.json").is_file()
