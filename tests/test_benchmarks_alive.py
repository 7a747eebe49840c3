"""Keep the benchmarks runnable: each one's tiny CPU mode must finish and print its results."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_step_tiny(tmp_path):
    out = tmp_path / "gpu_step.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_step.py"), "--tiny", "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert set(res["phases"]) == {"rollout", "opd_step", "grpo_step"}
    for phase in res["phases"].values():
        assert phase["seconds"] > 0 and phase["images_per_s"] > 0 and 0 < phase["mfu"]
    assert res["matmul_peak_tflops"] > 0 and res["lora_params"] > 0


def test_eval_resolution_on_the_committed_geneval_evals():
    ev = ROOT / "reports" / "teachers_vs_base" / "evals"
    ref = [str(ev / "base" / f"geneval_{s}") for s in (1234, 1235, 1236)]
    cand = [str(ev / "teacher_geneval" / f"geneval_{s}") for s in (1234, 1235, 1236)]
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "eval_resolution.py"), "--task", "geneval",
                           "--reference", *ref, "--candidate", *cand], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "220 prompts x 3 seeds" in proc.stdout and "| paired MDE |" in proc.stdout
    assert "seeds per prompt for MDE <= 0.03:" in proc.stdout


def test_gpu_memory_tiny(tmp_path):
    """The memory benchmark runs the shipped recipes through the runner; on the CPU its device-independent
    measure (peak activations held for the backward) shows what micro-batching and checkpointing save."""
    out = tmp_path / "gpu_memory.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_memory.py"), "--tiny", "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {(r["recipe"], r["variant"]): r for r in json.loads(out.read_text())["rows"]}
    for recipe in ("sd35m_grpo", "sd35m_opd"):
        shipped, micro, ckpt = (rows[recipe, v]["peak_saved_activations_mib"]
                                for v in ("as shipped", "micro_batch=2", "micro_batch=2 + checkpointing"))
        assert 0 < ckpt < micro < shipped, (recipe, shipped, micro, ckpt)
    assert rows["sd35m_grpo", "as shipped"]["rows_per_forward"] == 32   # 4 prompts x 8 / 2 minibatches, x2 CFG


def test_eval_time_projects_the_protocols_cost():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "eval_time.py"), "--images", "2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("images/s") == 4 and "one model's full evaluation:" in proc.stdout
    assert "(target 5 min: ratio" in proc.stdout and "(target 3 h: ratio" in proc.stdout
    assert "compute bound of one full evaluation: 6,400 images" in proc.stdout and "projected / bound" in proc.stdout


def _bench(script: str, *args: str, timeout: int = 300) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_eval_dtype_prints_speed_and_the_paired_difference():
    out = _bench("eval_dtype.py", "--checkpoint", "base", "--prompts", "3", "--tasks", "aesthetic,geneval")
    assert out.count("x |") == 2 and "| 0.02 |" in out and "| 0.03 |" in out and "faster in bfloat16" in out


def test_train_variants_times_rounds_and_compares_weights():
    out = _bench("train_variants.py", "--rounds", "1", "--variant", "fused=opd.student_from_rollout=true")
    rows = [line for line in out.splitlines() if line.startswith(("| default |", "| fused |"))]
    assert len(rows) == 2 and all(r.rstrip().endswith("| True |") for r in rows)   # bit-identical weights


def test_profile_eval_prints_shares():
    out = _bench("profile_eval.py", "--images", "2", "--tasks", "ocr")
    assert "| sampling (denoiser, CFG, Euler) |" in out and "| OCR onnxruntime sessions |" in out
    assert "| matmul (linear/addmm/mm/bmm) |" in out


def test_main_job_prints_its_bound_and_projection():
    out = _bench("main_job.py", "--budget", "4", "--no-default", "--variant",
                 "tiny=eval.prompts_per_task=1,eval.curve_prompts=1,train.prompts_per_step=1")
    row = next(line for line in out.splitlines() if line.startswith("| tiny | 4 |"))
    assert "min |" in row and "matmul peak (2048^3 float32" in out


def test_campaign_time_adds_the_archived_runs_own_records():
    """benchmarks/campaign_time.py on the committed stage-0 runs: its total is the sum of the records' seconds,
    recomputed here from the files."""
    import re

    archive = ROOT / "experiments" / "claims_campaign"
    folders = [archive / "runs", archive / "superseded" / "proxy-selected-recipes"]   # as RESULTS.md reproduces it
    out = _bench("campaign_time.py", "--runs", *map(str, folders))
    total, n = 0.0, 0
    for g in ("opd", "multi-reward", "cascade"):
        for d in (d for r in folders for d in r.glob(f"{g}/s*")):
            if (d / "claims_complete.json").is_file():
                spent = json.loads((d / "ledger.json").read_text())["spent"]
                rec = json.loads((d / "claims_eval.json").read_text())
                total += sum(float(spent[p]["seconds"]) for p in ("train", "teacher", "eval"))
                total += float(rec["seconds"]) * int(rec.get("threads", 1))
                n += 1
    m = re.search(r"(\d+) runs: (\d+\.\d+) process-hours; with --jobs 2 .* (\d+\.\d+) h against the 3 h target: "
                  r"ratio (\d+\.\d+)", out)
    assert m and int(m.group(1)) == n >= 15
    assert float(m.group(2)) == round(total / 3600, 2) and float(m.group(4)) == round(total / 2 / 10800, 2)
