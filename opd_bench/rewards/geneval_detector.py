"""GenEval with a real detector, following GenEval's ``evaluate_images.py``:

- **detector**: a transformers Mask2Former instance-segmentation model (``Mask2FormerForUniversalSegmentation``,
  e.g. ``facebook/mask2former-swin-small-coco-instance``, GenEval's architecture) decoded as mmdet's Mask2Former
  instance head does (:func:`mask2former_instances`: softmax class scores over the queries' top-k, times the
  mean mask probability inside the binary mask, boxes = the masks' extents). Any ``AutoModelForObjectDetection``
  folder (DETR, RT-DETR, ...) works too, with boxes and no masks;
- **GenEval's thresholds**: score > 0.3 (> 0.9 for ``counting`` prompts), at most 16 objects per class, ranked
  by score, no NMS (GenEval's NMS threshold is 1.0);
- **colour**: CLIP zero-shot classification of each object as GenEval does (:class:`CLIPColorClassifier`: the
  object pasted on a grey #999 background through its mask, cropped to its box, CLIP's transform; 10 colour
  classes from three templates); without a colour CLIP (``color_clip``) a documented HSV fallback
  (:func:`classify_color`) is used instead -- not GenEval's;
- **rules**: GenEval's (:mod:`opd_bench.scoring.geneval_rules`: counts, colours, its position rule with the 0.1
  margin), shared with the embedded world.

Where it still differs from the official evaluator (mmdet 2.x Mask2Former Swin-S checkpoint + open_clip
ViT-L-14 "openai"): the detector runs in transformers, so the input pipeline differs (the image processor's
resize / padding to a multiple of 32 instead of mmdet's test pipeline, and masks are upsampled bilinearly from the
processor's padded size back to the image), and the checkpoint is the transformers port of a Mask2Former, not
GenEval's mmdet weights: scores are close to, not identical with, official GenEval numbers. Report them as
"GenEval (transformers Mask2Former)"; a DETR or the HSV colour fallback is further away still.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CheckpointError
from ..scoring.geneval_rules import Verdict, judge_detections
from ..world import to_uint8
from ..world.parser import Detection
from .common import Record, RewardModel, require_path, to_pil

THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
#: mmdet's Mask2Former test config: instances kept per image before GenEval's thresholds.
MAX_PER_IMAGE = 100
#: GenEval's colour templates ({c} = colour, {cls} = the object's class) and crop background.
COLOR_TEMPLATES = ("a photo of a {c} {cls}", "a photo of a {c}-colored {cls}", "a photo of a {c} object")
BACKGROUND = "#999"
GENEVAL_COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
#: COCO label names of transformers' detectors -> GenEval's class names where they differ.
DEFAULT_ALIASES = {"mouse": "computer mouse", "remote": "tv remote", "keyboard": "computer keyboard"}
#: hue bands (degrees, upper bounds) of the chromatic colours.
_HUES = ((15, "red"), (40, "orange"), (70, "yellow"), (170, "green"), (260, "blue"), (290, "purple"),
         (340, "pink"), (360, "red"))


def classify_color(crop: np.ndarray) -> str:
    """GenEval colour name of an object crop (HxWx3 uint8): mean colour of its central half, then black / white
    by value and saturation, brown for dark oranges, pink for light reds, otherwise the hue band."""
    h, w = crop.shape[:2]
    centre = crop[h // 4: max(h // 4 + 1, 3 * h // 4), w // 4: max(w // 4 + 1, 3 * w // 4)]
    r, g, b = centre.reshape(-1, 3).mean(0) / 255.0
    hue, sat, val = colorsys.rgb_to_hsv(r, g, b)
    hue *= 360
    if val < 0.2:
        return "black"
    if sat < 0.2:
        return "white" if val > 0.6 else "black"
    if 10 <= hue < 45 and val < 0.6:
        return "brown"
    if (hue >= 340 or hue < 15) and sat < 0.5 and val > 0.7:
        return "pink"
    return next(name for bound, name in _HUES if hue < bound)


@dataclass(frozen=True)
class ScoredDetection(Detection):
    """A detector's object: ranked by ``score`` in GenEval's rules (the embedded parser ranks by area)."""

    score: float = 0.0


def mask2former_instances(class_logits: torch.Tensor, mask_logits: torch.Tensor, max_per_image: int = MAX_PER_IMAGE):
    """mmdet's Mask2Former instance post-processing for one image: ``class_logits`` [Q, C+1] (last = no object),
    ``mask_logits`` [Q, H, W] at the image's size -> (scores [K], labels [K], binary masks [K, H, W], boxes
    [K, 4] as x0, y0, x1, y1 with x1/y1 exclusive), K = min(max_per_image, Q * C), best first."""
    q, c1 = class_logits.shape
    c = c1 - 1
    probs = class_logits.softmax(-1)[:, :-1].flatten()
    k = min(max_per_image, probs.numel())
    scores, idx = probs.topk(k)
    labels, query = idx % c, idx // c
    logits = mask_logits[query]
    masks = logits > 0
    mask_score = (logits.sigmoid() * masks).flatten(1).sum(1) / (masks.flatten(1).sum(1) + 1e-6)
    scores = scores * mask_score
    boxes = torch.zeros((k, 4))
    xs, ys = masks.any(1), masks.any(2)
    for j in range(k):
        x, y = torch.where(xs[j])[0], torch.where(ys[j])[0]
        if len(x) and len(y):
            boxes[j] = torch.tensor([x[0], y[0], x[-1] + 1, y[-1] + 1], dtype=torch.float32)
    order = torch.argsort(scores, descending=True)
    return scores[order], labels[order], masks[order], boxes[order]


class CLIPColorClassifier:
    """GenEval's colour classifier: CLIP zero-shot over GENEVAL_COLORS with three templates per colour (text
    embeddings normalised, averaged, normalised: clip_benchmark's ``zero_shot_classifier``), on the object pasted
    through its mask onto a grey background and cropped to its box; logits = 100 * cos."""

    def __init__(self, clip, background: str = BACKGROUND):
        self.clip, self.background = clip, background   # an OpenCLIP (model, tokenizer, preprocess)
        self._weights: Dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def weights(self, classname: str) -> torch.Tensor:
        if classname not in self._weights:
            cols = []
            for color in GENEVAL_COLORS:
                texts = [t.format(c=color, cls=classname) for t in COLOR_TEMPLATES]
                emb = F.normalize(self.clip.model.encode_text(self.clip.tokenizer(texts).to(self.clip.device)), dim=-1)
                cols.append(F.normalize(emb.mean(0), dim=-1))
            self._weights[classname] = torch.stack(cols, dim=1)
        return self._weights[classname]

    def crop(self, image, box, mask: Optional[np.ndarray]):
        from PIL import Image

        if mask is not None:
            image = Image.composite(image, Image.new("RGB", image.size, color=self.background),
                                    Image.fromarray(mask.astype(np.uint8) * 255))
        return image.crop(tuple(float(v) for v in box[:4]))

    @torch.no_grad()
    def logits(self, image, objects: Sequence[Tuple[Sequence[float], Optional[np.ndarray]]], classname: str):
        pixels = torch.stack([self.clip.preprocess(self.crop(image, b, m)) for b, m in objects]).to(self.clip.device)
        feats = F.normalize(self.clip.model.encode_image(pixels), dim=-1)
        return 100.0 * feats @ self.weights(classname)

    def __call__(self, image, objects, classname: str) -> List[str]:
        return [GENEVAL_COLORS[i] for i in self.logits(image, objects, classname).argmax(1).tolist()]


class GenEvalDetector(RewardModel):
    """``model(images, records)`` = GenEval partial credit in [0, 1] (1 iff correct); :meth:`metrics` adds the
    binary GenEval score. Records are GenEval metadata records (``tag``, ``include``, ``exclude``).
    ``color_clip``: open_clip weights (``.safetensors``) of GenEval's colour CLIP (``clip_model_name``, default
    ViT-L-14; ``clip_config_file`` for a custom architecture); without it the HSV fallback names colours."""

    def __init__(self, folder, device="cpu", batch_size: int = 8, threshold: float = THRESHOLD,
                 counting_threshold: float = COUNTING_THRESHOLD, max_objects: int = MAX_OBJECTS,
                 aliases: Optional[Mapping[str, str]] = None, color_clip=None, clip_model_name: str = "ViT-L-14",
                 clip_config_file=None):
        from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection

        from .common import pil_image_processor

        expected = ("a transformers Mask2Former instance-segmentation (or object-detection) folder (config.json, "
                    "weights, preprocessor_config.json)")
        folder = require_path(folder, "GenEval detector", expected)
        require_path(folder / "config.json", "GenEval detector", expected)
        require_path(folder / "preprocessor_config.json", "GenEval detector image processor", expected)
        try:
            self.segmenter = AutoConfig.from_pretrained(str(folder), local_files_only=True).model_type == "mask2former"
            if self.segmenter:
                from transformers import Mask2FormerForUniversalSegmentation

                self.model = Mask2FormerForUniversalSegmentation.from_pretrained(str(folder), local_files_only=True)
                self.processor = pil_image_processor(folder)
            else:
                self.model = AutoModelForObjectDetection.from_pretrained(str(folder), local_files_only=True)
                self.processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot load the GenEval detector from {folder}: "
                                  f"{str(e).splitlines()[0][:200]}") from None
        self.device, self.batch_size = torch.device(device), batch_size
        self.model.to(self.device).eval()
        self.threshold, self.counting_threshold, self.max_objects = threshold, counting_threshold, max_objects
        aliases = dict(DEFAULT_ALIASES if aliases is None else aliases)
        self.labels: Dict[int, str] = {int(i): aliases.get(n, n) for i, n in self.model.config.id2label.items()}
        self.colors = None
        if color_clip:
            from .clip_models import OpenCLIP

            self.colors = CLIPColorClassifier(OpenCLIP(clip_model_name, color_clip, "GenEval colour CLIP",
                                                       clip_config_file, device))

    # ---- detection ----------------------------------------------------------------------------------------
    def _threshold(self, record: Record) -> float:
        return self.counting_threshold if not isinstance(record, str) and record.get("tag") == "counting" \
            else self.threshold

    @torch.no_grad()
    def instances(self, images: torch.Tensor):
        """Per image: (scores, labels, masks or None, boxes) of every candidate, best first."""
        h, w = images.shape[-2:]
        if not self.segmenter:
            inputs = self.processor(images=list(images.float().cpu()), return_tensors="pt", do_rescale=False)
            outputs = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
            res = self.processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=[(h, w)] * len(images))
            out = []
            for r in res:
                order = torch.argsort(r["scores"], descending=True)
                out.append((r["scores"][order].cpu(), r["labels"][order].cpu(), None, r["boxes"][order].cpu()))
            return out
        inputs = self.processor(images=to_pil(images), return_tensors="pt")
        outputs = self.model(pixel_values=inputs["pixel_values"].to(self.device),
                             pixel_mask=inputs["pixel_mask"].to(self.device))
        ph, pw = inputs["pixel_values"].shape[-2:]
        out = []
        for i in range(len(images)):
            valid = inputs["pixel_mask"][i]
            vh, vw = int(valid.any(1).sum()), int(valid.any(0).sum())
            logits = F.interpolate(outputs.masks_queries_logits[i:i + 1].float(), size=(ph, pw), mode="bilinear",
                                   align_corners=False)[..., :vh, :vw]
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)[0].cpu()
            out.append(mask2former_instances(outputs.class_queries_logits[i].float().cpu(), logits))
        return out

    def _detections(self, image: torch.Tensor, cand, record: Record) -> List[ScoredDetection]:
        """GenEval's selection: per class, score > threshold, best first, at most ``max_objects``; colours of the
        classes the record asks a colour of."""
        scores, labels, masks, boxes = cand
        h, w = image.shape[-2:]
        thr = self._threshold(record)
        per_class: Dict[str, list] = {}
        for j in range(len(scores)):
            name = self.labels.get(int(labels[j]), str(int(labels[j])))
            if float(scores[j]) > thr and len(per_class.setdefault(name, [])) < self.max_objects:
                per_class[name].append(j)
        wanted = {r["class"] for r in (record.get("include") or []) if r.get("color")} \
            if not isinstance(record, str) else set()
        pil = to_pil(image[None])[0] if wanted and self.colors is not None else None
        pixels = to_uint8(image[None])[0]
        out = []
        for name, idx in per_class.items():
            objs = [(boxes[j].tolist(), None if masks is None else masks[j].numpy()) for j in idx]
            if name in wanted and self.colors is not None:
                colors = self.colors(pil, objs, name)
            elif name in wanted:
                colors = [classify_color(pixels[y0:y1, x0:x1]) for x0, y0, x1, y1 in
                          (_clip_box(b, w, h) for b, _ in objs)]
            else:
                colors = [""] * len(objs)
            for j, (box, _), color in zip(idx, objs, colors):
                x0, y0, x1, y1 = box
                out.append(ScoredDetection(shape=name, color=color, cx=(x0 + x1) / 2 / w, cy=(y0 + y1) / 2 / h,
                                           area=(x1 - x0) * (y1 - y0) / (w * h), bbox=tuple(box),
                                           score=float(scores[j])))
        return out

    def detect(self, images: torch.Tensor, records: Sequence[Record]) -> List[List[ScoredDetection]]:
        return [self._detections(img, cand, rec) for img, cand, rec in zip(images, self.instances(images), records)]

    # ---- GenEval ------------------------------------------------------------------------------------------
    def judge(self, images: torch.Tensor, records: Sequence[Record]) -> List[Verdict]:
        dets = []
        for i in range(0, len(images), self.batch_size):
            dets += self.detect(images[i:i + self.batch_size], records[i:i + self.batch_size])
        return [judge_detections(d, r) for d, r in zip(dets, records)]

    def score_batch(self, images: torch.Tensor, records: Sequence[Record]) -> torch.Tensor:
        return torch.tensor([v.credit for v in self.judge(images, records)], dtype=torch.float32)

    def metrics(self, images: torch.Tensor, records: Sequence[Record]) -> Dict[str, torch.Tensor]:
        verdicts = self.judge(images, records)
        return {"score": torch.tensor([float(v.correct) for v in verdicts]),
                "credit": torch.tensor([v.credit for v in verdicts])}


def _clip_box(box: Sequence[float], w: int, h: int):
    """Integer pixel box inside the image, at least 1 px wide and high."""
    x0, y0 = min(max(int(box[0]), 0), w - 1), min(max(int(box[1]), 0), h - 1)
    x1, y1 = min(max(int(round(box[2])), x0 + 1), w), min(max(int(round(box[3])), y0 + 1), h)
    return x0, y0, x1, y1
