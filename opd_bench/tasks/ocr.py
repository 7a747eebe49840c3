"""OCR on the embedded world: render the quoted 1-3 character string of the prompt.

Prompts: ``tasks/ocr/{train,eval}.jsonl`` (``prompt`` with the quoted string, ``text`` = the target).
The image is read by RapidOCR (:func:`opd_bench.world.ocr.read_text`); the score is Flow-GRPO's OCR
reward (:func:`opd_bench.scoring.ocr_score.ocr_score`): spaces removed and case ignored, 1 if the target
occurs in the reading, else ``1 - min(edit_distance, len(target)) / len(target)`` (so in [0, 1]). ``reward`` = that score;
``metrics`` = ``score`` (the same) and ``exact`` (reading == target after normalisation, 0/1).
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch

from ..scoring.ocr_score import ocr_exact, ocr_score
from ..world import load_records, to_uint8
from ..world.ocr import read_text
from .base import PromptRecord, Task, register_task


def _readings(images: torch.Tensor, records: Sequence[PromptRecord]) -> List[str]:
    if len(images) != len(records):
        raise ValueError(f"{len(images)} images for {len(records)} records")
    return read_text(to_uint8(images))


@register_task("ocr")
class OCRTask(Task):
    primary_metric = "score"

    def prompts(self, split: str) -> List[PromptRecord]:
        return load_records("ocr", split)

    def reward(self, images: torch.Tensor, records: Sequence[PromptRecord]) -> torch.Tensor:
        return torch.tensor([ocr_score(r, rec["text"]) for r, rec in zip(_readings(images, records), records)],
                            dtype=torch.float32)

    def metrics(self, images: torch.Tensor, records: Sequence[PromptRecord]) -> Dict[str, torch.Tensor]:
        reads = _readings(images, records)
        return {"score": torch.tensor([ocr_score(r, rec["text"]) for r, rec in zip(reads, records)],
                                      dtype=torch.float32),
                "exact": torch.tensor([ocr_exact(r, rec["text"]) for r, rec in zip(reads, records)],
                                      dtype=torch.float32)}
