"""Where one evaluation's and one training round's time goes (issue 26 item 1).

Evaluation: per task, the share of sampling (denoiser forwards by operator class, from torch.profiler) and of
scoring (OCR, the world's parser, the gold scorers, the reward models, uint8/PIL conversion, from cProfile), for
the released base under the run's protocol settings. Training: ``--train-rounds R`` rounds of the main job's
DiffusionOPD (default config, every task) split into student rollout, teacher means, the student's forward,
its backward and the optimizer step.

    OMP_NUM_THREADS=1 python benchmarks/profile_eval.py --images 32          # every task, 32 test images each
    OMP_NUM_THREADS=1 python benchmarks/profile_eval.py --tasks ocr --images 64 --top 20
    OMP_NUM_THREADS=1 python benchmarks/profile_eval.py --images 0 --train-rounds 2

Prints one markdown table per task (share of the task's wall time per component) and the operator table of the
sampling (share of the profiled CPU time per aten operator class). Machine load is printed beside it: on a
shared machine the shares, not the seconds, are what carries over.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import time
from collections import Counter
from dataclasses import replace

import torch

from opd_bench.backbones import load_backbone
from opd_bench.config import load_config
from opd_bench.evaluate import EvalProtocol, evaluate, generate, prompt_noise
from opd_bench.tasks import get_task, parse_tasks

TASKS = ("aesthetic", "geneval", "ocr", "preference")

#: components: label -> (file substring, function name) pairs of cProfile entries; a label's time is the largest
#: cumulative time among its entries (its outermost call), so nested calls are not counted twice
COMPONENTS = {
    "sampling (denoiser, CFG, Euler)": [("opd_bench/rollout.py", "rollout")],
    "prompt encoding (cached)": [("opd_bench/backbones/base.py", "encode_prompts")],
    "OCR, all (RapidOCR)": [("opd_bench/world/ocr.py", "read_text")],
    "OCR onnxruntime sessions": [("onnxruntime_inference_collection.py", "run")],
    "OCR input preparation (PIL upscale, border)": [("opd_bench/world/ocr.py", "_prepare")],
    "GenEval scene parser": [("opd_bench/world/parser.py", "parse")],
    "gold scorers": [("opd_bench/tasks/_learned_reward.py", "gold")],
    "learned reward models": [("opd_bench/world/reward_models.py", "score")],
    "uint8 conversion": [("opd_bench/world/__init__.py", "to_uint8"), ("reward_models.py", "tensor_to_uint8")],
    "bootstrap CIs": [("opd_bench/evaluate.py", "summarize_task")],
}

#: aten operator classes of the denoiser's forward (torch.profiler self CPU time)
OP_CLASSES = {
    "matmul (linear/addmm/mm/bmm)": ("addmm", "aten::mm", "bmm", "linear", "matmul"),
    "attention (SDPA)": ("scaled_dot_product", "_flash_attention", "attention"),
    "GELU / SiLU": ("gelu", "silu"),
    "layer norm": ("layer_norm",),
    "elementwise (add/mul/cat/copy...)": ("add", "mul", "sub", "div", "cat", "copy_", "clamp", "where", "neg",
                                          "rsub", "exp", "cos", "sin", "pow", "chunk", "split"),
    "view/reshape/permute (no compute)": ("view", "reshape", "permute", "transpose", "expand", "unsqueeze",
                                          "slice", "select", "as_strided", "contiguous", "t", "flatten",
                                          "squeeze", "empty", "stack", "narrow", "unflatten", "clone", "to",
                                          "_to_copy", "resolve", "lift", "detach", "alias"),
}


#: training components: RunContext methods (cumulative time of each, outermost call)
TRAIN_COMPONENTS = {
    "student rollout (no grad, ODE)": [("opd_bench/runner.py", "rollout")],
    "teacher means (no grad)": [("opd_bench/runner.py", "teacher_transition"),
                                ("opd_bench/runner.py", "teacher_transitions")],
    "student forward (grad)": [("opd_bench/runner.py", "student_transition")],
    "backward": [("opd_bench/runner.py", "backward")],
    "optimizer step (AdamW, EMA, clip)": [("opd_bench/runner.py", "optimizer_step")],
    "prompt encoding (cached)": [("opd_bench/backbones/base.py", "encode_prompts")],
}


def component_times(stats: pstats.Stats, table: dict) -> dict:
    return {label: max([ct for (file, _, name), (_, _, _, ct, _) in stats.stats.items()
                        if any(path in file and name == func for path, func in entries)], default=0.0)
            for label, entries in table.items()}


def print_shares(title: str, comp: dict, wall: float) -> None:
    print(f"\n{title}\n\n| component | share |\n|---|---|")
    for label, s in comp.items():
        if s > 0:
            print(f"| {label} | {100 * s / wall:.1f}% |")


def op_shares(fn) -> Counter:
    """Self CPU time of ``fn()`` per operator class (torch.profiler), as fractions."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
        fn()
    by = Counter()
    for e in p.key_averages():
        by[op_class(e.key)] += e.self_cpu_time_total
    total = sum(by.values()) or 1.0
    return Counter({k: v / total for k, v in by.items()})


