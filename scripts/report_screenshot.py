"""Render an ``opd-bench report`` page in headless Chromium, take a full-page screenshot and check that a
person can read it.

    python scripts/report_screenshot.py                      # a tiny report built from two tiny runs (~1-2 min)
    python scripts/report_screenshot.py reports/x/report.html [--out DIR] [--width 1280]

Needs Debian's Chromium (``apt-get install -y chromium``). Checks, each printed with its measured value; the
exit status is 1 if one fails:

- the page makes no external request (images inline, no scripts, no links to other hosts);
- every figure is shown at >= 90% of its own pixel width (a figure shrunk to fit the page shrinks its
  labels; the report shows a figure wider than the page at full size in a horizontally scrolling box);
- the tables carry their sign conventions ("Reading the signs" notes);
- the screenshot is the requested width and not blank.

The screenshot (``report.png``) and the measurements (``measure.json``) go to ``--out`` (default
``runs/report_screenshot/``, outside the tracked folders).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIN_SCALE = 0.9

MEASURE_JS = """<script>
window.addEventListener('load', function () {
  var figs = [];
  document.querySelectorAll('figure img').forEach(function (img) {
    var box = img.closest('figure');
    figs.push({alt: img.alt, natural: img.naturalWidth, shown: img.clientWidth,
               scrolls: getComputedStyle(box).overflowX === 'auto' && box.scrollWidth > box.clientWidth});
  });
  var pre = document.createElement('pre');
  pre.id = 'opd-measure';
  pre.textContent = JSON.stringify({height: document.documentElement.scrollHeight,
                                    width: document.documentElement.scrollWidth, figures: figs});
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("error: no Chromium on PATH (apt-get install -y chromium)")


def headless(args, timeout=180) -> str:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--disable-dev-shm-usage", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout


def measure(html_path: Path, width: int, work: Path) -> dict:
    """Load a copy of the page with a measuring script in Chromium; the script's JSON is read from the DOM."""
    page = html_path.read_text()
    probe = work / "probe.html"
    probe.write_text(page.replace("</body>", MEASURE_JS + "</body>"))
    dom = headless([f"--window-size={width},1000", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()])
    m = re.search(r'<pre id="opd-measure">(.*?)</pre>', dom, re.S)
    if not m:
        sys.exit("error: Chromium did not run the measuring script")
    import html

    return json.loads(html.unescape(m.group(1)))


def tiny_report(work: Path) -> Path:
    """Two tiny runs (cascade, DiffusionOPD) on geneval + aesthetic with an eval every round, and their report."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_world import make_tiny_world

    from opd_bench.config import build_config
    from opd_bench.methods import METHODS
    from opd_bench.report import build_report
    from opd_bench.runner import Runner

    os.environ["OPD_BENCH_EVAL_CACHE"] = str(work / "eval_cache")  # the teacher's evals: nothing in the clone
    make_tiny_world(work)
    tasks = ["geneval", "aesthetic"]
    for method in ("cascade", "opd"):
        over = [f"method={method}", f"tasks={','.join(tasks)}", f"model.checkpoint={work / 'base'}", "name=tiny",
                "sampler.steps=2", "train.prompts_per_step=2", "grpo.group_size=2", "eval.steps=2",
                "eval.prompts_per_task=4", "eval.bootstrap=50", "eval.every=1", "budget.value=16",
                "train.lr=3e-3"] + [f"opd.teachers.{t}={work / 'teacher'}" for t in tasks]
        Runner(build_config({}, over), work / "runs" / "tiny" / f"{method}_s0", METHODS[method](), tasks,
               show_progress=False, log_tensorboard=False).run()
    return build_report([work / "runs" / "tiny"], out=work / "report", samples=3, protocol="run")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", nargs="?", type=Path, help="report.html (default: build a tiny report)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "report_screenshot")
    ap.add_argument("--width", type=int, default=1280)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="opd-bench-screenshot-") as tmp:
        work = Path(tmp)
        page = a.report or tiny_report(work)
        html_text = page.read_text()
        m = measure(page, a.width, work)
        height = min(int(m["height"]), 30000)
        shot = a.out / "report.png"
        headless([f"--window-size={a.width},{height}", "--virtual-time-budget=10000", f"--screenshot={shot}",
                  page.resolve().as_uri()])
    (a.out / "measure.json").write_text(json.dumps(m, indent=1))

    checks = []
    external = re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//[^"' >]+""", html_text, re.I)
    checks.append(("no external requests", not external and "<script" not in html_text, f"{len(external)} found"))
    for f in m["figures"]:
        scale = f["shown"] / f["natural"] if f["natural"] else 0.0
        ok = scale >= MIN_SCALE
        checks.append((f"figure legible: {f['alt'][:60]}", ok,
                       f"{f['natural']} px shown at {f['shown']} px (scale {scale:.2f}"
                       + (", scrolls" if f["scrolls"] else "") + ")"))
    n_tables, n_signs = html_text.count("<table>"), html_text.count("Reading the signs:")
    checks.append(("sign conventions stated", n_signs >= 5, f"{n_signs} notes for {n_tables} tables"))
    from PIL import Image

    img = Image.open(shot).convert("L")
    hist = img.histogram()
    ink = 1 - sum(hist[245:]) / (img.width * img.height)
    checks.append(("screenshot", img.width == a.width and ink > 0.01,
                   f"{img.width}x{img.height} px, {100 * ink:.1f}% non-white"))
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    print(f"wrote {shot} and {a.out / 'measure.json'}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
