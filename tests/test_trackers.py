"""Training logs through accelerate's trackers: TensorBoard scalars and one sample grid per task at every eval,
in the embedded world (the real world's run is checked in tests/test_real_e2e.py); wandb only when asked."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_world import make_tiny_world

from opd_bench.config import build_config
from opd_bench.errors import UserError
from opd_bench.methods import METHODS
from opd_bench.runner import Runner
from opd_bench.trackers import RunLogger, check_trackers, sample_grid


def tb_events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_sample_grid_tiles_and_upscales():
    imgs = torch.zeros(5, 3, 16, 16)
    imgs[1] = 1.0
    grid = sample_grid(imgs, min_tile=64)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 64 + 3 * 2, 3 * 64 + 4 * 2, 3)   # 3 columns, 2 rows
    assert grid[2 + 10, 2 + 64 + 2 + 10].tolist() == [255, 255, 255] and grid[12, 12].tolist() == [0, 0, 0]


def test_wandb_only_when_installed_and_asked(monkeypatch):
    import builtins

    assert check_trackers(["tensorboard"]) == ["tensorboard"]
    with pytest.raises(UserError, match="unknown tracker"):
        check_trackers(["mlflowx"])
    real_import = builtins.__import__

    def no_wandb(name, *a, **k):
        if name == "wandb":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(UserError, match="wandb is not installed"):
        check_trackers(["tensorboard", "wandb"])


def test_embedded_run_logs_scalars_and_grids_at_every_eval_without_changing_weights(tmp_path):
    world = make_tiny_world(tmp_path / "world")
    over = [f"model.checkpoint={world / 'base'}", "method=grpo", "tasks=brightness", "sampler.steps=3",
            "train.prompts_per_step=2", "grpo.group_size=2", "eval.steps=3", "eval.prompts_per_task=4",
            "eval.bootstrap=50", "budget.value=8", "eval.every=1"]
    runs = {}
    for log in (True, False):
        d = tmp_path / f"run_{log}"
        Runner(build_config({}, over), d, METHODS["grpo"](), ["brightness"], show_progress=False,
               log_tensorboard=log).run()
        runs[log] = d
    rows = [json.loads(x) for x in (runs[True] / "eval_history.jsonl").read_text().splitlines()]
    evals = sum(r["split"] == "test" for r in rows)
    acc = tb_events(runs[True])
    images = acc.Images("samples/brightness")
    assert evals >= 3 and len(images) == evals                       # start, every round, final
    assert len(acc.Scalars("eval/brightness")) == evals and acc.Scalars("train/reward")
    # the learning-curve evals (val) have their own tag and no grids
    assert len(acc.Scalars("curve/brightness")) == sum(r["split"] == "val" for r in rows) >= 2
    assert not (runs[False] / "tb").exists()
    a, b = (load_file(str(runs[x] / "final" / "model.safetensors")) for x in (True, False))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)     # logging draws no randomness
