"""The embedded world at run time: procedural scenes (:mod:`.scenes`), their parser (:mod:`.parser`), OCR
(:mod:`.ocr`), prompts and captions (:mod:`.prompts`), gold scorers (:mod:`.gold`) and learned reward models
(:mod:`.reward_models`). Helpers shared by the world tasks live here. The one-off tools that build the
world's released assets are in :mod:`.build` (``opd-bench world ...``)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, List

import numpy as np


def to_uint8(images) -> np.ndarray:
    """Float images [B, 3, H, W] in [0, 1] (torch tensor or array) -> uint8 array [B, H, W, 3]."""
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    x = np.asarray(images, dtype=np.float32)
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)


def _drop_none(x: Any) -> Any:
    """Arrow fills absent keys with None; drop them so records match the JSONL exactly."""
    if isinstance(x, dict):
        return {k: _drop_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_drop_none(v) for v in x]
    return x


@lru_cache(maxsize=None)
def _load(path: str) -> tuple:
    from datasets import load_dataset

    return tuple(_drop_none(r) for r in load_dataset("json", data_files=path, split="train"))


#: the prompt splits of every task: ``train`` trains, ``val`` selects, ``test`` scores final results
SPLITS = ("train", "val", "test")


def load_records(task: str, split: str) -> List[Dict[str, Any]]:
    """Prompt records of ``tasks/<task>/<split>.jsonl`` (loaded once, cached; a fresh list of copies)."""
    from ..errors import UserError
    from ..paths import TASKS_DIR

    if split not in SPLITS:
        raise UserError(f"unknown split {split!r} (one of {', '.join(SPLITS)})")
    path = TASKS_DIR / task / f"{split}.jsonl"
    if not path.is_file():
        raise UserError(f"missing prompt file {path} (run opd-bench world prompts)")
    import copy

    return copy.deepcopy(list(_load(str(path))))
