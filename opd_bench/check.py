"""The CI regression gate: ``opd-bench check``.

``--record`` evaluates a checkpoint with a fixed, CI-sized protocol (:func:`evaluate`, the same code as
``opd-bench eval``) and writes a *baseline* file: the protocol (including the exact prompt strings of every
task), the per-prompt scores, the summaries, the checkpoint's sha256 digest and per-task margins.

A check re-evaluates a checkpoint with the baseline's protocol. The evaluation is deterministic (per-prompt
noise, ODE sampling), so the same prompts get the same initial noise and the comparison is *paired*: for
each metric the 95% bootstrap CI of the mean of the per-prompt differences ``new - old`` is computed, and a
metric regresses when that whole CI lies below ``-margin``. GenEval-style tasks (``category_key``) are
compared per category, and their task score is the mean of the category means, as GenEval reports it
(the bootstrap resamples within each category). The unpaired view (old and new resampled independently) is
reported alongside. Gated: each task's primary metric, its categories, and the overall mean over the
checked tasks; the other per-prompt metrics (e.g. ``gold``, ``credit``) are reported for information.

Baseline file (JSON, ``schema_version`` :data:`SCHEMA_VERSION`)::

    {"schema_version": 1, "kind": "opd-bench-baseline", "opd_bench_version": ..., "created": ..., "command": ...,
     "checkpoint": {"name": ..., "sha256": ...},
     "protocol": {steps, guidance, shift, seed, prompts_per_task, bootstrap, resolution, latent_shape,
                  "prompts": {task: [prompt strings]}},
     "margins": {"overall": 0.02, "tasks": {task: 0.02}},
     "tasks": {task: {"primary_metric", "category_key", "categories": [per prompt] | null,
                      "per_prompt": {metric: [scores]}, "summary": {mean, ci_low, ci_high, n, metrics, categories}}},
     "fingerprint": sha256 of protocol + tasks}

The fingerprint catches hand edits of the protocol or of the recorded scores (bad input, exit 2); margins,
command and notes may be edited freely.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__
from .checkpoint import MANIFEST, atomic_write_json, atomic_write_text, checkpoint_digest
from .comparison import (REGRESSION, PairedComparison, compare_strata, compare_values, regression_verdict,
                         strata_of)
from .errors import UserError
from .evaluate import EvalProtocol, evaluate, select_records
from .paths import RELEASED_DIR
from .validate import MAX_SEED, finite_json
from .tasks import get_task, parse_tasks

SCHEMA_VERSION = 1
KIND = "opd-bench-baseline"
#: CI-sized default protocol: one check of one embedded checkpoint on the four tasks takes ~35 s on one CPU core.
DEFAULT_PROMPTS = 48
DEFAULT_STEPS = 12
DEFAULT_MARGIN = 0.02
#: keys of the recorded protocol besides EvalProtocol's fields
GEOMETRY_KEYS = ("resolution", "latent_shape")


# ----------------------------------------------------------------------------------------------- baseline


def model_geometry(model) -> dict:
    """Image resolution and sampler-space shape of a backbone (part of the protocol)."""
    res = getattr(model, "resolution", None) or getattr(model, "arch", {}).get("resolution")
    return {"resolution": None if res is None else int(res), "latent_shape": [int(s) for s in model.latent_shape]}


def checkpoint_label(path: Path) -> str:
    """A released checkpoint's name (``base``), else the path as given."""
    path = Path(path)
    try:
        if path.resolve().parent == RELEASED_DIR.resolve():
            return path.name
    except OSError:
        pass
    return str(path)


def digest_of(path: Path) -> Optional[str]:
    """The checkpoint's sha256 (:func:`checkpoint_digest`); None for a raw diffusers folder (no manifest)."""
    path = Path(path)
    if (path / "model_index.json").is_file() and not (path / MANIFEST).is_file():
        return None
    return checkpoint_digest(path)


