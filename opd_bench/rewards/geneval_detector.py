"""GenEval with a real object detector: a transformers detection model (DETR, Conditional/Deformable DETR,
RT-DETR, ... anything ``AutoModelForObjectDetection`` loads) from a local folder, then GenEval's rules
(:func:`opd_bench.tasks.geneval_rules.evaluate`) on its detections.

Follows GenEval's ``evaluate_images.py`` where it can: score threshold 0.3 (0.9 for ``counting`` prompts), at
most 16 objects per class. Differences, by necessity: GenEval's detector is an mmdet Mask2Former and its colour
classifier is CLIP on the masked object; here the colour is the nearest GenEval colour name to the mean colour
of the central half of the box crop (HSV rules in :func:`classify_color`).
Detections use the embedded world's :class:`~opd_bench.world.parser.Detection` (class name in ``shape``,
area as a fraction of the image, box in pixels), so the rule engine sees the same form from both worlds.
"""
from __future__ import annotations

import colorsys
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from ..errors import CheckpointError
from ..tasks.geneval_rules import Verdict, evaluate
from ..world import to_uint8
from ..world.parser import Detection
from .common import Record, RewardModel, require_path

THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
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


class GenEvalDetector(RewardModel):
    """``model(images, records)`` = GenEval partial credit in [0, 1] (1 iff correct); :meth:`metrics` adds the
    binary GenEval score. Records are GenEval metadata records (``tag``, ``include``, ``exclude``)."""

    def __init__(self, folder, device="cpu", batch_size: int = 8, threshold: float = THRESHOLD,
                 counting_threshold: float = COUNTING_THRESHOLD, max_objects: int = MAX_OBJECTS,
                 aliases: Optional[Mapping[str, str]] = None):
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        expected = "a transformers object-detection folder (config.json, weights, preprocessor_config.json)"
        folder = require_path(folder, "GenEval detector", expected)
        require_path(folder / "config.json", "GenEval detector", expected)
        require_path(folder / "preprocessor_config.json", "GenEval detector image processor", expected)
        try:
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

    # ---- detection ----------------------------------------------------------------------------------------
    def _threshold(self, record: Record) -> float:
        return self.counting_threshold if not isinstance(record, str) and record.get("tag") == "counting" \
            else self.threshold

    @torch.no_grad()
    def detect(self, images: torch.Tensor, thresholds: Sequence[float]) -> List[List[Detection]]:
        """Detections per image (score >= its threshold, at most ``max_objects`` per class, best first)."""
        h, w = images.shape[-2:]
        inputs = self.processor(images=list(images.float().cpu()), return_tensors="pt", do_rescale=False)
        outputs = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
        results = self.processor.post_process_object_detection(outputs, threshold=min(thresholds),
                                                               target_sizes=[(h, w)] * len(images))
        pixels = to_uint8(images)
        return [self._detections(res, thr, img) for res, thr, img in zip(results, thresholds, pixels)]

    def _detections(self, res: dict, threshold: float, image: np.ndarray) -> List[Detection]:
        h, w = image.shape[:2]
        per_class: Dict[str, int] = {}
        out = []
        for i in torch.argsort(res["scores"], descending=True).tolist():
            if float(res["scores"][i]) < threshold:
                continue
            name = self.labels.get(int(res["labels"][i]), str(int(res["labels"][i])))
            if per_class.get(name, 0) >= self.max_objects:
                continue
            x0, y0, x1, y1 = _clip_box(res["boxes"][i].tolist(), w, h)
            per_class[name] = per_class.get(name, 0) + 1
            out.append(Detection(shape=name, color=classify_color(image[y0:y1, x0:x1]), cx=(x0 + x1) / 2 / w,
                                 cy=(y0 + y1) / 2 / h, area=(x1 - x0) * (y1 - y0) / (w * h), bbox=(x0, y0, x1, y1)))
        return out

    # ---- GenEval ------------------------------------------------------------------------------------------
    def judge(self, images: torch.Tensor, records: Sequence[Record]) -> List[Verdict]:
        dets = []
        for i in range(0, len(images), self.batch_size):
            recs = records[i:i + self.batch_size]
            dets += self.detect(images[i:i + self.batch_size], [self._threshold(r) for r in recs])
        return [evaluate(d, r) for d, r in zip(dets, records)]

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
