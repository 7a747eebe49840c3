"""The CI regression gate ``opd-bench check`` on tiny real embedded models saved into tmp dirs.

The degradation test needs a baseline whose scores are non-trivial and a checkpoint that is really worse:
the test-only task ``fidelity`` scores how close an image is to the image the *parent* model draws for the
same prompt and the same per-prompt noise (1.0 for the parent, by determinism); the degraded checkpoint is
the parent with Gaussian noise added to its transformer weights, which moves its samples away.
"""
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from tiny_world import TINY_ARCH as ARCH
import torch

from opd_bench import __version__
from opd_bench import check as gate
from opd_bench.backbones import EmbeddedBackbone, load_backbone
from opd_bench.checkpoint import checkpoint_digest
from opd_bench.cli import main
from opd_bench.evaluate import EvalProtocol, evaluate, select_records
from opd_bench.tasks import get_task, register_task, registry
from opd_bench.tasks.base import Task

REPO = Path(__file__).resolve().parents[1]
PROMPTS, STEPS = 6, 4
TASKS = "geneval,aesthetic,fidelity"

if "fidelity" not in registry():

    @register_task("fidelity")
    class Fidelity(Task):
        """Test-only task: 1 - 4 * mean |image - parent's image| (clamped to [0, 1]); 1.0 for the parent."""

        references = {}  # prompt -> the parent's eval image, filled by the ``world`` fixture

        def prompts(self, split):
            return [{"prompt": f"a test scene number {i}"} for i in range(PROMPTS)]

        def reward(self, images, records):
            if not self.references:
                return torch.zeros(len(images))
            refs = torch.stack([self.references[r["prompt"]] for r in records])
            return (1 - 4 * (images - refs).abs().mean(dim=(1, 2, 3))).clamp(0, 1)

        def metrics(self, images, records):
            return {"score": self.reward(images, records)}


