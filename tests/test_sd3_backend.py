"""The real backend (SD3Backbone) on a tiny random StableDiffusion3Pipeline built from configs: real diffusers /
transformers / peft classes and code paths, no downloads."""
from __future__ import annotations

import json

import pytest
import torch

from opd_bench.backbones import load_backbone
from opd_bench.backbones.sd3 import KIND, SD3Backbone, sd3_transformer_flops
from opd_bench.backbones.tiny_sd3 import build_tiny_sd3_pipeline
from opd_bench.checkpoint import load_checkpoint, save_checkpoint
from opd_bench.errors import CheckpointError, UserError
from opd_bench.losses import kl_to_reference, opd_step_loss, ppo_clip_loss
from opd_bench.rollout import rollout
from opd_bench.sampler import sde_sigma, sde_transition, transition_logprob

PROMPTS = ["a photo of a cat", "a red car"]
SEQ = 8          # T5 part of the text sequence (kept short for speed)
KW = dict(lora_rank=4, lora_alpha=8, max_sequence_length=SEQ)


@pytest.fixture(scope="session")
def sd3_folder(tmp_path_factory):
    return build_tiny_sd3_pipeline(tmp_path_factory.mktemp("sd3") / "tiny-sd3", seed=0)


@pytest.fixture(scope="session")
def teacher_ckpt(sd3_folder, tmp_path_factory):
    """A 'teacher' LoRA checkpoint: a student whose LoRA B matrices were randomised (so it changes outputs)."""
    model = SD3Backbone.from_pretrained(sd3_folder, **KW)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.save(tmp_path_factory.mktemp("teacher") / "teacher_ocr")


def make(sd3_folder, **kw) -> SD3Backbone:
    return SD3Backbone.from_pretrained(sd3_folder, **{**KW, **kw})


def raw_base(sd3_folder):
    """The base transformer loaded on its own (no adapters), for comparisons."""
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel.from_pretrained(str(sd3_folder / "transformer"))


