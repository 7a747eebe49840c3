"""Progress and printed output: plain progress lines when redirected (start, end, and at least every
interval, with rate and ETA), human numbers, tables that never wrap a cell, and commands that name their model
and real files. No timing: a fake clock drives the progress lines."""
import io
import re

import pytest
from rich.table import Table

from opd_bench.progress import (LogProgress, human_count, human_duration, human_quantity, human_spend,
                                print_table, progress_bar, progress_line)


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_human_numbers():
    assert human_count(2000) == "2,000" and human_count(2000.0) == "2,000" and human_count(176.0) == "176"
    assert human_count(2.5) == "2.5"
    assert human_duration(42) == "42 s" and human_duration(185) == "3 min 05 s"
    assert human_duration(3590) == "60 min" and human_duration(3540) == "59 min"
    assert human_duration(4230) == "1 h 10 min"
    assert human_quantity(2000, "images") == "2,000 images"
    assert human_quantity(3.35e13, "flops") == "33.5 TFLOP"
    assert human_quantity(125, "optimizer_steps") == "125 optimizer steps"
    s = human_spend({"images": 2000.0, "student_nfe": 80000.0, "seconds": 3590.0})
    assert s == "2,000 images, 80,000 student NFE, 60 min" and "e+" not in s


def test_progress_line_has_rate_eta_and_counts_only_work_since_start():
    line = progress_line("train opd s0 round 11", 176.0, 2000.0, "images", elapsed=10.0, done_at_start=16.0)
    assert line.startswith("train opd s0 round 11  176/2,000 images (9%)")
    assert "16 images/s" in line                                   # (176 - 16) / 10 s
    assert "ETA 1 min 54 s" in line                                # (2000 - 176) / 16 = 114 s
    done = progress_line("x", 8, 8, "images", elapsed=2.0, finished=True)
    assert "took 2.0 s" in done and "ETA" not in done


def test_log_progress_prints_start_end_and_at_least_every_interval():
    clock, out = FakeClock(), io.StringIO()
    p = LogProgress(out, interval=30, clock=clock)
    tid = p.add_task("eval base · ocr (1/1): sampling", total=320)
    for k in range(10):                     # an update every 5 s for 50 s: a line at 30 s only
        clock.t += 5
        p.update(tid, advance=8)
    clock.t += 9
    p.tick()                                # 59 s: the last line (30 s) is 29 s old: nothing
    clock.t += 1
    p.tick()                                # 60 s: a heartbeat line although nothing moved
    p.update(tid, completed=320)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert lines[0].endswith("0/320 images (0%)  elapsed 0.0 s")
    assert "48/320 images (15%)  1.6 images/s  elapsed 30 s  ETA 2 min 50 s" in lines[1]
    assert "80/320 images" in lines[2] and "elapsed 1 min 00 s" in lines[2] and "ETA 3 min 00 s" in lines[2]
    assert "320/320 images (100%)" in lines[3] and "took 1 min 00 s" in lines[3]


def test_nested_progress_bars_share_one_display_and_close_their_tasks():
    out = io.StringIO()
    with progress_bar(True, stream=out) as outer:
        tid = outer.add_task("train opd s0 round 0", total=4)
        with progress_bar(True) as inner:   # an eval inside the training loop
            e = inner.add_task("eval opd s0 (round 1) · ocr (1/1): sampling", total=2)
            inner.update(e, advance=1)
        outer.update(tid, completed=4)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("train opd s0 round 0  0/4 images")
    assert lines[1].startswith("eval opd s0 (round 1)")
    assert lines[2].startswith("eval opd s0 (round 1)") and "1/2 images" in lines[2] and "took" in lines[2]
    assert "4/4 images (100%)" in lines[3]


def test_tables_never_wrap_cells_when_redirected():
    t = Table(title="final eval")
    t.add_column("task")
    for m in ("base", "teacher", "opd", "multi-reward", "cascade"):
        t.add_column(m, justify="right")
    t.add_row("preference", *["0.627 [0.615, 0.638]"] * 5)
    out = io.StringIO()
    print_table(t, file=out)
    rows = [l for l in out.getvalue().splitlines() if "preference" in l]
    assert len(rows) == 1 and rows[0].count("0.627 [0.615, 0.638]") == 5 and len(rows[0]) > 80


@pytest.mark.parametrize("args", [["run", "--method", "opd", "--tasks", "all", "--name", "done"],
                                  ["run", "--resume", "{runs}/not_a_run"]])
def test_refused_rerun_answers_before_heavy_imports(tmp_path, args):
    import subprocess
    import sys

    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "config.yaml").write_text("method: opd\n")
    (tmp_path / "not_a_run").mkdir()
    argv = [a.replace("{runs}", str(tmp_path)) for a in args] + ["--runs-dir", str(tmp_path)]
    code = ("import sys; from opd_bench.cli import main; rc = main(%r); "
            "print('torch' in sys.modules, rc)" % argv)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.stdout.split() == ["False", "2"], p.stderr
    err = p.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and ("already exists" in err or "not a run folder" in err)


def test_help_has_no_bool_metavar_and_joins_docstring_lines(capsys, monkeypatch):
    from opd_bench.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "<bool>" not in out and "--train-teachers" in out
    # the docstring's first paragraph is one line at 200 columns (no hard break mid-sentence)
    assert re.search(r"Train a method \(or several\) on the selected tasks with an identical budget, then print a "
                     r"per-task table next to the base model", out)


def test_tests_and_default_outputs_stay_out_of_tracked_folders(tmp_path):
    from pathlib import Path

    from opd_bench.report import default_out
    from opd_bench.evalcache import eval_cache_dir

    root = Path(__file__).resolve().parents[1]
    assert root not in eval_cache_dir().resolve().parents      # conftest moved the eval cache out of the clone
    assert default_out("default_3seed") == Path("runs") / "default_3seed" / "report"


def test_step_reporter_names_each_step_and_counts_the_previous_one_done():
    from opd_bench.progress import step_reporter

    out = io.StringIO()
    with progress_bar(True, stream=out) as bar:
        report = step_reporter(bar, "variance", total=3, unit="estimates")
        for m in ("ocr: opd_ode", "ocr: opd_sde", "ocr: grpo"):
            report(m)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("variance: ocr: opd_ode  0/3 estimates")
    assert lines[-1].startswith("variance: ocr: grpo  2/3 estimates") and "took" in lines[-1]
