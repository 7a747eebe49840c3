"""Rollout overhead: raw batched denoiser forwards vs the full SDE rollout with log-probs.

Same model (the default embedded architecture, random init), same batch, same steps, same CFG batch layout,
measured in one process with interleaved repeats; prints the median ratio. Target: <= 1.10.

    python benchmarks/rollout_overhead.py [--batch 32] [--steps 10] [--repeats 7]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from opd_bench.backbones import EmbeddedBackbone
from opd_bench.rollout import rollout
from opd_bench.sampler import timestep_schedule


@torch.no_grad()
def raw_forwards(model, cond, steps, batch, generator):
    """Only the denoiser: the same 2B-batched CFG forward at each of the N steps, nothing else."""
    ts = timestep_schedule(steps)
    x = torch.randn((batch, *model.latent_shape), generator=generator)
    states = torch.cat([cond.uncond_states.expand(batch, -1, -1), cond.states])
    pooled = torch.cat([cond.uncond_pooled.expand(batch, -1), cond.pooled])
    xx = torch.cat([x, x])
    for j in range(steps):
        model.denoise(xx, ts[j].expand(2 * batch), states, pooled)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--guidance", type=float, default=4.5)
    ap.add_argument("--noise-level", type=float, default=0.7)
    args = ap.parse_args()

    torch.manual_seed(0)
    model = EmbeddedBackbone().eval()
    prompts = [f"{n} red circles above a blue square" for n in range(args.batch)]
    cond = model.encode_prompts(prompts)
    g = torch.Generator().manual_seed(0)
    raw_forwards(model, cond, args.steps, args.batch, g)  # warm-up
    rollout(model, cond, steps=args.steps, guidance=args.guidance, noise_level=args.noise_level, generator=g)
    t_raw, t_roll = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        raw_forwards(model, cond, args.steps, args.batch, g)
        t_raw.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        r = rollout(model, cond, steps=args.steps, guidance=args.guidance, noise_level=args.noise_level, generator=g)
        t_roll.append(time.perf_counter() - t0)
    assert r.log_probs is not None and r.log_probs.shape == (args.batch, args.steps)
    raw, roll = statistics.median(t_raw), statistics.median(t_roll)
    print(f"machine: {platform.machine()} {platform.processor() or ''} torch {torch.__version__} threads {torch.get_num_threads()}")
    print(f"batch {args.batch}, steps {args.steps}, CFG {args.guidance} (2B-batched forwards), noise level {args.noise_level}")
    print(f"raw denoiser forwards: {raw * 1000:8.1f} ms   (median of {args.repeats})")
    print(f"SDE rollout + logprob: {roll * 1000:8.1f} ms")
    print(f"ratio rollout / raw:   {roll / raw:8.3f}   (target <= 1.10)")


if __name__ == "__main__":
    main()
