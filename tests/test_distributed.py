"""Multi-process training through accelerate: 2 CPU processes (gloo) give the single-process result for the
same global batch -- same prompts and noise per sample, global advantage statistics, averaged gradients and
global ledger totals."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from tiny_world import make_tiny_world
import torch
from safetensors.torch import load_file




@pytest.mark.skipif(shutil.which("accelerate") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "accelerate")),
                    reason="accelerate CLI not installed")
@pytest.mark.parametrize("method", ["grpo", "opd"])
def test_two_processes_equal_one_process(tmp_path, method):
    make_tiny_world(tmp_path)
    task = "aesthetic" if method == "grpo" else "geneval"  # a continuous reward, so GRPO has signal
    args = ["run", "--method", method, "--tasks", task, "--budget", "3:optimizer_steps", "--runs-dir", str(tmp_path)]
    for kv in ["sampler.steps=3", "sampler.guidance=2.0", "train.prompts_per_step=4", "grpo.group_size=2",
               "grpo.adv_std=global", "eval.steps=2", "eval.prompts_per_task=2", "eval.bootstrap=10",
               "train.lr=1e-3", f"model.checkpoint={tmp_path / 'base'}", f"opd.teachers.geneval={tmp_path / 'teacher'}"]:
        args += ["--set", kv]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, "-m", "opd_bench.cli", *args, "--name", "one"], env=env,
                         capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    accel = os.path.join(os.path.dirname(sys.executable), "accelerate")
    two = subprocess.run([accel, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "opd_bench.cli", *args,
                          "--name", "two"], env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_file(str(tmp_path / "one" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "final" / "model.safetensors"))
    base = load_file(str(tmp_path / "base" / "model.safetensors"))
    moved = max((a[k] - base[k]).abs().max().item() for k in a)
    assert moved > 1e-4  # training really changed the weights
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    la = json.loads((tmp_path / "one" / "ledger.json").read_text())["spent"]["train"]
    lb = json.loads((tmp_path / "two" / "ledger.json").read_text())["spent"]["train"]
    for unit in ("images", "student_nfe", "nfe", "flops", "optimizer_steps"):
        assert la[unit] == lb[unit], unit
    ma = [json.loads(l) for l in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(l) for l in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    key = "reward" if method == "grpo" else "loss"
    assert [round(r[key], 5) for r in ma] == [round(r[key], 5) for r in mb]