def _inputs(model, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((b, *model.latent_shape), generator=g)
    t = torch.full((b,), 0.7)
    return x, t, model.encode_prompts(PROMPTS[:b])


def test_tokenizer_ids_are_clip_ids(sd3_folder):
    model = make(sd3_folder)
    ids = model.pipe.tokenizer(["a photo of a cat"]).input_ids[0]
    # OpenAI CLIP's ids: <|startoftext|> a</w> photo</w> of</w> a</w> cat</w> <|endoftext|> (specials remapped)
    tok = model.pipe.tokenizer
    assert ids == [tok.bos_token_id, 320, 1125, 539, 320, 2368, tok.eos_token_id]
    assert tok.decode(ids, skip_special_tokens=True).strip() == "a photo of a cat"


def test_shapes_encoding_and_vae(sd3_folder):
    model = make(sd3_folder)
    assert model.latent_shape == (16, 16, 16) and model.resolution == 32
    cond = model.encode_prompts(PROMPTS)
    assert cond.states.shape == (2, 77 + SEQ, 64) and cond.pooled.shape == (2, 64)
    assert torch.all(cond.states[:, 77:] == 0)                 # no T5 in this folder: zeros, as the pipeline does
    assert cond.uncond_states.shape == (1, 77 + SEQ, 64)
    x = torch.randn(2, *model.latent_shape)
    imgs = model.to_images(x)
    assert imgs.shape == (2, 3, 32, 32) and imgs.min() >= 0 and imgs.max() <= 1
    assert model.from_images(imgs).shape == x.shape
    v = model.velocity(x, 0.5, cond, 4.5)
    assert v.shape == x.shape and torch.isfinite(v).all()
    assert model.flops_per_forward() == sd3_transformer_flops(model.transformer, 64, 77 + SEQ) > 0
    assert model.scheduler_shift == 3.0


def test_t5_text_encoder_is_used_when_present(tmp_path):
    folder = build_tiny_sd3_pipeline(tmp_path / "with-t5", with_t5=True)
    model = make(folder)
    assert len(model.text_encoders) == 3
    cond = model.encode_prompts(PROMPTS)
    assert cond.states.shape == (2, 77 + SEQ, 64) and cond.states[:, 77:].abs().sum() > 0
    no_t5 = make(folder, load_t5=False)
    assert len(no_t5.text_encoders) == 2 and torch.all(no_t5.encode_prompts(PROMPTS).states[:, 77:] == 0)


@pytest.mark.parametrize("noise_level", [0.0, 0.7])
def test_rollout_ode_and_sde(sd3_folder, noise_level):
    model = make(sd3_folder)
    cond = model.encode_prompts(PROMPTS)
    run = lambda seed: rollout(model, cond, steps=3, guidance=4.5, noise_level=noise_level,  # noqa: E731
                               generator=torch.Generator().manual_seed(seed))
    a, b, c = run(0), run(0), run(1)
    assert a.images.shape == (2, 3, 32, 32) and a.states.shape == (2, 4, 16, 16, 16)
    assert torch.equal(a.states, b.states) and not torch.equal(a.states, c.states)
    if noise_level == 0:
        assert a.log_probs is None
    else:
        assert a.log_probs.shape == (2, 3) and torch.isfinite(a.log_probs).all()
        assert torch.equal(a.log_probs, b.log_probs)


def _denoise_raw(transformer, x, t, cond):
    with torch.no_grad():
        return transformer(hidden_states=x, encoder_hidden_states=cond.states, pooled_projections=cond.pooled,
                           timestep=t * 1000.0, return_dict=False)[0]


def _sgd_on_student(model, loss):
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2, weight_decay=1e-4)
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_reference_is_base_and_student_moves(sd3_folder):
    model = make(sd3_folder)
    base = raw_base(sd3_folder)
    x, t, cond = _inputs(model)
    expected = _denoise_raw(base, x, t, cond)
    with torch.no_grad():
        with model.reference():
            assert model.active_adapter == "reference"
            ref0 = model.denoise(x, t, cond.states, cond.pooled)
        stu0 = model.denoise(x, t, cond.states, cond.pooled)
    assert torch.allclose(ref0, expected, atol=1e-6) and torch.allclose(stu0, expected, atol=1e-6)
    _sgd_on_student(model, model.velocity(x, t, cond, 4.5).pow(2).mean())
    with torch.no_grad():
        with model.adapter("reference"):
            ref1 = model.denoise(x, t, cond.states, cond.pooled)
        stu1 = model.denoise(x, t, cond.states, cond.pooled)
    assert torch.allclose(ref1, expected, atol=1e-6)
    assert (stu1 - expected).abs().max() > 1e-4
    assert model.active_adapter == "student" and all(p.requires_grad for p in model.trainable_parameters())


def test_teacher_adapter_switch_restores_student(sd3_folder, teacher_ckpt):
    model = make(sd3_folder)
    n_train = len(model.trainable_parameters())
    n_params = sum(1 for _ in model.transformer.parameters())
    model.load_teacher("ocr", teacher_ckpt)
    assert sum(1 for _ in model.transformer.parameters()) > n_params        # same transformer, one more adapter
    assert len(model.trainable_parameters()) == n_train
    assert model.active_adapter == "student"
    x, t, cond = _inputs(model)
    with torch.no_grad():
        s0 = model.velocity(x, t, cond, 4.5)
        with model.adapter("ocr"):
            assert model.active_adapter == "ocr"
            tv = model.velocity(x, t, cond, 1.0)
            tv45 = model.velocity(x, t, cond, 4.5)
            with model.reference():
                r = model.velocity(x, t, cond, 4.5)
            assert model.active_adapter == "ocr"                        # nested switches restore
        s1 = model.velocity(x, t, cond, 4.5)
    assert torch.equal(s0, s1)
    assert (tv45 - s0).abs().max() > 1e-3 and torch.allclose(r, s0, atol=1e-6)  # student == base at init
    assert tv.shape == s0.shape
    teacher_params = [p for n, p in model.transformer.named_parameters() if ".ocr." in n]
    assert teacher_params and not any(p.requires_grad for p in teacher_params)
    with pytest.raises(KeyError, match="unknown adapter"):
        with model.adapter("nope"):
            pass
    with pytest.raises(ValueError, match="reserved or already loaded"):
        model.load_teacher("ocr", teacher_ckpt)


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.transformer.named_parameters()}


