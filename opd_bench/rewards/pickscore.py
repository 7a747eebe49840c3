"""PickScore (Kirstain et al. 2023): a CLIP-H fine-tuned on Pick-a-Pic preferences.

score = logit_scale * cos(image, text), as the reference implementation (typically ~18-23). Flow-GRPO's
training reward divides it by 26: pass ``divisor=26``.
Local files: ``folder`` = the ``yuvalkirstain/PickScore_v1`` transformers folder; ``processor_folder`` = the
folder with the tokenizer and ``preprocessor_config.json`` (``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``),
defaults to ``folder``.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .clip_models import HFCLIP
from .common import Record, RewardModel, prompts_of


class PickScore(RewardModel):
    def __init__(self, folder, processor_folder=None, device="cpu", batch_size: int = 16, divisor: float = 1.0):
        self.clip = HFCLIP(folder, "PickScore", processor_folder, device)
        self.device, self.batch_size, self.divisor = self.clip.device, batch_size, float(divisor)

    def score_batch(self, images: torch.Tensor, records: Sequence[Record]) -> torch.Tensor:
        img, txt = self.clip.image_features(images), self.clip.text_features(prompts_of(records))
        return self.clip.logit_scale * (img * txt).sum(-1) / self.divisor
