"""Shared by the tests that need a tiny real embedded world: the architecture and a base + teacher pair."""
from pathlib import Path

import torch

from opd_bench.backbones import EmbeddedBackbone, load_backbone

#: a tiny embedded architecture at the world's 32 px (the world's parsers and OCR work on it).
TINY_ARCH = {
    "resolution": 32,
    "context_length": 16,
    "transformer": {"patch_size": 8, "num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 16},
    "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
}


def make_tiny_world(d: Path, arch: dict = TINY_ARCH, noise: float = 0.05) -> Path:
    """Save a random base at ``d/base`` and a 'teacher' (the base's transformer + Gaussian weight noise,
    sharing its text encoder) at ``d/teacher``; returns ``d``."""
    d = Path(d)
    torch.manual_seed(0)
    EmbeddedBackbone(arch).save(d / "base")
    teacher = load_backbone(d / "base")
    with torch.no_grad():
        for p in teacher.transformer.parameters():
            p.add_(noise * torch.randn_like(p))
    teacher.save(d / "teacher")
    return d


def make_tiny_sd3_world(d: Path):
    """A tiny random SD3 pipeline at ``d/tiny`` and a LoRA 'teacher' on it (r 4, random weights) at ``d/teacher``;
    returns (pipeline folder, teacher path)."""
    from opd_bench.backbones.sd3 import SD3Backbone
    from opd_bench.backbones.tiny_sd3 import build_tiny_sd3_pipeline

    folder = build_tiny_sd3_pipeline(Path(d) / "tiny", seed=0)
    teacher = SD3Backbone.from_pretrained(folder, lora_rank=4, lora_alpha=8, max_sequence_length=8)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in teacher.trainable_parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return folder, teacher.save(Path(d) / "teacher")
