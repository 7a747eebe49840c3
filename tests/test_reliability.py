"""Nothing is lost under a kill, a NaN, a full or read-only disk, a second process or Ctrl-C (issue 24).

Runs are tiny (the tiny world of tests/tiny_world.py, 2-step sampling, a 12-image budget, a save every 2
rounds) and deterministic on CPU, so an interrupted-then-resumed run must end with the uninterrupted run's
final weights bit for bit.
"""
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_world import make_tiny_world

from opd_bench import runlock
from opd_bench.checkpoint import atomic_write_json, load_checkpoint, save_checkpoint, verify_checkpoint
from opd_bench.cli import main
from opd_bench.validate import finite_json

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _cwd(tmp_path_factory):
    """In-process runs write their eval cache under ./runs: keep it out of the repository."""
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(old)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_tiny_world(tmp_path_factory.mktemp("world"))


def run_args(world, runs_dir, name, budget="12:images", *extra):
    sets = ["sampler.steps=2", "sampler.guidance=2.0", "train.prompts_per_step=2", "eval.steps=2",
            "eval.prompts_per_task=2", "eval.bootstrap=20", "eval.guidance=2.0", "train.checkpoint_every=2",
            f"model.checkpoint={world / 'base'}", f"opd.teachers.geneval={world / 'teacher'}", *extra]
    return ["run", "--method", "opd", "--tasks", "geneval", "--budget", budget, "--runs-dir", str(runs_dir),
            "--name", name] + [x for kv in sets for x in ("--set", kv)]


def final_weights(run: Path):
    return load_file(str(run / "final" / "model.safetensors"))


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def no_strays(run: Path):
    """Staging folders or temp files left anywhere in the run folder."""
    return [p for p in run.rglob("*") if ".staging." in p.name or p.name.endswith(".tmp")]


def error_line(stderr: str) -> str:
    """The one error line a stopped run prints (after its progress lines, which are not errors)."""
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr and sum(l.startswith("error") for l in lines) == 1, stderr
    assert lines[-1].startswith("error: "), stderr
    return lines[-1]


def json_files_are_strict(run: Path) -> None:
    for p in list(run.rglob("*.json")) + list(run.rglob("*.jsonl")):
        text = p.read_text()
        assert "NaN" not in text and "Infinity" not in text, p
        for line in text.splitlines() if p.suffix == ".jsonl" else [text]:
            json.loads(line, parse_constant=lambda c: pytest.fail(f"{p}: {c}"))


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    """The uninterrupted run."""
    runs = tmp_path_factory.mktemp("ref")
    assert main(run_args(world, runs, "full")) == 0
    return final_weights(runs / "full"), runs / "full"


# ------------------------------------------------------------------------------------------ kills (SIGKILL)

#: a child that SIGKILLs itself at the n-th call of a function, at a precise point of the run
KILLER = textwrap.dedent("""
    import os, signal, sys
    import importlib
    mod_name, attr, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    owner, _, fn = attr.rpartition(".")
    mod = importlib.import_module(mod_name)
    obj = getattr(mod, owner) if owner else mod
    orig = getattr(obj, fn)
    calls = [0]
    def wrapped(*a, **k):
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return orig(*a, **k)
    setattr(obj, fn, wrapped)
    from opd_bench.cli import main
    main(sys.argv[4:])
""")

KILL_POINTS = [
    # (id, module, attribute, n-th call): the moment the process dies
    ("before-first-save-at-start-eval", "opd_bench.runner", "Runner.run_eval", 1),
    ("inside-first-save-staging", "opd_bench.checkpoint", "atomic_write_json", 1),
    ("between-the-two-renames-of-a-save", "os", "replace", 11),
    ("mid-training-round-3", "opd_bench.methods.opd", "DiffusionOPD.train_step", 3),
    ("after-the-last-state-save-before-final", "opd_bench.runner", "Runner.ledger_report", 6),
]


@pytest.mark.parametrize("point, module, attr, n", KILL_POINTS, ids=[k[0] for k in KILL_POINTS])
def test_kill_at_any_point_then_resume_equals_uninterrupted(world, reference, tmp_path, point, module, attr, n):
    ref, _ = reference
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(torch.get_num_threads()), PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-c", KILLER, module, attr, str(n), *run_args(world, tmp_path, "k")],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr[-3000:])
    run = tmp_path / "k"
    assert not (run / "summary.json").exists()
    if point.startswith("between-the-two-renames"):
        assert not (run / "state").exists() and list(run.glob(".state.old.*"))
    if point.startswith("before-first-save"):
        assert not (run / "state").exists() and (run / "config.yaml").is_file()
        # a plain re-run refuses (one line naming --resume); --resume restarts it from the beginning
        assert main(run_args(world, tmp_path, "k")) == 2
    assert main(["run", "--resume", str(run)]) == 0
    assert same_weights(final_weights(run), ref), point
    assert no_strays(run) == []
    json_files_are_strict(run)


# --------------------------------------------------------------------------------------------- NaN -> exit 3


