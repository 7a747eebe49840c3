"""Every subcommand, fed bad input as a hostile user would: one line on stderr naming the input, exit code 2,
no traceback, and nothing written (the working folder and the scratch folder are unchanged afterwards).

All cases run in this one process through ``opd_bench.cli.main`` (the console entry point), so the table stays
fast; a case that raised anything but the CLI's own errors would fail the test with its traceback.
"""
import json
import os
import shutil
from pathlib import Path

import pytest
from tiny_world import make_tiny_world

import opd_bench.analysis.variance  # noqa: F401  (imported before any patching: see NO_WORK)
import opd_bench.evalcache  # noqa: F401
import opd_bench.train  # noqa: F401
import opd_bench.world.build.pretrain  # noqa: F401
from opd_bench import check as gate
from opd_bench.checkpoint import CONFIG, MANIFEST, WEIGHTS, sha256_file
from opd_bench.cli import main

LONG = "x" * 300


def _rehash(ckpt: Path) -> None:
    """Rewrite a checkpoint's manifest so that it vouches for the files as they are (a 'consistent' bad one)."""
    files = {n: {"sha256": sha256_file(ckpt / n), "bytes": (ckpt / n).stat().st_size} for n in (WEIGHTS, CONFIG)}
    (ckpt / MANIFEST).write_text(json.dumps({"format": 1, "files": files}))


def _bad_checkpoint(root: Path, base: Path, name: str, config=None, manifest=None, weights=None) -> Path:
    d = root / name
    shutil.copytree(base, d)
    if config is not None:
        (d / CONFIG).write_text(json.dumps(config(json.loads((d / CONFIG).read_text()))))
    if weights is not None:
        (d / WEIGHTS).write_bytes(weights)
    _rehash(d)
    if manifest is not None:
        (d / MANIFEST).write_text(manifest)
    return d


