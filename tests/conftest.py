import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_arch():
    """A smaller-than-default embedded architecture for fast tests (same classes, same code paths)."""
    return {
        "resolution": 16,
        "context_length": 16,
        "transformer": {"patch_size": 4, "num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 16},
        "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
    }


@pytest.fixture()
def tiny_model(tiny_arch):
    from opd_bench.backbones import EmbeddedBackbone

    torch.manual_seed(0)
    return EmbeddedBackbone(tiny_arch).eval()