def _changed(model, before):
    return {n for n, p in model.transformer.named_parameters() if not torch.equal(p, before[n])}


def _student_names(model):
    return {n for n, _ in model.transformer.named_parameters() if ".student." in n}


def test_grpo_like_step_changes_only_student_lora(sd3_folder):
    model = make(sd3_folder)
    a, steps = 0.7, 3
    cond = model.encode_prompts(PROMPTS)
    ro = rollout(model, cond, steps=steps, guidance=4.5, noise_level=a, generator=torch.Generator().manual_seed(0))
    ts = ro.timesteps
    adv = torch.tensor([1.0, -1.0])
    before = _snapshot(model)
    loss = 0.0
    for j in range(steps - 1):
        x = ro.states[:, j]
        tr = sde_transition(x, model.velocity(x, ts[j], cond, 4.5), ts[j], ts[j + 1], a, t_first=ts[1])
        lp = transition_logprob(ro.states[:, j + 1], tr)
        per, ratio = ppo_clip_loss(lp, ro.log_probs[:, j], adv, 0.2)
        assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-4)    # on-policy
        with torch.no_grad(), model.reference():
            ref = sde_transition(x, model.velocity(x, ts[j], cond, 4.5), ts[j], ts[j + 1], a, t_first=ts[1])
        sigma = sde_sigma(ts[j], a, ts[1])
        loss = loss + per.mean() + 0.004 * kl_to_reference(tr.mean, ref.mean, sigma, ts[j + 1] - ts[j]).mean()
    _sgd_on_student(model, loss)
    changed = _changed(model, before)
    assert changed and changed <= _student_names(model)


def test_opd_like_step_changes_only_student_lora(sd3_folder, teacher_ckpt):
    model = make(sd3_folder)
    model.load_teacher("ocr", teacher_ckpt)
    cond = model.encode_prompts(PROMPTS)
    ro = rollout(model, cond, steps=3, guidance=4.5, noise_level=0.0, generator=torch.Generator().manual_seed(0))
    ts = ro.timesteps
    before = _snapshot(model)
    loss = 0.0
    for j in range(2):
        x = ro.states[:, j].detach()
        with torch.no_grad(), model.adapter("ocr"):
            mu_t = sde_transition(x, model.velocity(x, ts[j], cond, 1.0), ts[j], ts[j + 1], 0.0).mean
        mu_s = sde_transition(x, model.velocity(x, ts[j], cond, 4.5), ts[j], ts[j + 1], 0.0).mean
        loss = loss + opd_step_loss(mu_s, mu_t, None).mean()
    assert loss.item() > 0
    _sgd_on_student(model, loss)
    changed = _changed(model, before)
    assert changed and changed <= _student_names(model)


def test_save_load_roundtrip(sd3_folder, tmp_path):
    model = make(sd3_folder)
    x, t, cond = _inputs(model)
    _sgd_on_student(model, model.velocity(x, t, cond, 4.5).pow(2).mean())
    path = model.save(tmp_path / "student", extra_config={"step": 1})
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["kind"] == KIND and cfg["backbone"] == "sd3" and cfg["base"] == str(sd3_folder.resolve())
    assert cfg["step"] == 1 and cfg["lora"]["r"] == 4
    assert all("lora_" in k for k in model.student_state_dict())             # only LoRA weights are stored
    for loaded in (SD3Backbone.load(path), load_backbone(path)):
        assert isinstance(loaded, SD3Backbone)
        with torch.no_grad():
            assert torch.equal(loaded.velocity(x, t, cond, 4.5), model.velocity(x, t, cond, 4.5))
    assert isinstance(load_backbone(sd3_folder), SD3Backbone)               # a raw diffusers folder