def print_ops(title: str, shares: Counter) -> None:
    print(f"\n{title} (torch.profiler self CPU time; the profiler's own overhead inflates small ops)\n\n"
          f"| operator class | share |\n|---|---|")
    for label, s in shares.most_common():
        print(f"| {label} | {100 * s:.1f}% |")


def profile_training(rounds: int) -> None:
    from opd_bench.config import build_config
    from opd_bench.ledger import Ledger
    from opd_bench.methods import METHODS
    from opd_bench.runner import RunContext
    cfg = build_config({}, ["method=opd"])
    tasks = parse_tasks("all")
    student = load_backbone(cfg.model.checkpoint)
    ledger = Ledger(student.flops_per_forward())
    ctx = RunContext(cfg, tasks, student, ledger)
    method = METHODS["opd"]()
    method.setup(ctx)
    method.train_step(ctx)   # warm-up: teachers load, prompt caches fill
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for r in range(rounds):
        ctx.round = r + 1
        method.train_step(ctx)
    prof.disable()
    wall = time.perf_counter() - t0
    imgs = rounds * cfg.train.prompts_per_step * len(tasks)
    print_shares(f"training: {rounds} DiffusionOPD rounds ({imgs} images), {wall:.1f} s wall under cProfile "
                 f"(load {os.getloadavg()[0]:.2f})", component_times(pstats.Stats(prof), TRAIN_COMPONENTS), wall)
    ctx.round = rounds + 1
    print_ops("one training round by operator class", op_shares(lambda: method.train_step(ctx)))


def op_class(name: str) -> str:
    short = name.replace("aten::", "")
    for label, keys in OP_CLASSES.items():
        if any(short == k or short.startswith(k) or k in name for k in keys):
            return label
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32, help="test images per task")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--top", type=int, default=0, help="also print the top cProfile entries per task")
    ap.add_argument("--train-rounds", type=int, default=0, help="also profile this many main-job OPD rounds")
    args = ap.parse_args()
    cfg = load_config(None, [])
    proto = replace(EvalProtocol.from_config(cfg), prompts_per_task=args.images, seeds_per_prompt={})
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f} (start)")
    tasks = args.tasks.split(",") if args.images > 0 else []
    model = load_backbone("base")
    for t in tasks:
        evaluate(model, [t], replace(proto, prompts_per_task=2), show_progress=False)   # warm-up: lazy loads
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        evaluate(model, [t], proto, show_progress=False)
        prof.disable()
        wall = time.perf_counter() - t0
        stats = pstats.Stats(prof)
        print_shares(f"{t}: {args.images} images, {wall:.1f} s wall under cProfile (load {os.getloadavg()[0]:.2f})",
                     component_times(stats, COMPONENTS), wall)
        if args.top:
            stats.sort_stats("tottime").print_stats(args.top)
    if tasks:   # operator classes of sampling: one batch of the protocol's batch size
        recs = get_task(tasks[0]).prompts("test")[: min(args.images, proto.batch_size)]
        noises = torch.stack([prompt_noise(proto.seed, tasks[0], i, model.latent_shape) for i in range(len(recs))])
        print_ops(f"sampling {len(recs)} images ({proto.steps} steps, CFG) by operator class",
                  op_shares(lambda: generate(model, [r["prompt"] for r in recs], noises, proto)))
    if args.train_rounds:
        profile_training(args.train_rounds)


if __name__ == "__main__":
    main()
