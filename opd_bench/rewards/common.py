"""Shared pieces of the real reward models: the batched call protocol, path checks, CLIP-style preprocessing."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, List, Mapping, Sequence, Union

import torch
import torch.nn.functional as F

from ..errors import CheckpointError

Record = Union[str, Mapping[str, Any]]

#: OpenAI CLIP's image normalisation (also the transformers/open_clip default).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class RewardWeightsMissing(CheckpointError):
    """A reward model's local weights are absent (one line: the path and what is expected there)."""


def require_path(path, what: str, expected: str) -> Path:
    """``path`` as a Path, or :class:`RewardWeightsMissing` naming the path and what should be there."""
    p = Path(str(path)).expanduser() if path not in (None, "") else None
    if p is None or not p.exists():
        raise RewardWeightsMissing(f"{what} weights not found: {path} (expected {expected})")
    return p


def prompts_of(records: Sequence[Record]) -> List[str]:
    """Prompt strings of prompt records (dicts with ``"prompt"``) or of plain strings."""
    return [r if isinstance(r, str) else r["prompt"] for r in records]


def clip_preprocess(images: torch.Tensor, size: int, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """CLIP preprocessing on tensors: resize the short side to ``size`` (bicubic, antialiased), centre crop,
    normalise. ``images``: [B, 3, H, W] in [0, 1]."""
    h, w = images.shape[-2:]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    x = images.float()
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[..., top:top + size, left:left + size]
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    sd = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / sd


class RewardModel(ABC):
    """A batched scorer: ``model(images, records) -> Tensor[B]`` (float32, CPU), scored ``batch_size`` at a
    time; subclasses implement :meth:`score_batch`."""

    batch_size: int = 16
    device: torch.device = torch.device("cpu")

    @abstractmethod
    def score_batch(self, images: torch.Tensor, records: Sequence[Record]) -> torch.Tensor:
        """Scores of one batch (images already on ``self.device``)."""

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, records: Sequence[Record]) -> torch.Tensor:
        if len(images) != len(records):
            raise ValueError(f"{len(images)} images for {len(records)} records")
        out = [self.score_batch(images[i:i + self.batch_size].to(self.device), records[i:i + self.batch_size])
               for i in range(0, len(images), self.batch_size)]
        return torch.cat(out).float().cpu() if out else torch.zeros(0)
