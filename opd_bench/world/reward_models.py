"""Learned reward models of the embedded world, built from a config dict with open_clip.

* :class:`AestheticModel` — a tiny CLIP ViT image tower + MLP head regressing the gold aesthetic score
  (the LAION-aesthetic recipe).
* :class:`PreferenceModel` — a tiny CLIP (ViT image tower + text transformer); the reward is
  ``logit_scale * cos(image, text)`` (the PickScore recipe), trained with Bradley-Terry on pairs of
  images of the same prompt labelled by the gold preference.

Text goes through open_clip's real BPE tokenizer (:class:`open_clip.tokenizer.SimpleTokenizer`, vocab
shipped in the wheel). To keep checkpoints small, BPE ids are remapped to a compact vocabulary (the BPE
tokens seen in the training prompts; anything else becomes ``<unk>``); the BPE ids of that vocabulary are
stored in the checkpoint as the buffer ``tokenizer.bpe_ids``.

Both models map raw outputs to a roughly [0, 1] ``score`` with a stored affine calibration
(buffer ``calibration`` = [lo, hi]; score = (raw - lo) / (hi - lo)).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, _build_vision_tower
from open_clip.tokenizer import SimpleTokenizer

from ..checkpoint import load_checkpoint, save_checkpoint
from ..errors import CheckpointError

#: architecture defaults (a ~0.5-1M parameter CLIP for 32 px images).
DEFAULT_CONFIG: Dict[str, Any] = {
    "image_size": 32,
    "patch_size": 4,
    "vision_width": 96,
    "vision_layers": 4,
    "head_width": 32,
    "embed_dim": 96,
    "text_width": 96,
    "text_layers": 2,
    "text_heads": 3,
    "context_length": 32,
    "mlp_hidden": 128,
    "vocab_size": 0,   # compact vocabulary size, set from the training prompts (PreferenceModel only)
    "flip_average": False,  # PreferenceModel: score with the mean of the image's and its mirror's embedding
}
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


def make_config(**overrides) -> Dict[str, Any]:
    """DEFAULT_CONFIG with ``overrides`` (unknown keys are an error)."""
    unknown = set(overrides) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"unknown reward-model config keys: {sorted(unknown)}")
    return {**copy.deepcopy(DEFAULT_CONFIG), **overrides}


def vision_cfg(config: Dict[str, Any]) -> CLIPVisionCfg:
    return CLIPVisionCfg(layers=config["vision_layers"], width=config["vision_width"],
                         head_width=config["head_width"], patch_size=config["patch_size"],
                         image_size=config["image_size"])


def text_cfg(config: Dict[str, Any]) -> CLIPTextCfg:
    return CLIPTextCfg(context_length=config["context_length"], vocab_size=config["vocab_size"],
                       width=config["text_width"], heads=config["text_heads"], layers=config["text_layers"])


def preprocess(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Float [B, 3, H, W] in [0, 1] -> normalised [B, 3, S, S] (antialiased resize when H != S)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B, 3, H, W], got {tuple(images.shape)}")
    x = images.float()
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return (x - PIXEL_MEAN) / PIXEL_STD


# ------------------------------------------------------------------------------------------- tokenizer
_BPE: Optional[SimpleTokenizer] = None


def bpe_tokenizer(context_length: int) -> SimpleTokenizer:
    """open_clip's BPE tokenizer (cached; its vocabulary ships with open_clip, no download)."""
    global _BPE
    if _BPE is None:
        _BPE = SimpleTokenizer()
    _BPE.context_length = context_length
    return _BPE


def build_vocab(texts: Iterable[str]) -> torch.Tensor:
    """Sorted BPE ids (int64) of every token in ``texts``, without the start/end tokens."""
    tok = bpe_tokenizer(77)
    ids = set()
    for t in texts:
        ids.update(tok.encode(t))
    return torch.tensor(sorted(ids), dtype=torch.int64)


class CompactTokenizer:
    """BPE ids -> compact ids: 0 pad, 1 start, 2 unknown, 3.. the vocabulary, last = end (the largest id,
    so open_clip's argmax pooling finds it)."""

    PAD, SOT, UNK, OFFSET = 0, 1, 2, 3

    def __init__(self, bpe_ids: torch.Tensor, context_length: int):
        self.context_length = context_length
        self.lookup = {int(b): i + self.OFFSET for i, b in enumerate(bpe_ids.tolist())}
        self.eot = len(self.lookup) + self.OFFSET
        self.vocab_size = self.eot + 1

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """LongTensor [len(texts), context_length]; long texts are truncated, keeping the end token."""
        tok = bpe_tokenizer(self.context_length)
        out = torch.zeros(len(texts), self.context_length, dtype=torch.int64)
        for row, text in enumerate(texts):
            ids = [self.lookup.get(b, self.UNK) for b in tok.encode(text)][: self.context_length - 2]
            ids = [self.SOT, *ids, self.eot]
            out[row, : len(ids)] = torch.tensor(ids)
        return out


