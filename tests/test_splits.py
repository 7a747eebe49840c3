"""The train / val / test prompt splits (issue #19 item 1): files on disk match their generator, no val or test text
occurs in any other set of any task, val is the former eval set minus cross-task prompts, GenEval's test has a
held-out-composition part whose metadata no train or val record has, and the only overlap left is train-train."""
import json

import pytest

from opd_bench.paths import TASKS_DIR
from opd_bench.world import SPLITS
from opd_bench.world.build.splits import HELDOUT, WORLD_TASKS, build_splits, former_sets, train_overlap


@pytest.fixture(scope="module")
def splits():
    return build_splits()


def _on_disk(task, split):
    return [json.loads(line) for line in (TASKS_DIR / task / f"{split}.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("task", WORLD_TASKS)
def test_files_match_their_generator(splits, task):
    for split in SPLITS:
        assert _on_disk(task, split) == splits[task][split], \
            f"tasks/{task}/{split}.jsonl is stale: rerun opd-bench world prompts"
    assert not (TASKS_DIR / task / "eval.jsonl").exists()


@pytest.mark.parametrize("task", WORLD_TASKS)
def test_tasks_load_every_split(task):
    from opd_bench.errors import UserError
    from opd_bench.tasks import get_task

    t = get_task(task)
    for split in SPLITS:
        assert [r["prompt"] for r in t.prompts(split)] == [r["prompt"] for r in _on_disk(task, split)]
    with pytest.raises((UserError, ValueError)):
        t.prompts("eval")


def test_no_val_or_test_text_occurs_anywhere_else(splits):
    sets = {(t, s): [r["prompt"] for r in recs] for t, by in splits.items() for s, recs in by.items()}
    for (t, s), texts in sets.items():
        assert len(set(texts)) == len(texts), f"{t}/{s} repeats a prompt"
        if s == "train":
            continue
        for (u, v), other in sets.items():
            if (u, v) != (t, s):
                shared = set(texts) & set(other)
                assert not shared, f"{t}/{s} shares {len(shared)} prompts with {u}/{v}, e.g. {sorted(shared)[0]!r}"


def test_val_is_the_former_eval_set_minus_cross_task_prompts(splits):
    former = {t: former_sets(t) for t in WORLD_TASKS}
    for task in WORLD_TASKS:
        others = {r["prompt"] for u in WORLD_TASKS if u != task for recs in former[u].values() for r in recs}
        expected = [r for r in former[task]["eval"] if r["prompt"] not in others]
        assert splits[task]["val"] == expected
    # measured: aesthetic's former eval set held 95+ preference train prompts; GenEval's held none of another task's
    assert len(splits["aesthetic"]["val"]) <= 256 - 95 and len(splits["geneval"]["val"]) == 220


def test_sizes_resolve(splits):
    for task in WORLD_TASKS:
        assert 256 <= len(splits[task]["test"]) <= 400, task


def test_train_overlap_is_the_documented_one(splits):
    """Train sets are unchanged (changing them means retraining every release), so their overlap stays."""
    ov = train_overlap(splits)
    assert ov["aesthetic|preference"] == 256 and ov["aesthetic|geneval"] == 34 and ov["geneval|preference"] == 36
    assert ov["geneval|ocr"] == 0


def _composition(r):
    return json.dumps({k: r[k] for k in ("include", "exclude") if k in r}, sort_keys=True)


def test_geneval_test_has_in_distribution_and_heldout_parts(splits):
    from opd_bench.world.prompts import CATEGORIES

    g = splits["geneval"]
    test = g["test"]
    indist = [r for r in test if r["tag"] != HELDOUT]
    heldout = [r for r in test if r["tag"] == HELDOUT]
    assert {r["tag"] for r in indist} == set(CATEGORIES) and len(indist) >= 200 and len(heldout) >= 64
    seen = {_composition(r) for r in g["train"] + g["val"]}
    train_seen = {_composition(r) for r in g["train"]}
    # in-distribution: compositions of train (colour attribution) or of every small category; held-out: none seen
    assert all(_composition(r) in seen for r in indist)
    assert all(_composition(r) in train_seen for r in indist if r["tag"] == "color_attr")
    assert not {_composition(r) for r in heldout} & seen
    assert {r["kind"] for r in heldout} == {"color_count", "color_position"}
    # the wording of in-distribution test prompts is none of train's or val's
    for r in indist:
        assert r["prompt"].startswith(("simple drawing of ", "photo: "))
    pos = next(r for r in heldout if r["kind"] == "color_position")
    rel = pos["include"][1]["position"][0]
    assert f" {rel} " in pos["prompt"] and pos["include"][1]["color"] in pos["prompt"]


def test_heldout_is_its_own_row_outside_the_geneval_score():
    import numpy as np

    from opd_bench.evaluate import summarize_task
    from opd_bench.tasks import get_task

    task = get_task("geneval")
    records = [{"tag": "counting"}, {"tag": "counting"}, {"tag": "colors"}, {"tag": HELDOUT}]
    s = summarize_task(task, records, {"score": np.array([1.0, 0.0, 1.0, 0.0])}, 50, 0)
    assert s["categories"][HELDOUT]["mean"] == 0.0 and s["categories"][HELDOUT]["n"] == 1
    assert s["mean"] == pytest.approx((0.5 + 1.0) / 2)   # the mean of the in-distribution category means only


def test_train_sets_unchanged_by_the_split_design():
    for task in WORLD_TASKS:
        assert _on_disk(task, "train") == former_sets(task)["train"]
