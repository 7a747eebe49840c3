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


def host_reads(monkeypatch, fn):
    """How many times ``fn`` reads a tensor value back to Python (item, float, bool, tolist)."""
    n = [0]
    for name in ("item", "__float__", "__bool__", "tolist"):
        real = getattr(torch.Tensor, name)

        def counting(self, *a, _real=real, **k):
            n[0] += 1
            return _real(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, counting)
    fn()
    monkeypatch.undo()
    return n[0]


@pytest.mark.parametrize("method", ["grpo", "opd", "nft"])
def test_no_host_reads_per_trained_step(monkeypatch, tmp_path_factory, method):
    """The step loop reads values back to the host (a GPU sync each) a fixed number of times per optimizer step,
    not once per trained step: 2 or 8 trained steps cost the same number of reads."""
    from tiny_world import make_tiny_world

    from opd_bench.backbones import load_backbone
    from opd_bench.config import build_config
    from opd_bench.ledger import Ledger
    from opd_bench.methods import METHODS
    from opd_bench.runner import RunContext

    world = make_tiny_world(tmp_path_factory.mktemp("w"))

    def reads(steps):
        cfg = build_config({}, [f"method={method}", "tasks=brightness", f"model.checkpoint={world / 'base'}",
                                f"opd.teachers.brightness={world / 'teacher'}", f"sampler.steps={steps}",
                                "sampler.timestep_fraction=0.9", "train.prompts_per_step=2", "grpo.group_size=2"])
        student = load_backbone(cfg.model.checkpoint)
        ctx = RunContext(cfg, ["brightness"], student, Ledger(student.flops_per_forward()))
        m = METHODS[method]()
        m.setup(ctx)
        return host_reads(monkeypatch, lambda: m.train_step(ctx))

    assert reads(3) == reads(9)
