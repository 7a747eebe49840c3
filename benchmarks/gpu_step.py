"""Real-backend step costs: rollout, one OPD step and one GRPO step of a random SD3.5-Medium at 512 px.

A randomly initialised ``SD3Transformer2DModel`` from SD3.5-Medium's published config and a random
``AutoencoderKL`` from SD3's VAE config (bf16 on GPU), wrapped in :class:`~opd_bench.backbones.sd3.SD3Backbone`
with a peft LoRA student (r 32 / alpha 64) and a LoRA teacher adapter on the same transformer; text
embeddings are random tensors of the real shapes (no text encoders). Measures, at the paper's micro-batch:

- rollout: 10-step guided SDE sampler (CFG 4.5, both CFG halves in one batched forward) + VAE decode;
- OPD step: ODE rollout states -> 9 trained steps of (teacher forward, student forward + backward) -> AdamW;
- GRPO step: SDE rollout log-probs -> 9 trained steps of (reference forward, student forward + backward with
  the clipped surrogate + KL) -> AdamW (the rollouts of the steps are timed separately, above);

reporting images/s, peak memory and model-FLOP utilisation (MFU) against a *measured* bf16 matmul peak of the
same device. FLOPs are the analytic ones of the budget ledger (``flops_per_forward``; backward = 2x forward).

    python benchmarks/gpu_step.py [--batch 8] [--steps 10] [--resolution 512] [--json out.json]
    python benchmarks/gpu_step.py --tiny        # CPU smoke run of the same code (< 60 s), kept alive by CI
    python benchmarks/gpu_step.py --compile     # also the phases with compiled transformer blocks: eager/compiled
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from typing import Callable, Dict

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import diffusers
import torch

from opd_bench.backbones.base import Condition
from opd_bench.backbones.sd3 import SD3Backbone, lora_config_dict
from opd_bench.losses import kl_to_reference, opd_step_loss, ppo_clip_loss
from opd_bench.rollout import rollout
from opd_bench.sampler import sde_sigma, sde_transition, transition_logprob

#: SD3.5-Medium's transformer config (stabilityai/stable-diffusion-3.5-medium, transformer/config.json).
SD35M_TRANSFORMER = dict(
    sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64,
    num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048,
    pos_embed_max_size=384, dual_attention_layers=tuple(range(13)), qk_norm="rms_norm",
)
#: SD3's VAE config (vae/config.json): 16 latent channels, 8x downsampling.
SD3_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    latent_channels=16, norm_num_groups=32, sample_size=1024, scaling_factor=1.5305, shift_factor=0.0609,
    use_quant_conv=False, use_post_quant_conv=False,
)
T5_TOKENS = 256            # max_sequence_length of the T5 part (the pipeline's default)
CFG, TEACHER_CFG, NOISE, FRACTION, BETA, CLIP = 4.5, 4.5, 0.7, 0.9, 0.004, 0.2


# ------------------------------------------------------------------------------------------------ setup

def build_backbone(tiny: bool, device: torch.device, dtype: torch.dtype, resolution: int, rank: int) -> SD3Backbone:
    """A random SD3 pipeline without text encoders (built directly on ``device``) as an SD3Backbone."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from diffusers import StableDiffusion3Pipeline

    from opd_bench.backbones.tiny_sd3 import tiny_transformer_config, tiny_vae

    diffusers.utils.logging.set_verbosity_error()   # (".to(dtype) may be inconsistent": nothing to keep in fp32)
    torch.manual_seed(0)
    with torch.device(device):
        if tiny:
            transformer, vae = SD3Transformer2DModel(**tiny_transformer_config(resolution // 2)), tiny_vae()
        else:
            transformer, vae = SD3Transformer2DModel(**SD35M_TRANSFORMER), AutoencoderKL(**SD3_VAE)
    transformer.to(dtype)
    vae.to(dtype)
    none = dict.fromkeys(["text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "text_encoder_3",
                          "tokenizer_3"])
    pipe = StableDiffusion3Pipeline(transformer=transformer, vae=vae,
                                    scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), **none)
    model = SD3Backbone(pipe, resolution=resolution, lora=lora_config_dict(rank, 2 * rank),
                        max_sequence_length=8 if tiny else T5_TOKENS)
    return model.to(device)


def add_teacher(model: SD3Backbone) -> None:
    """A teacher LoRA adapter (random, non-zero) through the real save -> load_teacher path."""
    with torch.no_grad():
        saved = [p.detach().clone() for p in model.trainable_parameters()]
        for p in model.trainable_parameters():
            p.normal_(0, 1e-3)
    with tempfile.TemporaryDirectory() as tmp:
        model.load_teacher("teacher", model.save(os.path.join(tmp, "teacher")))
    with torch.no_grad():
        for p, s in zip(model.trainable_parameters(), saved):
            p.copy_(s)


def random_condition(model: SD3Backbone, batch: int, device, dtype) -> Condition:
    """Random text embeddings of the real shapes: [B, 77 + T5, joint_dim] and pooled [B, pooled_dim]."""
    cfg = model.transformer.config
    g = torch.Generator(device="cpu").manual_seed(1)
    rnd = lambda *s: torch.randn(*s, generator=g).to(device, dtype)  # noqa: E731
    length = model.text_tokens()
    return Condition(rnd(batch, length, cfg.joint_attention_dim), rnd(batch, cfg.pooled_projection_dim),
                     rnd(1, length, cfg.joint_attention_dim), rnd(1, cfg.pooled_projection_dim))


# ------------------------------------------------------------------------------------------------ steps

def opd_step(model: SD3Backbone, cond: Condition, opt, steps: int) -> None:
    """One DiffusionOPD round on one task: ODE rollout, teacher means, closed-form loss, one AdamW step."""
    ro = rollout(model, cond, steps=steps, guidance=CFG, noise_level=0.0, generator=_gen(model))
    ts = ro.timesteps
    opt.zero_grad(set_to_none=True)
    trained = int(math.floor(steps * FRACTION))
    for j in range(trained):
        x = ro.states[:, j]
        with torch.no_grad(), model.adapter("teacher"):
            mu_t = sde_transition(x, model.velocity(x, ts[j], cond, TEACHER_CFG), ts[j], ts[j + 1], 0.0).mean
        mu_s = sde_transition(x, model.velocity(x, ts[j], cond, CFG), ts[j], ts[j + 1], 0.0).mean
        (opd_step_loss(mu_s, mu_t, None).mean() / trained).backward()
    _optimizer_step(model, opt)


def grpo_step(model: SD3Backbone, cond: Condition, opt, steps: int) -> None:
    """One GRPO update: SDE rollout, per trained step the clipped surrogate + KL to the reference, one AdamW step."""
    ro = rollout(model, cond, steps=steps, guidance=CFG, noise_level=NOISE, generator=_gen(model))
    ts = ro.timesteps
    adv = torch.linspace(-1, 1, len(cond), device=ts.device)
    opt.zero_grad(set_to_none=True)
    trained = int(math.floor(steps * FRACTION))
    for j in range(trained):
        x, x_next = ro.states[:, j], ro.states[:, j + 1]
        with torch.no_grad(), model.reference():
            mu_ref = sde_transition(x, model.velocity(x, ts[j], cond, CFG), ts[j], ts[j + 1], NOISE, ts[1]).mean
        tr = sde_transition(x, model.velocity(x, ts[j], cond, CFG), ts[j], ts[j + 1], NOISE, ts[1])
        loss, _ = ppo_clip_loss(transition_logprob(x_next, tr), ro.log_probs[:, j], adv, CLIP)
        kl = kl_to_reference(tr.mean, mu_ref, sde_sigma(ts[j], NOISE, ts[1]), ts[j + 1] - ts[j])
        ((loss + BETA * kl).mean() / trained).backward()
    _optimizer_step(model, opt)


def _optimizer_step(model, opt) -> None:
    torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), 1.0)
    opt.step()


