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


def to_pil(images: torch.Tensor) -> List["PIL.Image.Image"]:
    """Float images [B, 3, H, W] in [0, 1] -> RGB PIL images, rounded to uint8 as the reference scorers see
    them (Flow-GRPO converts its samples to uint8 before every reward model)."""
    from PIL import Image

    from ..world import to_uint8

    return [Image.fromarray(a) for a in to_uint8(images)]


def pil_image_processor(folder):
    """The transformers image processor of ``folder`` on its PIL backend (transformers 5: ``backend="pil"``;
    4.x: the slow processor, ``use_fast=False``): PIL bicubic resize and centre crop, as the reference code of
    PickScore and the LAION aesthetic predictor ran it (the torchvision backend resizes differently)."""
    import transformers
    from transformers import AutoImageProcessor

    kw = {"backend": "pil"} if int(transformers.__version__.split(".")[0]) >= 5 else {"use_fast": False}
    return AutoImageProcessor.from_pretrained(str(folder), local_files_only=True, **kw)


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