# ------------------------------------------------------------------------------------------ the models
class LearnedRewardNet(nn.Module):
    """Shared plumbing: config, calibration, batched no-grad scoring and checkpoint I/O."""

    kind: str = "reward"

    def __init__(self, config: Dict[str, Any]):
        super().__init__()
        self.config = dict(config)
        self.register_buffer("calibration", torch.tensor([0.0, 1.0]))

    def raw(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """Raw (uncalibrated) reward [B] for preprocessed-or-not images in [0, 1]; differentiable."""
        raise NotImplementedError

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        lo, hi = self.calibration[0], self.calibration[1]
        return (raw - lo) / (hi - lo).clamp_min(1e-6)

    @torch.no_grad()
    def score(self, images: torch.Tensor, prompts: Optional[Sequence[str]] = None,
              batch_size: int = 256) -> torch.Tensor:
        """Calibrated reward [B] (roughly [0, 1]), float32 on the images' device; deterministic."""
        was_training = self.training
        self.eval()
        self.to(images.device)
        prompts = list(prompts) if prompts is not None else [""] * len(images)
        if len(prompts) != len(images):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        outs = [self.normalise(self.raw(images[i:i + batch_size], prompts[i:i + batch_size]))
                for i in range(0, len(images), batch_size)]
        self.train(was_training)
        return torch.cat(outs).float() if outs else torch.zeros(0, device=images.device)

    def save(self, path, training: Optional[Dict[str, Any]] = None) -> Path:
        """Save as a checkpoint folder of kind ``self.kind`` (config.json holds the architecture and
        the ``training`` record)."""
        config = {"model": self.config, "training": training or {}}
        return save_checkpoint(path, self.state_dict(), config, kind=self.kind)

    @classmethod
    def from_checkpoint(cls, path) -> "LearnedRewardNet":
        """Load a checkpoint saved by :meth:`save` (manifest verified; raises CheckpointError)."""
        tensors, config = load_checkpoint(path, kind=cls.kind)
        try:
            model = cls(config["model"], **cls._init_kwargs_from_tensors(tensors))
            model.load_state_dict(tensors)
        except (KeyError, RuntimeError, TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {path} does not fit {cls.__name__}: {e}") from None
        model.training_record = config.get("training", {})
        return model.eval()

    @classmethod
    def _init_kwargs_from_tensors(cls, tensors: Dict[str, torch.Tensor]) -> Dict[str, Any]:
        return {}


class AestheticModel(LearnedRewardNet):
    """CLIP ViT image embedding -> MLP -> predicted gold aesthetic score (prompt-independent)."""

    kind = "reward_aesthetic"

    def __init__(self, config: Dict[str, Any]):
        super().__init__(config)
        self.visual = _build_vision_tower(config["embed_dim"], vision_cfg(config))
        self.head = nn.Sequential(nn.LayerNorm(config["embed_dim"]), nn.Linear(config["embed_dim"], config["mlp_hidden"]),
                                  nn.GELU(), nn.Linear(config["mlp_hidden"], 1))

    def raw(self, images: torch.Tensor, prompts: Optional[Sequence[str]] = None) -> torch.Tensor:
        return self.head(self.visual(preprocess(images, self.config["image_size"]))).squeeze(-1)


class PreferenceModel(LearnedRewardNet):
    """Tiny CLIP; reward = logit_scale * cos(image embedding, prompt embedding)."""

    kind = "reward_preference"

    def __init__(self, config: Dict[str, Any], bpe_ids: torch.Tensor):
        tokenizer = CompactTokenizer(bpe_ids, config["context_length"])
        super().__init__({**config, "vocab_size": tokenizer.vocab_size})
        self.tokenizer = tokenizer
        self.register_buffer("tokenizer_bpe_ids", bpe_ids.clone().to(torch.int64))
        self.clip = CLIP(config["embed_dim"], vision_cfg(self.config), text_cfg(self.config))

    @classmethod
    def _init_kwargs_from_tensors(cls, tensors):
        return {"bpe_ids": tensors["tokenizer_bpe_ids"]}

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(preprocess(images, self.config["image_size"]), normalize=True)

    def encode_prompts(self, prompts: Sequence[str], device=None) -> torch.Tensor:
        tokens = self.tokenizer(list(prompts)).to(device or self.calibration.device)
        return self.clip.encode_text(tokens, normalize=True)

    def logits(self, image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """Row-wise reward of paired embeddings: logit_scale * <i, t>, shape [B]."""
        return self.clip.logit_scale.exp().clamp(max=100.0) * (image_emb * text_emb).sum(-1)

    def raw(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """With ``config["flip_average"]`` the image embedding is the mean of the image's and its left-right
        mirror's (the gold scores are mirror-invariant); checkpoints without the key score plain."""
        image_emb = self.encode_images(images)
        if self.config.get("flip_average", False):
            image_emb = 0.5 * (image_emb + self.encode_images(images.flip(-1)))
        return self.logits(image_emb, self.encode_prompts(prompts, images.device))


MODELS = {"aesthetic": AestheticModel, "preference": PreferenceModel}


def model_class(task: str):
    """The reward-model class of ``task`` ("aesthetic" or "preference")."""
    try:
        return MODELS[task]
    except KeyError:
        raise ValueError(f"no learned reward model for task {task!r}; choose from {sorted(MODELS)}") from None


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def images_to_tensor(images) -> torch.Tensor:
    """uint8 [B, H, W, 3] numpy/tensor -> float [B, 3, H, W] in [0, 1]."""
    x = torch.as_tensor(images)
    return x.permute(0, 3, 1, 2).float().div(255.0)


def tensor_to_uint8(images: torch.Tensor) -> List:
    """Float [B, 3, H, W] in [0, 1] -> list of HxWx3 uint8 numpy arrays (what the gold scorers take)."""
    x = (images.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return list(x)
