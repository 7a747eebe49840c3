"""Analyses behind ``opd-bench report`` (method.md section 7): forgetting, interference, gradient variance,
reward hacking. Each module keeps the math in small pure functions (tested on hand-made inputs) apart from
the code that reads run folders or touches models, and apart from the plots.

This module holds what they share: reading a run folder (:class:`RunInfo`) and per-task normalisation.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..config import RunConfig, load_config
from ..errors import UserError
from ..runner import FINAL, STATE, RunDir, is_run_dir


@dataclass
class RunInfo:
    """Everything a report reads from one run folder (no model is loaded)."""

    path: Path
    cfg: RunConfig
    history: List[dict]            # eval_history.jsonl rows, in order
    metrics: List[dict]            # metrics.jsonl rows
    ledger: dict                   # ledger.json
    summary: Optional[dict] = None  # summary.json (None while the run is in progress)
    label: str = ""                # the method label in tables (method, plus the run name when ambiguous)
    extra: Dict[str, object] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.cfg.method

    @property
    def seed(self) -> int:
        return self.cfg.seed

    @property
    def tasks(self) -> List[str]:
        return task_list(self.cfg)

    @property
    def unit(self) -> str:
        return self.ledger.get("budget", {}).get("unit", self.cfg.budget.unit)

    @property
    def finished(self) -> bool:
        return self.summary is not None

    @property
    def final_row(self) -> Optional[dict]:
        """The final eval (summary.json's), else the last eval so far."""
        if self.summary is not None:
            return self.summary["final"]
        return self.history[-1] if self.history else None

    @property
    def start_row(self) -> Optional[dict]:
        for r in self.history:
            if r.get("label") == "start":
                return r
        return None

    @property
    def final_checkpoint(self) -> Optional[Path]:
        p = self.path / FINAL
        return p if p.is_dir() else None

    @property
    def state_checkpoint(self) -> Optional[Path]:
        p = self.path / STATE
        return p if p.is_dir() else None

    def spent(self, phase: str = "train") -> Dict[str, float]:
        return self.ledger.get("spent", {}).get(phase, {})


def task_list(cfg: RunConfig) -> List[str]:
    from ..tasks import parse_tasks

    return parse_tasks(cfg.tasks)


def load_run(path: Path) -> RunInfo:
    """Read a run folder; a folder that is not a run is one clear ``UserError``."""
    path = Path(path)
    if not is_run_dir(path):
        raise UserError(f"not a run folder: {path} (no config.yaml and ledger.json)")
    d = RunDir(path)
    cfg = load_config(str(path / "config.yaml"))
    if cfg.model.backbone != "embedded":   # a real run: its tasks' local paths and its base model's settings
        from ..session import apply_config

        apply_config(cfg)
    try:
        ledger = json.loads((path / "ledger.json").read_text())
    except ValueError:
        raise UserError(f"{path / 'ledger.json'}: not valid JSON") from None
    if not isinstance(ledger, dict):
        raise UserError(f"{path / 'ledger.json'}: not a ledger (expected a JSON object)")
    summary = None
    if (path / "summary.json").is_file():
        try:
            summary = json.loads((path / "summary.json").read_text())
        except ValueError:
            summary = None
        if not isinstance(summary, dict) or not isinstance(summary.get("final"), dict):
            summary = None  # unreadable: the report uses the eval history instead
    history = d.read_jsonl("eval_history.jsonl")
    check_history(history, path / "eval_history.jsonl")
    return RunInfo(path=path, cfg=cfg, history=history, metrics=d.read_jsonl("metrics.jsonl"),
                   ledger=ledger, summary=summary, label=cfg.method)


def _number_map(x) -> bool:
    return isinstance(x, dict) and all(isinstance(k, str) and (v is None or (isinstance(v, (int, float))
                                                                               and not isinstance(v, bool)))
                                       for k, v in x.items())


def check_history(rows: Sequence[dict], path: Path) -> None:
    """Every eval-history row the report reads has the runner's field types; one clear UserError otherwise (a
    hand-edited or foreign file, not a torn line: those are dropped when read)."""
    for n, row in enumerate(rows, start=1):
        problem = None
        if not isinstance(row.get("label"), str):
            problem = "'label' must be a string"
        elif not _number_map(row.get("scores")):
            problem = "'scores' must map task names to numbers"
        elif not _number_map(row.get("budget", {})):
            problem = "'budget' must map ledger units to numbers"
        elif not isinstance(row.get("metrics", {}), dict) or not all(
                _number_map(m) for m in row.get("metrics", {}).values()):
            problem = "'metrics' must map task names to {metric: number}"
        elif not isinstance(row.get("ci", {}), dict) or not all(
                isinstance(c, list) and len(c) == 2 and _number_map({str(i): v for i, v in enumerate(c)})
                for c in row.get("ci", {}).values()):
            problem = "'ci' must map task names to [low, high]"
        if problem:
            raise UserError(f"{path}: row {n} is not an eval-history row of opd-bench ({problem}); restore the file "
                            "or re-run the evaluation")


def label_runs(runs: Sequence[RunInfo]) -> None:
    """Method labels: the method name, plus the run name when runs of one method come from several names."""
    names: Dict[str, set] = {}
    for r in runs:
        names.setdefault(r.method, set()).add(r.cfg.name)
    for r in runs:
        r.label = r.method if len(names[r.method]) == 1 else f"{r.method} [{r.cfg.name}]"


def is_normalized(base: Optional[float], teacher: Optional[float]) -> bool:
    """Whether n = (score - base) / (teacher - base) is defined at all (both known, teacher above the base). Which
    tasks ARE normalised is decided once, by the report's normalisation plan (teacher gain above its MDE,
    :func:`opd_bench.comparison.normalisation_test`); callers pass only those tasks' base and teacher."""
    return not (base is None or teacher is None or not math.isfinite(teacher - base) or teacher - base <= 0)


def normalize(score: float, base: Optional[float], teacher: Optional[float]) -> float:
    """method.md section 7: n = (score - base) / (teacher - base) where defined, else the raw score."""
    if not is_normalized(base, teacher):
        return float(score)
    return float((score - base) / (teacher - base))


def budget_x(row: dict, unit: str) -> float:
    return float(row.get("budget", {}).get(unit, float("nan")))


def split_rows(history: Sequence[dict], split: str) -> List[dict]:
    """The eval rows of one prompt split: ``val`` = the learning-curve evaluations, ``test`` = the start, final
    and every-N-rounds evaluations (rows written before the splits existed count as test)."""
    return [r for r in history if r.get("split", "test") == split]


def curve_rows(history: Sequence[dict]) -> List[dict]:
    """The rows of a run's learning curve, all under one protocol: its periodic ``val`` evaluations when it has
    them (issue 19: at least 8 per default run), else its ``test`` rows (start, every-N-rounds, final)."""
    return dedupe_history(split_rows(history, "val") or split_rows(history, "test"))


def dedupe_history(history: Sequence[dict]) -> List[dict]:
    """Eval rows with one row per (round, budget): at a stage end the runner may evaluate twice at the same
    point (``round k`` and ``end of stage k``); the later row is kept, the order preserved."""
    out: Dict[Tuple, dict] = {}
    for r in history:
        key = (r.get("round"), json.dumps(r.get("budget", {}), sort_keys=True), r.get("split", "test"))
        out.pop(key, None)
        out[key] = r
    return list(out.values())


__all__ = ["RunInfo", "load_run", "label_runs", "normalize", "is_normalized", "budget_x", "dedupe_history", "split_rows", "curve_rows",
           "task_list"]
