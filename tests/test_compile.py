"""``model.compile``: the transformer blocks compiled by inductor give the eager forward and the eager training
step to float rounding, keep their parameter names, and stay eager with one warning line where inductor has no
C++ compiler."""
import copy

import pytest
import torch
from tiny_world import TINY_ARCH

from opd_bench.backbones import EmbeddedBackbone, compiled


def _step(model, x, cond):
    """One guided forward, backward and AdamW step; returns the velocity and the updated weights."""
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    v = model.velocity(x, 0.5, cond, 2.0)
    v.pow(2).mean().backward()
    opt.step()
    return v.detach(), [p.detach().clone() for p in model.trainable_parameters()]


def test_compiled_blocks_equal_eager_forward_and_training_step():
    torch.manual_seed(0)
    eager = EmbeddedBackbone(TINY_ARCH)
    fused = copy.deepcopy(eager)
    assert fused.compile_blocks()
    assert all(b._compiled_call_impl is not None for b in fused.transformer.transformer_blocks)
    assert fused.transformer.state_dict().keys() == eager.transformer.state_dict().keys()   # checkpoints unchanged
    cond = eager.encode_prompts(["a red ball", "two blue cats"])
    x = torch.randn(2, *eager.latent_shape, generator=torch.Generator().manual_seed(1))
    before = [p.detach().clone() for p in eager.trainable_parameters()]
    v_eager, w_eager = _step(eager, x, cond)
    v_fused, w_fused = _step(fused, x, cond)
    assert torch.allclose(v_fused, v_eager, atol=1e-5)
    # Adam's first step is lr * g / (|g| + eps): gradients near eps turn rounding into up to ~1e-3 of the step
    # on some CPUs (1.2e-5 on Sapphire Rapids with AMX); a wrong gradient moves a weight by up to 2 lr = 2e-2
    assert max((a - b).abs().max().item() for a, b in zip(w_eager, w_fused)) < 1e-4
    assert max((a - b).abs().max().item() for a, b in zip(w_eager, before)) > 1e-3   # the step moved the weights


def test_no_cpp_compiler_falls_back_to_eager_with_one_warning(monkeypatch, capsys):
    from torch._inductor import config as inductor_config

    monkeypatch.setattr(inductor_config.cpp, "cxx", ("no-such-c++-compiler",))
    monkeypatch.setattr(compiled, "_warned", False)
    model = EmbeddedBackbone(TINY_ARCH)
    assert compiled.compiler_problem("cpu") is not None
    assert compiled.compiler_problem("cuda") is None    # inductor needs no host C++ compiler for GPU kernels
    assert model.compile_blocks() is False and model.compile_blocks() is False
    assert all(b._compiled_call_impl is None for b in model.transformer.transformer_blocks)   # eager
    err = capsys.readouterr().err
    assert err.count("warning: model.compile:") == 1 and "no C++ compiler" in err, err
