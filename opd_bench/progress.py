"""Rich progress bars shared by every long-running command.

On a terminal this is a live rich bar; when stderr is not a terminal (logs, CI) the same calls print one
plain line every ~5% of the work, so background jobs stay observable."""
from __future__ import annotations

import contextlib
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


class _NullProgress:
    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass


class _LogProgress:
    """Plain-line progress for non-terminals: ``description  i/total  elapsed``."""

    def __init__(self):
        self.tasks = {}
        self.t0 = time.time()

    def add_task(self, description, total=None, **_):
        tid = len(self.tasks)
        self.tasks[tid] = {"description": description, "total": total, "completed": 0, "last": -1}
        return tid

    def update(self, tid, advance=0, description=None, completed=None, **_):
        t = self.tasks[tid]
        if description is not None:
            t["description"] = description
        t["completed"] = completed if completed is not None else t["completed"] + advance
        total = t["total"] or 0
        bucket = int(20 * t["completed"] / total) if total else t["completed"]
        if bucket != t["last"] and t["completed"]:
            t["last"] = bucket
            print(f"{t['description']}  {t['completed']}/{total}  {time.time() - self.t0:.0f}s", file=sys.stderr, flush=True)


@contextlib.contextmanager
def progress_bar(enabled: bool = True):
    """A rich progress bar on stderr (plain lines when stderr is not a terminal; silent when disabled)."""
    if not enabled:
        yield _NullProgress()
        return
    if not sys.stderr.isatty():
        yield _LogProgress()
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as p:
        yield p
