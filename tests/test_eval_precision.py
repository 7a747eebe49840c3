"""Evaluation speed without changing results (issue 26 items 2-3): the float32 default samples exactly as the
plain no-grad sampler does; ``eval.dtype: bfloat16`` is opt-in, changes the samples
(so it is in the cache key and the label), keeps the ODE state and the cached prompt encodings float32, and
leaves the model usable for training afterwards."""
from dataclasses import replace

import pytest
import torch
from tiny_world import make_tiny_world

from opd_bench import evalcache
from opd_bench.backbones import load_backbone
from opd_bench.config import build_config
from opd_bench.errors import ConfigError
from opd_bench.evaluate import evaluate, generate, prompt_noise
from opd_bench.precision import sampling_precision
from opd_bench.protocol import EvalProtocol, label, named
from opd_bench.rollout import rollout

PROMPTS = ['a red circle', 'a sign that says "AB"', 'two blue squares', 'a green triangle', 'a yellow star',
           'a purple circle left of a red square']
PROTOCOL = EvalProtocol(steps=4, prompts_per_task=4, bootstrap=10)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_tiny_world(tmp_path_factory.mktemp("world"))


def _noises(model, n=len(PROMPTS)):
    return torch.stack([prompt_noise(PROTOCOL.seed, "geneval", i, model.latent_shape) for i in range(n)])


def test_float32_generate_is_the_plain_no_grad_sampler(world):
    """Batch by batch (a batch's size can change float rounding on CPU, so batches are compared as batches)."""
    model = load_backbone(world / "base")
    noises = _noises(model)
    for bs in (3, 6, 64):
        with torch.no_grad():   # the sampler as it ran before inference mode and eval.dtype
            ref = torch.cat([rollout(model, model.encode_prompts(PROMPTS[s : s + bs]), steps=4,
                                     guidance=PROTOCOL.guidance, noise_level=0.0, shift=PROTOCOL.shift,
                                     x_init=noises[s : s + bs], keep_states=False).images
                             for s in range(0, len(PROMPTS), bs)])
        out = generate(model, PROMPTS, noises, replace(PROTOCOL, batch_size=bs))
        assert torch.equal(out, ref), bs
        assert not out.is_inference() and out.dtype == torch.float32


def test_bfloat16_is_opt_in_and_changes_samples_but_not_the_float32_path(world):
    model = load_backbone(world / "base")
    noises = _noises(model)
    f32 = generate(model, PROMPTS, noises, PROTOCOL)
    bf16 = generate(model, PROMPTS, noises, replace(PROTOCOL, dtype="bfloat16"))
    assert bf16.dtype == torch.float32 and bf16.shape == f32.shape
    assert not torch.equal(bf16, f32)                     # other numerics ...
    assert (bf16 - f32).abs().mean() < 0.05               # ... of the same images
    # the prompt encodings cached during the bf16 evaluation are float32 normal tensors: a float32 evaluation
    # afterwards is bit-identical and the model still trains (its cached encodings enter autograd)
    for states, pooled in (model._prompt_cache[p] for p in PROMPTS):
        assert states.dtype == pooled.dtype == torch.float32 and not states.is_inference()
    assert torch.equal(generate(model, PROMPTS, noises, PROTOCOL), f32)
    cond = model.encode_prompts(PROMPTS[:2])
    loss = model.velocity(noises[:2], torch.tensor(0.5), cond, 2.0).square().mean()
    loss.backward()
    assert next(model.transformer.parameters()).grad is not None


def test_dtype_is_part_of_the_protocol_only_when_not_the_default(world):
    assert "dtype" not in EvalProtocol().to_dict()               # keys recorded before the field still hold
    bf = replace(named("quick"), dtype="bfloat16")
    assert bf.to_dict()["dtype"] == "bfloat16"
    assert label(named("quick")) == "quick" and label(bf) == "quick, bfloat16"
    assert label(replace(PROTOCOL, dtype="bfloat16")).endswith(", bfloat16")
    assert evalcache.cache_key(world / "base", PROTOCOL) != evalcache.cache_key(world / "base",
                                                                             replace(PROTOCOL, dtype="bfloat16"))
    assert EvalProtocol.from_dict(bf.to_dict()) == bf
    assert EvalProtocol.from_config(build_config({}, ["eval.dtype=bfloat16"])).dtype == "bfloat16"
    with pytest.raises(ConfigError, match="eval.dtype"):
        build_config({}, ["eval.dtype=float16"])
    with pytest.raises(ValueError, match="eval.dtype"):
        sampling_precision("cpu", "float16")


def test_a_bfloat16_evaluation_records_its_protocol(world):
    model = load_backbone(world / "base")
    res = evaluate(model, ["geneval"], replace(PROTOCOL, dtype="bfloat16"), show_progress=False)
    assert res["protocol"]["dtype"] == "bfloat16" and res["protocol_label"].endswith("bfloat16")
    assert 0.0 <= res["tasks"]["geneval"]["mean"] <= 1.0
