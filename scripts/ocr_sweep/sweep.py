"""Research script: how far can pretraining recipes push the embedded base's OCR? (docs/world.md, "OCR headroom")

One process = one recipe. It trains like ``opd_bench.world.pretrain`` (same data, loss, EMA, schedule) on any
device, and at each milestone samples the eval prompts with the eval protocol (ODE 40 steps, CFG 4.5, the
per-prompt noises of ``opd-bench eval``) from the EMA weights, saving uint8 arrays to ``OUT.npz`` (+ ``OUT.json``).
Scoring runs separately on the CPU machine (``score.py``), where rapidocr and the reward models live.
Ran on one H100 with six or four recipes side by side (``run.sh``, ``run2.sh``); nothing here is released.

    python scripts/ocr_sweep/sweep.py --name A --init checkpoints/base --tf 0.7 --steps 4000 --out /tmp/A
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from opd_bench.backbones.embedded import EmbeddedBackbone
from opd_bench.evaluate import EvalProtocol, generate, prompt_noise
from opd_bench.world.pretrain import PretrainConfig, _lr_at, flow_matching_loss
from opd_bench.world.prompts import pretraining_pairs

TASKS = ("ocr", "geneval", "aesthetic", "preference")


def load_prompts(task):
    with open(f"tasks/{task}/eval.jsonl") as f:
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
    torch.manual_seed(a.seed)
    cfg = PretrainConfig(seed=a.seed, steps=a.steps, batch_size=a.batch, lr=a.lr, text_fraction=a.tf)
    caps, images = pretraining_pairs(a.n_pairs, a.seed, 32, text_fraction=a.tf)
    if a.init:
        model = EmbeddedBackbone.load(a.init)
        model.set_train_text_encoder(True)
    else:
        arch = {"resolution": 32, "spell_quoted": True, **json.loads(a.arch)}
        model = EmbeddedBackbone(arch, train_text_encoder=True)
    if a.glyph:
        model.enable_glyphs(a.glyph)
    model.to(dev)
    milestones = sorted({int(m) for m in a.milestones.split(",") if m} | {a.steps})
    full_at = {int(m) for m in a.full_at.split(",") if m} | {a.steps}
    out = {}
    log = {"name": a.name, "args": vars(a), "transformer_params": sum(p.numel() for p in model.transformer.parameters()),
           "evals": []}

    def snapshot(step, ema, full):
        live = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(ema)
        model.eval()
        for task in TASKS if full else ("ocr",):
            out[f"{task}_{step}"] = sample(model, task, dev)
        if a.cfg_probe:
            out[f"ocrcfg7.5_{step}"] = sample(model, "ocr", dev, guidance=7.5)
        model.load_state_dict(live)
        model.train()
        log["evals"].append({"step": step, "elapsed": round(time.time() - t_start, 1), "full": full})
        np.savez_compressed(a.out + ".npz", **out)
        with open(a.out + ".json", "w") as f:
            json.dump(log, f)

    model.train()
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    float_keys = [k for k, v in ema.items() if v.dtype.is_floating_point]
    if 0 in milestones:
        snapshot(0, ema, 0 in full_at)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=dev).manual_seed(a.seed + 1)
    rng = np.random.default_rng(a.seed + 2)
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).mul_(2).sub_(1).to(dev)
    order, pos, step, losses = rng.permutation(len(caps)), 0, 0, []
    while step < a.steps:
        if pos + a.batch > len(caps):
            order, pos = rng.permutation(len(caps)), 0
        idx = order[pos : pos + a.batch]
        pos += a.batch
        drop = rng.random(len(idx)) < cfg.caption_dropout
        prompts = ["" if d else caps[i] for i, d in zip(idx, drop)]
        lr = a.lr * (step + 1) / cfg.warmup if a.const and step < cfg.warmup else a.lr if a.const else _lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = flow_matching_loss(model, x_all[torch.as_tensor(idx, device=dev)], prompts, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        d = min(cfg.ema_decay, (1 + step) / (10 + step))
        sd = model.state_dict()
        with torch.no_grad():
            torch._foreach_mul_([ema[k] for k in float_keys], d)
            torch._foreach_add_([ema[k] for k in float_keys], [sd[k].detach() for k in float_keys], alpha=1 - d)
        step += 1
        if step % 100 == 0:
            losses.append(loss.item())
        over = time.time() - t_start > a.deadline
        if step in milestones or over:
            log["loss_last"] = float(np.mean(losses[-5:])) if losses else None
            log["steps_done"] = step
            log["stopped_by_deadline"] = over and step < a.steps
            snapshot(step, ema, step in full_at or over)
            if over:
                break


if __name__ == "__main__":
    main()
