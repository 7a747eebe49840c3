"""Progress bars and human-readable numbers shared by every long-running command.

On a terminal, :func:`progress_bar` is a live rich bar per task and phase (count with its unit, rate, elapsed,
ETA). When stderr is not a terminal (a log file, CI, ``--jobs`` children) the same calls print plain lines: one
when a phase starts, one when it ends, and one at least every :data:`LOG_INTERVAL_S` seconds in between (a
heartbeat thread prints even while a single batch runs). Nested ``progress_bar`` contexts (an evaluation inside
a training run) share the display that is already open.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from typing import Callable, Dict, Mapping, Optional, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

console = Console(stderr=True)

#: seconds between two plain progress lines when stderr is not a terminal (env OPD_BENCH_PROGRESS_INTERVAL)
LOG_INTERVAL_S = float(os.environ.get("OPD_BENCH_PROGRESS_INTERVAL", "20"))

# ----------------------------------------------------------------------------------------------- numbers

#: how each ledger / budget unit is named for people
UNIT_NAMES = {"images": "images", "student_nfe": "student NFE", "nfe": "NFE", "flops": "FLOPs",
              "seconds": "s", "optimizer_steps": "optimizer steps"}


def human_count(x: float) -> str:
    """2000 -> '2,000'; 176.0 -> '176'; 2.5 -> '2.5'; large non-integers keep 3 significant digits."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == round(x) and abs(x) < 1e15:
        return f"{int(round(x)):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def human_duration(seconds: float) -> str:
    """42 -> '42 s'; 185 -> '3 min 05 s'; 3590 -> '59 min'; 4230 -> '1 h 10 min'."""
    s = float(seconds)
    if not math.isfinite(s):
        return "?"
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    if s < 600:
        m, r = divmod(int(round(s)), 60)
        return f"{m} min {r:02d} s"
    if s < 3600:
        return f"{int(round(s / 60))} min"
    h, m = divmod(int(round(s / 60)), 60)
    return f"{h} h {m:02d} min"


def human_flops(x: float) -> str:
    """3.35e13 -> '33.5 TFLOP'."""
    x = float(x)
    for div, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if abs(x) >= div:
            return f"{x / div:.3g} {prefix}FLOP"
    return f"{x:.3g} FLOP"


def human_quantity(value: float, unit: str) -> str:
    """A value in a ledger unit for people: '2,000 images', '59 min', '33.5 TFLOP', '125 optimizer steps'."""
    if unit == "seconds":
        return human_duration(value)
    if unit == "flops":
        return human_flops(value)
    return f"{human_count(value)} {UNIT_NAMES.get(unit, unit.replace('_', ' '))}"


def human_spend(spent: Mapping[str, float]) -> str:
    """A ledger summary ({unit: value}) as one readable phrase, in the ledger's unit order."""
    return ", ".join(human_quantity(v, u) for u, v in spent.items())


# ----------------------------------------------------------------------------------------------- log lines


def progress_line(description: str, completed: float, total: Optional[float], unit: str, elapsed: float,
                  done_at_start: float = 0.0, finished: bool = False) -> str:
    """One plain progress line: ``description  176/2,000 images (9%)  3.1 images/s  elapsed 57 s  ETA 9 min 49 s``.
    The rate counts only the work done since the bar started (``done_at_start`` excluded, e.g. on resume)."""
    name = UNIT_NAMES.get(unit, unit)
    parts = [description]
    if total:
        parts.append(f"{human_count(completed)}/{human_count(total)} {name} ({100 * completed / total:.0f}%)")
    else:
        parts.append(f"{human_count(completed)} {name}")
    rate = (completed - done_at_start) / elapsed if elapsed > 0 else 0.0
    if rate > 0:
        parts.append(f"{rate:.3g} {name}/s")
    parts.append(f"{'took' if finished else 'elapsed'} {human_duration(elapsed)}")
    if not finished and total and rate > 0:
        parts.append(f"ETA {human_duration((total - completed) / rate)}")
    return "  ".join(parts)


