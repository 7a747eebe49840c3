"""Evaluation sampling eager against ``model.compile`` (issue 26's levers): the released base's evaluation of one
task's test prompts, timed alternately with eager and with compiled transformer blocks in this one process, so
both see the same load. Prints each repeat's images/s and the compiled/eager ratio of the medians.

    OMP_NUM_THREADS=1 python benchmarks/eval_compile.py --images 16 --repeats 3

Compilation (inductor, C++ on the CPU) happens once per batch shape before the timed repeats and is printed.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from opd_bench.backbones import load_backbone
from opd_bench.config import load_config
from opd_bench.evaluate import EvalProtocol, evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16, help="test images per timed evaluation")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--task", default="aesthetic")
    args = ap.parse_args()
    base = EvalProtocol.from_config(load_config(None, []))
    probe = EvalProtocol(**{**base.__dict__, "prompts_per_task": args.images, "seeds_per_prompt": {}})
    eager, comp = load_backbone("base"), load_backbone("base")
    if not comp.compile_blocks():
        raise SystemExit("inductor cannot compile here (see the warning above)")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}")
    t0 = time.perf_counter()
    evaluate(comp, [args.task], probe, show_progress=False)
    print(f"compilation and first evaluation: {time.perf_counter() - t0:.0f} s")
    evaluate(eager, [args.task], EvalProtocol(**{**probe.__dict__, "prompts_per_task": 2}), show_progress=False)
    rates = {"eager": [], "compiled": []}
    for rep in range(args.repeats):
        for name, model in (("eager", eager), ("compiled", comp)):
            t0 = time.perf_counter()
            evaluate(model, [args.task], probe, show_progress=False)
            rates[name].append(args.images / (time.perf_counter() - t0))
            print(f"repeat {rep} {name}: {rates[name][-1]:.2f} images/s (load {os.getloadavg()[0]:.2f})")
    e, c = statistics.median(rates["eager"]), statistics.median(rates["compiled"])
    print(f"{args.task}: eager {e:.2f}, compiled {c:.2f} images/s; compiled/eager {c / e:.2f}x")


if __name__ == "__main__":
    main()
