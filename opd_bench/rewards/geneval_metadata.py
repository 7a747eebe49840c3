"""GenEval's prompt metadata (``evaluation_metadata.jsonl``, also Flow-GRPO's ``test_metadata.jsonl``) as the
project's prompt records: each line is already a record (``prompt``, ``tag``, ``include`` [, ``exclude``]),
validated here so a malformed line fails with its line number rather than deep in the rule engine."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

from ..errors import UserError
from ..paths import REPO_ROOT
from ..scoring.geneval_rules import RELATIONS
from ..scoring.records import PromptRecord

#: public data shared next to the repository (read-only; absent on machines without it).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEFAULT_PATH = SHARED_DATA / "geneval" / "evaluation_metadata.jsonl"
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


def load_geneval_metadata(path: Optional[Path] = None) -> List[PromptRecord]:
    """Parse and validate a GenEval metadata JSONL file into prompt records (default: the shared copy)."""
    path = Path(path or DEFAULT_PATH)
    if not path.is_file():
        raise UserError(f"GenEval metadata not found: {path} (expected GenEval's evaluation_metadata.jsonl)")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(_validate(json.loads(line)))
            except (ValueError, KeyError, TypeError) as e:
                raise UserError(f"{path}:{n}: invalid GenEval record: {e}") from None
    return records


def _validate(rec: dict) -> PromptRecord:
    if not isinstance(rec.get("prompt"), str) or not rec["prompt"]:
        raise ValueError("missing 'prompt'")
    if rec.get("tag") not in TAGS:
        raise ValueError(f"tag {rec.get('tag')!r} not one of {', '.join(TAGS)}")
    include = rec.get("include")
    if not isinstance(include, list) or not include:
        raise ValueError("'include' must be a non-empty list")
    for i, req in enumerate(include):
        _check_object(req)
        if req.get("position") is not None:
            rel, target = req["position"]
            if rel not in RELATIONS or not 0 <= int(target) < i:
                raise ValueError(f"bad position {req['position']!r} in include[{i}]")
    for req in rec.get("exclude") or []:
        _check_object(req)
    return rec


def _check_object(req: dict) -> None:
    if not isinstance(req.get("class"), str) or not isinstance(req.get("count"), int) or req["count"] < 1:
        raise ValueError(f"object entry needs a class name and a count >= 1, got {req!r}")
