"""``build_report``: read the runs, compute every section's data, render the page, write the files."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from ..analysis import label_runs, load_run
from ..checkpoint import atomic_write_json, atomic_write_text
from ..config import to_dict
from . import budget, forgetting, hacking, headline, references, statistics
from . import interference as interference_section
from . import samples as samples_section
from . import variance as variance_section
from .document import SECTIONS, Doc, jsonable
from .references import headline_value
from .runs import config_differences, default_name, default_out, expand_runs, group_runs, protocol_record, rescore


def _overview(doc: Doc, runs, diffs: dict) -> None:
    doc.p(f"{len(runs)} run(s): " + ", ".join(f"{r.label} seed {r.seed} ({r.path})" for r in runs)
          + ". Raw scores come first; a task is normalised as n = (score − base) / (teacher − base) only where the "
          "teacher beats the base by more than the task's MDE (paired per prompt), else it is shown raw and left "
          "out of the normalised average, with the reason (method.md §7).", note=True)
    if len(runs) > 1:
        if diffs:
            cols = [str(r.path) for r in runs]
            doc.table(["setting"] + [f"{r.label} s{r.seed}" for r in runs],
                      [[k] + [str(diffs[k][c]) for c in cols] for k in diffs])
        doc.p("Every run's full resolved config is in report.json (run_configs) and its own config.yaml (the "
              "protocol the report scored every model under is report.json's protocol); "
              + ("the table lists the settings that differ between runs (besides name and seed)." if diffs else
                 "the runs differ only in name and seed."), note=True)


def normalised_score_of(plan: dict, base: dict, teachers: dict):
    """An eval row -> its normalised average over the normalised tasks (the raw mean over all tasks when none is
    normalised), for the score-against-cost plot; and the plot's axis label."""
    tasks = [t for t, p in plan.items() if p["normalised"]]
    if tasks:
        def score(row):
            v = [headline_value(row, t) for t in tasks]
            if any(x is None for x in v):
                return float("nan")
            return float(np.mean([(x - base[t]["headline"]) / (teachers[t]["headline"] - base[t]["headline"])
                                  for x, t in zip(v, tasks)]))
        return score, f"normalised average ({', '.join(tasks)})"
    every = list(plan)

    def raw(row):
        v = [headline_value(row, t) for t in every]
        return float("nan") if any(x is None for x in v) else float(np.mean(v))
    return raw, "raw mean over tasks (no task normalised)"


def build_report(paths: Optional[Sequence[Path]] = None, out: Optional[Path] = None, name: Optional[str] = None,
                 variance: Sequence[Path] = (), interference: bool = True, samples: int = 3,
                 teacher_scores: Optional[Dict[str, float]] = None, runs_root: Path = Path("runs"),
                 progress=None, protocol: str = "full") -> Path:
    """Render the report; returns the HTML path. ``progress(msg)`` is called before each slow step.
    ``protocol``: ``run`` scores each model as its runs did (their final evaluations, the base as their start
    evaluation); ``full`` re-scores every run's final checkpoint, the base and the teachers under the full
    protocol (every test prompt at several noise seeds; through the eval cache: each model once)."""
    say = progress or (lambda msg: None)
    run_paths = expand_runs(paths, runs_root)
    runs = [load_run(p) for p in run_paths]
    label_runs(runs)
    if protocol != "run":
        rescore(runs, protocol, say)
    name = name or default_name(run_paths)
    out = Path(out) if out is not None else default_out(name, runs_root)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    groups = group_runs(runs)
    tasks = headline.task_order(groups)

    # ---- compute ------------------------------------------------------------------------------------------
    diffs = config_differences(runs)
    say("reference scores (base, teachers)")
    base, teachers = references.compute(runs, teacher_scores, protocol=protocol)
    bm, tm = references.means(base), references.means(teachers)
    budgets = budget.compute(groups)
    head = headline.compute(groups, base, teachers, budgets)
    score_of, ylabel = normalised_score_of(head["plan"], base, teachers)
    curves = budget.compute_curves(groups, budgets, score_of)
    forg = forgetting.compute(runs, bm, {t: v for t, v in tm.items() if head["plan"].get(t, {}).get("normalised")})
    inter = interference_section.compute(groups, head["rows"], references.means(teachers, "headline"), interference,
                                         say)
    var = variance_section.compute(runs, variance)
    hack = hacking.compute(runs)
    stat = statistics.compute(head)
    if samples > 0:
        say("sample grid")
    grid = samples_section.compute(groups, teachers, tasks, samples, out, protocol)

    # ---- render -------------------------------------------------------------------------------------------
    doc = Doc(out, f"opd-bench report: {name}")
    _overview(doc, runs, diffs)
    renders = [lambda: headline.render(doc, head, base, teachers),
               lambda: budget.render(doc, budgets, curves, ylabel, out),
               lambda: forgetting.render(doc, forg, tasks, bm, tm, out),
               lambda: interference_section.render(doc, inter, tasks, tm, budgets, out),
               lambda: variance_section.render(doc, var, out),
               lambda: hacking.render(doc, hack, runs[0].unit, head, out),
               lambda: statistics.render(doc, stat, head),
               lambda: samples_section.render(doc, grid, out)]
    for title, render in zip(SECTIONS, renders):
        doc.h2(title)
        render()

    data = {"name": name, "runs": [str(r.path) for r in runs],
            "run_configs": {str(r.path): to_dict(r.cfg) for r in runs}, "config_differences": diffs,
            "protocol": protocol_record(runs, protocol),
            "base": base, "teachers": teachers, "normalisation": head["plan"], "final_table": head["rows"],
            "comparisons": head["pairs"], "budget": budgets, "budget_curves": curves,
            "forgetting": forg["forgetting"], "interference": inter["results"],
            "negative_transfer": inter["negative_transfer"], "variance": var, "hacking": hack,
            "probability_of_improvement": stat["probability_of_improvement"], "samples": grid}
    atomic_write_json(out / "report.json", jsonable(data))
    atomic_write_text(out / "report.md", doc.render_md())
    page = out / "report.html"
    atomic_write_text(page, doc.render_html())
    return page
