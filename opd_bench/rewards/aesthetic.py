"""LAION aesthetic predictor v2 ("sac+logos+ava1-l14-linearMSE"): the L2-normalised CLIP ViT-L/14 image
embedding through an MLP 768 -> 1024 -> 128 -> 64 -> 16 -> 1 (scores ~1-10), as Flow-GRPO's aesthetic reward.

Local files: ``clip_folder`` = the transformers ``openai/clip-vit-large-patch14`` folder; ``head`` = the MLP
weights as ``.safetensors`` with the original key names (``layers.0.weight`` ... ``layers.7.bias``);
:func:`convert_head` converts the released ``.pth`` once (``torch.load(weights_only=True)``, no pickled code).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import CheckpointError
from .clip_models import HFCLIP
from .common import Record, RewardModel, require_path

HIDDEN = (1024, 128, 64, 16)


def laion_head(in_dim: int = 768) -> nn.Sequential:
    """The LAION MLP with the original layer indices (dropouts at 1, 3, 5; no activations, as released)."""
    return nn.Sequential(
        nn.Linear(in_dim, HIDDEN[0]), nn.Dropout(0.2), nn.Linear(HIDDEN[0], HIDDEN[1]), nn.Dropout(0.2),
        nn.Linear(HIDDEN[1], HIDDEN[2]), nn.Dropout(0.1), nn.Linear(HIDDEN[2], HIDDEN[3]), nn.Linear(HIDDEN[3], 1),
    )


def convert_head(pth_path, out_path) -> None:
    """Convert the released ``sac+logos+ava1-l14-linearMSE.pth`` to safetensors (keys kept)."""
    from safetensors.torch import save_file

    state = torch.load(str(pth_path), map_location="cpu", weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out_path))


def load_head(path) -> nn.Sequential:
    from safetensors.torch import load_file

    path = require_path(path, "LAION aesthetic head", "a safetensors file with keys layers.{0,2,4,6,7}.{weight,bias}")
    state = load_file(str(path))
    if "layers.0.weight" not in state:
        raise CheckpointError(f"LAION aesthetic head {path}: no 'layers.0.weight' (not the LAION MLP)")
    state = {k[len("layers."):]: v for k, v in state.items()}
    head = laion_head(state["0.weight"].shape[1])
    try:
        head.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"LAION aesthetic head {path} does not fit the MLP: {str(e)[:200]}") from None
    return head.eval()


class LAIONAesthetic(RewardModel):
    def __init__(self, clip_folder, head, device="cpu", batch_size: int = 16):
        self.clip = HFCLIP(clip_folder, "LAION aesthetic CLIP", device=device)
        self.device, self.batch_size = self.clip.device, batch_size
        self.head = load_head(head).to(self.device)
        dim = self.clip.model.config.projection_dim
        if self.head[0].in_features != dim:
            raise CheckpointError(f"LAION aesthetic head expects {self.head[0].in_features}-d embeddings, the CLIP "
                                  f"in {clip_folder} gives {dim}")

    def score_batch(self, images: torch.Tensor, records: Sequence[Record]) -> torch.Tensor:
        return self.head(self.clip.image_features(images)).squeeze(-1)
