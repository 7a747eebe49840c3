"""Image/text embedders shared by the CLIP-based rewards: a transformers ``CLIPModel`` folder (PickScore,
the LAION aesthetic predictor's ViT-L/14) and an open_clip model from a local weights file (HPSv2, CLIPScore).
Both return L2-normalised embeddings."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List

import torch
import torch.nn.functional as F

from ..errors import CheckpointError
from .common import CLIP_MEAN, CLIP_STD, clip_preprocess, require_path


class HFCLIP:
    """A transformers ``CLIPModel`` + tokenizer (+ image-processor settings) from local folder(s).

    ``processor_folder`` holds the tokenizer / ``preprocessor_config.json`` when the model folder does not
    (PickScore's weights come without them: its processor is LAION's CLIP-ViT-H-14's)."""

    def __init__(self, folder, what: str, processor_folder=None, device="cpu"):
        from transformers import AutoTokenizer, CLIPModel

        expected = "a transformers CLIPModel folder (config.json + model.safetensors)"
        folder = require_path(folder, what, expected)
        require_path(folder / "config.json", what, expected)
        proc = require_path(processor_folder or folder, f"{what} processor", "a CLIP tokenizer folder")
        self.device = torch.device(device)
        self.model = CLIPModel.from_pretrained(str(folder), local_files_only=True).to(self.device).eval()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(proc), local_files_only=True)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{what}: no CLIP tokenizer in {proc}: {str(e).splitlines()[0][:200]}") from None
        self.size, self.mean, self.std = _hf_image_settings(proc, self.model.config.vision_config.image_size)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        pixels = clip_preprocess(images, self.size, self.mean, self.std)
        return F.normalize(_projected(self.model.get_image_features(pixel_values=pixels)), dim=-1)

    def text_features(self, prompts: List[str]) -> torch.Tensor:
        tok = self.tokenizer(prompts, padding="max_length", truncation=True, return_tensors="pt",
                             max_length=min(self.tokenizer.model_max_length, 77)).to(self.device)
        emb = self.model.get_text_features(input_ids=tok.input_ids, attention_mask=tok.attention_mask)
        return F.normalize(_projected(emb), dim=-1)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()


def _projected(out) -> torch.Tensor:
    """transformers 5 returns a model output whose ``pooler_output`` is the projected embedding (4.x: a tensor)."""
    return out if torch.is_tensor(out) else out.pooler_output


def _hf_image_settings(folder: Path, default_size: int):
    """(crop size, mean, std) from ``preprocessor_config.json`` when present, else CLIP's defaults."""
    cfg_file = folder / "preprocessor_config.json"
    if not cfg_file.is_file():
        return default_size, CLIP_MEAN, CLIP_STD
    cfg = json.loads(cfg_file.read_text())
    crop = cfg.get("crop_size", default_size)
    size = crop.get("height", default_size) if isinstance(crop, dict) else crop
    return int(size), tuple(cfg.get("image_mean", CLIP_MEAN)), tuple(cfg.get("image_std", CLIP_STD))


class OpenCLIP:
    """An open_clip model from a local weights file (``.safetensors`` preferred). ``model_name`` is an
    open_clip architecture (e.g. ``ViT-H-14``); ``config_file`` registers a custom architecture JSON (its stem
    becomes the name)."""

    def __init__(self, model_name: str, weights, what: str, config_file=None, device="cpu"):
        import open_clip

        weights = require_path(weights, what, f"an open_clip {model_name} state dict (.safetensors)")
        if config_file is not None:
            config_file = require_path(config_file, f"{what} config", "an open_clip model config JSON")
            open_clip.add_model_config(config_file)
            model_name = config_file.stem
        if model_name not in open_clip.list_models():
            raise CheckpointError(f"{what}: unknown open_clip architecture {model_name!r} (pass config_file=...)")
        self.device = torch.device(device)
        try:
            self.model = open_clip.create_model(model_name, pretrained=str(weights), device=self.device).eval()
        except RuntimeError as e:
            raise CheckpointError(f"{what}: weights {weights} do not fit {model_name}: {str(e)[:200]}") from None
        self.tokenizer = open_clip.get_tokenizer(model_name)
        pp = open_clip.get_model_preprocess_cfg(self.model)
        size = pp.get("size", 224)
        self.size = size if isinstance(size, int) else size[0]
        self.mean, self.std = tuple(pp.get("mean", CLIP_MEAN)), tuple(pp.get("std", CLIP_STD))

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        pixels = clip_preprocess(images, self.size, self.mean, self.std)
        return F.normalize(self.model.encode_image(pixels), dim=-1)

    def text_features(self, prompts: List[str]) -> torch.Tensor:
        return F.normalize(self.model.encode_text(self.tokenizer(prompts).to(self.device)), dim=-1)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()
