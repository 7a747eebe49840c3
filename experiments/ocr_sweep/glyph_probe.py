"""Research script: does a model draw the character it is asked for? (docs/world.md, "OCR headroom")

``probe CHECKPOINT``: samples one-character prompts (32 characters, 2 templates) from the same initial noise
with the eval protocol's ODE sampler and CFG, and prints for each noise how far the images move with the
character (mean |image - mean image| over the 32, in [0, 1] pixel units) and how many RapidOCR reads exactly.
A model that ignores the quoted character gives nearly the same image for every one of them.

``signs OUT --init CHECKPOINT --steps N [--canvas 3]``: continues pretraining on text-only signs (1-3 characters,
every caption quotes the text with one of the OCR task's templates), with a glyph canvas unless ``--canvas 0``,
and evaluates OCR (EMA weights, 80 eval prompts, the eval protocol) every 250 steps.
``stage OUT --init CHECKPOINT --steps N --text-fraction F``: continues pretraining on the default web-like mix
(what ``opd-bench world pretrain`` trains on), with the same OCR evaluations every 500 steps.
``toy OUT --init CHECKPOINT --steps N``: the control. Continues pretraining (``world.pretrain.pretrain``:
same loss, EMA, schedule) on centred one-character signs whose caption always quotes the character, and
probes the EMA weights every 250 steps. If the exact rate climbs here, the architecture can learn which
glyph to draw, and the pretraining mix is what starves it.

    python experiments/ocr_sweep/glyph_probe.py probe checkpoints/base
    OMP_NUM_THREADS=1 python experiments/ocr_sweep/glyph_probe.py signs /tmp/signs --init checkpoints/base --steps 1500
    OMP_NUM_THREADS=1 python experiments/ocr_sweep/glyph_probe.py stage /tmp/mix --init /tmp/signs --steps 2000
    OMP_NUM_THREADS=1 python experiments/ocr_sweep/glyph_probe.py toy /tmp/toy --init checkpoints/base --steps 1500
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from opd_bench.backbones import load_backbone
from opd_bench.evaluate import EvalProtocol, generate
from opd_bench.world import to_uint8
from opd_bench.world.ocr import read_text
from opd_bench.world.scenes import TEXT_ALPHABET, render, text_scene

TEMPLATES = ('a sign that says "{}"', '"{}" written in bold letters')


def probe(model, noises=(0, 1), templates=TEMPLATES, steps: int = 40, verbose: bool = True) -> float:
    """Exact-read rate of one-character prompts, each noise shared by all characters."""
    model.eval()
    hits = total = 0
    for template in templates:
        prompts = [template.format(c) for c in TEXT_ALPHABET]
        for nz in noises:
            g = torch.Generator().manual_seed(nz)
            noise = torch.randn(1, *model.latent_shape, generator=g).repeat(len(prompts), 1, 1, 1)
            with torch.no_grad():
                imgs = generate(model, prompts, noise, EvalProtocol(steps=steps))
            spread = (imgs - imgs.mean(0, keepdim=True)).abs().mean().item()
            reads = read_text(to_uint8(imgs))
            ok = sum(r.strip().upper() == c for r, c in zip(reads, TEXT_ALPHABET))
            hits, total = hits + ok, total + len(prompts)
            if verbose:
                print(f"{template!r:34} noise {nz}: spread {spread:.3f}, exact {ok}/{len(prompts)}, "
                      f"reads {' '.join(r or '-' for r in reads)}", flush=True)
    return hits / total


def ocr_by_length(model, prompts: int = 80) -> str:
    """OCR score of the model on ``prompts`` eval prompts (eval protocol), overall and by text length."""
    import re

    from opd_bench.evaluate import evaluate

    r = evaluate(model, ["ocr"], EvalProtocol(split="val", prompts_per_task=prompts, bootstrap=10), show_progress=False)
    rows = r["tasks"]["ocr"]["per_prompt"]
    by = {}
    for p in rows:
        by.setdefault(len(re.search(r'"([^"]*)"', p["prompt"]).group(1)), []).append(p["score"])
    exact = np.mean([p["exact"] for p in rows])
    return (f"ocr {r['tasks']['ocr']['mean']:.3f} exact {exact:.3f}, by length "
            + " ".join(f"{n}: {np.mean(v):.3f} ({len(v)})" for n, v in sorted(by.items())))


def _command() -> str:
    import sys

    return "python experiments/ocr_sweep/glyph_probe.py " + " ".join(sys.argv[1:])


def _milestones(every: int):
    t0 = time.time()

    def on_step(step, model, ema):
        if step % every == 0:
            live = {k: v.clone() for k, v in model.state_dict().items()}
            model.load_state_dict(ema)
            line = ocr_by_length(model)
            model.load_state_dict(live)
            model.train()
            print(f"step {step}: {line}  {time.time() - t0:.0f}s", flush=True)
        return False

    return on_step


def _arch(canvas: int) -> dict:
    """Spelled-out quoted text, plus a glyph canvas of ``canvas`` slots unless 0."""
    return {"spell_quoted": True, **({"glyph_canvas": canvas} if canvas else {})}


def signs(out: Path, init: str, steps: int, lr: float, seed: int, canvas: int) -> None:
    """The base's sign stage (= ``opd-bench world pretrain --data signs --pairs 20000 --warmup 50
    --ema-decay 0.99 --glyph-canvas CANVAS``), with OCR evaluations at milestones."""
    from opd_bench.world.build.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(seed=seed, steps=steps, lr=lr, n_pairs=20000, init=init, text_fraction=1.0, warmup=50,
                         ema_decay=0.99, arch=_arch(canvas), data="signs")
    pretrain(out, cfg, command=_command(), show_progress=False, on_step=_milestones(250))


def stage(out: Path, init: str, steps: int, lr: float, seed: int, canvas: int, text_fraction: float) -> None:
    from opd_bench.world.build.pretrain import PretrainConfig, pretrain

    arch = _arch(canvas)
    cfg = PretrainConfig(seed=seed, steps=steps, lr=lr, init=init, text_fraction=text_fraction, arch=arch)
    pretrain(out, cfg, command=_command(), show_progress=False,
             on_step=_milestones(500))


def toy(out: Path, init: str, steps: int, lr: float, seed: int) -> None:
    from opd_bench.world.build.pretrain import PretrainConfig, pretrain

    def pairs(n, seed, size, text_fraction=1.0):
        rng = np.random.default_rng(seed)
        chars = [TEXT_ALPHABET[rng.integers(len(TEXT_ALPHABET))] for _ in range(n)]
        return ([f'a sign that says "{c}"' for c in chars],
                np.stack([render(text_scene(rng, c, centred=True), size) for c in chars]))

    t0 = time.time()

    def on_step(step, model, ema):
        if step % 250 == 0:
            live = {k: v.clone() for k, v in model.state_dict().items()}
            model.load_state_dict(ema)
            rate = probe(model, noises=(0, 1, 2), templates=TEMPLATES[:1], steps=20, verbose=False)
            model.load_state_dict(live)
            model.train()
            print(f"step {step}: one-character exact (EMA) {rate:.3f}  {time.time() - t0:.0f}s", flush=True)
        return False

    cfg = PretrainConfig(seed=seed, steps=steps, lr=lr, n_pairs=8000, init=init, text_fraction=1.0, warmup=50,
                         ema_decay=0.99, arch={"spell_quoted": True})
    pretrain(out, cfg, command="glyph_probe toy", pairs=pairs, show_progress=False, on_step=on_step)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("probe")
    p.add_argument("checkpoint")
    t = sub.add_parser("toy")
    t.add_argument("out", type=Path)
    t.add_argument("--init", default="checkpoints/base")
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--seed", type=int, default=7)
    for name, steps in (("signs", 1500), ("stage", 2000)):
        m = sub.add_parser(name)
        m.add_argument("out", type=Path)
        m.add_argument("--init", default="checkpoints/base")
        m.add_argument("--steps", type=int, default=steps)
        m.add_argument("--lr", type=float, default=5e-4)
        m.add_argument("--seed", type=int, default=7)
        m.add_argument("--canvas", type=int, default=3, help="glyph canvas slots (0 = none)")
        if name == "stage":
            m.add_argument("--text-fraction", type=float, default=0.4)
    a = ap.parse_args()
    if a.cmd == "probe":
        print(f"exact: {probe(load_backbone(a.checkpoint)):.3f}")
    elif a.cmd == "signs":
        signs(a.out, a.init, a.steps, a.lr, a.seed, a.canvas)
    elif a.cmd == "stage":
        stage(a.out, a.init, a.steps, a.lr, a.seed, a.canvas, a.text_fraction)
    else:
        toy(a.out, a.init, a.steps, a.lr, a.seed)
