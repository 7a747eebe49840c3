"""Research script: can GRPO raise a task's reward on a couple of fixed prompts? (docs/teachers.md, "The RL path
is not broken")

Trains ``--method grpo`` with the repo's runner and ``configs/teacher.yaml`` on ``--prompts`` train prompts of
TASK only (evenly spaced through its train set), ``--group`` samples each per step. It prints only the prompts
it chose: the training reward per step is ``OUT/metrics.jsonl`` (``reward``). A working RL path raises it; if it
falls for one task while it rises for another, the task's reward signal (not the code) is the problem.
Extra ``key=value`` arguments are config overrides (e.g. ``grpo.group_noise=shared``).

    OMP_NUM_THREADS=1 python experiments/ocr_sweep/overfit_grpo.py /tmp/of_aes aesthetic
    OMP_NUM_THREADS=1 python experiments/ocr_sweep/overfit_grpo.py /tmp/of_ocr ocr grpo.group_noise=shared
"""
from __future__ import annotations

import argparse
from pathlib import Path

from opd_bench.config import load_config
from opd_bench.tasks import get_task
from opd_bench.train import run_one


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("task")
    ap.add_argument("overrides", nargs="*", help="config overrides key=value")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--group", type=int, default=16)
    ap.add_argument("--lr", default="1e-4")
    ap.add_argument("--noise-level", default="0.7")
    ap.add_argument("--images", type=int, default=1280, help="budget in images")
    args = ap.parse_args()
    task = get_task(args.task)
    pool = task.prompts("train")
    keep = [pool[i * len(pool) // args.prompts] for i in range(args.prompts)]
    print("prompts:", [r["prompt"] for r in keep])
    every_split = task.prompts
    task.prompts = lambda split: keep if split == "train" else every_split(split)
    cfg = load_config("teacher", [
        "method=grpo", f"tasks={args.task}", f"train.lr={args.lr}", f"sampler.noise_level={args.noise_level}",
        f"grpo.group_size={args.group}", f"train.prompts_per_step={args.prompts}", f"budget.value={args.images}",
        "eval.every=0", "eval.prompts_per_task=8", "train.checkpoint_every=1000", *args.overrides])
    cfg.name = args.out.name
    run_one(cfg, args.out)


if __name__ == "__main__":
    main()