def _rehashed_baseline(root: Path, good: Path, name: str, edit) -> Path:
    doc = json.loads(good.read_text())
    edit(doc)
    doc["fingerprint"] = gate.fingerprint(doc)
    p = root / f"{name}.json"
    p.write_text(json.dumps(doc))
    return p


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny world (base, teacher), bad configs, checkpoints, run folders, evaluations and baselines."""
    root = tmp_path_factory.mktemp("bad")
    w = make_tiny_world(root / "world")
    base, teacher = w / "base", w / "teacher"
    bad = root / "inputs"
    bad.mkdir()
    # configs
    (bad / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (bad / "self.yaml").write_text("extends: self.yaml\ntrain:\n  lr: 0.001\n")
    (bad / "cycle_a.yaml").write_text("extends: cycle_b.yaml\n")
    (bad / "cycle_b.yaml").write_text("extends: cycle_a.yaml\n")
    (bad / "list.yaml").write_text("- 1\n- 2\n")
    (bad / "invalid.yaml").write_text("train: [unclosed\n")
    (bad / "extends_num.yaml").write_text("extends: 5\n")
    (bad / "unreadable.yaml").write_text("seed: 1\n")
    os.chmod(bad / "unreadable.yaml", 0)
    (bad / "a_file").write_text("not a folder")
    # checkpoints
    ck = {
        "config_list": _bad_checkpoint(bad, base, "config_list", config=lambda c: []),
        "arch_str": _bad_checkpoint(bad, base, "arch_str", config=lambda c: dict(c, arch="big")),
        "arch_bad": _bad_checkpoint(bad, base, "arch_bad", config=lambda c: dict(c, arch={"transformer": 7})),
        "arch_huge": _bad_checkpoint(bad, base, "arch_huge", config=lambda c: dict(
            c, arch={**c["arch"], "transformer": {**c["arch"]["transformer"], "num_layers": 10**9}})),
        "arch_negative": _bad_checkpoint(bad, base, "arch_negative", config=lambda c: dict(
            c, arch={**c["arch"], "resolution": -32})),
        "kind": _bad_checkpoint(bad, base, "kind", config=lambda c: dict(c, kind="train_state")),
        "backbone": _bad_checkpoint(bad, base, "backbone", config=lambda c: dict(c, backbone="vae")),
        "weights": _bad_checkpoint(bad, base, "weights", weights=b"\x00" * 64),
        "manifest_garbage": _bad_checkpoint(bad, base, "manifest_garbage", manifest="{not json"),
        "manifest_list": _bad_checkpoint(bad, base, "manifest_list", manifest=json.dumps({"files": [1, 2]})),
        "manifest_escape": _bad_checkpoint(bad, base, "manifest_escape", manifest=json.dumps(
            {"files": {WEIGHTS: {}, CONFIG: {}, "../../etc/passwd": {"sha256": "x", "bytes": 1}}})),
    }
    tampered = bad / "tampered"
    shutil.copytree(base, tampered)
    (tampered / WEIGHTS).write_bytes((tampered / WEIGHTS).read_bytes()[:-8] + b"\x00" * 8)
    no_manifest = bad / "no_manifest"
    shutil.copytree(base, no_manifest)
    (no_manifest / MANIFEST).unlink()
    # run folders given to --resume / report
    for name, text in (("garbage_cfg", None), ("list_cfg", "[]\n"), ("badkey_cfg", "nonsense_key: 1\n"),
                       ("list_ledger", "seed: 0\n")):
        d = bad / "runs" / name
        d.mkdir(parents=True)
        if text is None:
            (d / "config.yaml").write_bytes(b"\xff\xfe\x00garbage" * 10)
        else:
            (d / "config.yaml").write_text(text)
        (d / "ledger.json").write_text("[]" if name == "list_ledger" else "{}")
    # run folders whose config and ledger are fine but whose eval history was edited into the wrong shapes
    from opd_bench.config import build_config, dump_config

    good_cfg = dump_config(build_config({}, ["method=opd", "tasks=geneval", f"model.checkpoint={base}",
                                             f"opd.teachers.geneval={teacher}"]))
    row = {"round": 0, "label": "start", "budget": {"images": 0}, "scores": {"geneval": 0.5}}
    for name, edit in (("hist_scores_list", {"scores": [0.5]}), ("hist_score_str", {"scores": {"geneval": "high"}}),
                       ("hist_label_num", {"label": 3}), ("hist_budget_str", {"budget": "lots"}),
                       ("hist_ci_scalar", {"ci": {"geneval": 0.1}}), ("hist_metrics_list", {"metrics": [1]})):
        d = bad / "runs" / name
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(good_cfg)
        (d / "ledger.json").write_text("{}")
        (d / "eval_history.jsonl").write_text(json.dumps({**row, **edit}) + "\n")
    # evaluations
    good_eval = {"protocol": {"steps": 2, "guidance": 1.0, "shift": 1.0, "seed": 1},
                 "tasks": {"geneval": {"per_prompt": [{"prompt": "a photo of a circle", "score": 1.0}]}}}
    evals = {
        "good": good_eval,
        "list": [],
        "no_protocol": {"tasks": {}},
        "tasks_list": {"protocol": {}, "tasks": []},
        "per_prompt_str": {"protocol": {}, "tasks": {"geneval": {"per_prompt": "x"}}},
        "row_no_prompt": {"protocol": {}, "tasks": {"geneval": {"per_prompt": [{"score": 1.0}]}}},
        "score_str": {"protocol": {}, "tasks": {"geneval": {"per_prompt": [{"prompt": "a", "score": "high"}]}}},
        "protocol_list": {"protocol": [1], "tasks": {}},
    }
    for k, v in evals.items():
        (bad / f"eval_{k}.json").write_text(json.dumps(v))
    (bad / "eval_binary.json").write_bytes(b"\x89PNG\x00\xff" * 20)
    # baselines: one good (recorded from the tiny base), then re-hashed malformed ones
    good = bad / "good_baseline.json"
    assert main(["check", "--record", "--checkpoint", str(base), "--baseline", str(good), "--tasks", "geneval",
                 "--prompts", "2", "--steps", "2"]) == 0
    bl = {
        "steps_str": _rehashed_baseline(bad, good, "steps_str", lambda d: d["protocol"].update(steps="many")),
        "seed_neg": _rehashed_baseline(bad, good, "seed_neg", lambda d: d["protocol"].update(seed=-5)),
        "scores_str": _rehashed_baseline(bad, good, "scores_str", lambda d: d["tasks"]["geneval"]["per_prompt"].update(
            score=["a", "b"])),
        "per_prompt_list": _rehashed_baseline(bad, good, "per_prompt_list",
                                              lambda d: d["tasks"]["geneval"].update(per_prompt=[1, 2])),
        "margin_str": _rehashed_baseline(bad, good, "margin_str", lambda d: d["margins"]["tasks"].update(geneval="0.1")),
        "margins_list": _rehashed_baseline(bad, good, "margins_list", lambda d: d.update(margins=[0.1])),
        "prompts_num": _rehashed_baseline(bad, good, "prompts_num",
                                          lambda d: d["protocol"].update(prompts={"geneval": [1, 2]})),
        "task_list": _rehashed_baseline(bad, good, "task_list", lambda d: d["tasks"].update(geneval=[1])),
        "categories_bad": _rehashed_baseline(bad, good, "categories_bad",
                                             lambda d: d["tasks"]["geneval"].update(categories=[1])),
    }
    (bad / "baseline_garbage.json").write_bytes(b"\x00\xff" * 50)
    # the working folder of every case: an existing run and a file where a run folder would go
    cwd = root / "cwd"
    (cwd / "runs" / "existing").mkdir(parents=True)
    (cwd / "runs" / "existing" / "config.yaml").write_text("seed: 0\n")
    (cwd / "runs" / "afile").write_text("x")
    return {"root": root, "base": base, "teacher": teacher, "bad": bad, "ck": ck, "tampered": tampered,
            "no_manifest": no_manifest, "good_baseline": good, "bl": bl, "cwd": cwd}


def _cases():
    """(id, argv builder, expected substring of the one-line error); every case exits 2."""
    B = lambda e: str(e["base"])  # noqa: E731
    I = lambda e, n: str(e["bad"] / n)  # noqa: E731
    CK = lambda e, n: str(e["ck"][n])  # noqa: E731
    BL = lambda e, n: str(e["bl"][n])  # noqa: E731
    run = lambda *a: (lambda e: ["run", *[x(e) if callable(x) else x for x in a]])  # noqa: E731
    ev = lambda *a: (lambda e: ["eval", *[x(e) if callable(x) else x for x in a]])  # noqa: E731
    cmp_ = lambda *a: (lambda e: ["compare", *[x(e) if callable(x) else x for x in a]])  # noqa: E731
    rep = lambda *a: (lambda e: ["report", *[x(e) if callable(x) else x for x in a]])  # noqa: E731
    chk = lambda *a: (lambda e: ["check", *[x(e) if callable(x) else x for x in a]])  # noqa: E731
    pre = lambda *a: (lambda e: ["world", "pretrain", *[x(e) if callable(x) else x for x in a]])  # noqa: E731
    rel = lambda *a: (lambda e: ["world", "release", *[x(e) if callable(x) else x for x in a]])  # noqa: E731
    var = lambda *a: (lambda e: ["analyze", "variance", *[x(e) if callable(x) else x for x in a]])  # noqa: E731
    GE = lambda e: I(e, "eval_good.json")  # noqa: E731
    GB = lambda e: str(e["good_baseline"])  # noqa: E731
    return [
        # ---- run: methods, tasks, budgets, seeds, jobs
        ("run-method", run("--method", "nope"), "unknown method 'nope'"),
        ("run-method-empty", run("--method", ","), "--method"),
        ("run-tasks", run("--tasks", "nope"), "unknown task 'nope'"),
        ("run-tasks-empty", run("--tasks", ","), "no tasks given"),
        ("run-budget-neg", run("--budget", "-5:images"), "must be positive"),
        ("run-budget-unit", run("--budget", "10:parsecs"), "unknown unit"),
        ("run-budget-nan-text", run("--budget", "abc"), "is not a number"),
        ("run-budget-1e999", run("--budget", "1e999:images"), "finite"),
        ("run-budget-inf", run("--budget", "inf:optimizer_steps"), "finite"),
        ("run-budget-nan", run("--budget", "nan:images"), "must be positive"),
        ("run-budget-huge", run("--budget", "1e13:images"), "beyond the largest budget"),
        ("run-budget-zero", run("--budget", "0"), "must be positive"),
        ("run-seeds-0", run("--seeds", "0"), "--seeds"),
        ("run-seeds-huge", run("--seeds", "100000"), "--seeds"),
        ("run-first-seed-neg", run("--first-seed", "-1"), "--first-seed"),
        ("run-first-seed-huge", run("--first-seed", "99999999999999999999999"), "--first-seed"),
        ("run-seed-sum", run("--first-seed", "4294967295", "--seeds", "2"), "--first-seed + --seeds"),
        ("run-jobs-0", run("--jobs", "0"), "--jobs"),
        ("run-unknown-option", run("--bogus"), "No such option"),
        # ---- run: config overrides
        ("set-literal", run("--set", "grpo.adv_std=batch"), "grpo.adv_std"),
        ("set-lr-nan", run("--set", "train.lr=nan"), "train.lr"),
        ("set-lr-inf", run("--set", "train.lr=inf"), "train.lr"),
        ("set-lr-neg", run("--set", "train.lr=-1"), "train.lr: must be > 0"),
        ("set-shift-inf", run("--set", "sampler.shift=inf"), "sampler.shift"),
        ("set-shift-yaml-inf", run("--set", "sampler.shift=.inf"), "sampler.shift"),
        ("set-steps-yaml-inf", run("--set", "sampler.steps=.inf"), "sampler.steps: expected an integer"),
        ("set-pps-huge", run("--set", "train.prompts_per_step=1000000000000000"), "train.prompts_per_step: must be at most"),
        ("set-pps-caret", run("--set", "train.prompts_per_step=10^15"), "train.prompts_per_step: expected an integer"),
        ("set-pps-bigint", run("--set", "train.prompts_per_step=" + "9" * 400), "train.prompts_per_step"),
        ("set-lr-bigint", run("--set", "train.lr=" + "9" * 400), "train.lr"),
        ("set-steps-0", run("--set", "sampler.steps=0"), "sampler.steps: must be > 0"),
        ("set-steps-frac", run("--set", "sampler.steps=1.5"), "sampler.steps: expected an integer"),
        ("set-seed", run("--set", "seed=10^30"), "--first-seed"),
        ("set-method", run("--set", "method=grpo"), "--method"),
        ("set-tasks", run("--set", "tasks=ocr"), "--tasks"),
        ("set-device-bogus", run("--set", "device=bogus"), "device"),
        ("set-device-cuda99", run("--set", "device=cuda:99"), "device"),
        ("set-unknown-key", run("--set", "nokey=1"), "nokey: unknown key"),
        ("set-unknown-nested", run("--set", "train.nokey=1"), "train.nokey: unknown key"),
        ("set-empty-key", run("--set", "=1"), "empty key"),
        ("set-no-equals", run("--set", "novalue"), "expected KEY=VALUE"),
        ("set-section-scalar", run("--set", "train=5"), "train: expected a mapping"),
        ("set-betas", run("--set", "train.betas=[2,3]"), "train.betas"),
        ("set-betas-nan", run("--set", "train.betas=[.nan,0.9]"), "train.betas"),
        ("set-eval-seed", run("--set", "eval.seed=-1"), "eval.seed"),
        ("set-bootstrap-huge", run("--set", "eval.bootstrap=10000000000"), "eval.bootstrap: must be at most"),
        ("set-budget-unit", run("--set", "budget.unit=parsecs"), "budget.unit"),
        ("set-budget-inf", run("--set", "budget.value=.inf"), "budget.value"),
        ("set-fraction", run("--set", "sampler.timestep_fraction=2"), "sampler.timestep_fraction"),
        ("set-window", run("--set", "sampler.sde_window=[5,2]"), "sampler.sde_window"),
        ("set-group-1", run("--method", "grpo", "--tasks", "ocr", "--set", "grpo.group_size=1"), "grpo.group_size"),
        ("set-weights-nan", run("--set", "multi_reward.weights.ocr=.nan"), "multi_reward.weights.ocr"),
        ("set-model-missing", run("--set", "model.checkpoint=/no/such/ckpt"), "checkpoint not found"),
        ("set-teacher-missing", run("--tasks", "geneval", "--set", "opd.teachers.geneval=/no/such"), "no teacher for task geneval"),
        ("run-real-task-no-prompts", run("--tasks", "real_ocr", "--set", "opd.teachers.real_ocr=base"),
         "no prompt file configured"),
        ("set-model-tampered", run("--set", lambda e: f"model.checkpoint={e['tampered']}"), "tampered"),
        ("set-teacher-tampered", run("--tasks", "geneval", "--set", lambda e: f"opd.teachers.geneval={e['tampered']}"),
         "tampered"),
        ("run-grpo-two-tasks", run("--method", "grpo", "--tasks", "ocr,geneval"), "one task at a time"),
        ("run-cascade-order", run("--method", "cascade", "--tasks", "ocr", "--set", "cascade.order=[geneval]"),
         "cascade.order"),
        # ---- run: config files
        ("config-missing", run("--config", "missing.yaml"), "config file not found"),
        ("config-binary", run("--config", lambda e: I(e, "binary.yaml")), "not a text (UTF-8) YAML file"),
        ("config-self", run("--config", lambda e: I(e, "self.yaml")), "makes a cycle"),
        ("config-cycle", run("--config", lambda e: I(e, "cycle_a.yaml")), "makes a cycle"),
        ("config-list", run("--config", lambda e: I(e, "list.yaml")), "top level must be a mapping"),
        ("config-invalid", run("--config", lambda e: I(e, "invalid.yaml")), "invalid YAML"),
        ("config-extends-num", run("--config", lambda e: I(e, "extends_num.yaml")), "extends"),
        ("config-folder", run("--config", lambda e: I(e, "runs")), "config file not found"),
        # ---- run: names, folders, resume
        ("name-dotdot", run("--name", "../../x"), "not a single folder name"),
        ("name-abs", run("--name", "/tmp/abs_run"), "not a single folder name"),
        ("name-slash", run("--name", "a/b"), "not a single folder name"),
        ("name-backslash", run("--name", "a\\b"), "not a single folder name"),
        ("name-newline", run("--name", "a\nb"), "not a single folder name"),
        ("name-dot", run("--name", "."), "not a single folder name"),
        ("name-long", run("--name", LONG), "at most 100"),
        ("name-empty", run("--name", ""), "empty name"),
        ("name-space", run("--name", " x"), "not a single folder name"),
        ("name-file", run("--name", "afile"), "exists and is not a folder"),
        ("name-existing", run("--name", "existing"), "already exists"),
        # a wrong argument is named before the existing folder (fixing the folder first would only meet it next)
        ("name-existing-set-seed", run("--name", "existing", "--set", "seed=3"), "seed is set by --first-seed"),
        ("runs-dir-devnull", run("--runs-dir", "/dev/null"), "--runs-dir"),
        ("runs-dir-under-file", run("--runs-dir", "/dev/null/runs"), "--runs-dir"),
        ("runs-dir-file", run("--runs-dir", lambda e: I(e, "a_file")), "--runs-dir"),
        ("resume-missing", run("--resume", "/no/such/run"), "not a run folder"),
        ("resume-file", run("--resume", lambda e: I(e, "a_file")), "--resume"),
        ("resume-garbage-config", run("--resume", lambda e: I(e, "runs/garbage_cfg")), "not a text (UTF-8) YAML"),
        ("resume-list-config", run("--resume", lambda e: I(e, "runs/list_cfg")), "top level must be a mapping"),
        ("resume-badkey-config", run("--resume", lambda e: I(e, "runs/badkey_cfg")), "nonsense_key: unknown key"),
        # ---- eval
        ("eval-no-checkpoint", ev(), "--checkpoint"),
        ("eval-split", ev("--checkpoint", B, "--split", "eval"), "--split"),
        ("eval-protocol", ev("--checkpoint", B, "--protocol", "nope"), "--protocol"),
        ("eval-seeds-0", ev("--checkpoint", B, "--seeds-per-prompt", "0"), "--seeds-per-prompt"),
        ("run-eval-split", run("--set", "eval.split=eval"), "eval.split"),
        ("run-eval-seeds", run("--set", "eval.seeds_per_prompt.ocr=0"), "eval.seeds_per_prompt.ocr"),
        ("eval-missing", ev("--checkpoint", "/no/such/ckpt"), "checkpoint not found"),
        ("eval-released-missing", ev("--checkpoint", "nope_release"), "checkpoint not found"),
        ("eval-file", ev("--checkpoint", lambda e: I(e, "a_file")), "must be a folder"),
        ("eval-no-manifest", ev("--checkpoint", lambda e: str(e["no_manifest"])), "no manifest.json"),
        ("eval-tampered", ev("--checkpoint", lambda e: str(e["tampered"])), "tampered"),
        ("eval-config-list", ev("--checkpoint", lambda e: CK(e, "config_list")), "expected a JSON object"),
        ("eval-arch-str", ev("--checkpoint", lambda e: CK(e, "arch_str")), "malformed 'arch'"),
        ("eval-arch-bad", ev("--checkpoint", lambda e: CK(e, "arch_bad")), "malformed 'arch'"),
        ("eval-arch-huge", ev("--checkpoint", lambda e: CK(e, "arch_huge")), "num_layers = 1000000000 is outside"),
        ("eval-arch-negative", ev("--checkpoint", lambda e: CK(e, "arch_negative")), "resolution = -32 is outside"),
        ("eval-kind", ev("--checkpoint", lambda e: CK(e, "kind")), "expected 'embedded_t2i'"),
        ("eval-backbone", ev("--checkpoint", lambda e: CK(e, "backbone")), "unknown backbone 'vae'"),
        ("eval-weights-garbage", ev("--checkpoint", lambda e: CK(e, "weights")), "cannot read"),
        ("eval-manifest-garbage", ev("--checkpoint", lambda e: CK(e, "manifest_garbage")), "corrupted manifest"),
        ("eval-manifest-list", ev("--checkpoint", lambda e: CK(e, "manifest_list")), "corrupted manifest"),
        ("eval-manifest-escape", ev("--checkpoint", lambda e: CK(e, "manifest_escape")), "corrupted manifest"),
        ("eval-out-devnull", ev("--checkpoint", B, "--out", "/dev/null/x"), "--out"),
        ("eval-out-file", ev("--checkpoint", B, "--out", lambda e: I(e, "a_file")), "--out"),
        ("eval-steps-0", ev("--checkpoint", B, "--steps", "0"), "--steps"),
        ("eval-steps-huge", ev("--checkpoint", B, "--steps", "99999999999999999999999"), "--steps"),
        ("eval-prompts-neg", ev("--checkpoint", B, "--prompts", "-1"), "--prompts"),
        ("eval-guidance-nan", ev("--checkpoint", B, "--guidance", "nan"), "--guidance"),
        ("eval-guidance-inf", ev("--checkpoint", B, "--guidance", "inf"), "--guidance"),
        ("eval-guidance-neg", ev("--checkpoint", B, "--guidance", "-1"), "--guidance"),
        ("eval-seed-neg", ev("--checkpoint", B, "--seed", "-1"), "--seed"),
        ("eval-seed-huge", ev("--checkpoint", B, "--seed", "99999999999999999999999"), "--seed"),
        ("eval-tasks", ev("--checkpoint", B, "--tasks", "nope"), "unknown task 'nope'"),
        # ---- compare
        ("compare-missing", cmp_("-b", "/no/such", "-c", "/no/such"), "no eval.json"),
        ("compare-list", cmp_("-b", lambda e: I(e, "eval_list.json"), "-c", GE), "not an eval.json"),
        ("compare-no-protocol", cmp_("-b", lambda e: I(e, "eval_no_protocol.json"), "-c", GE), "not an eval.json"),
        ("compare-tasks-list", cmp_("-b", lambda e: I(e, "eval_tasks_list.json"), "-c", GE), "not an eval.json"),
        ("compare-per-prompt-str", cmp_("-b", lambda e: I(e, "eval_per_prompt_str.json"), "-c", GE), "per_prompt"),
        ("compare-row-no-prompt", cmp_("-b", lambda e: I(e, "eval_row_no_prompt.json"), "-c", GE), "has no prompt"),
        ("compare-score-str", cmp_("-b", lambda e: I(e, "eval_score_str.json"), "-c", GE), "not a finite number"),
        ("compare-protocol-list", cmp_("-b", lambda e: I(e, "eval_protocol_list.json"), "-c", GE), "not an eval.json"),
        ("compare-binary", cmp_("-b", lambda e: I(e, "eval_binary.json"), "-c", GE), "not a readable eval.json"),
        ("compare-same-seed", cmp_("-b", GE, "-b", GE, "-c", GE), "same seed"),
        ("compare-margin-nan", cmp_("-b", GE, "-c", GE, "--margin", "nan"), "--margin"),
        ("compare-bootstrap", cmp_("-b", GE, "-c", GE, "--bootstrap", "5"), "--bootstrap"),
        ("compare-out-devnull", cmp_("-b", GE, "-c", GE, "--out", "/dev/null/x"), "--out"),
        ("compare-tasks", cmp_("-b", GE, "-c", GE, "--tasks", "nope"), "unknown task 'nope'"),
        ("compare-task-absent", cmp_("-b", GE, "-c", GE, "--tasks", "ocr"), "not evaluated"),
        # ---- report
        ("report-missing", rep("/no/such/run"), "not a run folder"),
        ("report-garbage-config", rep(lambda e: I(e, "runs/garbage_cfg")), "not a text (UTF-8) YAML"),
        ("report-badkey-config", rep(lambda e: I(e, "runs/badkey_cfg")), "nonsense_key: unknown key"),
        ("report-ledger-list", rep(lambda e: I(e, "runs/list_ledger")), "not a ledger"),
        *[(f"report-{h.replace('_', '-')}", rep(lambda e, h=h: I(e, f"runs/{h}")), "not an eval-history row")
          for h in ("hist_scores_list", "hist_score_str", "hist_label_num", "hist_budget_str", "hist_ci_scalar",
                    "hist_metrics_list")],
        ("report-out-devnull", rep(lambda e: I(e, "runs/garbage_cfg"), "--out", "/dev/null/x"), "--out"),
        ("report-name-dotdot", rep(lambda e: I(e, "runs/garbage_cfg"), "--name", "../x"), "not a single folder name"),
        ("report-variance-missing", rep("--variance", "/no/such.json"), "file not found"),
        ("report-samples-neg", rep("--samples", "-1"), "--samples"),
        # ---- check
        ("check-no-baseline", chk("--checkpoint", B), "--baseline is required"),
        ("check-baseline-missing", chk("--baseline", "/no/such.json", "--checkpoint", B), "file not found"),
        ("check-no-checkpoint", chk("--baseline", GB), "--checkpoint is required"),
        ("check-baseline-garbage", chk("--baseline", lambda e: I(e, "baseline_garbage.json"), "--checkpoint", B),
         "not valid JSON"),
        ("check-baseline-steps-str", chk("--baseline", lambda e: BL(e, "steps_str"), "--checkpoint", B), "protocol.steps"),
        ("check-baseline-seed-neg", chk("--baseline", lambda e: BL(e, "seed_neg"), "--checkpoint", B), "protocol.seed"),
        ("check-baseline-scores-str", chk("--baseline", lambda e: BL(e, "scores_str"), "--checkpoint", B),
         "finite numbers"),
        ("check-baseline-per-prompt-list", chk("--baseline", lambda e: BL(e, "per_prompt_list"), "--checkpoint", B),
         "no per-prompt"),
        ("check-baseline-margin-str", chk("--baseline", lambda e: BL(e, "margin_str"), "--checkpoint", B),
         "margins.tasks.geneval"),
        ("check-baseline-margins-list", chk("--baseline", lambda e: BL(e, "margins_list"), "--checkpoint", B),
         "must be mappings"),
        ("check-baseline-prompts-num", chk("--baseline", lambda e: BL(e, "prompts_num"), "--checkpoint", B),
         "protocol.prompts"),
        ("check-baseline-task-list", chk("--baseline", lambda e: BL(e, "task_list"), "--checkpoint", B), "not a mapping"),
        ("check-baseline-categories", chk("--baseline", lambda e: BL(e, "categories_bad"), "--checkpoint", B),
         "categories"),
        ("check-other-checkpoint", chk("--baseline", GB, "--checkpoint", lambda e: str(e["teacher"])),
         "--allow-other-checkpoint"),
        ("check-tampered", chk("--baseline", GB, "--checkpoint", lambda e: str(e["tampered"])), "tampered"),
        ("check-junit-devnull", chk("--baseline", GB, "--checkpoint", B, "--junit", "/dev/null/r.xml"), "--junit"),
        ("check-markdown-dir", chk("--baseline", GB, "--checkpoint", B, "--markdown", lambda e: I(e, "runs")),
         "--markdown"),
        ("check-steps-without-record", chk("--baseline", GB, "--checkpoint", B, "--steps", "8"),
         "only applies with --record"),
        ("check-record-devnull", chk("--record", "--checkpoint", B, "--baseline", "/dev/null/b.json"), "--baseline"),
        ("check-record-dir", chk("--record", "--checkpoint", B, "--baseline", lambda e: I(e, "runs")), "--baseline"),
        ("check-record-junit", chk("--record", "--checkpoint", B, "--baseline", lambda e: I(e, "new.json"),
                                   "--junit", "r.xml"), "apply to a check"),
        ("check-record-allow", chk("--record", "--checkpoint", B, "--baseline", lambda e: I(e, "new.json"),
                                   "--allow-other-checkpoint"), "applies to a check"),
        ("check-record-steps-0", chk("--record", "--checkpoint", B, "--baseline", lambda e: I(e, "new.json"),
                                     "--steps", "0"), "--steps"),
        ("check-record-margin-nan", chk("--record", "--checkpoint", B, "--baseline", lambda e: I(e, "new.json"),
                                        "--margin", "nan"), "--margin"),
        ("check-tasks", chk("--baseline", GB, "--checkpoint", B, "--tasks", "nope"), "unknown task 'nope'"),
        # ---- world pretrain / release
        ("pretrain-out-devnull", pre("--out", "/dev/null/x"), "--out"),
        ("pretrain-out-file", pre("--out", lambda e: I(e, "a_file")), "--out"),
        ("pretrain-schedule", pre("--set", "schedule=linear", "--out", "/tmp/never"), "is not cosine or constant"),
        ("pretrain-data", pre("--set", "data=photos", "--out", "/tmp/never"), "is not mix or signs"),
        ("pretrain-steps-0", pre("--set", "steps=0"), "steps: must be in"),
        ("pretrain-lr-nan", pre("--set", "lr=nan"), "lr: must be a finite number"),
        ("pretrain-lr-inf", pre("--set", "lr=inf"), "lr: must be a finite number"),
        ("pretrain-seed-neg", pre("--set", "seed=-1"), "seed: must be in"),
        ("pretrain-init-missing", pre("--set", "init=/no/such", "--out", "/tmp/never"), "checkpoint not found"),
        ("pretrain-init-tampered", pre("--set", lambda e: f"init={e['tampered']}", "--out", "/tmp/never"), "tampered"),
        ("pretrain-ema", pre("--set", "ema_decay=2"), "ema_decay: must be in"),
        ("pretrain-batch-huge", pre("--set", "batch_size=1000000000"), "batch_size: must be in"),
        ("pretrain-unknown-key", pre("--set", "stpes=5"), "stpes: unknown key"),
        ("pretrain-arch-key", pre("--set", "arch.glyph_slotz=3"), "arch.glyph_slotz: unknown key"),
        ("pretrain-glyph-huge", pre("--set", "arch.glyph_canvas=99"), "arch.glyph_canvas: expected an integer in"),
        ("pretrain-config-missing", pre("--config", "world/no_such_stage"), "config file not found"),
        ("world-prompts-out-file", lambda e: ["world", "prompts", "--out", I(e, "a_file")], "--out"),
        ("world-prompts-seed-neg", lambda e: ["world", "prompts", "--seed", "-1"], "--seed"),
        ("reward-data-task", lambda e: ["world", "reward-data", "--task", "nope", "--out", "/tmp/never.png"],
         "is not aesthetic or preference"),
        ("reward-data-rows-0", lambda e: ["world", "reward-data", "--task", "aesthetic", "--rows", "0", "--out",
                                          "/tmp/never.png"], "--rows"),
        ("train-rewards-task", lambda e: ["world", "train-rewards", "--task", "nope"], "is not aesthetic or preference"),
        ("train-rewards-lr-nan", lambda e: ["world", "train-rewards", "--task", "aesthetic", "--lr", "nan"], "--lr"),
        ("train-rewards-init-visual", lambda e: ["world", "train-rewards", "--task", "aesthetic", "--init-visual", "x"],
         "--init-visual only applies"),
        ("train-rewards-init-missing", lambda e: ["world", "train-rewards", "--task", "preference", "--init-visual",
                                                  "/no/such"], "checkpoint not found"),
        ("release-missing", rel("/no/such/run", "x"), "not a finished run folder"),
        ("release-name-dotdot", rel("/no/such/run", "../x"), "not a single folder name"),
        ("release-name-slash", rel("/no/such/run", "a/b"), "not a single folder name"),
        # ---- analyze variance
        ("variance-missing", var("--checkpoint", "/no/such"), "not found"),
        ("variance-estimator", var("--checkpoint", B, "--estimators", "bogus"), "unknown estimator 'bogus'"),
        ("variance-sizes-text", var("--checkpoint", B, "--batch-sizes", "x"), "--batch-sizes"),
        ("variance-sizes-0", var("--checkpoint", B, "--batch-sizes", "0"), "--batch-sizes"),
        ("variance-sizes-huge", var("--checkpoint", B, "--batch-sizes", "100000"), "--batch-sizes"),
        ("variance-teacher-task", var("--checkpoint", B, "--teacher-for-task", "bogus=base"), "unknown task 'bogus'"),
        ("variance-teacher-form", var("--checkpoint", B, "--teacher-for-task", "noequals"), "TASK=CHECKPOINT"),
        ("variance-k", var("--checkpoint", B, "--k", "1"), "--k"),
        ("variance-out-devnull", var("--checkpoint", B, "--out", "/dev/null/x"), "--out"),
        ("variance-set-nan", var("--checkpoint", B, "--set", "opd.noise_level=.nan"), "opd.noise_level"),
        ("variance-device", var("--checkpoint", B, "--set", "device=cuda:99"), "device"),
        ("variance-tasks", var("--checkpoint", B, "--tasks", "nope"), "unknown task 'nope'"),
        # ---- no command, unknown command
        ("unknown-command", lambda e: ["frobnicate"], "No such command"),
        ("world-unknown", lambda e: ["world", "frobnicate"], "No such command"),
    ]


CASES = _cases()
#: where the work starts (every module that binds ``evaluate`` by name is imported first, so each binding is
#: patched for the case and restored after it)
NO_WORK = ("opd_bench.runner.Runner._run", "opd_bench.evaluate.evaluate", "opd_bench.runner.evaluate",
           "opd_bench.check.evaluate", "opd_bench.world.build.pretrain.pretrain",
           "opd_bench.analysis.variance.variance_study")


def test_the_table_covers_every_subcommand_with_at_least_100_cases():
    assert len(CASES) >= 100 and len({c[0] for c in CASES}) == len(CASES)
    class Anything:  # stands for every fixture path
        __getitem__ = __truediv__ = lambda self, k: self
        __str__ = lambda self: "x"

    heads = {tuple(c[1](Anything())[:2]) for c in CASES}
    for sub in ("run", "eval", "compare", "report", "check"):
        assert any(h[0] == sub for h in heads), sub
    assert ("world", "pretrain") in heads and ("world", "release") in heads and ("analyze", "variance") in heads


def _tree(*roots):
    return {str(p): p.stat().st_size if p.is_file() else -1 for r in roots for p in Path(r).rglob("*")}


@pytest.mark.parametrize("case_id, argv, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(env, case_id, argv, needle, capsys, monkeypatch):
    monkeypatch.chdir(env["cwd"])
    for target in NO_WORK:  # bad input must be refused before any work
        monkeypatch.setattr(target, lambda *a, _t=target, **k: pytest.fail(f"{case_id}: reached {_t}"))
    before = _tree(env["cwd"], env["bad"])
    code = main(argv(env))
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert code == 2, (code, cap.err, cap.out[-2000:])
    assert "Traceback" not in cap.err + cap.out
    assert err.count("\n") == 0 and err.startswith("error: "), cap.err
    assert needle in err, err
    assert _tree(env["cwd"], env["bad"]) == before, "a bad invocation wrote something"


def test_unreadable_config_is_one_line_exit_2(env, capsys, monkeypatch):
    """Root reads any file, so an unreadable config is simulated for root by denying the read."""
    monkeypatch.chdir(env["cwd"])   # not the checkout: its runs/ may hold the main job's folder
    path = env["bad"] / "unreadable.yaml"
    if os.geteuid() == 0:
        real = Path.read_text

        def deny(self, *a, **k):
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self, *a, **k)

        monkeypatch.setattr(Path, "read_text", deny)
    code = main(["run", "--config", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "cannot read it" in err and "Traceback" not in err, err
