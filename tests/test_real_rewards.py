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
from opd_bench.scoring.geneval_rules import judge_detections
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
        "clipscore": CLIPScore(hf_clip_folder),
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
    assert torch.allclose(cs(images, PROMPTS[:2]), 2.5 * cos.clamp_min(0), atol=1e-5)
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
    colored = [{"prompt": "a red cat", "tag": "colors", "include": [{"class": c, "count": 1, "color": "red"}]}
               for c in ("cat", "dog", "car", "computer mouse", "cat")]
    dets = det.detect(images, colored)
    assert len(dets) == 5 and all(isinstance(d, Detection) for ds in dets for d in ds)
    assert any(dets) and all(0 < d.area <= 1 for ds in dets for d in ds)
    assert all(d.color in GENEVAL_COLORS for ds, r in zip(dets, colored) for d in ds
               if d.shape == r["include"][0]["class"])            # colours only where the prompt asks one
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
    assert judge_detections(dets, pos).correct
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


# ------------------------------------------------------------------------------------------- reference formulas
# Each score recomputed here from the reference code's own equations -- uint8 PIL images, PIL bicubic resize of
# the short side, centre crop, /255, CLIP normalisation, the model's projections, the published formula --
# without the suite's preprocessing or scoring code, on tiny random weights.

OPENAI_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
OPENAI_STD = np.array([0.26862954, 0.26130258, 0.27577711])


def _reference_pil_pixels(pil, size: int) -> torch.Tensor:
    """CLIP's transform: bicubic resize of the short side to ``size``, centre crop, /255, normalise."""
    from PIL import Image

    w, h = pil.size
    nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    pil = pil.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    x = np.asarray(pil.crop((left, top, left + size, top + size)), dtype=np.float64) / 255.0
    return torch.from_numpy(((x - OPENAI_MEAN) / OPENAI_STD).transpose(2, 0, 1)).float()


