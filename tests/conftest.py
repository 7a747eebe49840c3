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


def _register_test_tasks():
    from opd_bench.tasks import register_task, registry
    from opd_bench.tasks.base import Task

    if "brightness" in registry():
        return

    @register_task("brightness")
    class Brightness(Task):
        """A test-only task with a real, easy reward (mean image brightness): any policy can improve it fast."""

        def prompts(self, split):
            return [{"prompt": f"a bright image number {i}"} for i in range(8 if split == "train" else 4)]

        def reward(self, images, records):
            return images.float().mean(dim=(1, 2, 3))

        def metrics(self, images, records):
            return {"score": self.reward(images, records)}


_register_test_tasks()