def fingerprint(doc: dict) -> str:
    """sha256 of the measured part of a baseline (protocol + tasks), canonical JSON."""
    blob = json.dumps(finite_json({"protocol": doc["protocol"], "tasks": doc["tasks"]}), sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _task_entry(name: str, res: dict, prompts_per_task: int, split: str) -> dict:
    """The baseline entry of one task from ``evaluate``'s results."""
    task = get_task(name)
    rows = res["per_prompt"]
    metrics = [k for k in rows[0] if k != "prompt"] if rows else []
    cat_key = getattr(task, "category_key", None)
    records = select_records(task.prompts(split), prompts_per_task)  # the records evaluate() used, in order
    summary = {k: v for k, v in res.items() if k != "per_prompt"}
    return {
        "primary_metric": task.primary_metric,
        "category_key": cat_key,
        "categories": [str(r.get(cat_key)) for r in records] if cat_key else None,
        "per_prompt": {m: [r[m] for r in rows] for m in metrics},
        "summary": summary,
    }


def build_baseline(results: dict, *, checkpoint: str, digest: Optional[str], geometry: dict, margin: float,
                   command: str) -> dict:
    """The baseline document for ``evaluate``'s ``results``."""
    tasks = results["tasks"]
    protocol = dict(results["protocol"], **geometry)
    protocol["prompts"] = {t: [r["prompt"] for r in res["per_prompt"]] for t, res in tasks.items()}
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "opd_bench_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "checkpoint": {"name": checkpoint, "sha256": digest},
        "protocol": protocol,
        "margins": {"overall": float(margin), "tasks": {t: float(margin) for t in tasks}},
        "tasks": {t: _task_entry(t, res, protocol["prompts_per_task"], protocol["split"]) for t, res in tasks.items()},
        "timing": results.get("timing", {}),
    }
    doc["fingerprint"] = fingerprint(doc)
    return doc


def record_command(checkpoint: str, baseline: Path, tasks: Sequence[str], prompts: int, steps: int,
                   margin: float, config_args: Sequence[str] = ()) -> str:
    """The command line that re-records this baseline (``config_args``: the --config/--set/--device options a
    real-backend checkpoint's tasks need)."""
    import shlex

    extra = "".join(" " + shlex.quote(a) for a in config_args)
    return (f"opd-bench check --record --checkpoint {checkpoint} --baseline {baseline} --tasks {','.join(tasks)} "
            f"--prompts {prompts} --steps {steps} --margin {margin}{extra}")


def record_baseline(checkpoint: str, baseline: Path, tasks: str = "all", prompts: int = DEFAULT_PROMPTS,
                    steps: int = DEFAULT_STEPS, margin: float = DEFAULT_MARGIN, show_progress: bool = True,
                    config_args: Sequence[str] = ()) -> dict:
    """Evaluate ``checkpoint`` with the CI protocol and write the baseline file atomically; returns it.
    ``config_args`` (the command's --config/--set/--device) are recorded in the re-record command."""
    from .backbones import load_backbone, resolve_checkpoint

    if margin < 0:
        raise UserError(f"--margin must be >= 0 (got {margin})")
    task_list = parse_tasks(tasks)
    path = resolve_checkpoint(checkpoint)
    model = load_backbone(path)
    protocol = EvalProtocol(steps=steps, prompts_per_task=prompts)   # the test split, one seed per prompt
    results = evaluate(model, task_list, protocol, show_progress=show_progress, label=path.name)
    label = checkpoint_label(path)
    doc = build_baseline(results, checkpoint=label, digest=digest_of(path), geometry=model_geometry(model),
                         margin=margin, command=record_command(label, baseline, task_list, prompts, steps, margin,
                                                               config_args))
    atomic_write_json(Path(baseline), doc)
    return doc


