"""Research script: save the EMA weights of a run's latest training state (``RUN/state``, written every
``train.checkpoint_every`` rounds) as a checkpoint that ``opd-bench eval`` reads, to evaluate a run with
``train.ema.enabled`` on the full eval set before it ends (docs/teachers.md, "Full-size OCR runs").

    python experiments/ocr_sweep/ema_of_state.py runs/teacher_ocr /tmp/ocr_ema
    opd-bench eval --checkpoint /tmp/ocr_ema --tasks ocr --out /tmp/ocr_ema_eval
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from opd_bench.backbones import load_backbone, resolve_checkpoint
from opd_bench.checkpoint import load_checkpoint
from opd_bench.config import load_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    cfg = load_config(str(args.run / "config.yaml"))
    tensors, meta = load_checkpoint(args.run / "state", kind="train_state")
    if not any(k.startswith("ema.") for k in tensors):
        raise SystemExit(f"{args.run}: its state holds no EMA (train.ema.enabled is off)")
    model = load_backbone(resolve_checkpoint(cfg.model.checkpoint))   # the run's start: same parameter order
    with torch.no_grad():
        for i, p in enumerate(model.trainable_parameters()):
            p.copy_(tensors[f"ema.{i}"])
    model.save(args.out, extra_config={"ema_of": str(args.run), "round": meta["round"]})
    print(f"round {meta['round']} ({meta['ema_updates']} EMA updates) -> {args.out}")


if __name__ == "__main__":
    main()
