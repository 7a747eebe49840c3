"""The prompt record: a plain dict with at least the key ``"prompt"`` (str); task-specific metadata
(GenEval's ``tag``/``include``, OCR's ``text``, the learned-reward tasks' ``spec``) rides along in it."""
from __future__ import annotations

from typing import Any, Dict

PromptRecord = Dict[str, Any]
