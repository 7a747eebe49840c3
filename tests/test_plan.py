"""``opd-bench run --dry-run`` (issue 20): prints the resolved plan and config, trains nothing; bad input is one
line on stderr and exit 2."""
import pytest

from opd_bench.cli import main


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path, capsys):
    runs = tmp_path / "runs"
    rc = main(["run", "--method", "opd,multi-reward,sft-distill", "--tasks", "ocr,aesthetic", "--budget", "640:images",
               "--set", "grpo.objective=nft", "--runs-dir", str(runs), "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0 and not runs.exists()
    assert "dry run: 3 run(s)" in out and "budget: 640 images" in out
    assert "objective: DiffusionNFT" in out                     # multi-reward with the NFT objective
    assert out.count("teacher ocr: ") == 2 and "teacher aesthetic: " in out   # opd and sft-distill resolve teachers
    for m in ("opd", "multi-reward", "sft-distill"):
        assert f"--- resolved config: {m} (seed 0) ---" in out
    assert "objective: nft" in out                               # the resolved YAML itself


@pytest.mark.parametrize("argv,msg", [
    (["--method", "nft", "--tasks", "ocr,aesthetic"], "trains one task at a time"),
    (["--method", "opd", "--tasks", "ocr", "--set", "opd.teachers.ocr=/nonexistent"], "no teacher for task ocr"),
    (["--method", "grpo", "--tasks", "ocr", "--set", "grpo.minibatches=0"], "grpo.minibatches"),
    (["--method", "dmd", "--tasks", "ocr"], "unknown method"),
    (["--method", "grpo", "--tasks", "ocr", "--set", "model.checkpoint=/nonexistent"], "model.checkpoint"),
])
def test_dry_run_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, msg):
    rc = main(["run", *argv, "--runs-dir", str(tmp_path), "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, err
