"""Training throughput of the main job's DiffusionOPD rounds under config variants, interleaved in one process,
and whether the variants end on the same weights (issue 26: speed options must not change results).

    OMP_NUM_THREADS=1 python benchmarks/train_variants.py --rounds 3 \\
        --variant fused=opd.student_from_rollout=true

Every variant starts from the released base with the same seed; round r of every variant runs before round r + 1
of any (so all share the machine's load), and each round is timed. Printed: images/s per variant (median round),
the ratio to the first variant, the ledger's training FLOPs per image, and whether each variant's weights after
the last round are bit-identical to the first variant's.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from opd_bench.backbones import load_backbone
from opd_bench.config import build_config
from opd_bench.ledger import Ledger
from opd_bench.methods import METHODS
from opd_bench.runner import RunContext
from opd_bench.tasks import parse_tasks


def make(sets):
    cfg = build_config({}, ["method=opd", *sets])
    tasks = parse_tasks("all")
    torch.manual_seed(cfg.seed)
    student = load_backbone(cfg.model.checkpoint)
    student.train()
    ctx = RunContext(cfg, tasks, student, Ledger(student.flops_per_forward()))
    method = METHODS["opd"]()
    method.setup(ctx)
    return ctx, method


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variant", action="append", default=[], help="name=key=value,key=value (repeatable)")
    args = ap.parse_args()
    variants = [("default", [])] + [(v.split("=", 1)[0], v.split("=", 1)[1].split(",")) for v in args.variant]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f} at the start")
    runs = {name: make(sets) for name, sets in variants}
    times = {name: [] for name in runs}
    for r in range(args.rounds):
        for name, (ctx, method) in runs.items():
            ctx.round = r
            t0 = time.perf_counter()
            method.train_step(ctx)
            times[name].append(time.perf_counter() - t0)
    first = variants[0][0]
    ref = [p.detach().clone() for p in runs[first][0].params]
    images = runs[first][0].ledger.spent("images") / args.rounds
    print(f"\n| variant | s / round (median of {args.rounds}) | images/s | vs {first} | train GFLOP / image (ledger) "
          f"| weights identical to {first} |\n|---|---|---|---|---|---|")
    med0 = sorted(times[first])[args.rounds // 2]
    for name, (ctx, _) in runs.items():
        med = sorted(times[name])[args.rounds // 2]
        same = all(torch.equal(a, b) for a, b in zip(ref, ctx.params))
        print(f"| {name} | {med:.2f} | {images / med:.2f} | {med0 / med:.2f}x "
              f"| {ctx.ledger.spent('flops') / ctx.ledger.spent('images') / 1e9:.2f} | {same} |")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
