"""The main job (`opd-bench run --method opd --tasks all`) against its compute bound and the 10-minute target
(issue 26 item 2), shortened to ``--budget`` images and projected to the job's 2,000, everything in one run.

    OMP_NUM_THREADS=2 python benchmarks/main_job.py                                  # 400 images, defaults
    OMP_NUM_THREADS=2 python benchmarks/main_job.py --budget 400 \\
        --variant fast=opd.student_from_rollout=true,eval.dtype=bfloat16             # default, then the variant

The matmul peak (a 2048^3 float32 product, median of 5, at the thread count the job uses) is measured before
and after the runs and averaged, so the bound and the job share the machine's load. Per variant it prints: wall
time, training seconds and images/s (ledger), the ledger's training FLOPs, the compute bound (FLOPs / peak) and
training time over that bound, the evaluation seconds, and the projection to the 2,000-image job: training
scaled by 2,000 / budget, the learning-curve evaluations by their count (every 200 images, plus start and
final), the rest (start-up, quick final evaluation) as measured. The start evaluation is served from the
shipped eval cache (checkpoints/evals/); a variant that changes the eval protocol (eval.dtype) computes it once
into a scratch cache. Load averages are printed beside the numbers.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from opd_bench.config import load_config

MAIN_IMAGES = 2000
CURVE_EVERY = 200


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an n^3 float32 matmul (median of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / sorted(times)[len(times) // 2]


def run_job(budget: int, sets: list, runs_dir: Path, cache: Path) -> dict:
    cmd = [sys.executable, "-m", "opd_bench.cli", "run", "--method", "opd", "--tasks", "all",
           "--budget", f"{budget}:images", "--runs-dir", str(runs_dir)] + [f"--set={s}" for s in sets]
    env = dict(os.environ, OPD_BENCH_EVAL_CACHE=str(cache))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    summary = json.loads(Path(glob.glob(str(runs_dir / "*" / "summary.json"))[0]).read_text())
    evals = [json.loads(x) for x in open(glob.glob(str(runs_dir / "*" / "eval_history.jsonl"))[0])]
    return {"wall": wall, "ledger": summary["ledger"], "curve_evals": sum("curve" in e["label"] for e in evals)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=400, help="training images of the shortened job")
    ap.add_argument("--variant", action="append", default=[],
                    help="name=key=value,key=value: another run with these --set overrides (repeatable)")
    ap.add_argument("--no-default", action="store_true", help="skip the run with the default config")
    args = ap.parse_args()
    variants = ([] if args.no_default else [("default", [])]) + [
        (v.split("=", 1)[0], v.split("=", 1)[1].split(",")) for v in args.variant]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.2f} at the start")
    peak0 = matmul_peak()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, sets in variants:
            results[name] = run_job(args.budget, sets, Path(tmp) / name, Path(tmp) / f"cache_{name}")
            results[name]["load"] = os.getloadavg()[0]
    peak = (peak0 + matmul_peak()) / 2
    print(f"matmul peak (2048^3 float32, before/after): {peak0 / 1e9:.1f} / {2 * peak / 1e9 - peak0 / 1e9:.1f} "
          f"GFLOP/s, mean {peak / 1e9:.1f}")
    print(f"\n| variant | budget | wall s | training s | images/s | train TFLOP (ledger) | bound s | training / bound "
          f"| eval s | projected {MAIN_IMAGES:,}-image job | / 10 min | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    # curve points inside the budget (none at the last image: the budget is spent), plus start and final
    n_curve_main = MAIN_IMAGES // CURVE_EVERY + 1
    curve_images = load_config(None, []).eval.curve_prompts * 4
    for name, r in results.items():
        tr, ev = r["ledger"]["spent"]["train"], r["ledger"]["spent"]["eval"]
        bound = tr["flops"] / peak
        # a curve eval costs its images at the eval phase's measured rate
        per_curve = ev["seconds"] * curve_images / max(1.0, ev["images"])
        projected = (r["wall"] + tr["seconds"] * (MAIN_IMAGES / args.budget - 1)
                     + per_curve * (n_curve_main - r["curve_evals"]))
        print(f"| {name} | {args.budget} | {r['wall']:.0f} | {tr['seconds']:.0f} | {tr['images'] / tr['seconds']:.2f} "
              f"| {tr['flops'] / 1e12:.2f} | {bound:.0f} | {tr['seconds'] / bound:.2f} | {ev['seconds']:.0f} "
              f"| {projected / 60:.1f} min | {projected / 600:.2f} | {r['load']:.2f} |")
    if "default" in results and len(results) > 1:
        d = results["default"]["ledger"]["spent"]["train"]["seconds"]
        for name, r in results.items():
            if name != "default":
                print(f"training speed-up of {name} over default: {d / r['ledger']['spent']['train']['seconds']:.2f}x")


if __name__ == "__main__":
    main()
