"""The ocr task: Flow-GRPO's score, prompt sets, and RapidOCR on ground-truth renders."""
import time

import numpy as np
import pytest
import torch

from opd_bench.tasks import get_task
from opd_bench.scoring.ocr_score import edit_distance, ocr_score
from opd_bench.world.ocr import read_text
from opd_bench.world.prompts import scene_for_record
from opd_bench.world.scenes import Scene, TEXT_ALPHABET, render


def _images(scenes, size=32):
    return torch.tensor(np.stack([render(s, size) for s in scenes])).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def task():
    return get_task("ocr")


def test_score_definition():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "ab") == 2
    assert ocr_score("K7", "K7") == 1.0
    assert ocr_score("k 7", "K7") == 1.0                 # spaces and case ignored
    assert ocr_score("AK7B", "K7") == 1.0                # target inside the reading counts (Flow-GRPO)
    assert ocr_score("K1", "K7") == 0.5
    assert ocr_score("", "ABC") == 0.0
    assert ocr_score("XYZWVU", "AB") == 0.0             # clipped at 0
    assert ocr_score("AB", "ABC") == pytest.approx(2 / 3)


def test_prompt_sets(task):
    train, ev = task.prompts("train"), task.prompts("val") + task.prompts("test")
    assert len(ev) >= 200 and len(train) >= 1000
    assert not {r["text"] for r in train} & {r["text"] for r in ev}
    for r in ev + train:
        assert f'"{r["text"]}"' in r["prompt"] and 1 <= len(r["text"]) <= 3
        assert set(r["text"]) <= set(TEXT_ALPHABET)
    assert len({r["prompt"].replace(r["text"], "") for r in ev}) >= 4   # several templates


def test_ground_truth_renders_are_read(task):
    ev = task.prompts("test")
    rng = np.random.default_rng(0)
    images = _images([scene_for_record(r, rng) for r in ev])
    task.metrics(images[:2], ev[:2])                     # build the engine outside the timing
    t0 = time.perf_counter()
    m = task.metrics(images, ev)
    ms = 1000 * (time.perf_counter() - t0) / len(ev)
    print(f"\nOCR exact {m['exact'].mean():.3f}, score {m['score'].mean():.3f}, {ms:.1f} ms/image")
    assert m["exact"].mean().item() >= 0.95 and m["score"].mean().item() >= 0.97
    assert set(m) >= {"score", "exact"} and m["score"].shape == (len(ev),)


def test_wrong_text_gets_reward_below_one(task):
    ev = task.prompts("test")[:24]
    rng = np.random.default_rng(1)
    wrong = []
    for r in ev:   # a different string of the same length, sharing no character with the target
        other = [c for c in TEXT_ALPHABET if c not in r["text"]]
        wrong.append(scene_for_record({"text": "".join(rng.choice(other, size=len(r["text"])))}, rng))
    reward = task.reward(_images(wrong), ev)
    assert reward.dtype == torch.float32 and (reward < 1).all() and reward.mean() < 0.3
    blank = task.reward(_images([Scene()] * 2), ev[:2])
    assert torch.equal(blank, torch.zeros(2))


def test_read_text_accepts_lists_and_sizes():
    rng = np.random.default_rng(2)
    scenes = [scene_for_record({"text": t}, rng) for t in ("K7", "AB", "X")]
    assert read_text([render(s, 64) for s in scenes]) == ["K7", "AB", "X"]
    assert read_text(np.stack([render(s, 32) for s in scenes[:2]])) == ["K7", "AB"]


def test_the_memory_arena_changes_no_reading():
    """ENGINE_PARAMS turns onnxruntime's CPU memory arena on (speed only): every reading, of clean renders and of
    noisy ones (partial or garbled text), equals the arena-off engine's."""
    from opd_bench.world.ocr import make_engine, read_one

    rng = np.random.default_rng(3)
    ev = get_task("ocr").prompts("test")[:24]
    images = (_images([scene_for_record(r, rng) for r in ev]) * 255).permute(0, 2, 3, 1).numpy()
    noisy = np.clip(images + rng.normal(0, 60, images.shape), 0, 255)
    images = np.concatenate([images, noisy]).astype(np.uint8)
    off = make_engine(**{"EngineConfig.onnxruntime.enable_cpu_mem_arena": False})
    reads = [read_one(i) for i in images]
    assert reads == [read_one(i, off) for i in images]
    assert sum(bool(r) for r in reads) > len(ev)   # most images are read at all (the comparison means something)
