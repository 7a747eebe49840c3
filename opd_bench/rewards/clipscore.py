"""CLIPScore (Hessel et al. 2021): ``w * max(cos(image, text), 0)`` with w = 2.5, on an open_clip model
loaded from a local weights file (e.g. ``ViT-L-14`` OpenAI weights converted to ``.safetensors``)."""
from __future__ import annotations

from typing import Sequence

import torch

from .clip_models import OpenCLIP
from .common import Record, RewardModel, prompts_of


class CLIPScore(RewardModel):
    def __init__(self, weights, model_name: str = "ViT-L-14", config_file=None, device="cpu", batch_size: int = 16,
                 w: float = 2.5):
        self.clip = OpenCLIP(model_name, weights, "CLIPScore", config_file, device)
        self.device, self.batch_size, self.w = self.clip.device, batch_size, float(w)

    def score_batch(self, images: torch.Tensor, records: Sequence[Record]) -> torch.Tensor:
        cos = (self.clip.image_features(images) * self.clip.text_features(prompts_of(records))).sum(-1)
        return self.w * cos.clamp_min(0)