def test_clear_errors(sd3_folder, tmp_path, teacher_ckpt):
    with pytest.raises(CheckpointError, match="SD3 base model not found") as e:
        SD3Backbone.from_pretrained(tmp_path / "missing")
    assert "\n" not in str(e.value) and isinstance(e.value, UserError)
    model = make(sd3_folder)
    path = model.save(tmp_path / "student")
    with pytest.raises(CheckpointError, match="needs its SD3 base folder"):
        SD3Backbone.load(path, base=str(tmp_path / "moved"))
    good, cfg = load_checkpoint(teacher_ckpt, kind=KIND)
    renamed = {k.replace("to_q", "to_qq"): v for k, v in good.items()}
    bad = save_checkpoint(tmp_path / "bad_teacher", renamed, {k: v for k, v in cfg.items() if k != "kind"}, kind=KIND)
    with pytest.raises(CheckpointError, match="do not fit adapter"):
        model.load_teacher("bad", bad)
    assert "bad" not in model.adapter_names() and model.active_adapter == "student"
    model.load_teacher("ocr", teacher_ckpt)                                  # the model is still usable


def test_peft_adapter_folder_as_teacher(sd3_folder, teacher_ckpt, tmp_path):
    """Teachers released in peft's format (adapter_config.json + adapter_model.safetensors) load too."""
    from safetensors.torch import save_file

    src = SD3Backbone.load(teacher_ckpt)
    folder = tmp_path / "peft_teacher"
    folder.mkdir()
    save_file({f"base_model.model.{k}": v.contiguous() for k, v in src.student_state_dict().items()},
              str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps(
        {"r": 4, "lora_alpha": 8, "target_modules": src.lora["target_modules"], "peft_type": "LORA"}))
    model = make(sd3_folder)
    model.load_teacher("geneval", folder)
    x, t, cond = _inputs(model)
    with torch.no_grad(), model.adapter("geneval"):
        got = model.velocity(x, t, cond, 4.5)
    with torch.no_grad():
        assert torch.allclose(got, src.velocity(x, t, cond, 4.5), atol=1e-6)


