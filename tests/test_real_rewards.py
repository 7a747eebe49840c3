"""Real reward models on tiny random models of the real classes, saved locally (no downloads)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from opd_bench.errors import UserError
from opd_bench.rewards import AsyncReward, RewardWeightsMissing
from opd_bench.rewards.aesthetic import LAIONAesthetic, laion_head
from opd_bench.rewards.clipscore import CLIPScore
from opd_bench.rewards.geneval_detector import GENEVAL_COLORS, GenEvalDetector, classify_color
from opd_bench.rewards.geneval_metadata import load_geneval_metadata
from opd_bench.rewards.hpsv2 import HPSv2
from opd_bench.rewards.ocr import OCRReward, target_text
from opd_bench.rewards.pickscore import PickScore
from opd_bench.tasks.geneval_rules import evaluate
from opd_bench.world.parser import Detection

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PROMPTS = ["a photo of a cat", "a red car", "two dogs", "a blue bench", "a photo of a cow"]


def _images(n=5, size=40, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def open_clip_files(tmp_path_factory):
    """A tiny open_clip architecture (config JSON) and its random weights as safetensors."""
    import open_clip
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("openclip")
    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    config_file = d / "tiny-openclip-test.json"
    config_file.write_text(json.dumps(cfg))
    open_clip.add_model_config(config_file)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-openclip-test")
    weights = d / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return config_file, weights


@pytest.fixture(scope="session")
def aesthetic_head(tmp_path_factory):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    head = laion_head(16)
    path = tmp_path_factory.mktemp("aes") / "head.safetensors"
    save_file({f"layers.{k}": v.contiguous() for k, v in head.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="session")
def detr_folder(tmp_path_factory):
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    torch.manual_seed(0)
    labels = {0: "cat", 1: "dog", 2: "car", 3: "mouse"}
    cfg = DetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False,
        backbone_config=ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                                     out_features=["stage2"]),
        d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=10, id2label=labels,
        label2id={v: k for k, v in labels.items()})
    folder = tmp_path_factory.mktemp("detr") / "detr"
    DetrForObjectDetection(cfg).save_pretrained(str(folder))
    DetrImageProcessor(size={"shortest_edge": 48, "longest_edge": 48}).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def scorers(hf_clip_folder, open_clip_files, aesthetic_head):
    config_file, weights = open_clip_files
    return {
        "pickscore": PickScore(hf_clip_folder),
        "hpsv2": HPSv2(weights, config_file=config_file),
        "clipscore": CLIPScore(weights, config_file=config_file),
        "aesthetic": LAIONAesthetic(hf_clip_folder, aesthetic_head),
    }


# ------------------------------------------------------------------------------------------- CLIP family

@pytest.mark.parametrize("name", ["pickscore", "hpsv2", "clipscore", "aesthetic"])
def test_scores_shape_and_batching(scorers, name):
    model = scorers[name]
    images = _images()
    model.batch_size = 4
    batched = model(images, PROMPTS)
    model.batch_size = 1
    single = model(images, [{"prompt": p} for p in PROMPTS])        # records or strings alike
    model.batch_size = 16
    assert batched.shape == (5,) and batched.dtype == torch.float32 and torch.isfinite(batched).all()
    assert torch.allclose(batched, single, atol=1e-5)
    if name != "clipscore":   # (a random CLIP may give cos < 0 everywhere -> CLIPScore 0)
        assert batched.std() > 0                                    # depends on the image


def test_score_definitions(scorers):
    images = _images(2)
    ps, hps, cs = scorers["pickscore"], scorers["hpsv2"], scorers["clipscore"]
    with torch.no_grad():
        cos = (ps.clip.image_features(images) * ps.clip.text_features(PROMPTS[:2])).sum(-1)
        assert torch.allclose(ps(images, PROMPTS[:2]), ps.clip.logit_scale * cos, atol=1e-5)
        cos_oc = (hps.clip.image_features(images) * hps.clip.text_features(PROMPTS[:2])).sum(-1)
    assert torch.allclose(hps(images, PROMPTS[:2]), cos_oc, atol=1e-5)
    assert torch.allclose(cs(images, PROMPTS[:2]), 2.5 * cos_oc.clamp_min(0), atol=1e-5)
    assert hps(images, PROMPTS[:2]).abs().max() <= 1.0
    assert not torch.allclose(ps(images, ["a cat", "a cat"]), ps(images, ["a dog", "a dog"]))


def test_missing_weights_one_clear_line(tmp_path, hf_clip_folder, aesthetic_head):
    missing = tmp_path / "nowhere"
    cases = [lambda: PickScore(missing), lambda: HPSv2(missing), lambda: CLIPScore(missing),
             lambda: LAIONAesthetic(missing, aesthetic_head), lambda: LAIONAesthetic(hf_clip_folder, missing),
             lambda: GenEvalDetector(missing)]
    for make in cases:
        with pytest.raises(RewardWeightsMissing) as e:
            make()
        msg = str(e.value)
        assert "\n" not in msg and str(missing) in msg and "expected" in msg and isinstance(e.value, UserError)


def test_async_wrapper_returns_same_scores(scorers):
    model = scorers["pickscore"]
    a, b = _images(3, seed=1), _images(3, seed=2)
    with AsyncReward(model) as server:
        fa, fb = server.submit(a, PROMPTS[:3]), server.submit(b, PROMPTS[:3])
        assert torch.equal(fa.result(), model(a, PROMPTS[:3]))
        assert torch.equal(fb.result(), model(b, PROMPTS[:3]))
        assert torch.equal(server(a, PROMPTS[:3]), model(a, PROMPTS[:3]))


# ------------------------------------------------------------------------------------------- OCR

def _text_image(text: str, size: int = 256) -> torch.Tensor:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=48)
    except TypeError:  # old Pillow
        font = ImageFont.load_default()
    draw.text((20, size // 2 - 30), text, fill="black", font=font)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255


def test_ocr_reward_reads_rendered_text():
    reward = OCRReward()
    images = torch.stack([_text_image("HELLO"), torch.ones(3, 256, 256)])
    records = [{"prompt": 'a sign that says "HELLO"'}, 'a sign that says "HELLO"']
    scores = reward(images, records)
    assert scores.shape == (2,)
    assert scores[0] >= 0.8 and scores[1] == 0.0
    assert target_text({"prompt": "x", "text": "AB"}) == "AB"
    assert target_text('a cup with “Good Morning” on it') == "Good Morning"
    with pytest.raises(ValueError, match="quoted"):
        target_text("no quotes")


# ------------------------------------------------------------------------------------------- GenEval

def test_classify_color_names():
    swatch = lambda rgb: np.full((8, 8, 3), rgb, np.uint8)  # noqa: E731
    cases = {(220, 20, 20): "red", (250, 140, 0): "orange", (240, 230, 20): "yellow", (20, 180, 40): "green",
             (20, 40, 220): "blue", (130, 30, 200): "purple", (250, 150, 170): "pink", (120, 70, 20): "brown",
             (10, 10, 10): "black", (245, 245, 245): "white"}
    for rgb, name in cases.items():
        assert classify_color(swatch(rgb)) == name, (rgb, name)
    assert set(cases.values()) == set(GENEVAL_COLORS)


def test_geneval_detector(detr_folder):
    det = GenEvalDetector(detr_folder, threshold=0.0, counting_threshold=0.0, batch_size=4)
    assert "computer mouse" in det.labels.values()                  # COCO label aliased to GenEval's name
    images = _images(5, size=48)
    records = [{"prompt": "a photo of a cat", "tag": "single_object", "include": [{"class": "cat", "count": 1}]}] * 5
    dets = det.detect(images, [0.0] * 5)
    assert len(dets) == 5 and all(isinstance(d, Detection) for ds in dets for d in ds)
    assert any(dets) and all(d.color in GENEVAL_COLORS and 0 < d.area <= 1 for ds in dets for d in ds)
    batched = det(images, records)
    det.batch_size = 1
    assert torch.equal(batched, det(images, records))
    assert batched.shape == (5,) and ((batched >= 0) & (batched <= 1)).all()
    m = det.metrics(images, records)
    assert set(m) == {"score", "credit"} and torch.equal(m["credit"], batched)
    strict = GenEvalDetector(detr_folder, threshold=1.01)           # nothing passes: no cat found
    assert torch.all(strict(images, records) == 0)


# ------------------------------------------------------------------------------------------- metadata

#: every 7th row of GenEval's evaluation_metadata.jsonl, shipped with the tests (MIT, tests/data/geneval/LICENSE)
GENEVAL_SAMPLE = Path(__file__).resolve().parent / "data" / "geneval" / "evaluation_metadata_sample.jsonl"


def test_geneval_metadata_loader():
    """On the sample shipped with the tests; also on the full shared files where a machine has them."""
    recs = load_geneval_metadata(GENEVAL_SAMPLE)
    assert len(recs) == 79
    if (SHARED_DATA / "geneval").is_dir():
        assert len(load_geneval_metadata()) == 553
    assert {r["tag"] for r in recs} == {"single_object", "two_object", "counting", "colors", "position", "color_attr"}
    assert all(isinstance(r["prompt"], str) and r["include"] for r in recs)
    pos = next(r for r in recs if r["tag"] == "position")
    a, b = pos["include"][0]["class"], pos["include"][1]["class"]
    rel = pos["include"][1]["position"][0]
    boxes = {"left of": ((60, 40, 90, 70), (0, 40, 30, 70)), "right of": ((0, 40, 30, 70), (60, 40, 90, 70)),
             "above": ((40, 60, 70, 90), (40, 0, 70, 30)), "below": ((40, 0, 70, 30), (40, 60, 70, 90))}[rel]
    dets = [Detection(a, "red", 0, 0, 0.1, boxes[0]), Detection(b, "red", 0, 0, 0.1, boxes[1])]
    assert evaluate(dets, pos).correct
    flow = SHARED_DATA / "flow_grpo" / "geneval" / "test_metadata.jsonl"
    if flow.is_file():
        assert len(load_geneval_metadata(flow)) == 2212


def test_geneval_metadata_errors(tmp_path):
    with pytest.raises(UserError, match="GenEval metadata not found"):
        load_geneval_metadata(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a cat", "tag": "single_object", "include": [{"class": "cat", "count": 1}]}\n'
                   '{"prompt": "x", "tag": "nope", "include": []}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: invalid GenEval record"):
        load_geneval_metadata(bad)
