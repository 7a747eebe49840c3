"""Scoring rules and records shared by the tasks, the reward models and the world (the lowest layer above
the foundation; see docs/architecture.md): GenEval's rule engine (:mod:`.geneval_rules`), Flow-GRPO's OCR
score (:mod:`.ocr_score`) and the prompt record type (:mod:`.records`). Pure Python: no torch, no models."""
from __future__ import annotations

from .records import PromptRecord

__all__ = ["PromptRecord"]
