"""Image/text embedders shared by the CLIP-based rewards: a transformers ``CLIPModel`` folder (PickScore,
the LAION aesthetic predictor's ViT-L/14, CLIPScore) and an open_clip model from a local weights file (HPSv2).
Both return L2-normalised embeddings and preprocess exactly as the reference code: uint8 PIL images through
the model's own processor (transformers' image processor on its PIL backend; open_clip's validation
transform), not a tensor re-implementation."""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F

from ..errors import CheckpointError
from .common import pil_image_processor, require_path, to_pil


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
        try:
            self.image_processor = pil_image_processor(proc)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{what}: no image processor (preprocessor_config.json) in {proc}: "
                                  f"{str(e).splitlines()[0][:200]}") from None

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_processor(images=to_pil(images), return_tensors="pt").pixel_values.to(self.device)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(_projected(self.model.get_image_features(pixel_values=self.pixels(images))), dim=-1)

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
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=str(weights), device=self.device)
        except RuntimeError as e:
            raise CheckpointError(f"{what}: weights {weights} do not fit {model_name}: {str(e)[:200]}") from None
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model_name)

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """open_clip's validation transform (the one HPSv2's scorer applies) on uint8 PIL images."""
        return torch.stack([self.preprocess(im) for im in to_pil(images)]).to(self.device)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_image(self.pixels(images)), dim=-1)

    def text_features(self, prompts: List[str]) -> torch.Tensor:
        return F.normalize(self.model.encode_text(self.tokenizer(prompts).to(self.device)), dim=-1)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()