class LogProgress:
    """Plain-line progress for non-terminals (same calls as rich's ``Progress``): a line when a task starts,
    when it completes or is removed, and otherwise at most every ``interval`` seconds (:meth:`tick` prints the
    lines that are due; :func:`progress_bar` calls it from a heartbeat thread)."""

    def __init__(self, stream: Optional[TextIO] = None, interval: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.interval = interval
        self.clock = clock
        self.tasks: Dict[int, dict] = {}
        self._next = 0
        self._lock = threading.RLock()

    def _print(self, t: dict, finished: bool = False) -> None:
        now = self.clock()
        line = progress_line(t["description"], t["completed"], t["total"], t["unit"], now - t["t0"],
                             t["c0"], finished)
        print(line, file=self.stream or sys.stderr, flush=True)
        t["last"] = now

    def add_task(self, description: str, total: Optional[float] = None, completed: float = 0.0,
                 unit: str = "images", **_) -> int:
        with self._lock:
            tid = self._next
            self._next += 1
            t = {"description": description, "total": total, "completed": float(completed), "c0": float(completed),
                 "unit": unit, "t0": self.clock(), "done": False}
            self.tasks[tid] = t
            self._print(t)
            return tid

    def update(self, tid: int, advance: float = 0, description: Optional[str] = None,
               completed: Optional[float] = None, total: Optional[float] = None, **_) -> None:
        with self._lock:
            t = self.tasks.get(tid)
            if t is None:
                return
            if description is not None:
                t["description"] = description
            if total is not None:
                t["total"] = total
            t["completed"] = float(completed) if completed is not None else t["completed"] + advance
            if t["total"] and t["completed"] >= t["total"] and not t["done"]:
                t["done"] = True
                self._print(t, finished=True)
            elif not t["done"] and self.clock() - t["last"] >= self.interval:
                self._print(t)

    def remove_task(self, tid: int) -> None:
        with self._lock:
            t = self.tasks.pop(tid, None)
            if t is not None and not t["done"]:
                self._print(t, finished=True)

    def tick(self) -> None:
        """Print a line for every unfinished task whose last line is ``interval`` seconds old."""
        with self._lock:
            for t in self.tasks.values():
                if not t["done"] and self.clock() - t["last"] >= self.interval:
                    self._print(t)


# ----------------------------------------------------------------------------------------------- rich


class _CountColumn(ProgressColumn):
    """``176/2,000 images`` with human numbers (the same format before and after a resume)."""

    def render(self, task) -> Text:
        unit = UNIT_NAMES.get(task.fields.get("unit", ""), task.fields.get("unit", ""))
        total = f"/{human_count(task.total)}" if task.total else ""
        return Text(f"{human_count(task.completed)}{total} {unit}", style="progress.download")


class _RateColumn(ProgressColumn):
    """``3.1 images/s`` (rich's speed estimate over the last 30 s)."""

    def render(self, task) -> Text:
        unit = UNIT_NAMES.get(task.fields.get("unit", ""), task.fields.get("unit", ""))
        speed = task.finished_speed or task.speed
        return Text("" if not speed else f"{speed:.3g} {unit}/s", style="progress.data.speed")


class _NullProgress:
    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass

    def remove_task(self, *a, **k):
        pass


class _Scoped:
    """A nested context's view of the open display: its tasks are removed when the context exits."""

    def __init__(self, display):
        self.display = display
        self.ids = []

    def add_task(self, description, total=None, unit="images", **kw):
        tid = self.display.add_task(description, total=total, unit=unit, **kw)
        self.ids.append(tid)
        return tid

    def update(self, tid, **kw):
        self.display.update(tid, **kw)

    def remove_task(self, tid):
        if tid in self.ids:
            self.ids.remove(tid)
            self.display.remove_task(tid)

    def close(self):
        for tid in list(self.ids):
            self.remove_task(tid)


_open: list = []  # the display of the outermost open progress_bar (at most one)


def _rich_progress() -> Progress:
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(bar_width=24), _CountColumn(),
                    _RateColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)


@contextlib.contextmanager
def progress_bar(enabled: bool = True, stream: Optional[TextIO] = None):
    """Progress on stderr: a live rich display on a terminal, plain lines otherwise, nothing when disabled.
    Yields an object with ``add_task(description, total=, unit=)``, ``update(id, advance=|completed=,
    description=)`` and ``remove_task(id)``; tasks still open at exit are closed (and logged as done)."""
    if not enabled:
        yield _NullProgress()
        return
    if _open:
        scoped = _Scoped(_open[0])
        try:
            yield scoped
        finally:
            scoped.close()
        return
    if stream is None and sys.stderr.isatty():
        display = _rich_progress()
        display.start()
        stop = None
    else:
        display = LogProgress(stream)
        stop = threading.Event()

        def beat():
            while not stop.wait(1.0):
                display.tick()

        threading.Thread(target=beat, daemon=True, name="opd-bench-progress").start()
    _open.append(display)
    scoped = _Scoped(display)
    try:
        yield scoped
    finally:
        scoped.close()
        _open.pop()
        if stop is not None:
            stop.set()
        else:
            display.stop()


def step_reporter(bar, head: str, total: Optional[float] = None, unit: str = "steps") -> Callable[[str], None]:
    """A ``progress(message)`` callback for code that announces each slow step before doing it: each message
    becomes the bar's description (``head: message``) and counts the previous step as done. Between messages
    the bar (or, redirected, the heartbeat line) keeps showing the elapsed time."""
    state = {"job": None}

    def report(message: str) -> None:
        if state["job"] is None:
            state["job"] = bar.add_task(f"{head}: {message}", total=total, unit=unit)
        else:
            bar.update(state["job"], advance=1, description=f"{head}: {message}")

    return report


def say(message: str) -> None:
    """A plain status line on stderr (shown above a live bar when one is open)."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


# ----------------------------------------------------------------------------------------------- tables


def print_table(table, file: Optional[TextIO] = None) -> None:
    """Print a rich table without ever wrapping a cell: as wide as its widest row when it fits the terminal or
    when the output is redirected (a log line may be long; a CI never splits), else, on a narrow terminal,
    as one block per row (``header: value`` lines)."""
    out = Console(file=file or sys.stdout)
    for col in table.columns:
        col.no_wrap = True
    with open(os.devnull, "w") as null:
        need = Console(width=100_000, file=null).measure(table).maximum
    title = len(Text.from_markup(str(table.title or "")).plain)
    if title > need:  # the title on one line too: rich wraps it to the table's width
        table.min_width = need = title
    if out.is_terminal and need > out.width:
        if table.title:
            out.print(str(table.title), markup=False, highlight=False)
        headers = [str(c.header) for c in table.columns]
        for cells in zip(*[c._cells for c in table.columns]):
            out.print(Text.from_markup(str(cells[0])) if cells else "")
            for h, v in zip(headers[1:], cells[1:]):
                out.print(Text("  " + h + ": ") + Text.from_markup(str(v)))
        return
    Console(file=file or sys.stdout, width=max(out.width, need)).print(table)
