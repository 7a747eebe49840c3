"""``opd-bench world ...``: the one command group of the embedded world's build tools (prompt sets, reward-model
data and training, base pretraining). ``opd_bench.cli`` mounts it (and adds ``world release`` to it).

Heavy modules are imported inside each command, so ``opd-bench --help`` stays fast."""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import typer

from ... import validate
from ...errors import UserError
from ...invocation import command_line
from ...paths import TASKS_DIR
from ...validate import MAX_SEED

world_app = typer.Typer(help="Build the embedded benchmark world: prompts, reward models, base model.",
                        no_args_is_help=True)

REWARD_TASKS = ("aesthetic", "preference")


def _reward_task(task: str) -> str:
    if task not in REWARD_TASKS:
        raise UserError(f"--task: {task!r} is not {' or '.join(REWARD_TASKS)}")
    return task


@world_app.command("pretrain")
def pretrain_command(
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Pretraining config: a path or a name under "
                                         "configs/, e.g. world/base_stage1 (the released base's stages 1-6); "
                                         "default: PretrainConfig's defaults"),
    set_: List[str] = typer.Option([], "--set", help="Dotted override, repeatable: --set steps=500 "
                                   "--set arch.glyph_canvas=3 (keys: PretrainConfig's fields)"),
    out: Path = typer.Option(Path("checkpoints/base"), "--out", help="Where to write the checkpoint"),
):
    """Pretrain the embedded text-to-image model on generated (caption, image) pairs with imperfect,
    web-like captions (seeded, reproducible; about an hour on a 2-core CPU at the defaults). The config
    and this command are recorded in the checkpoint's config.json (its training entry)."""
    from ...progress import console
    from .pretrain import load_pretrain_config, pretrain

    cfg = load_pretrain_config(config, set_)
    if cfg.init:
        from ...checkpoint import verify_checkpoint

        verify_checkpoint(cfg.init)
    validate.output_dir(out, "--out")
    metrics = pretrain(out, cfg, command=command_line())
    console.print(f"wrote {out}: {metrics}")


@world_app.command("prompts")
def prompts_command(
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED, help="Seed of the geneval and ocr sets"),
    out: Path = typer.Option(TASKS_DIR, "--out", help="Folder of the task prompt sets (<out>/<task>/{train,val,test}.jsonl)"),
    samples: Optional[Path] = typer.Option(None, "--samples", help="Also save a grid of ground-truth renders here "
                                           "(docs/img/world_samples.png)"),
):
    """Write the prompt sets of the four embedded tasks (deterministic): the train sets (geneval and ocr from
    --seed, aesthetic and preference from their fixed seeds), then val and test (opd_bench/world/build/splits.py)."""
    from . import make_prompts, splits, taste_prompts

    validate.output_dir(out, "--out")
    args = ["--seed", str(seed), "--out", str(out)] + (["--samples", str(samples)] if samples else [])
    make_prompts.main(args)
    for path in taste_prompts.write_prompt_sets(out) + splits.write_splits(out):
        print(path)


@world_app.command("reward-data")
def reward_data_command(
    task: str = typer.Option(..., "--task", help="aesthetic or preference"),
    out: Path = typer.Option(..., "--out", help="PNG file for the grid"),
    rows: int = typer.Option(8, "--rows", min=1, max=256, help="Rows of the grid (preference: one train prompt each)"),
    cols: int = typer.Option(8, "--cols", min=2, max=64, help="Images per row (preference: candidates per prompt)"),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED),
):
    """Preview the data a reward model is trained on: a grid of generated images (aesthetic: images for the
    task's train prompts and random scenes; preference: candidates of one train prompt per row), each row
    ordered by its hidden gold score, best first; prints the gold scores."""
    import numpy as np
    from PIL import Image

    from .reward_data import aesthetic_dataset, preference_dataset
    from .taste_prompts import make_splits

    validate.output_dir(out.parent, "--out")
    records = make_splits(_reward_task(task))["train"]
    if task == "aesthetic":
        images, gold = aesthetic_dataset(records, rows * cols, seed)
        images, gold = images.reshape(rows, cols, *images.shape[1:]), gold.reshape(rows, cols)
    else:
        images, gold = preference_dataset(records[:rows], cols, seed)
    order = np.argsort(-gold, axis=1, kind="stable")
    images = np.take_along_axis(images, order[:, :, None, None, None], axis=1)
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in images], axis=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.Resampling.NEAREST).save(out)
    for i, row in enumerate(np.take_along_axis(gold, order, axis=1)):
        label = records[i]["prompt"] if task == "preference" else f"row {i}"
        print(f"{label}: " + " ".join(f"{g:.2f}" for g in row))
    print(f"wrote {out}")


@world_app.command("train-rewards")
def train_rewards_command(
    task: str = typer.Option(..., "--task", help="aesthetic or preference (train aesthetic first: preference's "
                             "image tower starts from it)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Checkpoint folder (default checkpoints/reward_<task>)"),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, max=10**8),
    n_train: Optional[int] = typer.Option(None, "--n-train", min=1, max=10**8),
    batch: Optional[int] = typer.Option(None, "--batch", min=1, max=65536),
    lr: Optional[float] = typer.Option(None, "--lr", min=0.0, max=1e3),
    n_test: Optional[int] = typer.Option(None, "--n-test", min=8, max=10**6, help="Held-out images (aesthetic) or "
                                         "prompts (preference) of the recorded figures"),
    init_visual: Optional[str] = typer.Option(None, "--init-visual", help="preference: aesthetic checkpoint "
                                              "initialising the image tower ('none' to train from scratch)"),
):
    """Train a learned reward model of the embedded world against its hidden gold scorer and save it with its
    held-out metrics and this command (in its config.json); exit 1 if it misses its target."""
    from .train_rewards import train_reward_model

    _reward_task(task)
    if lr is not None and not math.isfinite(lr):
        raise UserError(f"--lr: must be a finite number (got {lr})")
    overrides = {k: v for k, v in {"n_train": n_train, "batch": batch, "lr": lr, "n_test": n_test}.items() if v is not None}
    if init_visual is not None:
        if task != "preference":
            raise UserError("--init-visual only applies to --task preference")
        overrides["init_visual"] = None if init_visual.lower() == "none" else init_visual
        if overrides["init_visual"]:
            from ...checkpoint import verify_checkpoint

            verify_checkpoint(overrides["init_visual"])
    out = out or Path("checkpoints") / f"reward_{task}"
    validate.output_dir(out, "--out")
    metrics = train_reward_model(task, out, seed, steps, command=command_line(), **overrides)
    if not metrics["meets_target"]:
        raise typer.Exit(1)
