"""HPSv2 (Wu et al. 2023): an open_clip ViT-H-14 fine-tuned on human preferences; score = cos(image, text)
(the diagonal of the normalised feature product, as HPSv2's scorer; typically ~0.2-0.3).
Local file: the HPSv2 state dict converted to ``.safetensors`` (``HPS_v2.1_compressed.pt`` -> safetensors)."""
from __future__ import annotations

from typing import Sequence

import torch

from .clip_models import OpenCLIP
from .common import Record, RewardModel, prompts_of


class HPSv2(RewardModel):
    def __init__(self, weights, model_name: str = "ViT-H-14", config_file=None, device="cpu", batch_size: int = 16):
        self.clip = OpenCLIP(model_name, weights, "HPSv2", config_file, device)
        self.device, self.batch_size = self.clip.device, batch_size

    def score_batch(self, images: torch.Tensor, records: Sequence[Record]) -> torch.Tensor:
        return (self.clip.image_features(images) * self.clip.text_features(prompts_of(records))).sum(-1)
