"""Run folders: finding them, grouping them by method, where the report goes, and what differs between runs."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..analysis import RunInfo
from ..config import to_dict
from ..errors import UserError
from ..runner import is_run_dir


def find_run_dirs(root: Path) -> List[Path]:
    """Run folders at or under ``root`` (not descending into runs, hidden folders or teachers/)."""
    root = Path(root)
    if is_run_dir(root):
        return [root]
    out = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if child.name.startswith(".") or child.name == "teachers":
            continue
        out.extend(find_run_dirs(child))
    return out


def expand_runs(paths: Optional[Sequence[Path]], runs_root: Path = Path("runs")) -> List[Path]:
    """Arguments -> run folders: a run folder as is, a folder of runs expanded; anything else is an error."""
    if not paths:
        found = find_run_dirs(runs_root) if Path(runs_root).is_dir() else []
        if not found:
            raise UserError(f"no run folders under {runs_root}/ (train one with `opd-bench run`, or pass run folders)")
        return found
    out: List[Path] = []
    for p in paths:
        p = Path(p)
        if not p.is_dir():
            raise UserError(f"not a run folder: {p} (no such folder)")
        found = find_run_dirs(p)
        if not found:
            raise UserError(f"not a run folder: {p} (no config.yaml and ledger.json, and no run folders inside)")
        out.extend(found)
    return list(dict.fromkeys(out))


def default_name(run_paths: Sequence[Path]) -> str:
    parents = {Path(p).resolve().parent for p in run_paths}
    if len(run_paths) == 1:
        return Path(run_paths[0]).resolve().name
    if len(parents) == 1:
        return next(iter(parents)).name
    return "report"


def default_out(name: str, runs_root: Path = Path("runs")) -> Path:
    """Where a report goes without ``--out``: ``runs/<name>/report`` (never the tracked ``reports/``; the
    committed reports there are written with ``--out reports/<name>``)."""
    return Path(runs_root) / name / "report"


def group_runs(runs: Sequence[RunInfo]) -> Dict[str, List[RunInfo]]:
    out: Dict[str, List[RunInfo]] = {}
    for r in runs:
        out.setdefault(r.label, []).append(r)
    for v in out.values():
        v.sort(key=lambda r: r.seed)
    return out


def _flatten(d: dict, prefix: str = "") -> Dict[str, object]:
    out: Dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(runs: Sequence[RunInfo], ignore: Sequence[str] = ("name", "seed")) -> Dict[str, Dict[str, object]]:
    """The resolved-config settings (dotted keys) whose values differ between runs, {key: {run path: value}};
    ``ignore``d keys (the run's name and seed) are left out."""
    flat = {str(r.path): _flatten(to_dict(r.cfg)) for r in runs}
    keys = sorted({k for f in flat.values() for k in f} - set(ignore))
    return {k: {p: f.get(k) for p, f in flat.items()} for k in keys
            if len({repr(f.get(k)) for f in flat.values()}) > 1}


def find_variance_files(runs: Sequence[RunInfo]) -> List[Path]:
    out = []
    for r in runs:
        for cand in (r.path / "variance" / "variance.json", r.path / "variance.json"):
            if cand.is_file():
                out.append(cand)
                break
    return out


def rescore(runs: Sequence[RunInfo], name: str, say=lambda msg: None) -> None:
    """Score every run's start (its base model) and final checkpoint under the named protocol (``full``: every
    test prompt at several noise seeds) through the eval cache, in memory: each run's config's ``eval`` section
    becomes that protocol, so the base's and teachers' references are scored the same way, and its ``start`` and
    ``final`` rows are replaced. A run without a final checkpoint keeps its own rows."""
    from ..evalcache import cached_eval
    from ..evaluate import EvalProtocol, eval_row
    from ..protocol import named

    for r in runs:
        if r.final_checkpoint is None or r.summary is None:
            continue
        protocol = named(name, EvalProtocol.from_config(r.cfg))
        for f in ("split", "prompts_per_task", "seeds_per_prompt"):
            setattr(r.cfg.eval, f, getattr(protocol, f))
        say(f"{name} protocol: {r.label or r.path.name} s{r.seed}")
        final = eval_row(cached_eval(r.final_checkpoint, r.tasks, protocol, r.cfg.device), "final", protocol)
        start = eval_row(cached_eval(r.cfg.model.checkpoint, r.tasks, protocol, r.cfg.device), "start", protocol)
        r.summary["final"] = {**r.summary["final"], **final}
        r.history = [dict(start, round=h["round"], budget=h["budget"], stage=h.get("stage", 0))
                     if h.get("label") == "start" else h for h in r.history]
