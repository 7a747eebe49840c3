"""Run folders: finding them, grouping them by method, where the report goes, and what differs between runs."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..analysis import RunInfo
from ..config import to_dict
from ..errors import UserError
from ..evalcache import VARIANCE_RECORD
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
        # `analyze variance`'s output, else the claims campaign's recorded study of the run's final checkpoint
        for cand in (r.path / "variance" / "variance.json", r.path / "variance.json", r.path / VARIANCE_RECORD):
            if cand.is_file():
                out.append(cand)
                break
    return out


def scoring_protocol(run: RunInfo, name: str):
    """The evaluation protocol the report scores ``run``'s models (its base, its final checkpoint, its teachers)
    under: ``run`` = the run's own (its config's ``eval`` section), else the named protocol (``full``: every test
    prompt at several noise seeds) with the run's sampling settings -- for a run it can re-score (finished, with
    a final checkpoint or a recorded final evaluation under that protocol; any other keeps its own rows, so its
    references stay under its own protocol). Pure: the run's config is left as it ran."""
    from ..evaluate import EvalProtocol
    from ..protocol import named

    own = EvalProtocol.from_config(run.cfg)
    if name == "run":
        return own
    other = named(name, own)
    return other if _rescorable(run, other) else own


def _rescorable(run: RunInfo, protocol) -> bool:
    """Whether the report can score the run's final checkpoint under ``protocol``: a finished run with its weights,
    or with that evaluation recorded in its folder (an archived run whose weights are gone,
    :func:`~opd_bench.evalcache.final_results`); others keep their own rows."""
    from ..evalcache import recorded_final

    return run.summary is not None and (run.final_checkpoint is not None
                                        or recorded_final(run.path, run.tasks, protocol) is not None)


def protocol_record(runs: Sequence[RunInfo], name: str) -> Dict[str, object]:
    """report.json's ``protocol``: what the report scored every model under (beside each run's own config)."""
    settings = {str(r.path): scoring_protocol(r, name).to_dict() for r in runs}
    same = len({repr(v) for v in settings.values()}) <= 1
    return {"name": name, "settings": next(iter(settings.values()), None) if same else settings}


def rescore(runs: Sequence[RunInfo], name: str, say=lambda msg: None) -> None:
    """Score every run's start (its base model) and final checkpoint under the named protocol
    (:func:`scoring_protocol`) through the eval cache, in memory: its ``start`` and ``final`` rows are replaced;
    its config is not touched (report.json's run_configs stay what the run did; the references are scored under
    the same protocol because the report passes it to them). The final checkpoint's evaluation is recorded in the
    run folder (:func:`~opd_bench.evalcache.final_results`), so an archived run whose weights are gone is still
    scored from its record. A finished run with neither is refused (one line): its own evaluation is another
    protocol, and a table mixing protocols compares nothing; an unfinished run keeps its rows (its curve so far)."""
    from ..evalcache import RECORD, cached_eval, final_results
    from ..evaluate import EvalProtocol, eval_row
    from ..protocol import named

    # every finished run and its protocol, all checked before anything is scored; an unfinished one keeps its rows
    todo = [(r, named(name, EvalProtocol.from_config(r.cfg))) for r in runs if r.summary is not None]
    for r, protocol in todo:
        if not _rescorable(r, protocol):
            raise UserError(f"run {r.path}: its final weights are gone and {r.path / RECORD} holds no {name}-protocol "
                            f"evaluation of them, so it cannot be scored like the others: report it with "
                            f"--protocol run, or leave it out")
    for r, protocol in todo:
        say(f"{name} protocol: {r.label or r.path.name} s{r.seed}")
        final = eval_row(final_results(r.path, r.tasks, protocol, r.cfg.device), "final", protocol)
        start = eval_row(cached_eval(r.cfg.model.checkpoint, r.tasks, protocol, r.cfg.device), "start", protocol)
        r.summary["final"] = {**r.summary["final"], **final}
        r.history = [dict(start, round=h["round"], budget=h["budget"], stage=h.get("stage", 0))
                     if h.get("label") == "start" else h for h in r.history]
