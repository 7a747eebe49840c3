"""Research script: how far can pretraining recipes push the embedded base's OCR? (docs/world.md, "OCR headroom")

One process = one recipe, trained by ``opd_bench.world.build.pretrain.pretrain`` itself (same data, loss, EMA,
schedule) on any device; its ``on_step`` hook samples the eval prompts at each milestone with the eval
protocol (ODE 40 steps, CFG 4.5, the per-prompt noises of ``opd-bench eval``) from the EMA weights and saves
uint8 arrays to ``OUT.npz`` (+ ``OUT.json``). Scoring runs separately on the CPU machine (``score.py``), where
rapidocr and the reward models live. Ran on one H100 with six or four recipes side by side (drivers since
deleted); nothing here is released.

    python experiments/ocr_sweep/sweep.py --name A --init checkpoints/base --tf 0.7 --steps 4000 --out /tmp/A
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from opd_bench.backbones.embedded import EmbeddedBackbone
from opd_bench.evaluate import EvalProtocol, generate, prompt_noise
from opd_bench.world.build.pretrain import PretrainConfig, pretrain

TASKS = ("ocr", "geneval", "aesthetic", "preference")


def load_prompts(task):
    with open(f"tasks/{task}/val.jsonl") as f:
        return [json.loads(line)["prompt"] for line in f if line.strip()]


def sample(model, task, device, guidance=4.5):
    prompts = load_prompts(task)
    noises = torch.stack([prompt_noise(1234, task, i, model.latent_shape) for i in range(len(prompts))]).to(device)
    imgs = generate(model, prompts, noises, EvalProtocol(steps=40, guidance=guidance, shift=1.0, batch_size=256))
    return (imgs.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--init", default="", help="continue from this checkpoint (else from scratch with --arch)")
    ap.add_argument("--arch", default="{}", help="JSON arch overrides for a model from scratch")
    ap.add_argument("--glyph", type=int, default=0, help="add a character-slot glyph encoder (see docs/world.md)")
    ap.add_argument("--tf", type=float, default=0.5, help="text fraction of the pretraining pairs")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--const", action="store_true", help="constant lr after warmup (for scaling curves)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--milestones", default="", help="steps at which OCR prompts are sampled")
    ap.add_argument("--full_at", default="", help="steps at which all four tasks are sampled (always the last)")
    ap.add_argument("--cfg_probe", action="store_true", help="also sample OCR at CFG 7.5")
    ap.add_argument("--deadline", type=float, default=300.0, help="seconds; stops early and samples everything")
    ap.add_argument("--n_pairs", type=int, default=40000)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    t_start = time.time()
    dev = torch.device(a.device)
    arch = {} if a.init else {"resolution": 32, "spell_quoted": True, **json.loads(a.arch)}
    if a.glyph:
        arch["glyph_slots"] = a.glyph
    cfg = PretrainConfig(seed=a.seed, steps=a.steps, batch_size=a.batch, lr=a.lr, n_pairs=a.n_pairs,
                         text_fraction=a.tf, arch=arch, init=a.init, schedule="constant" if a.const else "cosine")
    milestones = {int(m) for m in a.milestones.split(",") if m} | {a.steps}
    full_at = {int(m) for m in a.full_at.split(",") if m} | {a.steps}
    out = {}
    log = {"name": a.name, "args": vars(a), "evals": []}

    def snapshot(step, model, weights, full):
        live = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(weights)
        model.eval()
        for task in TASKS if full else ("ocr",):
            out[f"{task}_{step}"] = sample(model, task, dev)
        if a.cfg_probe:
            out[f"ocrcfg7.5_{step}"] = sample(model, "ocr", dev, guidance=7.5)
        model.load_state_dict(live)
        model.train()
        log["evals"].append({"step": step, "elapsed": round(time.time() - t_start, 1), "full": full})
        log["transformer_params"] = sum(p.numel() for p in model.transformer.parameters())
        np.savez_compressed(a.out + ".npz", **out)
        with open(a.out + ".json", "w") as f:
            json.dump(log, f)

    if 0 in milestones and a.init:   # the starting model itself
        start = EmbeddedBackbone.load(a.init).to(dev)
        snapshot(0, start, start.state_dict(), 0 in full_at)

    def on_step(step, model, ema):
        over = time.time() - t_start > a.deadline
        if step in milestones or over:
            log["steps_done"] = step
            log["stopped_by_deadline"] = over and step < a.steps
            snapshot(step, model, ema, step in full_at or over)
        return over

    with tempfile.TemporaryDirectory() as tmp:
        metrics = pretrain(Path(tmp) / "model", cfg, command="experiments/ocr_sweep/sweep.py", show_progress=False,
                           device=str(dev), on_step=on_step)
    log["loss_last"] = metrics["final_loss_mean_last_200"]
    with open(a.out + ".json", "w") as f:
        json.dump(log, f)

if __name__ == "__main__":
    main()
