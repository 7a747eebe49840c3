"""``eval.dtype: bfloat16`` against float32 (issue 26 item 3): sampling throughput and the paired score
difference on the same prompts and noises, per task, within one run.

    OMP_NUM_THREADS=1 python benchmarks/eval_dtype.py                        # opd_student, 64 test prompts/task
    OMP_NUM_THREADS=1 python benchmarks/eval_dtype.py --checkpoint base --prompts 32 --repeats 2

Each task is evaluated under the quick protocol's settings (40-step ODE, CFG 4.5, one seed) in float32 and in
bfloat16 autocast, interleaved ``--repeats`` times (the median time per dtype is used), so both sides share the
machine's load. Printed per task: images/s of each and their ratio, the paired mean difference of the primary
score (bfloat16 - float32) with its 95% t-interval, and the protocol's resolution for that task
(``protocol.MDE_TARGET``, the smallest effect the full protocol is sized to detect): bfloat16 is usable for a
task when the interval lies well inside +-MDE.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace

import torch

from opd_bench.backbones import load_backbone
from opd_bench.config import load_config
from opd_bench.evaluate import EvalProtocol, evaluate
from opd_bench.protocol import MDE_TARGET
from opd_bench.stats import paired_t

TASKS = ("aesthetic", "geneval", "ocr", "preference")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="opd_student")
    ap.add_argument("--prompts", type=int, default=64, help="test prompts per task (one seed each)")
    ap.add_argument("--repeats", type=int, default=1, help="interleaved repeats per dtype (timing only)")
    ap.add_argument("--tasks", default=",".join(TASKS))
    args = ap.parse_args()
    base = replace(EvalProtocol.from_config(load_config(None, [])), prompts_per_task=args.prompts,
                   seeds_per_prompt={}, bootstrap=10)
    model = load_backbone(args.checkpoint)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, checkpoint {args.checkpoint}, {args.prompts or 'all'} test prompts x 1 seed per task")
    print("\n| task | float32 images/s | bfloat16 images/s | speed-up | bf16 - fp32 (primary score) [95% CI] "
          "| MDE target | load |\n|---|---|---|---|---|---|---|")
    total = {"float32": 0.0, "bfloat16": 0.0}
    for task in args.tasks.split(","):
        evaluate(model, [task], replace(base, prompts_per_task=2), show_progress=False)   # lazy loads
        times, results = {"float32": [], "bfloat16": []}, {}
        for _ in range(args.repeats):
            for dtype in times:
                t0 = time.perf_counter()
                results[dtype] = evaluate(model, [task], replace(base, dtype=dtype), show_progress=False)
                times[dtype].append(time.perf_counter() - t0)
        n = results["float32"]["tasks"][task]["images"]
        med = {d: sorted(v)[len(v) // 2] for d, v in times.items()}
        for d in total:
            total[d] += med[d]
        key = "score"
        per = {d: [row[key] for row in r["tasks"][task]["per_prompt"]] for d, r in results.items()}
        pt = paired_t(per["bfloat16"], per["float32"])
        print(f"| {task} | {n / med['float32']:.2f} | {n / med['bfloat16']:.2f} | {med['float32'] / med['bfloat16']:.2f}x "
              f"| {pt.diff:+.4f} [{pt.low:+.4f}, {pt.high:+.4f}] | {MDE_TARGET[task]:.2f} | {os.getloadavg()[0]:.2f} |")
    print(f"\nall tasks: {total['float32'] / total['bfloat16']:.2f}x faster in bfloat16 (sampling and scoring)")


if __name__ == "__main__":
    main()
