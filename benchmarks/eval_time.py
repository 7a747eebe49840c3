"""Evaluation cost under the protocols (issues 19 and 26): measured throughput per task, then the time of one
model's full evaluation and of the default 3-method comparison at 5 seeds with every evaluation, as ratios to
their targets (5 min; 3 h with --jobs 2). Everything is measured in this one run, on this machine.

    OMP_NUM_THREADS=2 python benchmarks/eval_time.py                # sample 32 images per task, project
    OMP_NUM_THREADS=2 python benchmarks/eval_time.py --full         # also time a whole full-protocol evaluation
    OMP_NUM_THREADS=2 python benchmarks/eval_time.py --dtype bfloat16   # under eval.dtype=bfloat16 (opt-in)

Per task it times sampling and scoring of ``--images`` test images of the released base under the run's
protocol settings (40 steps, CFG 4.5) and reports images/s; the full protocol's image count per task is the
test split's prompts x its seeds per prompt (opd_bench/protocol.py). The comparison's evaluation work is, per
run, the quick start (served from the cache: free) and final evaluations, the learning-curve evaluations
(9 x curve_prompts val prompts per task) and the full final evaluation the report and claims use; plus the
base's and the teachers' full evaluations once. Training time per run is the main job's measured 601 s
(reports/main_job_timing), unless --train-seconds says otherwise.

It also prints the full evaluation's compute bound: its denoiser FLOPs (the backbone's per-forward count x steps
x 2 CFG halves x images) over a 2048^3 float32 matmul's FLOP/s measured in the same run at the same thread count,
so a target below the bound is seen to be out of reach at this protocol and precision.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from opd_bench.backbones import load_backbone
from opd_bench.config import load_config
from opd_bench.evaluate import EvalProtocol, evaluate
from opd_bench.protocol import named
from opd_bench.tasks import get_task

from main_job import matmul_peak  # noqa: E402  (benchmarks/main_job.py: the same peak the main job's bound uses)

TASKS = ("aesthetic", "geneval", "ocr", "preference")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32, help="test images per task to time")
    ap.add_argument("--full", action="store_true", help="also run and time one whole full-protocol evaluation")
    ap.add_argument("--train-seconds", type=float, default=601.0, help="training seconds of one default run")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--methods", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="eval.dtype to time")
    args = ap.parse_args()
    cfg = load_config(None, [f"eval.dtype={args.dtype}"])
    base = EvalProtocol.from_config(cfg)
    full = named("full", base)
    model = load_backbone("base")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}, eval.dtype {args.dtype}")
    rate, full_images = {}, {}
    for t in TASKS:
        n_test = len(get_task(t).prompts("test"))
        full_images[t] = n_test * full.seeds(t)
        probe = EvalProtocol(**{**base.__dict__, "prompts_per_task": args.images, "seeds_per_prompt": {}})
        evaluate(model, [t], EvalProtocol(**{**probe.__dict__, "prompts_per_task": 2}), show_progress=False)  # lazy loads
        t0 = time.perf_counter()
        res = evaluate(model, [t], probe, show_progress=False)
        dt = time.perf_counter() - t0
        rate[t] = res["tasks"][t]["images"] / dt
        tm = res["timing"][t]
        print(f"{t:>10} (load {os.getloadavg()[0]:.2f}): {rate[t]:5.2f} images/s (sampling {tm['sample_s']:.1f} s, scoring {tm['score_s']:.1f} s for "
              f"{res['tasks'][t]['images']} images); full protocol: {n_test} prompts x {full.seeds(t)} seeds = "
              f"{full_images[t]:,} images")
    one_full = sum(full_images[t] / rate[t] for t in TASKS)
    print(f"one model's full evaluation: {sum(full_images.values()):,} images, {one_full / 60:.1f} min projected "
          f"(target 5 min: ratio {one_full / 300:.2f})")
    peak = matmul_peak()
    per_image = model.flops_per_forward() * base.steps * (2 if base.guidance > 1 else 1)
    bound = sum(full_images.values()) * per_image / peak
    print(f"compute bound of one full evaluation: {sum(full_images.values()):,} images x {per_image / 1e9:.1f} GFLOP "
          f"({base.steps} steps x {2 if base.guidance > 1 else 1} CFG halves x {model.flops_per_forward() / 1e9:.3f} "
          f"GFLOP per forward) / {peak / 1e9:.0f} GFLOP/s (2048^3 float32 matmul, {torch.get_num_threads()} threads, "
          f"this run) = {bound / 60:.1f} min; projected / bound {one_full / bound:.2f}; 5 min / bound "
          f"{300 / bound:.2f}{' (the 5-min target is below the compute bound)' if bound > 300 else ''}")
    curve = cfg.eval.curve_prompts * len(TASKS) * (2 + int(cfg.budget.value // max(1, cfg.eval.curve_every)))
    quick = cfg.eval.prompts_per_task * len(TASKS)
    mean_rate = sum(rate.values()) / len(rate)
    per_run = args.train_seconds + (quick + curve) / mean_rate + one_full
    runs = args.methods * args.seeds
    total = (runs * per_run + (1 + len(TASKS)) * one_full) / args.jobs
    print(f"default comparison ({args.methods} methods x {args.seeds} seeds, --jobs {args.jobs}): per run "
          f"{args.train_seconds:.0f} s training + {(quick + curve) / mean_rate:.0f} s quick and curve evals + "
          f"{one_full:.0f} s full eval; with the base and teachers' full evals: {total / 3600:.1f} h projected "
          f"(target 3 h: ratio {total / 10800:.2f}; --jobs {args.jobs} assumes the cores divide evenly)")
    if args.full:
        t0 = time.perf_counter()
        evaluate(model, list(TASKS), full, show_progress=True)
        dt = time.perf_counter() - t0
        print(f"one model's full evaluation, measured: {dt / 60:.1f} min (target 5 min: ratio {dt / 300:.2f}; "
              f"load {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