def _save(path, arch=ARCH, seed=0, noise=0.0):
    torch.manual_seed(seed)
    model = EmbeddedBackbone(arch)
    with torch.no_grad():
        for p in model.transformer.parameters():
            p.add_(noise * torch.randn_like(p))
    model.save(path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """parent, degraded (= parent + weight noise), small (another resolution), and the parent's baseline."""
    d = tmp_path_factory.mktemp("check")
    _save(d / "parent")
    _save(d / "degraded", noise=0.3)
    _save(d / "small", arch={**ARCH, "resolution": 16})
    res = evaluate(load_backbone(d / "parent"), ["fidelity"], EvalProtocol(steps=STEPS, prompts_per_task=PROMPTS),
                   show_progress=False, keep_images=True)
    images, records, _ = res["_images"]["fidelity"]
    Fidelity = type(get_task("fidelity"))
    Fidelity.references.clear()
    Fidelity.references.update({r["prompt"]: img for r, img in zip(records, images)})
    code = main(["check", "--record", "--checkpoint", str(d / "parent"), "--baseline", str(d / "parent.json"),
                 "--tasks", TASKS, "--prompts", str(PROMPTS), "--steps", str(STEPS)])
    assert code == 0
    return d


def _check(world, *args):
    return main(["check", "--baseline", str(world / "parent.json"), *args])


def _one_line_exit_2(code, capsys, needle):
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err and err.strip().count("\n") == 0 and "Traceback" not in err, err


def test_recorded_baseline_holds_protocol_scores_and_provenance(world):
    doc = json.loads((world / "parent.json").read_text())
    assert doc["schema_version"] == gate.SCHEMA_VERSION and doc["opd_bench_version"] == __version__
    assert doc["checkpoint"]["sha256"] == checkpoint_digest(world / "parent")
    proto = doc["protocol"]
    assert (proto["steps"], proto["prompts_per_task"], proto["resolution"], proto["latent_shape"]) == (STEPS, PROMPTS, 32, [3, 32, 32])
    assert {"guidance", "shift", "seed"} <= set(proto)
    for name in TASKS.split(","):
        expected = [r["prompt"] for r in select_records(get_task(name).prompts("test"), PROMPTS)]
        assert proto["prompts"][name] == expected
        assert len(doc["tasks"][name]["per_prompt"]["score"]) == PROMPTS
        assert doc["margins"]["tasks"][name] == gate.DEFAULT_MARGIN
        assert {"mean", "ci_low", "ci_high"} <= set(doc["tasks"][name]["summary"])
    assert doc["tasks"]["geneval"]["summary"]["categories"] and len(doc["tasks"]["geneval"]["categories"]) == PROMPTS
    assert doc["tasks"]["fidelity"]["per_prompt"]["score"] == [1.0] * PROMPTS  # non-trivial baseline
    assert doc["command"].startswith("opd-bench check --record") and f"--steps {STEPS}" in doc["command"]


def test_same_checkpoint_passes_and_reproduces_per_prompt_scores_exactly(world, tmp_path, capsys):
    code = _check(world, "--checkpoint", str(world / "parent"), "--junit", str(tmp_path / "j.xml"),
                  "--markdown", str(tmp_path / "s.md"))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "check passed" in out and "differs" not in out
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.get("failures") == "0" and len(suite.findall("testcase")) > 3
    assert "passed" in (tmp_path / "s.md").read_text()
    # the re-evaluation reproduces every recorded per-prompt score bit for bit
    doc = gate.load_baseline(world / "parent.json")
    res = evaluate(load_backbone(world / "parent"), list(doc["tasks"]), gate.baseline_protocol(doc), show_progress=False)
    for name, entry in doc["tasks"].items():
        for metric, recorded in entry["per_prompt"].items():
            assert [r[metric] for r in res["tasks"][name]["per_prompt"]] == recorded, (name, metric)


def test_baseline_of_another_checkpoint_is_refused_without_allow_other_checkpoint(world, tmp_path, capsys):
    _one_line_exit_2(_check(world, "--checkpoint", str(world / "degraded"), "--junit", str(tmp_path / "j.xml")),
                     capsys, "--allow-other-checkpoint")
    assert not (tmp_path / "j.xml").exists()


def test_degraded_checkpoint_fails_with_exit_1_naming_the_task(world, tmp_path, capsys):
    code = _check(world, "--checkpoint", str(world / "degraded"), "--junit", str(tmp_path / "j.xml"),
                  "--markdown", str(tmp_path / "s.md"), "--allow-other-checkpoint")
    out = capsys.readouterr().out
    assert code == 1, out
    assert "REGRESSION fidelity/score: old 1.0000 new" in out and "delta -" in out and "CI [" in out
    assert "sha256" in out and "differs from the baseline" in out  # informational, not the failure
    suite = ET.parse(tmp_path / "j.xml").getroot()
    failed = [(c.get("classname"), c.get("name")) for c in suite.iter("testcase") if c.find("failure") is not None]
    assert ("opd_bench.check.degraded.fidelity", "score") in failed
    assert int(suite.get("failures")) == len(failed)
    assert "FAILED" in (tmp_path / "s.md").read_text()


def test_ocr_with_few_prompts_records_and_passes(tmp_path, capsys):
    ckpt = _save(tmp_path / "m")
    args = ["--checkpoint", str(ckpt), "--baseline", str(tmp_path / "ocr.json"), "--tasks", "ocr"]
    assert main(["check", "--record", *args, "--prompts", "3", "--steps", "2"]) == 0
    assert main(["check", *args]) == 0
    assert "identical to the baseline: ocr" in capsys.readouterr().out


def test_tampered_checkpoint_is_exit_2(world, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(world / "parent", bad)
    weights = bad / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    _one_line_exit_2(_check(world, "--checkpoint", str(bad)), capsys, "tampered")


def _edited_baseline(world, tmp_path, edit):
    doc = json.loads((world / "parent.json").read_text())
    edit(doc)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d["protocol"].update(steps=STEPS + 1), "edited after recording"),
    (lambda d: d["tasks"]["fidelity"]["per_prompt"]["score"].__setitem__(0, 0.5), "edited after recording"),
    (lambda d: d.update(schema_version=99), "schema version 99"),
    (lambda d: d["protocol"].update(sampler="sde"), "another protocol"),
    (lambda d: d.pop("kind"), "not an opd-bench baseline"),
])
def test_edited_or_foreign_baseline_is_exit_2(world, tmp_path, capsys, edit, needle):
    path = _edited_baseline(world, tmp_path, edit)
    code = main(["check", "--baseline", str(path), "--checkpoint", str(world / "parent")])
    _one_line_exit_2(code, capsys, needle)


