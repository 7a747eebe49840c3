"""The geneval task: prompt sets, GenEval's rule engine, and the parser+rules judge on ground truth."""
import copy
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from opd_bench.tasks import get_task
from opd_bench.tasks.geneval import judge, per_category
from opd_bench.scoring.geneval_rules import judge_detections, relative_position
from opd_bench.world.prompts import CATEGORIES, scene_for_record
from opd_bench.world.scenes import COLORS, render

#: every 7th row of GenEval's evaluation_metadata.jsonl (MIT, tests/data/geneval/LICENSE), shipped with the tests
GENEVAL_META = Path(__file__).resolve().parent / "data" / "geneval" / "evaluation_metadata_sample.jsonl"


def _images(scenes, size=32):
    return torch.tensor(np.stack([render(s, size) for s in scenes])).permute(0, 3, 1, 2).float() / 255


def _det(shape, box, color="red"):
    return SimpleNamespace(shape=shape, color=color, bbox=box, area=(box[2] - box[0]) * (box[3] - box[1]))


@pytest.fixture(scope="module")
def task():
    return get_task("geneval")


def test_prompt_sets(task):
    train, ev = task.prompts("train"), task.prompts("val")
    assert len(ev) >= 200 and {r["tag"] for r in ev} == set(CATEGORIES) == {r["tag"] for r in train}
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in ev}
    for r in ev:
        assert set(r) <= {"prompt", "tag", "include", "exclude"}
        assert all(set(i) <= {"class", "count", "color", "position"} for i in r["include"])
    pos = next(r for r in ev if r["tag"] == "position")
    assert isinstance(pos["include"][1]["position"], list) and pos["include"][1]["position"][1] == 0
    cnt = next(r for r in ev if r["tag"] == "counting")
    assert cnt["exclude"][0]["count"] == cnt["include"][0]["count"] + 1
    assert "exclude" not in ev[0] and "color" not in ev[0]["include"][0]


def test_relative_position():
    a, b = (0, 0, 10, 10), (20, 0, 30, 10)
    assert relative_position(a, b) == {"left of"} and relative_position(b, a) == {"right of"}
    assert relative_position((0, 20, 10, 30), a) == {"below"}
    assert relative_position((12, 0, 22, 10), a) == {"right of"}
    assert relative_position((1, 0, 11, 10), a) == set()     # within the 0.1 margin: no relation
    assert relative_position((20, 20, 30, 30), a) == {"right of", "below"}   # diagonal: both, as GenEval


def test_rules_negative_and_partial_credit():
    counting = {"include": [{"class": "circle", "count": 2}], "exclude": [{"class": "circle", "count": 3}]}
    two = [_det("circle", (0, 0, 5, 5)), _det("circle", (10, 0, 15, 5))]
    assert judge_detections(two, counting).correct and judge_detections(two, counting).credit == 1.0
    three = judge_detections(two + [_det("circle", (20, 0, 25, 5))], counting)
    assert not three.correct and three.credit == 0.5
    one = judge_detections(two[:1], counting)
    assert not one.correct and 0 < one.credit < 1
    color = {"include": [{"class": "square", "count": 1, "color": "blue"}]}
    assert not judge_detections([_det("square", (0, 0, 5, 5), "red")], color).correct
    # GenEval checks the top-ranked detection: a large red square hides a small blue one
    assert not judge_detections([_det("square", (0, 0, 9, 9), "red"), _det("square", (20, 0, 24, 4), "blue")], color).correct
    pos = {"include": [{"class": "square", "count": 1}, {"class": "circle", "count": 1, "position": ["right of", 0]}]}
    sq, ci = _det("square", (0, 0, 5, 5)), _det("circle", (20, 0, 25, 5))
    assert judge_detections([sq, ci], pos).correct
    v = judge_detections([_det("square", (20, 0, 25, 5)), _det("circle", (0, 0, 5, 5))], pos)
    assert not v.correct and v.credit == pytest.approx(2 / 3)
    assert not judge_detections([ci], pos).correct                   # missing target


def test_rules_accept_real_geneval_metadata():
    """The engine runs on GenEval's own metadata (COCO classes): reusable with a real detector."""
    rows = [json.loads(line) for line in open(GENEVAL_META)]
    assert len(rows) == 79
    for r in rows:
        dets, x = [], 0
        for req in r["include"]:
            for _ in range(req["count"]):
                dets.append(_det(req["class"], (x, 0, x + 10, 10), req.get("color", "red")))
                x += 30
        v = judge_detections(dets, r)
        if r["tag"] != "position":     # our left-to-right layout may contradict the relation
            assert v.correct, (r, v.reasons)


@pytest.mark.parametrize("size", [32, 64])
def test_ground_truth_scenes_score_99(task, size):
    ev = task.prompts("test")   # held-out compositions included
    if size == 64:
        ev = ev[::3]
    rng = np.random.default_rng(0)
    images = _images([scene_for_record(r, rng) for r in ev], size)
    score = task.metrics(images, ev)["score"]
    assert score.shape == (len(ev),) and score.mean().item() >= 0.99
    cats = per_category(score.tolist(), ev)
    assert set(cats) == set(CATEGORIES) | {"overall", "heldout"} and min(cats.values()) >= 0.95
    reward = task.reward(images, ev)
    assert reward.dtype == torch.float32 and torch.equal(reward == 1.0, score == 1.0)


def _negative(record, rng):
    """A scene that violates ``record``: wrong count / colour / relation, or a missing object."""
    bad = copy.deepcopy(record)
    inc = bad["include"]
    tag = record["tag"]
    if tag == "counting":
        n = inc[0]["count"]
        inc[0]["count"] = n - 1 if rng.random() < 0.5 else n + 1
        bad.pop("exclude")
    elif tag in ("colors", "color_attr"):
        i = int(rng.integers(len(inc)))
        inc[i]["color"] = next(c for c in COLORS if c != inc[i]["color"])
    elif tag == "position":
        rel = inc[1]["position"][0]
        inc[1]["position"][0] = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}[rel]
    elif tag == "two_object":
        inc.pop(int(rng.integers(2)))
    else:
        inc[0]["class"] = "square" if inc[0]["class"] != "square" else "circle"
    return scene_for_record(bad, rng)


def test_wrong_scenes_are_judged_wrong(task):
    ev = task.prompts("test")[::2]
    rng = np.random.default_rng(1)
    images = _images([_negative(r, rng) for r in ev])
    verdicts = judge(images, ev)
    wrong = np.mean([not v.correct for v in verdicts])
    assert wrong >= 0.99, wrong
    assert all(v.credit < 1 for v in verdicts if not v.correct)