@pytest.mark.parametrize("override", ["train.lr=1e30", "train.lr=1e3"])
def test_non_finite_training_stops_with_exit_3_keeping_the_last_good_state(world, tmp_path, capsys, override):
    code = main(run_args(world, tmp_path, "nan", "40:images", override))
    err = error_line(capsys.readouterr().err)
    assert code == 3, err
    assert "not finite" in err and f"--resume {tmp_path / 'nan'}" in err, err
    run = tmp_path / "nan"
    tensors, meta = load_checkpoint(run / "state", kind="train_state")  # verified, loadable
    assert all(torch.isfinite(t).all() for t in tensors.values())
    assert f"(round {meta['round']})" in err
    assert not (run / "final").exists() and not (run / "summary.json").exists()
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["round"] >= 1 for r in rows)
    json_files_are_strict(run)
    assert no_strays(run) == []


def test_non_finite_reward_stops_with_exit_3(world, tmp_path, capsys, monkeypatch):
    from opd_bench.tasks import get_task

    task = get_task("brightness")
    monkeypatch.setattr(type(task), "reward", lambda self, images, records: images.float().mean(dim=(1, 2, 3)) * float("nan"))
    args = run_args(world, tmp_path, "nanr", "40:images")
    args[args.index("--method") + 1], args[args.index("--tasks") + 1] = "grpo", "brightness"
    args += ["--set", "grpo.group_size=2"]
    code = main(args)
    err = error_line(capsys.readouterr().err)
    assert code == 3 and "reward of task brightness is not finite" in err, err
    verify_checkpoint(tmp_path / "nanr" / "state")