def test_bfloat16_base_with_float32_lora(sd3_folder, tmp_path):
    model = make(sd3_folder, dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and all(p.dtype == torch.float32 for p in model.trainable_parameters())
    x, t, cond = _inputs(model)
    v = model.velocity(x, t, cond, 4.5)
    assert v.dtype == torch.float32 and torch.isfinite(v).all()
    _sgd_on_student(model, v.pow(2).mean())
    assert all(p.grad is not None for p in model.trainable_parameters())
    assert json.loads((model.save(tmp_path / "s") / "config.json").read_text())["dtype"] == "bfloat16"


# ---- LoRA interop with stock diffusers / peft (issue 22) ------------------------------------------------------

def _stock_pipeline(folder):
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(str(folder), text_encoder_3=None, tokenizer_3=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _pipe_images(pipe, noise, **kw):
    with torch.no_grad():
        return pipe(PROMPTS, latents=noise.clone(), num_inference_steps=4, guidance_scale=4.5, output_type="pt",
                    max_sequence_length=SEQ, **kw).images


def test_student_checkpoint_loads_with_stock_load_lora_weights(sd3_folder, teacher_ckpt, tmp_path):
    """A saved student (rank 4, alpha 8: scale 2) is also a diffusers LoRA: stock load_lora_weights on a stock
    pipeline reproduces the student's own samples (same latents), and differs from the base's."""
    from safetensors import safe_open

    from opd_bench.backbones.sd3 import DIFFUSERS_LORA

    student = SD3Backbone.load(teacher_ckpt)
    with safe_open(str(teacher_ckpt / DIFFUSERS_LORA), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert all(k.startswith("transformer.") for k in keys) and "lora_adapter_metadata" in meta
    assert json.loads((teacher_ckpt / "manifest.json").read_text())["files"][DIFFUSERS_LORA]["sha256"]
    noise = torch.randn((2, *student.latent_shape), generator=torch.Generator().manual_seed(1))
    own = _pipe_images(student.pipe, noise)                      # the student adapter is active in its pipeline
    stock = _stock_pipeline(sd3_folder)
    base = _pipe_images(stock, noise)
    stock.load_lora_weights(str(teacher_ckpt))
    loaded = _pipe_images(stock, noise)
    assert (loaded - own).abs().max().item() <= 1e-5
    assert (base - own).abs().max().item() > 1e-2              # the LoRA matters at this strength
    # ... and on opd-bench's own ODE schedule the stock pipeline reproduces the student's eval samples
    from opd_bench.backbones.sd3 import pipeline_sigmas
    from opd_bench.evaluate import EvalProtocol, generate

    ours = generate(student, PROMPTS, noise.clone(), EvalProtocol(steps=4, guidance=4.5, shift=student.scheduler_shift))
    assert (_pipe_images(stock, noise, sigmas=pipeline_sigmas(4)) - ours).abs().max().item() <= 1e-5


def test_lora_targets_follow_flow_grpo(sd3_folder):
    """Flow-GRPO's targets: both streams' joint-attention projections, not SD3.5's dual-attention attn2."""
    model = make(sd3_folder)
    adapted = {n.split(".lora_")[0] for n, _ in model._lora_parameters()}
    assert any(".attn.to_q" in n for n in adapted) and any(".attn.add_k_proj" in n for n in adapted)
    assert not any(".attn2." in n for n in adapted)
    assert model.transformer.transformer_blocks[0].attn2 is not None   # the tiny model has a dual-attention block


def test_stock_diffusers_lora_loads_as_teacher(sd3_folder, tmp_path):
    """A LoRA trained and saved by stock code (peft add_adapter on the pipeline's transformer, then
    get_peft_model_state_dict + StableDiffusion3Pipeline.save_lora_weights) is a teacher with the same
    velocity as the stock transformer carrying it; without metadata diffusers' alpha = r convention applies."""
    from diffusers import StableDiffusion3Pipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = _stock_pipeline(sd3_folder)
    cfg = LoraConfig(r=4, lora_alpha=16, init_lora_weights="gaussian", target_modules=["to_q", "to_v", "add_k_proj"])
    pipe.transformer.add_adapter(cfg)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for n, p in pipe.transformer.named_parameters():
            if "lora_B" in n:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    state = get_peft_model_state_dict(pipe.transformer)
    StableDiffusion3Pipeline.save_lora_weights(tmp_path / "with_meta", transformer_lora_layers=state,
                                               transformer_lora_adapter_metadata=cfg.to_dict())
    model = make(sd3_folder)
    model.load_teacher("stock", tmp_path / "with_meta")
    assert model.teachers["stock"]["lora"]["lora_alpha"] == 16 and model.teachers["stock"]["lora"]["r"] == 4
    x, t, cond = _inputs(model)
    with torch.no_grad(), model.adapter("stock"):
        got = model.denoise(x, t, cond.states, cond.pooled)
    with torch.no_grad():
        want = pipe.transformer(hidden_states=x, encoder_hidden_states=cond.states, pooled_projections=cond.pooled,
                                timestep=t * 1000, return_dict=False)[0]
    assert torch.allclose(got, want, atol=1e-5)
    StableDiffusion3Pipeline.save_lora_weights(tmp_path / "no_meta", transformer_lora_layers=state)
    model.load_teacher("no_meta", tmp_path / "no_meta" / "pytorch_lora_weights.safetensors")
    assert model.teachers["no_meta"]["lora"]["lora_alpha"] == 4           # diffusers: alpha = r without metadata


def test_dtype_keyword_matches_the_installed_diffusers(monkeypatch):
    """diffusers < 0.40 ignores ``dtype=`` (it wants ``torch_dtype=``); 0.40+ deprecates ``torch_dtype``. The
    floor (pyproject: 0.34, the first with LoRA adapter metadata) gets the keyword it reads."""
    import diffusers

    from opd_bench.backbones.sd3 import dtype_kwarg

    for version, key in (("0.34.0", "torch_dtype"), ("0.39.1", "torch_dtype"), ("0.40.0", "dtype"),
                         ("0.42.1.dev0", "dtype")):
        monkeypatch.setattr(diffusers, "__version__", version)
        assert dtype_kwarg(torch.bfloat16) == {key: torch.bfloat16}
