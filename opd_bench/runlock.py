"""Run-folder ownership: one process at a time owns a run folder (an advisory ``flock`` on ``<run>/.lock``,
released by the kernel when the owner exits or is killed), and what an interrupted command tells its user.

A second process that tries to own the same folder gets one line naming the owner (pid, host, start time,
command) and exit code 2. The lock also makes the owner the only writer, so orphaned staging files of a
killed save (``.state.staging.<pid>``, ``.<file>.<pid>.tmp``) can be removed safely when the folder is taken.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import shutil
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List

from .errors import UserError

LOCK = ".lock"

#: run folders this process owns or drives right now (for the Ctrl-C message), in start order
_ACTIVE: Dict[Path, None] = {}


def active_runs() -> List[Path]:
    return list(_ACTIVE)


def mark_active(run_dir: Path) -> None:
    """Record ``run_dir`` as driven by this process (itself or a child it started), for the Ctrl-C message."""
    _ACTIVE[Path(run_dir)] = None


def mark_done(run_dir: Path) -> None:
    _ACTIVE.pop(Path(run_dir), None)


def reset_active() -> None:
    """Forget every recorded run (a new command starts)."""
    _ACTIVE.clear()


def _owner_info() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "command": " ".join(["opd-bench", *sys.argv[1:]]) if sys.argv else "opd-bench"}


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds anything of a run (its lock file and orphaned staging files do not count)."""
    run_dir = Path(run_dir)
    return run_dir.is_dir() and any(p.name != LOCK and ".staging." not in p.name and not p.name.endswith(".tmp")
                                    for p in run_dir.iterdir())


def describe_owner(run_dir: Path) -> str:
    try:
        o = json.loads((Path(run_dir) / LOCK).read_text() or "{}")
        return f"pid {o['pid']} on {o['host']} since {o['started']} ({o['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def clean_orphans(run_dir: Path) -> List[Path]:
    """Remove staging folders and temp files left by a killed or failed save in ``run_dir`` (and in its
    checkpoint folders). Only safe while this process owns the folder. Returns what was removed."""
    removed = []
    run_dir = Path(run_dir)
    for d in [run_dir, *[p for p in run_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]]:
        for p in d.glob(".*"):
            if ".staging." in p.name or p.name.endswith(".tmp"):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def check_free(run_dir: Path) -> None:
    """Raise UserError naming the owner if another process owns ``run_dir`` now (nothing is created)."""
    lock = Path(run_dir) / LOCK
    if not lock.is_file():
        return
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UserError(f"run folder {run_dir} is in use by {describe_owner(run_dir)}; wait for it to finish "
                        "or pick another --name") from None
    finally:
        os.close(fd)


def refuse_existing(run_dir: Path) -> None:
    """Raise UserError if ``run_dir`` already holds a run (a new run never overwrites one)."""
    if holds_run(run_dir):
        raise UserError(f"run folder {run_dir} already exists: continue it with --resume {run_dir}, or pick "
                        "another --name")


def check_new_run_folder(run_dir: Path) -> None:
    """A new run may start in ``run_dir``: no other process owns it and it holds no run (nothing is created)."""
    check_free(run_dir)
    refuse_existing(run_dir)


def check_resumable(run_dir: Path) -> None:
    """``--resume run_dir`` may start: no other process owns it and it has its config (a folder killed before
    its first save holds only that, and restarts)."""
    check_free(run_dir)
    if not (Path(run_dir) / "config.yaml").is_file():
        raise UserError(f"--resume: {run_dir} is not a run folder (no config.yaml)")


@contextmanager
def own(run_dir: Path) -> Iterator[None]:
    """Own ``run_dir`` (created if needed) for the block: raises UserError naming the owner if another
    process owns it. Cleans orphaned staging files once owned."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"run folder {run_dir} is in use by {describe_owner(run_dir)}; wait for it to finish "
                            "or pick another --name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_owner_info()).encode(), 0)
        clean_orphans(run_dir)
        mark_active(run_dir)
        yield
        mark_done(run_dir)  # after an interruption it stays listed, for the Ctrl-C message
    finally:
        os.close(fd)  # releases the lock


def interrupt_message() -> str:
    """What an interrupted (Ctrl-C) command prints: where each run's state is and how to continue it."""
    runs = active_runs()
    if not runs:
        return "interrupted"
    parts = []
    for d in runs:
        state = d / "state"
        where = f"its last saved state is in {state}" if (state / "manifest.json").is_file() else \
            "it had not saved a state yet (it restarts from the beginning)"
        parts.append(f"{d}: {where}; continue with: opd-bench run --resume {d}")
    return "interrupted; " + "; ".join(parts)
