"""Shared base of the embedded world's learned-reward tasks (``aesthetic`` and ``preference``).

The training reward is a small reward model trained in this repository (released checkpoint
``checkpoints/reward_<task>``, loaded lazily and cached); ``metrics`` also reports the hidden gold score
the model was trained to imitate, so proxy vs gold can be tracked over RL training (reward hacking).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Mapping, Sequence

import numpy as np
import torch

from ..paths import RELEASED_DIR
from ..world import load_records
from ..world.reward_models import LearnedRewardNet, tensor_to_uint8
from .base import PromptRecord, Task

_MODELS: Dict[Path, LearnedRewardNet] = {}


def load_released(path: Path, cls) -> LearnedRewardNet:
    """The reward model at ``path`` (manifest verified on first load, then cached per path)."""
    path = Path(path).resolve()
    if path not in _MODELS:
        _MODELS[path] = cls.from_checkpoint(path)
    return _MODELS[path]


class LearnedRewardTask(Task):
    """A task whose reward is a learned model; subclasses set ``model_class`` and ``gold_fn``."""

    model_class: type = LearnedRewardNet
    #: gold scorer: (HxWx3 uint8 image, record) -> float
    gold_fn: Callable[[np.ndarray, Mapping], float]

    def __init__(self, checkpoint: Path | None = None):
        self.checkpoint = Path(checkpoint) if checkpoint else RELEASED_DIR / f"reward_{self.name}"
        self._prompts: Dict[str, List[PromptRecord]] = {}

    @property
    def model(self) -> LearnedRewardNet:
        return load_released(self.checkpoint, self.model_class)

    def prompts(self, split: str) -> List[PromptRecord]:
        if split not in self._prompts:
            self._prompts[split] = load_records(self.name, split)
        return [dict(r) for r in self._prompts[split]]

    def reward(self, images: torch.Tensor, records: Sequence[PromptRecord]) -> torch.Tensor:
        """The learned reward (calibrated to roughly [0, 1]), [B] float32 on the images' device."""
        return self.model.score(images, [r["prompt"] for r in records])

    def gold(self, images: torch.Tensor, records: Sequence[PromptRecord]) -> torch.Tensor:
        """The hidden gold score, [B] float32 on the images' device."""
        values = [type(self).gold_fn(img, rec) for img, rec in zip(tensor_to_uint8(images), records)]
        return torch.tensor(values, dtype=torch.float32, device=images.device)

    def metrics(self, images: torch.Tensor, records: Sequence[PromptRecord]) -> Dict[str, torch.Tensor]:
        """``score``: the learned reward; ``gold``: the hidden gold score (proxy-vs-gold analysis)."""
        return {"score": self.reward(images, records), "gold": self.gold(images, records)}
