"""Base pretraining time on this machine against issue 3's budget (90 minutes on the 2-core CPU).

Replays every stage recorded in the released base (checkpoints/base/config.json: its training_history and
training), each with its own config (data kind, text fraction, glyph modules, batch size), for a few timed
optimizer steps on a sample of that stage's data, all in one process. Prints the measured seconds per step
and per generated pair, the projected time of every stage at its recorded step and pair counts, and the
ratio of the projected total to the budget. Target: <= 1.0.

    python benchmarks/pretrain_budget.py [--steps 30] [--warmup 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import fields
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from opd_bench.checkpoint import read_config
from opd_bench.world.build.pretrain import PretrainConfig, pretrain

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MIN = 90.0


def stages(checkpoint: Path) -> list[tuple[str, dict]]:
    cfg = read_config(checkpoint)   # verifies the manifest first
    return [(h["command"], h["config"]) for h in cfg.get("training_history", []) + [cfg["training"]]]


def time_stage(command: str, conf: dict, steps: int, warmup: int, sample_pairs: int,
               tmp: Path) -> tuple[float, float]:
    """(seconds per optimizer step after ``warmup`` untimed steps, seconds per generated pair)."""
    known = {f.name for f in fields(PretrainConfig)}
    kw = {k: v for k, v in conf.items() if k in known}
    kw.update(n_pairs=sample_pairs, steps=steps + warmup,
              init=str(ROOT / "checkpoints" / "base") if conf.get("init") else "")
    if " signs " in f"{command} ":   # the sign stage predates PretrainConfig.data (it ran as glyph_probe.py signs)
        kw["data"] = "signs"
    stamps: list[float] = []

    def hook(step, model, ema):
        stamps.append(time.perf_counter())
        return False

    metrics = pretrain(tmp / "out", PretrainConfig(**kw), command="benchmark", show_progress=False, on_step=hook)
    per_step = (stamps[-1] - stamps[warmup - 1]) / steps
    return per_step, metrics["data_seconds"] / sample_pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="timed optimizer steps per stage")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--pairs", type=int, default=4096, help="generated pairs per stage (data time per pair)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "base")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {a.threads} threads")
    print(f"{'stage':<6}{'steps':>7}{'pairs':>8}{'s/step':>9}{'ms/pair':>9}{'projected min':>15}  command")
    total = 0.0
    with tempfile.TemporaryDirectory() as d:
        for i, (command, conf) in enumerate(stages(a.checkpoint), 1):
            per_step, per_pair = time_stage(command, conf, a.steps, a.warmup, a.pairs, Path(d))
            minutes = (per_step * conf["steps"] + per_pair * conf["n_pairs"]) / 60
            total += minutes
            print(f"{i:<6}{conf['steps']:>7}{conf['n_pairs']:>8}{per_step:>9.3f}{per_pair * 1e3:>9.2f}"
                  f"{minutes:>15.1f}  {command[:70]}")
    print(f"projected total {total:.1f} min; budget {BUDGET_MIN:.0f} min; ratio {total / BUDGET_MIN:.2f}")


if __name__ == "__main__":
    main()
