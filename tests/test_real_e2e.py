"""A GPU lab's round trip on the tiny random SD3 pipeline, through the command line only: a GRPO teacher, then
DiffusionOPD / multi-reward / cascade on the same budget, eval, report, the regression gate (record, check),
compare and the variance analysis -- every command under the same --config, each exits 0 with a non-empty table
and the base column filled."""
import json
import re

import pytest
import yaml

from opd_bench.backbones.tiny_sd3 import build_tiny_sd3_pipeline
from opd_bench.cli import main


@pytest.fixture()
def lab(tmp_path, monkeypatch, hf_clip_folder):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "240")
    folder = build_tiny_sd3_pipeline(tmp_path / "models" / "tiny-sd3", seed=0)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of a cat\na red car\na blue bird\na green apple\n")
    cfg = {
        "name": "lab", "method": "opd", "tasks": ["pickscore"],
        "model": {"backbone": "sd3", "checkpoint": str(folder), "lora_rank": 4, "lora_alpha": 8,
                  "max_sequence_length": 8},
        "sampler": {"steps": 2, "guidance": 2.0, "shift": 3.0},
        "grpo": {"group_size": 2},
        "train": {"prompts_per_step": 2, "checkpoint_every": 100},
        "eval": {"steps": 2, "prompts_per_task": 2, "bootstrap": 100},
        "budget": {"value": 4, "unit": "images"},
        "real_tasks": {"pickscore": {"weights": str(hf_clip_folder), "train_prompts": str(prompts),
                                     "eval_prompts": str(prompts)}},
    }
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


def _ok(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    assert code == 0, f"{argv[0]} exited {code}: {out.err[-2000:]}"
    return out.out + out.err


def _row(text: str, task: str):
    rows = [line for line in text.splitlines() if re.match(rf"^\W*{task}\b", line.strip("│┃ ")) or f"│ {task} " in line]
    assert rows, text[-3000:]
    return rows[0]


def test_round_trip_on_the_tiny_pipeline(lab, capsys):
    c = ["--config", "lab.yaml"]
    out = _ok(capsys, "run", "--method", "grpo", "--name", "teacher", *c)
    cells = [x.strip() for x in _row(out, "pickscore").split("│") if x.strip()]
    assert cells[1] != "-" and re.match(r"-?\d", cells[1]), cells        # the base column is filled
    teacher = "runs/teacher/final"
    from test_trackers import tb_events

    rows = [json.loads(x) for x in (lab / "runs/teacher/eval_history.jsonl").read_text().splitlines()]
    evals = sum(r["split"] == "test" for r in rows)   # the learning-curve evals (val) log no grids
    assert len(tb_events(lab / "runs/teacher").Images("samples/pickscore")) == evals == 2   # a grid per eval
    assert (lab / teacher / "pytorch_lora_weights.safetensors").is_file()
    out = _ok(capsys, "run", "--method", "opd,multi-reward,cascade", "--tasks", "all", "--name", "cmp", *c,
              "--set", f"opd.teachers.pickscore={teacher}")
    cells = [x.strip() for x in _row(out, "pickscore").split("│") if x.strip()]
    assert len(cells) == 6 and all(re.match(r"-?\d", x) for x in cells[1:]), cells   # base, teacher, 3 methods
    assert sorted(p.name for p in (lab / "runs" / "cmp").iterdir() if p.is_dir()) == \
        ["cascade_s0", "multi-reward_s0", "opd_s0"]                                    # --tasks all = the config's
    student = "runs/cmp/opd_s0/final"
    out = _ok(capsys, "eval", "--checkpoint", student, "--out", "evals/student", *c)
    assert re.search(r"pickscore.*\d", out) and (lab / "evals/student/eval.json").is_file()
    _ok(capsys, "eval", "--checkpoint", teacher, "--out", "evals/teacher", *c, "--device", "cpu")
    out = _ok(capsys, "compare", "-b", "evals/teacher", "-c", "evals/student", *c)
    assert "pickscore" in out
    _ok(capsys, "eval", "--checkpoint", "models/tiny-sd3", "--out", "evals/base", *c)     # the raw base folder
    out = _ok(capsys, "compare", "-b", "evals/base", "-c", "evals/student", "--config", "lab.yaml", "--tasks", "all")
    assert "pickscore" in out
    out = _ok(capsys, "report", "runs/cmp", "--out", "reports/cmp", "--no-interference", "--samples", "1",
                   "--protocol", "run")
    md = (lab / "reports/cmp/report.md").read_text()
    assert "pickscore" in md
    _ok(capsys, "check", "--record", "--checkpoint", student, "--baseline", "base.json", "--prompts", "2",
        "--steps", "2", *c)
    doc = json.loads((lab / "base.json").read_text())
    assert list(doc["tasks"]) == ["pickscore"]
    assert "--config=" in doc["command"]   # the re-record command carries the config the real task needs
    out = _ok(capsys, "check", "--checkpoint", student, "--baseline", "base.json", *c)
    assert "check passed" in out and "pickscore" in out
    out = _ok(capsys, "analyze", "variance", "--checkpoint", "runs/cmp/opd_s0", "--k", "2", "--batch-sizes", "2",
              "--estimators", "opd_ode,grpo")
    assert "pickscore: opd_ode V=" in out and (lab / "runs/cmp/opd_s0/variance/variance.json").is_file()