def test_json_outputs_never_hold_nan_or_infinity(tmp_path):
    atomic_write_json(tmp_path / "s.json", {"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -float("inf")}})
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": None, "b": [None, 1.5], "c": {"d": None}}
    import numpy as np

    assert finite_json({"x": np.float32("nan"), "y": np.float64(2.0)}) == {"x": None, "y": 2.0}


# ---------------------------------------------------------------------------------------------- lock


HOLDER = textwrap.dedent("""
    import sys, time
    from opd_bench import runlock
    with runlock.own(sys.argv[1]):
        print("owned", flush=True)
        time.sleep(120)
""")


def test_a_second_process_on_a_run_folder_exits_2_naming_the_owner(world, tmp_path, capsys):
    run = tmp_path / "busy"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "owned"
        for argv in (run_args(world, tmp_path, "busy"), ["run", "--resume", str(run)]):
            code = main(argv)
            err = capsys.readouterr().err.strip()
            assert code == 2 and err.count("\n") == 0, err
            assert f"in use by pid {holder.pid}" in err, err
        assert sorted(p.name for p in run.iterdir()) == [runlock.LOCK]   # nothing written by the refused runs
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the lock with the owner: the folder is free again
    runlock.check_free(run)


def test_lock_is_taken_by_the_runner_itself(world, tmp_path):
    """Two runs racing past the up-front checks: the one that loses the lock refuses, naming the owner."""
    from opd_bench.config import build_config
    from opd_bench.errors import UserError
    from opd_bench.methods import METHODS
    from opd_bench.runner import Runner

    cfg = build_config({}, ["method=opd", "tasks=geneval", f"model.checkpoint={world / 'base'}",
                            f"opd.teachers.geneval={world / 'teacher'}"])
    with runlock.own(tmp_path / "race"):
        with pytest.raises(UserError, match=f"in use by pid {os.getpid()}"):
            Runner(cfg, tmp_path / "race", METHODS["opd"](), ["geneval"], show_progress=False).run()


# ------------------------------------------------------------------------------------- full / read-only disk


@pytest.mark.parametrize("err_no", [errno.ENOSPC, errno.EROFS], ids=["full-disk", "read-only-disk"])
def test_full_or_read_only_disk_mid_run_is_exit_3_cleans_staging_and_resumes_identically(
        world, reference, tmp_path, capsys, monkeypatch, err_no):
    """ENOSPC / EROFS simulated at the 3rd state save (the fsync of its weights): one line, exit 3, no staging
    left, the previous state intact; once the disk is fixed, --resume ends bit-identical to the uninterrupted run."""
    import opd_bench.checkpoint as ck

    ref, _ = reference
    real_fsync, saves = os.fsync, {"n": 0}
    real_save = ck.save_checkpoint

    def counting_save(path, *a, **k):
        saves["n"] += 1
        return real_save(path, *a, **k)

    def fsync(fd):
        if saves["n"] >= 3:
            raise OSError(err_no, os.strerror(err_no))
        return real_fsync(fd)

    import opd_bench.runner as rn

    monkeypatch.setattr(rn, "save_checkpoint", counting_save)
    monkeypatch.setattr(os, "fsync", fsync)
    code = main(run_args(world, tmp_path, "full"))
    err = error_line(capsys.readouterr().err)
    monkeypatch.undo()
    run = tmp_path / "full"
    assert code == 3, err
    assert os.strerror(err_no) in err and "the last good state (round 2)" in err, err
    assert no_strays(run) == []
    _, meta = load_checkpoint(run / "state", kind="train_state")
    assert meta["round"] == 2
    assert main(["run", "--resume", str(run)]) == 0
    assert same_weights(final_weights(run), ref)


def test_failed_save_leaves_the_previous_checkpoint_and_no_staging(tmp_path, monkeypatch):
    t = {"w": torch.arange(4.0)}
    save_checkpoint(tmp_path / "ck", t, {"v": 1}, kind="k")

    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "ck", {"w": torch.zeros(4)}, {"v": 2}, kind="k")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    tensors, cfg = load_checkpoint(tmp_path / "ck", kind="k")
    assert cfg["v"] == 1 and torch.equal(tensors["w"], t["w"])


@pytest.fixture()
def small_tmpfs(tmp_path):
    """A 16 MiB tmpfs (root only, where mounting is allowed): a real ENOSPC / EROFS from the kernel."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_real_full_tmpfs_mid_run(world, tmp_path, small_tmpfs, capsys, monkeypatch):
    """The disk really fills after the first save: exit 3, one line, staging removed, the state intact."""
    import opd_bench.runner as rn

    real_save, n = rn.Runner._save_state, {"k": 0}

    def save_then_fill(self, ctx):
        real_save(self, ctx)
        n["k"] += 1
        if n["k"] == 1:  # fill the disk to the last byte after the first good save
            with open(small_tmpfs / "filler", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass

    monkeypatch.setattr(rn.Runner, "_save_state", save_then_fill)
    code = main(run_args(world, small_tmpfs, "r"))
    err = error_line(capsys.readouterr().err)
    assert code == 3 and "No space left on device" in err, err
    assert no_strays(small_tmpfs / "r") == []
    verify_checkpoint(small_tmpfs / "r" / "state")


def test_read_only_disk_is_refused_before_any_work(world, tmp_path, small_tmpfs, capsys, monkeypatch):
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    monkeypatch.setattr("opd_bench.evaluate.evaluate", lambda *a, **k: pytest.fail("evaluated before refusing"))
    monkeypatch.setattr("opd_bench.runner.Runner._run", lambda *a, **k: pytest.fail("ran before refusing"))
    monkeypatch.setattr("opd_bench.world.build.pretrain.pretrain", lambda *a, **k: pytest.fail("pretrained before refusing"))
    for argv, needle in ((run_args(world, small_tmpfs, "r"), "--runs-dir"),
                         (["eval", "--checkpoint", str(world / "base"), "--out", str(small_tmpfs / "e")], "--out"),
                         (["world", "pretrain", "--out", str(small_tmpfs / "b")], "--out"),
                         (["check", "--record", "--checkpoint", str(world / "base"), "--baseline",
                           str(small_tmpfs / "b.json")], "--baseline")):
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0 and needle in err and "Read-only file system" in err, err


# ---------------------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_says_where_the_state_is_and_how_to_resume(world, reference, tmp_path, capsys, monkeypatch):
    from opd_bench.methods.opd import DiffusionOPD

    ref, _ = reference
    real_step, n = DiffusionOPD.train_step, {"k": 0}

    def step(self, ctx):
        n["k"] += 1
        if n["k"] == 4:
            raise KeyboardInterrupt
        return real_step(self, ctx)

    monkeypatch.setattr(DiffusionOPD, "train_step", step)
    code = main(run_args(world, tmp_path, "c"))
    err = error_line(capsys.readouterr().err)
    monkeypatch.undo()
    run = tmp_path / "c"
    assert code == 130
    assert f"last saved state is in {run / 'state'}" in err and f"continue with: opd-bench run --resume {run}" in err
    assert main(["run", "--resume", str(run)]) == 0
    assert same_weights(final_weights(run), ref)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_of_a_real_process(world, tmp_path, sig):
    """SIGINT (Ctrl-C) or SIGTERM (a scheduler) to a running `opd-bench run`: exit 130 (143 for SIGTERM, 128 +
    the signal number) and the --resume command."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    # the child takes SIGINT's default disposition even where pytest itself runs in a background job (a shell
    # starts those with SIGINT ignored, and an ignored signal stays ignored across exec)
    p = subprocess.Popen([sys.executable, "-m", "opd_bench.cli", *run_args(world, tmp_path, "s", "400:images")],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    metrics = tmp_path / "s" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.1)
    p.send_signal(sig)
    err = error_line(p.communicate(timeout=120)[1])
    assert p.returncode == (130 if sig == signal.SIGINT else 143), err
    assert f"continue with: opd-bench run --resume {tmp_path / 's'}" in err, err


def test_full_disk_while_eval_writes_its_outputs_is_one_line_exit_2(world, tmp_path, capsys, monkeypatch):
    """`eval` whose eval.json write hits ENOSPC: one line, exit 2, no temp file left beside it."""
    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "e"
    code = main(["eval", "--checkpoint", str(world / "base"), "--tasks", "geneval", "--prompts", "2", "--steps", "2",
                 "--out", str(out)])
    err = error_line(capsys.readouterr().err)
    assert code == 2 and "No space left on device" in err, err
    assert not (out / "eval.json").exists() and not list(out.glob(".*.tmp"))
