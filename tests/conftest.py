import atexit
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The tests write nothing into the clone: the eval cache of fixed checkpoints (base, teachers; by default
# runs/.eval_cache under the working folder) goes to a temporary folder removed at exit, inherited by the
# CLI subprocesses the tests start.
if "OPD_BENCH_EVAL_CACHE" not in os.environ:
    _EVAL_CACHE = tempfile.mkdtemp(prefix="opd-bench-test-eval-cache-")
    os.environ["OPD_BENCH_EVAL_CACHE"] = _EVAL_CACHE
    atexit.register(shutil.rmtree, _EVAL_CACHE, ignore_errors=True)

# The tests' small runs exercise code paths with the defaults, not the tuned recipes the sweeps write to
# configs/recipes/ (tests that test recipes give their own folder).
if "OPD_BENCH_RECIPES_DIR" not in os.environ:
    _RECIPES = tempfile.mkdtemp(prefix="opd-bench-test-recipes-")
    os.environ["OPD_BENCH_RECIPES_DIR"] = _RECIPES
    atexit.register(shutil.rmtree, _RECIPES, ignore_errors=True)

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


@pytest.fixture(scope="session")
def hf_clip_folder(tmp_path_factory):
    """A tiny transformers CLIPModel + CLIP tokenizer + image-processor config."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from opd_bench.backbones.tiny_sd3 import tiny_clip_tokenizer

    torch.manual_seed(0)
    tok = tiny_clip_tokenizer()
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2),
        projection_dim=16,
    )
    folder = tmp_path_factory.mktemp("hfclip") / "clip"
    CLIPModel(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(str(folder))
    return folder


def _register_test_tasks():
    from opd_bench.tasks import register_task, registry
    from opd_bench.tasks.base import Task

    if "brightness" in registry():
        return

    @register_task("brightness")
    class Brightness(Task):
        """A test-only task with a real, easy reward (mean image brightness): any policy can improve it fast."""

        world = "test"
        word = "bright"

        def prompts(self, split):
            return [{"prompt": f"a {self.word} image number {i}"} for i in range(8 if split == "train" else 4)]

        def reward(self, images, records):
            return images.float().mean(dim=(1, 2, 3))

        def metrics(self, images, records):
            return {"score": self.reward(images, records)}

    @register_task("darkness")
    class Darkness(Brightness):
        """A second test-only task (1 - brightness), so that a round has two task losses that disagree."""

        word = "dark"

        def reward(self, images, records):
            return 1 - super().reward(images, records)


_register_test_tasks()