def _require(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise UserError(f"baseline {path}: {what}")


def load_baseline(path: Path) -> dict:
    """Read and validate a baseline file; any problem is a :class:`UserError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--baseline: file not found: {path}")
    try:
        doc = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"baseline {path} is not valid JSON ({e})") from None
    _require(isinstance(doc, dict) and doc.get("kind") == KIND, path, "not an opd-bench baseline file")
    version = doc.get("schema_version")
    _require(version == SCHEMA_VERSION, path,
             f"schema version {version!r}, this opd-bench reads version {SCHEMA_VERSION}; re-record it with "
             "opd-bench check --record")
    for key in ("protocol", "tasks", "margins", "fingerprint", "checkpoint"):
        _require(key in doc, path, f"missing key {key!r}")
    _require(isinstance(doc["checkpoint"], dict) and isinstance(doc["margins"], dict)
             and isinstance(doc["margins"].get("tasks"), dict), path, "checkpoint and margins must be mappings")
    proto = doc["protocol"]
    expected = set(EvalProtocol().to_dict()) | set(GEOMETRY_KEYS) | {"prompts"}
    _require(isinstance(proto, dict) and set(proto) == expected, path,
             "recorded under another protocol (protocol fields "
             f"{sorted(proto) if isinstance(proto, dict) else proto} != {sorted(expected)}); re-record it")
    _require(doc["fingerprint"] == fingerprint(doc), path,
             "protocol or recorded scores were edited after recording (fingerprint mismatch); re-record it with "
             "opd-bench check --record")
    try:
        _validate_tasks(doc, path)
    except (KeyError, TypeError, AttributeError) as e:
        raise UserError(f"baseline {path}: malformed ({type(e).__name__}: {e})") from None
    return doc


def _is_int(v, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def _validate_protocol(proto: dict, path: Path) -> None:
    """Every recorded protocol field has a usable type and range (a re-hashed hand edit is caught here)."""
    for key, lo, hi in (("steps", 1, 1000), ("seed", 0, MAX_SEED), ("prompts_per_task", 0, 1_000_000),
                        ("bootstrap", 1, 1_000_000)):
        _require(_is_int(proto[key], lo, hi), path, f"protocol.{key} must be an integer in [{lo}, {hi}] "
                                                   f"(got {proto[key]!r})")
    for key in ("guidance", "shift"):
        _require(_is_num(proto[key]) and proto[key] >= 0, path, f"protocol.{key} must be a finite number >= 0")
    _require(proto["resolution"] is None or _is_int(proto["resolution"], 1, 8192), path,
             "protocol.resolution must be a positive integer")
    _require(isinstance(proto["latent_shape"], list) and all(_is_int(x, 1, 8192) for x in proto["latent_shape"]),
             path, "protocol.latent_shape must be a list of positive integers")
    _require(isinstance(proto["prompts"], dict) and all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in proto["prompts"].values()), path,
        "protocol.prompts must map each task to a list of prompt strings")


def _validate_tasks(doc: dict, path: Path) -> None:
    """Every task has prompts, aligned per-prompt scores of its primary metric and a margin."""
    proto, tasks = doc["protocol"], doc["tasks"]
    _validate_protocol(proto, path)
    _require(isinstance(tasks, dict) and tasks and set(tasks) == set(proto["prompts"]), path,
             "tasks and recorded prompts disagree")
    margins = doc["margins"]["tasks"]
    for name, entry in tasks.items():
        n = len(proto["prompts"][name])
        _require(isinstance(entry, dict), path, f"task {name}: not a mapping")
        per = entry.get("per_prompt", {})
        _require(isinstance(per, dict) and isinstance(entry.get("primary_metric"), str)
                 and entry.get("primary_metric") in per, path, f"task {name}: no per-prompt {entry.get('primary_metric')!r}")
        _require(all(isinstance(v, list) and len(v) == n for v in per.values()), path,
                 f"task {name}: per-prompt scores do not match its {n} prompts")
        _require(all(_is_num(x) for v in per.values() for x in v), path,
                 f"task {name}: per-prompt scores must be finite numbers")
        cats = entry.get("categories")
        _require(cats is None or (isinstance(cats, list) and len(cats) == n and all(isinstance(c, str) for c in cats)),
                 path, f"task {name}: categories must be null or one string per prompt")
        _require(_is_num(margins.get(name)) and margins[name] >= 0, path,
                 f"task {name}: margins.tasks.{name} must be a number >= 0")
    _require(_is_num(doc["margins"].get("overall")) and doc["margins"]["overall"] >= 0, path,
             "margins.overall must be a number >= 0")


def baseline_protocol(doc: dict) -> EvalProtocol:
    """The :class:`EvalProtocol` a baseline was recorded with."""
    p = doc["protocol"]
    return EvalProtocol.from_dict({k: p[k] for k in EvalProtocol().to_dict()})


def select_tasks(doc: dict, spec: Optional[str], path: Path) -> List[str]:
    """The tasks to check: ``spec`` (validated, each must be in the baseline) or every baseline task."""
    recorded = list(doc["tasks"])
    if spec is None or spec.strip() == "all":
        return parse_tasks(recorded)
    chosen = parse_tasks(spec)
    missing = [t for t in chosen if t not in recorded]
    if missing:
        raise UserError(f"task {missing[0]!r} is not in baseline {path} (it has: {', '.join(recorded)})")
    return chosen


def check_protocol(doc: dict, tasks: Sequence[str], geometry: dict, path: Path) -> None:
    """The checkpoint and the tasks' current eval prompts must reproduce the recorded protocol exactly."""
    proto = doc["protocol"]
    for key in GEOMETRY_KEYS:
        if proto[key] != geometry[key]:
            raise UserError(f"baseline {path} was recorded under another protocol: {key} {proto[key]} but the "
                            f"checkpoint has {geometry[key]}")
    for name in tasks:
        now = [r["prompt"] for r in select_records(get_task(name).prompts(proto.get("split", "test")),
                                                  proto["prompts_per_task"])]
        old = proto["prompts"][name]
        if now != old:
            i = next((k for k, (a, b) in enumerate(zip(now, old)) if a != b), min(len(now), len(old)))
            raise UserError(f"baseline {path} was recorded under another protocol: task {name}'s eval prompts changed "
                            f"({len(old)} recorded, {len(now)} now, first difference at #{i}); re-record it")


# ----------------------------------------------------------------------------------------------- comparison


@dataclass
class Row:
    """One compared metric: a task's metric, one of its categories, or the overall score."""

    task: str
    metric: str
    old: float
    new: float
    delta: float
    ci: Tuple[float, float]  # paired 95% CI of the mean difference
    unpaired_ci: Tuple[float, float]
    margin: Optional[float]  # None = informational, never fails
    n: int

    @property
    def status(self) -> str:
        return regression_verdict(self.ci, self.margin)

    @property
    def failed(self) -> bool:
        return self.status == REGRESSION

    @property
    def name(self) -> str:
        return f"{self.task}/{self.metric}"

    def describe(self) -> str:
        return (f"{self.name}: old {self.old:.4f} new {self.new:.4f} delta {self.delta:+.4f} paired 95% CI "
                f"[{self.ci[0]:+.4f}, {self.ci[1]:+.4f}] (unpaired [{self.unpaired_ci[0]:+.4f}, "
                f"{self.unpaired_ci[1]:+.4f}]), margin {self.margin}")


@dataclass
class CheckReport:
    checkpoint: str
    baseline: str
    rows: List[Row]
    notes: List[str] = field(default_factory=list)
    per_prompt_identical: Dict[str, bool] = field(default_factory=dict)
    timing: Dict[str, dict] = field(default_factory=dict)

    @property
    def failures(self) -> List[Row]:
        return [r for r in self.rows if r.failed]

    @property
    def passed(self) -> bool:
        return not self.failures


def _row(task: str, metric: str, c: PairedComparison, margin: Optional[float]) -> Row:
    return Row(task, metric, c.reference, c.candidate, c.diff, c.ci, c.unpaired_ci, margin, c.n)


def metric_row(task: str, metric: str, old: np.ndarray, new: np.ndarray, cats: Optional[Sequence[str]],
               margin: Optional[float], n_boot: int, seed: int) -> Row:
    """Paired and unpaired comparison of one metric (category-stratified when ``cats`` is given)."""
    return _row(task, metric, compare_values(old, new, cats, n_boot=n_boot, seed=seed, unpaired=True), margin)


def baseline_task_rows(name: str, entry: dict, new_rows: List[dict], margin: float, n_boot: int,
                       seed: int) -> List[Row]:
    """Rows of one task: primary metric (gated), each category of it (gated), other metrics (info)."""
    primary, cats = entry["primary_metric"], entry.get("categories")
    rows = []
    for metric in sorted(entry["per_prompt"], key=lambda m: m != primary):  # primary metric first
        old = entry["per_prompt"][metric]
        if metric not in new_rows[0]:
            raise UserError(f"task {name} no longer reports metric {metric!r} recorded in the baseline; re-record it")
        old_v = np.asarray(old, dtype=np.float64)
        new_v = np.asarray([r[metric] for r in new_rows], dtype=np.float64)
        gated = metric == primary
        rows.append(metric_row(name, metric, old_v, new_v, cats if gated else None,
                               margin if gated else None, n_boot, seed))
        if gated and cats:
            for c in sorted(set(cats)):
                idx = [i for i, x in enumerate(cats) if x == c]
                rows.append(metric_row(name, f"{metric}[{c}]", old_v[idx], new_v[idx], None, margin, n_boot, seed))
    return rows


def compare_overall(doc: dict, results: dict, tasks: Sequence[str], n_boot: int, seed: int) -> Row:
    """The mean over tasks of the primary scores (GenEval-style tasks: mean of category means), paired."""
    olds, news, weights = {}, {}, {}
    for name in tasks:
        entry = doc["tasks"][name]
        metric = entry["primary_metric"]
        old = np.asarray(entry["per_prompt"][metric], dtype=np.float64)
        new = np.asarray([r[metric] for r in results["tasks"][name]["per_prompt"]], dtype=np.float64)
        old_s, new_s = strata_of(old, entry.get("categories")), strata_of(new, entry.get("categories"))
        for c in old_s:
            key = f"{name}/{c}"
            olds[key], news[key] = old_s[c], new_s[c]
            weights[key] = 1 / (len(tasks) * len(old_s))
    c = compare_strata(olds, news, weights, n_boot=n_boot, seed=seed, unpaired=True)
    return _row("overall", "mean", c, float(doc["margins"]["overall"]))


def compare(doc: dict, results: dict, tasks: Sequence[str]) -> List[Row]:
    """Every row of the comparison of ``results`` (same protocol) against the baseline ``doc``; the bootstrap
    uses the protocol's resample count and seed."""
    n_boot, seed = doc["protocol"]["bootstrap"], doc["protocol"]["seed"]
    rows: List[Row] = []
    for name in tasks:
        rows += baseline_task_rows(name, doc["tasks"][name], results["tasks"][name]["per_prompt"],
                                   float(doc["margins"]["tasks"][name]), n_boot, seed)
    if len(tasks) > 1:
        rows.append(compare_overall(doc, results, tasks, n_boot, seed))
    return rows


def identical_per_prompt(doc: dict, results: dict, tasks: Sequence[str]) -> Dict[str, bool]:
    """Per task: are the new per-prompt scores exactly the recorded ones (every metric)?"""
    out = {}
    for name in tasks:
        rec = doc["tasks"][name]["per_prompt"]
        new = results["tasks"][name]["per_prompt"]
        out[name] = all([r[m] for r in new] == v for m, v in rec.items())
    return out


def provenance_notes(doc: dict, digest: Optional[str], label: str, allow_other_checkpoint: bool = False,
                     path: Optional[Path] = None) -> List[str]:
    """Differences between the baseline's provenance and this check. A baseline recorded from another
    checkpoint (sha256 differs) is refused (UserError, exit 2) unless ``allow_other_checkpoint``; then it
    is a note, like a different opd-bench version."""
    notes = []
    old = doc["checkpoint"].get("sha256")
    if old != digest:
        what = (f"checkpoint {label} sha256 {str(digest)[:12]}... differs from the baseline's {str(old)[:12]}... "
                f"(recorded from {doc['checkpoint'].get('name')})")
        if not allow_other_checkpoint:
            raise UserError(f"baseline {path} was recorded from another checkpoint: {what}; pass "
                            "--allow-other-checkpoint to compare anyway, or re-record it with --record")
        notes.append(f"{what}; comparing anyway (--allow-other-checkpoint)")
    if doc.get("opd_bench_version") != __version__:
        notes.append(f"baseline recorded with opd-bench {doc.get('opd_bench_version')}, this is {__version__}")
    return notes


def run_check(checkpoint: str, baseline: Path, tasks: Optional[str] = None, show_progress: bool = True,
              allow_other_checkpoint: bool = False) -> CheckReport:
    """Validate the inputs (UserError/CheckpointError on bad input), re-evaluate, compare."""
    from .backbones import load_backbone, resolve_checkpoint

    doc = load_baseline(baseline)
    task_list = select_tasks(doc, tasks, baseline)
    path = resolve_checkpoint(checkpoint)
    model = load_backbone(path)  # verifies the manifest: a tampered checkpoint is a CheckpointError
    digest = digest_of(path)
    label = checkpoint_label(path)
    check_protocol(doc, task_list, model_geometry(model), baseline)
    notes = provenance_notes(doc, digest, label, allow_other_checkpoint, baseline)  # before the work
    results = evaluate(model, task_list, baseline_protocol(doc), show_progress=show_progress, label=path.name)
    return CheckReport(checkpoint=label, baseline=str(baseline), rows=compare(doc, results, task_list),
                       notes=notes,
                       per_prompt_identical=identical_per_prompt(doc, results, task_list), timing=results["timing"])


# ----------------------------------------------------------------------------------------------- outputs


def _ci(ci: Tuple[float, float]) -> str:
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def comparison_table(report: CheckReport):
    """A rich table of every compared metric."""
    from rich.markup import escape
    from rich.table import Table

    colors = {"REGRESSION": "bold red", "pass": "green", "improved": "cyan", "info": "dim"}
    table = Table(title=f"check {report.checkpoint} against {report.baseline}")
    for col, just in (("task", "left"), ("metric", "left"), ("old", "right"), ("new", "right"), ("delta", "right"),
                      ("paired 95% CI", "right"), ("unpaired 95% CI", "right"), ("margin", "right"), ("status", "left")):
        table.add_column(col, justify=just)
    for r in report.rows:
        table.add_row(escape(r.task), escape(r.metric), f"{r.old:.3f}", f"{r.new:.3f}", f"{r.delta:+.3f}", _ci(r.ci),
                      _ci(r.unpaired_ci), "-" if r.margin is None else f"{r.margin:g}",
                      f"[{colors[r.status]}]{r.status}")
    return table


def write_junit(report: CheckReport, path: Path) -> None:
    """JUnit XML: one testcase per compared metric; a regression is a <failure> with the numbers."""
    suite = ET.Element("testsuite", name=f"opd-bench check {report.checkpoint}", tests=str(len(report.rows)),
                       failures=str(len(report.failures)), errors="0", skipped="0")
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="baseline", value=report.baseline)
    for note in report.notes:
        ET.SubElement(props, "property", name="note", value=note)
    for r in report.rows:
        case = ET.SubElement(suite, "testcase", classname=f"opd_bench.check.{Path(report.checkpoint).name}.{r.task}",
                             name=r.metric)
        if r.failed:
            fail = ET.SubElement(case, "failure", message=f"regression: {r.describe()}", type="regression")
            fail.text = r.describe()
        else:
            ET.SubElement(case, "system-out").text = f"{r.status}: {r.describe()}"
    ET.indent(suite)
    atomic_write_text(Path(path), ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n")


def markdown_summary(report: CheckReport) -> str:
    """A Markdown summary (for ``$GITHUB_STEP_SUMMARY``)."""
    verdict = "passed" if report.passed else f"FAILED ({len(report.failures)} regression(s))"
    lines = [f"### opd-bench check `{report.checkpoint}`: {verdict}", "", f"Baseline: `{report.baseline}`", ""]
    lines += [f"> {n}" for n in report.notes] + ([""] if report.notes else [])
    lines += ["| task | metric | old | new | delta | paired 95% CI | unpaired 95% CI | margin | status |",
              "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in report.rows:
        status = f"**{r.status}**" if r.failed else r.status
        lines.append(f"| {r.task} | {r.metric} | {r.old:.3f} | {r.new:.3f} | {r.delta:+.3f} | {_ci(r.ci)} | "
                     f"{_ci(r.unpaired_ci)} | {'-' if r.margin is None else f'{r.margin:g}'} | {status} |")
    return "\n".join(lines) + "\n"


def write_markdown(report: CheckReport, path: Path) -> None:
    """Write the Markdown summary to ``path`` (CI appends it to ``$GITHUB_STEP_SUMMARY``)."""
    atomic_write_text(Path(path), markdown_summary(report))
