"""CLIPScore (Hessel et al. 2021) through torchmetrics: torchmetrics' ``clip_score`` computes
``100 * cos(E_image, E_text)`` per sample with a transformers ``CLIPModel`` and its ``CLIPProcessor``; the reward is
Hessel's ``w * max(cos, 0)`` with w = 2.5, i.e. ``w / 100 * max(torchmetrics' score, 0)`` per image.

Local files: ``folder`` = a transformers CLIP folder (e.g. ``openai/clip-vit-large-patch14`` or the ViT-B/32 of
the paper) with its tokenizer and ``preprocessor_config.json``; images reach the processor as uint8 (0-255), as
torchmetrics expects, and it runs on its PIL backend (see :func:`~.common.pil_image_processor`)."""
from __future__ import annotations

from typing import Sequence

import torch

from .clip_models import HFCLIP
from .common import Record, RewardModel, prompts_of


class _Features(torch.nn.Module):
    """The CLIPModel as torchmetrics calls it; transformers 5's ``get_*_features`` return a model output whose
    ``pooler_output`` is the projected embedding (4.x: the tensor itself)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config

    def get_image_features(self, *args, **kwargs):
        out = self.model.get_image_features(*args, **kwargs)
        return out if torch.is_tensor(out) else out.pooler_output

    def get_text_features(self, *args, **kwargs):
        out = self.model.get_text_features(*args, **kwargs)
        return out if torch.is_tensor(out) else out.pooler_output


class CLIPScore(RewardModel):
    def __init__(self, folder, processor_folder=None, device="cpu", batch_size: int = 16, w: float = 2.5):
        from transformers import CLIPProcessor

        self.clip = HFCLIP(folder, "CLIPScore", processor_folder, device)
        self.device, self.batch_size, self.w = self.clip.device, batch_size, float(w)
        self.model = _Features(self.clip.model)
        self.processor = CLIPProcessor(image_processor=self.clip.image_processor, tokenizer=self.clip.tokenizer)

    def score_batch(self, images: torch.Tensor, records: Sequence[Record]) -> torch.Tensor:
        from torchmetrics.functional.multimodal.clip_score import _clip_score_update

        uint8 = (images.float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)   # the rounding of world.to_uint8
        score, _ = _clip_score_update(list(uint8), prompts_of(records), self.model, self.processor)
        return self.w / 100.0 * score.clamp_min(0)
