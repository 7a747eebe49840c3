"""`opd-bench world ...`: the one command group of the embedded world's build tools (opd_bench/world/build)."""
import json

from PIL import Image

from opd_bench.cli import main
from opd_bench.paths import TASKS_DIR
from opd_bench.world.build.commands import world_app


def test_the_world_group_holds_every_build_tool():
    names = {c.name for c in world_app.registered_commands}
    assert names == {"pretrain", "prompts", "reward-data", "train-rewards", "release"}


def test_world_prompts_rewrites_the_committed_prompt_sets(tmp_path, capsys):
    assert main(["world", "prompts", "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.jsonl"))
    assert {p.parts[0] for p in written} == {"geneval", "ocr", "aesthetic", "preference"}
    for rel in written:
        assert (tmp_path / rel).read_text() == (TASKS_DIR / rel).read_text(), f"tasks/{rel} differs from its generator"


def test_world_reward_data_draws_rows_best_first(tmp_path, capsys):
    out = tmp_path / "grid" / "preference.png"
    assert main(["world", "reward-data", "--task", "preference", "--rows", "3", "--cols", "4", "--out", str(out)]) == 0
    assert Image.open(out).size == (4 * 32 * 3, 3 * 32 * 3)
    rows = [line for line in capsys.readouterr().out.splitlines() if ": " in line and not line.startswith("wrote")]
    golds = [[float(x) for x in line.rsplit(": ", 1)[1].split()] for line in rows]
    assert len(golds) == 3 and all(len(g) == 4 and g == sorted(g, reverse=True) for g in golds)


def test_world_train_rewards_records_its_command_and_fails_a_missed_target(tmp_path, capsys):
    out = tmp_path / "reward"
    args = ["world", "train-rewards", "--task", "aesthetic", "--steps", "2", "--n-train", "32", "--batch", "8",
            "--n-test", "32", "--out", str(out)]
    assert main(args) == 1   # two steps cannot reach the target: exit 1, the checkpoint is still written
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["command"] == "opd-bench " + " ".join(args)
    assert (training["hparams"]["steps"], training["hparams"]["n_test"]) == (2, 32)
    assert training["metrics"]["meets_target"] is False
