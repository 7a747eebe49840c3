"""The hot path of both backbones: attention through PyTorch's fused SDPA kernel, and a guided (CFG) velocity
as ONE batched denoiser forward of both halves."""
import pytest
import torch
import torch.nn.functional as F

from opd_bench.backbones.sd3 import SD3Backbone
from tiny_world import make_tiny_sd3_world


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    folder, _ = make_tiny_sd3_world(tmp_path_factory.mktemp("sd3"))
    return SD3Backbone.from_pretrained(folder, lora_rank=4, lora_alpha=8, max_sequence_length=8)


@pytest.mark.parametrize("backbone", ["tiny_model", "sd3"])
def test_guided_velocity_is_one_batched_forward_through_sdpa(request, monkeypatch, backbone):
    model = request.getfixturevalue(backbone)
    cond = model.encode_prompts(["a red square", "two blue circles", "a cat"])
    x = torch.randn(3, *model.latent_shape, generator=torch.Generator().manual_seed(0))
    sdpa, rows, forwards = [], [], []
    real_sdpa, real_denoise = F.scaled_dot_product_attention, model.denoise

    def counting_sdpa(q, *a, **k):
        sdpa.append(q.shape[0])
        return real_sdpa(q, *a, **k)

    def counting_denoise(x, *a, **k):
        forwards.append(1)
        rows.append(x.shape[0])
        return real_denoise(x, *a, **k)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting_sdpa)
    monkeypatch.setattr(model, "denoise", counting_denoise)
    with torch.no_grad():
        v = model.velocity(x, 0.5, cond, 4.5)
    assert v.shape == x.shape
    assert forwards == [1] and rows == [6]                 # both CFG halves in one forward of 2B rows
    layers = model.transformer.config.num_layers
    assert len(sdpa) >= layers and set(sdpa) == {6}        # every block's attention is the fused SDPA kernel