def _reference_pixels(images: torch.Tensor, size: int) -> torch.Tensor:
    from PIL import Image

    return torch.stack([_reference_pil_pixels(Image.fromarray(   # Flow-GRPO: rounded to uint8 first
        (img.permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)), size) for img in images])


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def _hf_embeddings(folder, images, prompts):
    """transformers CLIP: vision pooler -> visual_projection; text pooler (EOS token) -> text_projection."""
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(str(folder)).eval()
    tok = AutoTokenizer.from_pretrained(str(folder))
    with torch.no_grad():
        pix = _reference_pixels(images, model.config.vision_config.image_size)
        img = model.visual_projection(model.vision_model(pixel_values=pix).pooler_output)
        t = tok(prompts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
        txt = model.text_projection(model.text_model(input_ids=t.input_ids, attention_mask=t.attention_mask)
                                    .pooler_output)
    return model, _unit(img), _unit(txt)


REF_IMAGES = [_images(5, 40, seed=3), torch.rand(5, 3, 48, 40, generator=torch.Generator().manual_seed(4))]


@pytest.mark.parametrize("images", REF_IMAGES, ids=["square", "portrait"])
def test_pickscore_matches_reference(scorers, hf_clip_folder, images):
    """PickScore's README: logit_scale.exp() * (text_embs @ image_embs.T) on L2-normalised CLIP embeddings."""
    model, img, txt = _hf_embeddings(hf_clip_folder, images, PROMPTS)
    ref = model.logit_scale.exp().detach() * (img * txt).sum(-1)
    assert torch.allclose(scorers["pickscore"](images, PROMPTS), ref, atol=1e-4)


@pytest.mark.parametrize("images", REF_IMAGES, ids=["square", "portrait"])
def test_clipscore_matches_reference(scorers, hf_clip_folder, images):
    """Hessel et al.: CLIP-S = 2.5 * max(cos(E_image, E_text), 0)."""
    _, img, txt = _hf_embeddings(hf_clip_folder, images, PROMPTS)
    ref = 2.5 * (img * txt).sum(-1).clamp_min(0)
    got = scorers["clipscore"](images, PROMPTS)
    assert (ref > 0).any() and torch.allclose(got, ref, atol=1e-4)


@pytest.mark.parametrize("images", REF_IMAGES, ids=["square", "portrait"])
def test_laion_aesthetic_matches_reference(scorers, hf_clip_folder, aesthetic_head, images):
    """improved-aesthetic-predictor: MLP(normalized(CLIP image embedding)), the linear layers 0, 2, 4, 6, 7 of
    the released state dict applied in order (dropout is the identity at inference, no activations)."""
    from safetensors.torch import load_file

    _, img, _ = _hf_embeddings(hf_clip_folder, images, PROMPTS)
    w = load_file(str(aesthetic_head))
    x = img
    for i in (0, 2, 4, 6, 7):
        x = x @ w[f"layers.{i}.weight"].T + w[f"layers.{i}.bias"]
    assert torch.allclose(scorers["aesthetic"](images, PROMPTS), x.squeeze(-1), atol=1e-4)


@pytest.mark.parametrize("images", REF_IMAGES, ids=["square", "portrait"])
def test_hpsv2_matches_reference(scorers, open_clip_files, images):
    """HPSv2's scorer: preprocess_val (bicubic resize, centre crop, ToTensor, normalise), the model's
    normalised image and text features, score = diagonal of image_features @ text_features.T."""
    import open_clip
    from safetensors.torch import load_file

    config_file, weights = open_clip_files
    open_clip.add_model_config(config_file)
    model = open_clip.create_model(config_file.stem).eval()
    model.load_state_dict(load_file(str(weights)))
    tok = open_clip.get_tokenizer(config_file.stem)
    with torch.no_grad():
        img = _unit(model.encode_image(_reference_pixels(images, 32)))
        txt = _unit(model.encode_text(tok(PROMPTS)))
    ref = torch.diagonal(img @ txt.T)
    assert torch.allclose(scorers["hpsv2"](images, PROMPTS), ref, atol=1e-4)


def _levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def _flow_grpo_ocr(recognized: str, prompt: str) -> float:
    """Flow-GRPO's ocr.py: spaces removed, lower case; distance 0 if the target is contained, else the
    Levenshtein distance, capped at len(target); reward 1 - dist / len(target)."""
    recognized, prompt = recognized.replace(" ", "").lower(), prompt.replace(" ", "").lower()
    dist = 0 if prompt in recognized else _levenshtein(recognized, prompt)
    return 1 - min(dist, len(prompt)) / len(prompt)


def test_ocr_matches_reference():
    from opd_bench.scoring.ocr_score import ocr_score

    pairs = [("HELLO", "hello"), ("he llo world", "Hello"), ("HELO", "hello"), ("", "open"), ("xyzzy", "ab"),
             ("STOPP", "stop sign"), ("Caf", "cafe"), ("OPEN 24h", "open 24H")]
    for reading, target in pairs:
        assert abs(ocr_score(reading, target) - _flow_grpo_ocr(reading, target)) < 1e-4, (reading, target)
    model = OCRReward(det_side=960)
    images = torch.stack([_text_image("OPEN"), _text_image("CAFE")])
    prompts = ['a shop sign that says "OPEN"', 'a sign reading "Cafe Bar"']
    readings = model.read(images)
    ref = torch.tensor([_flow_grpo_ocr(r, p.split('"')[1]) for r, p in zip(readings, prompts)])
    got = model(images, prompts)
    assert torch.allclose(got, ref, atol=1e-4) and got[0] == 1.0 and 0 < got[1] < 1


# ------------------------------------------------------------------------------------------- GenEval protocol

@pytest.fixture(scope="session")
def mask2former_folder(tmp_path_factory):
    """A tiny random Mask2Former (Swin backbone) instance-segmentation model with a PIL image processor."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor
    from transformers import SwinConfig

    labels = {0: "cat", 1: "dog", 2: "bench"}
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = Mask2FormerConfig(backbone_config=backbone, feature_size=32, mask_feature_size=32, hidden_dim=32,
                            encoder_feedforward_dim=64, dim_feedforward=64, encoder_layers=1, decoder_layers=2,
                            num_attention_heads=2, num_queries=12, num_labels=3, id2label=labels,
                            label2id={v: k for k, v in labels.items()})
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("m2f") / "mask2former"
    Mask2FormerForUniversalSegmentation(cfg).save_pretrained(str(folder))
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}, size_divisor=32).save_pretrained(str(folder))
    return folder


def test_mask2former_instances_follow_mmdet():
    """Scores = top-k softmax class probabilities (no-object column dropped) x mean mask probability inside the
    binary mask; boxes = the mask's extent (x1, y1 exclusive)."""
    from opd_bench.rewards.geneval_detector import mask2former_instances

    g = torch.Generator().manual_seed(0)
    cls, masks = torch.randn(6, 4, generator=g), torch.randn(6, 20, 24, generator=g)
    scores, labels, binary, boxes = mask2former_instances(cls, masks, max_per_image=5)
    probs = torch.softmax(cls, -1)[:, :3]
    top = sorted(((probs[q, c].item(), q, c) for q in range(6) for c in range(3)), reverse=True)[:5]
    ref = []
    for p, q, c in top:
        m = masks[q] > 0
        ref.append((p * (masks[q].sigmoid() * m).sum().item() / (m.sum().item() + 1e-6), c, q))
    ref.sort(reverse=True)
    assert torch.allclose(scores, torch.tensor([r[0] for r in ref]), atol=1e-6)
    assert labels.tolist() == [r[1] for r in ref]
    for (_, _, q), box in zip(ref, boxes):
        ys, xs = torch.where(masks[q] > 0)
        assert box.tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def test_geneval_relative_position_is_genevals():
    """The rule engine's relation test equals GenEval's numpy relative_position on random boxes."""
    from opd_bench.scoring.geneval_rules import relative_position

    def geneval(a, b, threshold=0.1):
        boxes = np.array([a, b])[:, :4].reshape(2, 2, 2)
        center_a, center_b = boxes.mean(axis=-2)
        dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
        offset = center_a - center_b
        revised = np.maximum(np.abs(offset) - threshold * (dim_a + dim_b), 0) * np.sign(offset)
        if np.all(np.abs(revised) < 1e-3):
            return set()
        dx, dy = revised / np.linalg.norm(offset)
        return {r for r, ok in (("left of", dx < -0.5), ("right of", dx > 0.5), ("above", dy < -0.5),
                                ("below", dy > 0.5)) if ok}

    rng = np.random.default_rng(0)
    for _ in range(300):
        a, b = [np.sort(rng.uniform(0, 100, (2, 2)), axis=0).T.reshape(-1)[[0, 2, 1, 3]] for _ in range(2)]
        assert relative_position(a, b) == geneval(a, b)


def test_clip_color_classifier_is_genevals(open_clip_files):
    """Colour = argmax of 100 * cos(CLIP(object on grey through its mask, cropped to its box), mean of the three
    normalised template embeddings, renormalised), recomputed here from GenEval's code path."""
    import open_clip
    from PIL import Image
    from safetensors.torch import load_file

    from opd_bench.rewards.clip_models import OpenCLIP
    from opd_bench.rewards.geneval_detector import COLOR_TEMPLATES, CLIPColorClassifier

    config_file, weights = open_clip_files
    clf = CLIPColorClassifier(OpenCLIP("x", weights, "colour CLIP", config_file))
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    mask = np.zeros((40, 48), dtype=bool)
    mask[5:30, 10:40] = rng.random((25, 30)) > 0.3
    objects = [([10.0, 5.0, 40.0, 30.0], mask), ([0.0, 0.0, 20.0, 20.0], None)]
    got = clf.logits(image, objects, "bench")

    model = open_clip.create_model(config_file.stem).eval()
    model.load_state_dict(load_file(str(weights)))
    tok = open_clip.get_tokenizer(config_file.stem)
    with torch.no_grad():
        cols = []
        for c in GENEVAL_COLORS:
            e = _unit(model.encode_text(tok([t.format(c=c, cls="bench") for t in COLOR_TEMPLATES])))
            cols.append(_unit(e.mean(0)))
        w = torch.stack(cols, 1)
        crops = []
        for box, m in objects:
            im = image if m is None else Image.composite(image, Image.new("RGB", image.size, "#999"),
                                                         Image.fromarray(m.astype(np.uint8) * 255))
            crops.append(_reference_pil_pixels(im.crop(tuple(box)), 32))
        ref = 100 * _unit(model.encode_image(torch.stack(crops))) @ w
    assert torch.allclose(got, ref, atol=1e-4)
    assert clf(image, objects, "bench") == [GENEVAL_COLORS[i] for i in ref.argmax(1).tolist()]


def test_geneval_mask2former_detector(mask2former_folder, open_clip_files):
    config_file, weights = open_clip_files
    det = GenEvalDetector(mask2former_folder, threshold=0.0, counting_threshold=0.0, max_objects=2,
                          color_clip=weights, clip_config_file=config_file, batch_size=2)
    assert det.segmenter and det.colors is not None
    images = _images(3, size=40)
    recs = [{"prompt": "a red cat", "tag": "colors", "include": [{"class": "cat", "count": 1, "color": "red"}]},
            {"prompt": "a dog left of a bench", "tag": "position",
             "include": [{"class": "bench", "count": 1}, {"class": "dog", "count": 1, "position": ["left of", 0]}]},
            {"prompt": "two cats", "tag": "counting", "include": [{"class": "cat", "count": 2}],
             "exclude": [{"class": "cat", "count": 3}]}]
    dets = det.detect(images, recs)
    assert any(dets)
    for ds, rec in zip(dets, recs):
        by = {}
        for d in ds:
            by.setdefault(d.shape, []).append(d)
            x0, y0, x1, y1 = d.bbox
            assert 0 <= x0 < x1 <= 40 and 0 <= y0 < y1 <= 40 and d.score > 0
            assert (d.color in GENEVAL_COLORS) == (rec["tag"] == "colors" and d.shape == "cat")
        assert all(len(v) <= 2 and [d.score for d in v] == sorted((d.score for d in v), reverse=True)
                   for v in by.values())
    credit = det(images, recs)
    assert credit.shape == (3,) and ((credit >= 0) & (credit <= 1)).all()
    strict = GenEvalDetector(mask2former_folder)                    # GenEval's 0.3 / 0.9: a random model finds
    assert all(d.score > 0.3 for ds in strict.detect(images, recs) for d in ds)   # nothing, or only confident
