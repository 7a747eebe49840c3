"""OCR reward for real images: RapidOCR (PP-OCR, bundled in the wheel) + Flow-GRPO's reward
``1 - min(edit_distance, len(target)) / len(target)`` (spaces removed, case ignored; see
:func:`opd_bench.scoring.ocr_score.ocr_score`, shared with the embedded world's OCR task).

The embedded world's wrapper (:mod:`opd_bench.world.ocr`) is reused for image preparation (upscaling of tiny
images, border); the engine differs only in the detector's input side: real 512-1024 px images keep
``det_side`` = 960 (PaddleOCR's default limit, as Flow-GRPO) instead of the world's 256 px.
The target text is the record's ``text`` or else the first quoted span of the prompt (Flow-GRPO's OCR prompts).
"""
from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import List, Sequence

import numpy as np
import torch

from ..scoring.ocr_score import ocr_score
from ..world import to_uint8
from ..world.ocr import _prepare
from .common import Record, RewardModel

_QUOTED = re.compile(r"[\"“”]([^\"“”]+)[\"“”]")


def target_text(record: Record) -> str:
    """The text an image must show: ``record["text"]`` or the prompt's first quoted span."""
    if not isinstance(record, str) and record.get("text") is not None:
        return str(record["text"])
    prompt = record if isinstance(record, str) else record["prompt"]
    m = _QUOTED.search(prompt)
    if not m:
        raise ValueError(f"OCR prompt without a quoted target text: {prompt!r}")
    return m.group(1)


@lru_cache(maxsize=4)
def _engine(det_side: int):
    from rapidocr import RapidOCR

    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return RapidOCR(params={
        "Global.use_cls": False, "Global.log_level": "error", "Det.limit_side_len": det_side,
        "Det.limit_type": "max", "EngineConfig.onnxruntime.intra_op_num_threads": 1,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    })


def read_image(image: np.ndarray, det_side: int = 960) -> str:
    """All text in one HxWx3 uint8 image, boxes ordered left to right, spaces removed."""
    res = _engine(det_side)(_prepare(image))
    if res.txts is None or res.boxes is None:
        return ""
    order = np.argsort([float(np.mean(np.asarray(b)[:, 0])) for b in res.boxes])
    return "".join(res.txts[i] for i in order).replace(" ", "")


class OCRReward(RewardModel):
    def __init__(self, det_side: int = 960, batch_size: int = 16):
        self.det_side, self.batch_size = int(det_side), batch_size

    def read(self, images: torch.Tensor) -> List[str]:
        return [read_image(img, self.det_side) for img in to_uint8(images)]

    def score_batch(self, images: torch.Tensor, records: Sequence[Record]) -> torch.Tensor:
        return torch.tensor([ocr_score(r, target_text(rec)) for r, rec in zip(self.read(images), records)],
                            dtype=torch.float32)
