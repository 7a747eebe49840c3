"""Embedded-world learned rewards: gold scorers, prompt sets, released reward models (load, verify,
score, held-out targets, determinism) and the aesthetic/preference tasks."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from opd_bench.errors import CheckpointError
from opd_bench.paths import RELEASED_DIR
from opd_bench.world.gold import aesthetic_components, faithfulness, gold_aesthetic, gold_preference
from opd_bench.world.build.reward_data import aesthetic_dataset, degrade, perturb_spec, scene_from_spec
from opd_bench.world.reward_models import AestheticModel, PreferenceModel, build_vocab, images_to_tensor, make_config
from opd_bench.world.scenes import Obj, Scene, render
from opd_bench.world.build.taste_prompts import load_prompt_set, make_splits, split_path
from opd_bench.world.build.train_rewards import TARGETS, bradley_terry_loss, evaluate_aesthetic, evaluate_preference

torch.set_num_threads(1)
HERO = Scene(objects=(Obj("circle", "blue", 0.5, 0.5, 0.6),), background="white")
CLUTTER = Scene(objects=(Obj("circle", "red", 0.2, 0.2, 0.22), Obj("square", "green", 0.75, 0.25, 0.22),
                         Obj("cross", "blue", 0.25, 0.75, 0.22), Obj("triangle", "yellow", 0.75, 0.75, 0.22)),
                background="gray")
RECORD = {"prompt": "two red squares on a dark background",
          "spec": {"objects": [{"shape": "square", "color": "red", "count": 2}], "text": "", "background": "dark"}}


# ---------------------------------------------------------------------------------------------- gold
def test_gold_aesthetic_prefers_one_large_clean_centred_object():
    hero, clutter = render(HERO), render(CLUTTER)
    rng = np.random.default_rng(0)
    noisy = np.clip(hero + rng.normal(0, 20, hero.shape), 0, 255).astype(np.uint8)
    off_centre = render(Scene(objects=(Obj("circle", "blue", 0.2, 0.2, 0.3),), background="white"))
    scores = {k: gold_aesthetic(v) for k, v in
              {"hero": hero, "clutter": clutter, "noisy": noisy, "off": off_centre, "empty": render(Scene())}.items()}
    assert scores["hero"] > 0.9
    assert scores["hero"] > scores["noisy"] > scores["clutter"]
    assert scores["hero"] > scores["off"] > scores["empty"]
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    parts = aesthetic_components(clutter)
    assert parts["simplicity"] < 0.2 and parts["composition"] < 0.2   # clutter is what taste penalises


def test_gold_aesthetic_penalises_degradations_on_average():
    rng = np.random.default_rng(1)
    clean = [render(scene_from_spec(rng, r["spec"], hero=True)) for r in make_splits("aesthetic")["eval"][:40]]
    degraded = [degrade(im, rng, p=0.6) for im in clean]
    assert np.mean([gold_aesthetic(im) for im in clean]) > np.mean([gold_aesthetic(im) for im in degraded]) + 0.05


def test_gold_preference_rewards_faithfulness():
    rng = np.random.default_rng(2)
    good = render(scene_from_spec(rng, RECORD["spec"]))
    assert faithfulness(good, RECORD["spec"]) == pytest.approx(1.0)
    wrong_colour = {**RECORD["spec"], "objects": [{"shape": "square", "color": "blue", "count": 2}]}
    wrong_count = {**RECORD["spec"], "objects": [{"shape": "square", "color": "red", "count": 4}]}
    for spec in (wrong_colour, wrong_count):
        bad = render(scene_from_spec(rng, spec))
        assert gold_preference(good, RECORD) > gold_preference(bad, RECORD) + 0.1
    # same-prompt pairs from random perturbations: the faithful render wins most of them
    wins = [gold_preference(good, RECORD) > gold_preference(render(scene_from_spec(rng, perturb_spec(rng, RECORD["spec"]))), RECORD)
            for _ in range(20)]
    assert np.mean(wins) >= 0.8


# --------------------------------------------------------------------------------------- prompt sets
@pytest.mark.parametrize("task", ["aesthetic", "preference"])
def test_prompt_sets_are_deterministic_disjoint_and_loadable(task):
    splits = make_splits(task)
    assert len(splits["eval"]) >= 200   # the former eval set: val after cross-task overlaps are removed
    assert not {r["prompt"] for r in splits["train"]} & {r["prompt"] for r in splits["eval"]}
    on_disk = [json.loads(line) for line in split_path(task, "train").read_text().splitlines()]
    assert on_disk == splits["train"], f"{split_path(task, 'train')} is stale: rerun opd-bench world prompts"
    assert load_prompt_set(task, "train") == splits["train"]
    assert {r["prompt"] for r in load_prompt_set(task, "val")} <= {r["prompt"] for r in splits["eval"]}


# ------------------------------------------------------------------------------------ released models
MODELS = {"aesthetic": AestheticModel, "preference": PreferenceModel}


@pytest.fixture(scope="module")
def released():
    return {task: cls.from_checkpoint(RELEASED_DIR / f"reward_{task}") for task, cls in MODELS.items()}


@pytest.mark.parametrize("task", ["aesthetic", "preference"])
def test_released_checkpoint_is_small_and_documented(task):
    path = RELEASED_DIR / f"reward_{task}"
    assert sum(f.stat().st_size for f in path.iterdir()) < 5 * 2**20
    config = json.loads((path / "config.json").read_text())
    assert config["kind"] == f"reward_{task}"
    training = config["training"]
    # released before `opd-bench world train-rewards` replaced the module's own entry point
    assert training["command"].startswith(("opd-bench world train-rewards ", "python -m opd_bench.world.train_rewards "))
    assert TARGETS[task][0] in training["metrics"]


@pytest.mark.parametrize("task", ["aesthetic", "preference"])
def test_released_checkpoint_meets_its_target(task):
    config = json.loads((RELEASED_DIR / f"reward_{task}" / "config.json").read_text())
    key, target = TARGETS[task]
    assert config["training"]["metrics"][key] >= target


@pytest.mark.parametrize("task", ["aesthetic", "preference"])
def test_tampered_checkpoint_is_refused(task, tmp_path):
    copy = tmp_path / "ckpt"
    shutil.copytree(RELEASED_DIR / f"reward_{task}", copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        MODELS[task].from_checkpoint(copy)
    with pytest.raises(CheckpointError):   # wrong kind
        MODELS["preference" if task == "aesthetic" else "aesthetic"].from_checkpoint(RELEASED_DIR / f"reward_{task}")


def test_aesthetic_model_meets_target_on_fresh_heldout(released):
    m = evaluate_aesthetic(released["aesthetic"], n=512, seed=9001)
    assert m["heldout_spearman"] >= TARGETS["aesthetic"][1], m


def test_preference_model_meets_target_on_fresh_heldout(released):
    m = evaluate_preference(released["preference"], n_prompts=128, seed=9002)
    assert m["heldout_pairwise_accuracy"] >= TARGETS["preference"][1], m


@pytest.mark.parametrize("task", ["aesthetic", "preference"])
def test_tasks_score_batches_deterministically(task):
    from opd_bench.tasks import get_task

    t = get_task(task)
    records = t.prompts("test")[:5]
    assert len(t.prompts("train")) > len(t.prompts("test")) >= 200
    images, _ = aesthetic_dataset(records, 5, seed=3)
    x = images_to_tensor(images)
    r1, r2 = t.reward(x, records), t.reward(x.clone(), records)
    assert r1.shape == (5,) and r1.dtype == torch.float32
    assert torch.equal(r1, r2)
    m = t.metrics(x, records)
    assert set(m) >= {"score", "gold"} and all(v.shape == (5,) for v in m.values())
    assert torch.all((m["gold"] >= 0) & (m["gold"] <= 1))
    # batch composition does not change a sample's score
    assert torch.allclose(t.reward(x[:2], records[:2]), r1[:2], atol=1e-5)


def test_preference_model_reads_the_prompt(released):
    model = released["preference"]
    rng = np.random.default_rng(4)
    red = images_to_tensor(render(scene_from_spec(rng, RECORD["spec"]))[None])
    s_right = model.score(red, [RECORD["prompt"]])
    s_wrong = model.score(red, ["two blue squares on a dark background"])
    assert s_right.item() > s_wrong.item()


def test_bradley_terry_hard_pair_weighting():
    gold = torch.tensor([[0.9, 0.5, 0.1]])
    logits = torch.tensor([[0.0, 2.0, -1.0]])   # pair (0, 1) misordered, (0, 2) and (1, 2) right
    pairs = torch.tensor([0.0 - 2.0, 0.0 + 1.0, 2.0 + 1.0])
    nll = -torch.nn.functional.logsigmoid(pairs)
    assert torch.allclose(bradley_terry_loss(logits, gold), nll.mean())
    assert torch.allclose(bradley_terry_loss(logits, gold, hard_gamma=0.0), nll.mean())
    hard = bradley_terry_loss(logits, gold, hard_gamma=1.0)
    w = 1.0 - torch.sigmoid(pairs)
    assert torch.allclose(hard, (w * nll).sum() / w.sum())
    assert hard > nll.mean()   # the misordered pair dominates
    # ties (gold gap <= margin) are ignored
    assert bradley_terry_loss(logits, torch.tensor([[0.5, 0.52, 0.5]])).item() == 0.0


def test_preference_flip_average_is_mirror_invariant_and_optional():
    torch.manual_seed(0)
    vocab = build_vocab([RECORD["prompt"]])
    plain = PreferenceModel(make_config(), vocab).eval()
    flip = PreferenceModel(make_config(flip_average=True), vocab).eval()
    flip.load_state_dict(plain.state_dict())
    x = torch.rand(3, 3, 32, 32)
    prompts = [RECORD["prompt"]] * 3
    with torch.no_grad():
        assert torch.allclose(flip.raw(x, prompts), flip.raw(x.flip(-1), prompts), atol=1e-5)
        t = plain.encode_prompts(prompts)
        both = 0.5 * (plain.encode_images(x) + plain.encode_images(x.flip(-1)))
        assert torch.allclose(flip.raw(x, prompts), plain.logits(both, t), atol=1e-5)
        # a config without the key (older checkpoints) scores without mirroring
        legacy = {k: v for k, v in make_config().items() if k != "flip_average"}
        old = PreferenceModel(legacy, vocab).eval()
        old.load_state_dict(plain.state_dict())
        assert torch.equal(old.raw(x, prompts), plain.raw(x, prompts))


def test_data_generation_is_deterministic():
    recs = make_splits("aesthetic")["eval"][:10]
    a, ga = aesthetic_dataset(recs, 16, seed=5)
    b, gb = aesthetic_dataset(recs, 16, seed=5)
    assert np.array_equal(a, b) and np.array_equal(ga, gb)
