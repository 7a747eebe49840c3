"""The CLI: real help text, one-line errors with exit code 2, no tracebacks."""
import os
import subprocess
import sys

import pytest

from opd_bench.cli import main


def _run(args):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "opd_bench.cli", *args], capture_output=True, text=True, env=env)


def test_help_lists_commands():
    p = _run(["--help"])
    assert p.returncode == 0
    for cmd in ("run", "eval", "report", "check", "world"):
        assert cmd in p.stdout


def test_unknown_method_is_one_line_exit_2():
    p = _run(["run", "--method", "nope"])
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "unknown method 'nope'" in p.stderr
    assert "Traceback" not in p.stderr + p.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "--budget", "-5:images"], "must be positive"),
        (["run", "--budget", "10:parsecs"], "unknown unit"),
        (["run", "--tasks", "nope"], "unknown task 'nope'"),
        (["run", "--set", "grpo.adv_std=batch"], "grpo.adv_std"),
        (["run", "--config", "missing.yaml"], "config file not found"),
        (["run", "--bogus"], "No such option"),
        (["eval", "--checkpoint", "/no/such/ckpt"], "checkpoint not found"),
        (["report", "/no/such/run"], "not a run folder"),
        (["check", "--baseline", "/no/such.json"], "file not found"),
        (["world", "pretrain", "--set", "schedule=linear", "--out", "/tmp/never"], "is not cosine or constant"),
        (["world", "pretrain", "--set", "data=photos", "--out", "/tmp/never"], "is not mix or signs"),
        (["world", "pretrain", "--set", "data=signs", "--set", "text_fraction=0.5", "--out", "/tmp/never"],
         "text_fraction must be 1"),
    ],
)
def test_bad_arguments_fail_with_one_line(args, needle, capsys):
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and err.strip().count("\n") == 0 and "Traceback" not in err


def test_world_pretrain_records_its_options(tmp_path, capsys):
    import json

    out = tmp_path / "base"
    args = ["world", "pretrain", "--out", str(out), "--set", "steps=2", "--set", "n_pairs=32", "--set", "batch_size=8",
            "--set", "warmup=1", "--set", "ema_decay=0.5", "--set", "arch.glyph_canvas=2", "--set", "text_fraction=1"]
    code = main(args)
    assert code == 0, capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    t = cfg["training"]["config"]
    assert (t["warmup"], t["ema_decay"], t["text_fraction"], t["steps"]) == (1, 0.5, 1.0, 2)
    assert cfg["arch"]["glyph_canvas"] == 2
    assert t["arch"] == {"spell_quoted": True, "glyph_canvas": 2}   # an arch override keeps the other defaults
    assert cfg["training"]["command"] == "opd-bench " + " ".join(args)   # what was run, even in-process


def test_world_pretrain_on_signs_trains_on_quoted_text_only_signs(tmp_path, capsys):
    import json

    from opd_bench.world.build.pretrain import dataset_digest
    from opd_bench.world.prompts import OCR_TEMPLATES, pretraining_pairs, sign_pairs

    out = tmp_path / "signs"
    config = tmp_path / "signs.yaml"   # a pretraining config file, overridden by --set
    config.write_text("data: signs\nsteps: 5\nn_pairs: 32\nbatch_size: 8\nwarmup: 1\narch: {glyph_canvas: 3}\n")
    args = ["world", "pretrain", "--config", str(config), "--set", "steps=2", "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    t = json.loads((out / "config.json").read_text())["training"]
    assert (t["config"]["data"], t["config"]["text_fraction"], t["config"]["steps"]) == ("signs", 1.0, 2)
    captions, images = sign_pairs(32, 0, 32)
    assert t["metrics"]["data_sha256"] == dataset_digest(captions, images) != dataset_digest(
        *pretraining_pairs(32, 0, 32, text_fraction=1.0))
    # every caption quotes its sign's text with an OCR-task template
    assert all(any(c == tpl.format(c.split('"')[1]) for tpl in OCR_TEMPLATES) for c in captions)