def test_unparseable_baseline_is_exit_2(world, tmp_path, capsys):
    (tmp_path / "b.json").write_text("{not json")
    _one_line_exit_2(main(["check", "--baseline", str(tmp_path / "b.json"), "--checkpoint", str(world / "parent")]),
                     capsys, "not valid JSON")


def test_checkpoint_of_another_resolution_is_exit_2(world, capsys):
    _one_line_exit_2(_check(world, "--checkpoint", str(world / "small")), capsys, "resolution 32")


def test_edited_margin_is_allowed_and_used(world, tmp_path, capsys):
    path = _edited_baseline(world, tmp_path, lambda d: d["margins"]["tasks"].update(fidelity=1.0))
    code = main(["check", "--baseline", str(path), "--checkpoint", str(world / "degraded"), "--tasks", "fidelity",
                 "--allow-other-checkpoint"])
    assert code == 0, capsys.readouterr().out  # a margin of 1.0 tolerates any drop of a [0, 1] score


@pytest.mark.parametrize("args, needle", [
    (["--tasks", "nope"], "unknown task 'nope'"),
    (["--tasks", "ocr"], "not in baseline"),
    (["--steps", "8"], "only applies with --record"),
])
def test_bad_task_or_option_is_exit_2(world, capsys, args, needle):
    _one_line_exit_2(_check(world, "--checkpoint", str(world / "parent"), *args), capsys, needle)


def test_missing_checkpoint_is_exit_2(world, capsys):
    _one_line_exit_2(_check(world, "--checkpoint", str(world / "nope")), capsys, "checkpoint not found")


def test_record_all_and_check_all_scripts(world, tmp_path):
    """The shell loops over a checkpoints folder: re-record every backbone, then check them all."""
    ckpts, bases, reports = tmp_path / "ckpts", tmp_path / "baselines", tmp_path / "reports"
    _save(ckpts / "tiny")
    shutil.copytree(REPO / "checkpoints" / "reward_aesthetic", ckpts / "reward_aesthetic")  # skipped: not a backbone
    env = dict(os.environ, CHECKPOINTS_DIR=str(ckpts), BASELINES_DIR=str(bases), REPORT_DIR=str(reports),
               OPD_BENCH=f"{sys.executable} -m opd_bench.cli", HF_HUB_OFFLINE="1")
    rec = subprocess.run(["bash", str(REPO / "baselines" / "record_all.sh"), "--tasks", "geneval", "--prompts", "3",
                          "--steps", "2"], env=env, capture_output=True, text=True)
    assert rec.returncode == 0, rec.stderr
    assert sorted(p.name for p in bases.iterdir()) == ["tiny.json"]
    shutil.copy(world / "parent.json", bases / "other.json")  # a baseline whose checkpoint is missing
    run = subprocess.run(["bash", str(REPO / "baselines" / "check_all.sh")], env=env, capture_output=True, text=True)
    out = run.stdout + run.stderr
    assert run.returncode == 2, out  # bad input wins over pass, and every checkpoint is still checked
    assert "check passed" in out and "FAILED: other (exit 2)" in out
    assert (reports / "tiny.xml").is_file() and (reports / "tiny.md").is_file()
