"""GenEval on the embedded world: six categories, GenEval's rules, judged by the world's scene parser.

Prompts: ``tasks/geneval/{train,eval}.jsonl`` in GenEval's metadata format (classes = shapes), written by
``opd-bench world prompts``. Each image is parsed into detections
(:func:`opd_bench.world.parser.parse`) and judged by :func:`opd_bench.scoring.geneval_rules.judge_detections`.

- ``metrics``: ``score`` = GenEval's binary per-prompt correctness (0/1); ``credit`` = the partial credit
  below. Per-category accuracy: :func:`per_category` on the records' ``tag``.
- ``reward`` (training): partial credit in [0, 1] = mean over the prompt's constraint terms (presence of
  each included class ``min(found, n)/n``, its colour, its relation, each exclusion); 1 iff correct.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Sequence

import torch

from ..scoring.geneval_rules import Verdict, judge_detections
from ..world import load_records, to_uint8
from ..world.parser import parse
from .base import PromptRecord, Task, register_task


def judge(images: torch.Tensor, records: Sequence[PromptRecord]) -> List[Verdict]:
    """GenEval verdicts for a batch of float images [B, 3, H, W] in [0, 1]."""
    if len(images) != len(records):
        raise ValueError(f"{len(images)} images for {len(records)} records")
    return [judge_detections(parse(img), rec) for img, rec in zip(to_uint8(images), records)]


def per_category(scores: Sequence[float], records: Sequence[PromptRecord]) -> Dict[str, float]:
    """Mean score per GenEval category (``tag``), plus ``overall`` = mean over categories (GenEval's; the held-out
    compositions of the test split have their own entry and stay out of ``overall``)."""
    groups: Dict[str, List[float]] = defaultdict(list)
    for s, r in zip(scores, records):
        groups[r["tag"]].append(float(s))
    out = {tag: sum(v) / len(v) for tag, v in sorted(groups.items())}
    scored = [v for tag, v in out.items() if tag not in GenEvalTask.separate_categories]
    if scored:
        out["overall"] = sum(scored) / len(scored)
    return out


@register_task("geneval")
class GenEvalTask(Task):
    primary_metric = "score"
    #: evaluation reports per category and averages the category means (GenEval's overall score).
    category_key = "tag"
    separate_categories = ("heldout",)   # test's held-out compositions: their own row, not in the score

    def prompts(self, split: str) -> List[PromptRecord]:
        return load_records("geneval", split)

    def reward(self, images: torch.Tensor, records: Sequence[PromptRecord]) -> torch.Tensor:
        return torch.tensor([v.credit for v in judge(images, records)], dtype=torch.float32)

    def metrics(self, images: torch.Tensor, records: Sequence[PromptRecord]) -> Dict[str, torch.Tensor]:
        verdicts = judge(images, records)
        return {"score": torch.tensor([float(v.correct) for v in verdicts], dtype=torch.float32),
                "credit": torch.tensor([v.credit for v in verdicts], dtype=torch.float32)}