def _gen(model) -> torch.Generator:
    return torch.Generator(device=model.device).manual_seed(0)


# ------------------------------------------------------------------------------------------------ measurement

def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device, repeats: int) -> Dict[str, float]:
    """Median seconds over ``repeats`` runs after one warm-up, and the peak memory (GiB, CUDA only)."""
    fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"seconds": sorted(times)[len(times) // 2], "peak_mem_gib": peak}


def matmul_peak(device, dtype, n: int, iters: int) -> float:
    """Measured dense matmul throughput (FLOP/s) of ``dtype`` on ``device``: the MFU denominator."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    _sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - t0)


def step_flops(model: SD3Backbone, batch: int, steps: int) -> Dict[str, float]:
    """Analytic FLOPs: rollout = N guided velocities; a training step adds, per trained step, one guided
    student forward + backward (3x) and one guided teacher / reference forward."""
    f = model.flops_per_forward() * batch * model.forwards_per_velocity(CFG)
    trained = int(math.floor(steps * FRACTION))
    rollout_f = steps * f
    return {"rollout": rollout_f, "opd_step": rollout_f + trained * 4 * f, "grpo_step": rollout_f + trained * 4 * f}


def compile_phases(model: SD3Backbone, phases: Dict[str, Callable[[], None]], results: dict, device,
                   repeats: int) -> None:
    """Compile the transformer blocks (model.compile) and time every phase again (its warm-up run compiles);
    adds ``compiled_seconds`` and ``eager_over_compiled`` to each phase and prints them."""
    t0 = time.perf_counter()
    if not model.compile_blocks():
        results["compiled"] = "unavailable (see the warning)"
        return
    results["compiled"] = True
    for name, fn in phases.items():
        r = timed(fn, device, repeats)
        eager = results["phases"][name]
        eager.update(compiled_seconds=r["seconds"], eager_over_compiled=eager["seconds"] / r["seconds"],
                     compiled_mfu=eager["mfu"] * eager["seconds"] / r["seconds"])
        print(f"{name:10s} compiled {r['seconds']:8.3f} s  eager/compiled {eager['eager_over_compiled']:5.2f}x  "
              f"MFU {100 * eager['compiled_mfu']:5.1f}%", flush=True)
    print(f"compile: {time.perf_counter() - t0:.0f} s in all, compilation (the warm-up runs) included", flush=True)


def main(argv=None) -> Dict[str, dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny model on the CPU (smoke test, < 60 s)")
    ap.add_argument("--batch", type=int, default=None, help="micro-batch (default 8; tiny: 2)")
    ap.add_argument("--steps", type=int, default=None, help="rollout steps (default 10; tiny: 3)")
    ap.add_argument("--resolution", type=int, default=None, help="pixels (default 512; tiny: 32)")
    ap.add_argument("--rank", type=int, default=32, help="LoRA rank (alpha = 2 * rank)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per phase (default 3; tiny: 1)")
    ap.add_argument("--grad-checkpointing", action="store_true", help="recompute transformer activations")
    ap.add_argument("--compile", action="store_true",
                    help="then time every phase again with the transformer blocks compiled (model.compile) and "
                         "print the step-time ratio eager/compiled")
    ap.add_argument("--device", default=None, help="default: cuda if available (cpu with --tiny)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    tiny = args.tiny
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not tiny else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    batch, steps = args.batch or (2 if tiny else 8), args.steps or (3 if tiny else 10)
    resolution, repeats = args.resolution or (32 if tiny else 512), args.repeats or (1 if tiny else 3)

    model = build_backbone(tiny, device, dtype, resolution, args.rank)
    if args.grad_checkpointing:
        model.set_gradient_checkpointing(True)
    add_teacher(model)
    cond = random_condition(model, batch, device, dtype)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=3e-4, weight_decay=1e-4)
    peak = matmul_peak(device, dtype, 256 if device.type == "cpu" else 8192, 5 if device.type == "cpu" else 50)
    flops = step_flops(model, batch, steps)

    phases = {
        "rollout": lambda: rollout(model, cond, steps=steps, guidance=CFG, noise_level=NOISE, generator=_gen(model)),
        "opd_step": lambda: opd_step(model, cond, opt, steps),
        "grpo_step": lambda: grpo_step(model, cond, opt, steps),
    }
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
               "dtype": str(dtype).replace("torch.", ""), "batch": batch, "steps": steps, "resolution": resolution,
               "lora_rank": args.rank, "latent_shape": list(model.latent_shape),
               "tokens": {"image": model.image_tokens(), "text": model.text_tokens()},
               "transformer_params": sum(p.numel() for n, p in model.transformer.named_parameters() if "lora_" not in n),
               "lora_params": sum(p.numel() for p in model.trainable_parameters()),
               "matmul_peak_tflops": peak / 1e12, "phases": {}}
    for name, fn in phases.items():
        r = timed(fn, device, repeats)
        r.update(images_per_s=batch / r["seconds"], tflops=flops[name] / r["seconds"] / 1e12,
                 mfu=flops[name] / r["seconds"] / peak)
        results["phases"][name] = r
        print(f"{name:10s} {r['seconds']:8.3f} s  {r['images_per_s']:8.2f} img/s  peak {r['peak_mem_gib']:6.1f} GiB  "
              f"{r['tflops']:8.2f} TFLOP/s  MFU {100 * r['mfu']:5.1f}%", flush=True)
    if args.compile:
        compile_phases(model, phases, results, device, repeats)
    print(json.dumps({k: v for k, v in results.items() if k != "phases"}), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
