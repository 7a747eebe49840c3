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
