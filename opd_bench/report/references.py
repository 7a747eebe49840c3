"""The reference models every table is read against: the base and the single-task teachers, each scored under
the runs' own eval protocol, with their per-prompt scores (for paired tests and the normalisation's
denominator) and, for tasks with a hidden gold scorer, the gold score first."""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..analysis import RunInfo
from ..errors import UserError
from ..teachers import teacher_name

#: the eval metric of a task's hidden gold scorer (learned-reward tasks: aesthetic, preference)
GOLD = "gold"


def headline_value(row: dict, task: str) -> Optional[float]:
    """A task's score in a headline table from an eval-history row: the gold scorer where the task has one,
    else the primary score (None when the row lacks the task)."""
    m = row.get("metrics", {}).get(task, {})
    if GOLD in m and m[GOLD] is not None:
        return float(m[GOLD])
    v = row.get("scores", {}).get(task)
    return None if v is None else float(v)


def headline_ci(row: dict, task: str) -> Optional[Tuple[float, float]]:
    """The 95% interval of :func:`headline_value` from an eval-history row: the gold scorer's where the task has
    one (None when the row, recorded before such intervals were kept, has none), else the primary score's."""
    m = row.get("metrics", {}).get(task, {})
    if GOLD in m and m[GOLD] is not None:
        ci = row.get("metric_ci", {}).get(task, {}).get(GOLD)
    else:
        ci = row.get("ci", {}).get(task)
    return None if ci is None else (float(ci[0]), float(ci[1]))


def proxy_value(row: dict, task: str) -> Optional[float]:
    """The learned proxy (the primary score) of a task that also has a gold score; None otherwise."""
    if GOLD not in row.get("metrics", {}).get(task, {}):
        return None
    v = row.get("scores", {}).get(task)
    return None if v is None else float(v)


def per_prompt_headline(res: dict, primary: str) -> List[float]:
    """Per-prompt headline scores of one task's eval result (gold where recorded, else the primary metric)."""
    rows = res.get("per_prompt") or []
    key = GOLD if rows and GOLD in rows[0] else primary
    return [float(r[key]) for r in rows]


def strata_indices(prompts: Sequence[str], categories: Optional[Mapping[str, str]],
                   separate: Sequence[str] = ()) -> Optional[List[List[int]]]:
    """Index lists of the prompts of each category (sorted), or None without categories. The ``separate``
    categories (a task's ``separate_categories``: GenEval's held-out compositions, reported on their own row) are
    left out, as the task's score leaves them out (``evaluate.summarize_task``), unless nothing else is left: a
    strata mean then equals the task's score."""
    if not categories:
        return None
    groups: Dict[str, List[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(str(categories.get(p)), []).append(i)
    scored = {k: v for k, v in groups.items() if k not in set(separate)} or groups
    return [scored[k] for k in sorted(scored)]


def _categories(task: str, protocol) -> Optional[Dict[str, str]]:
    """prompt -> category of the prompts the protocol evaluates (its split where it names one)."""
    from ..tasks import get_task

    t = get_task(task)
    key = getattr(t, "category_key", None)
    return {r["prompt"]: r[key] for r in t.prompts(protocol.split)} if key else None


def reference_entry(res: dict, task: str, source: str, protocol) -> dict:
    """One reference model's task result as the report and the claims read it: means, headline (gold first),
    per-prompt headline scores and the category strata of its prompts."""
    from ..tasks import get_task

    primary = get_task(task).primary_metric
    prompts = [r["prompt"] for r in res.get("per_prompt") or []]
    pp = per_prompt_headline(res, primary)
    gold = res.get("metrics", {}).get(GOLD)
    return {"mean": float(res["mean"]), "ci": [res["ci_low"], res["ci_high"]], "source": source,
            "headline": float(gold) if gold is not None else float(res["mean"]),
            "headline_metric": GOLD if gold is not None else primary,
            "per_prompt": pp or None,
            "strata": strata_indices(prompts, _categories(task, protocol), get_task(task).separate_categories)}


def compute(runs: Sequence[RunInfo], teacher_scores: Optional[Dict[str, float]] = None,
            evaluate: bool = True, protocol: str = "run") -> Tuple[Dict[str, dict], Dict[str, dict]]:
    """(base, teachers): {task: {"mean", "ci", "source", "headline", "headline_metric", "per_prompt", "strata"}}.

    ``mean`` / ``ci``: the primary score (the curves and forgetting read it). ``headline``: the gold score where
    the task has one, else the primary. The base's numbers are each run's ``start`` eval (the base model under
    the run's own eval protocol); its per-prompt scores come from evaluating the run's base checkpoint through
    the eval cache (identical to the start eval: deterministic). Teachers are given (a number: no per-prompt
    scores), or evaluated with the run's protocol through the eval cache when the checkpoints exist.
    ``protocol``: the named protocol the report scores under (``run``: each run's own; ``full``: the runs were
    re-scored under it by ``runs.rescore``, and the references are scored the same way)."""
    from ..evalcache import cached_eval
    from .runs import scoring_protocol

    base: Dict[str, dict] = {}
    teachers: Dict[str, dict] = {}
    for r in runs:
        s = r.start_row
        if s is None:
            continue
        for t in r.tasks:
            if t not in base and t in s["scores"]:
                base[t] = {"mean": float(s["scores"][t]), "ci": list(s["ci"].get(t, [math.nan, math.nan])),
                           "source": str(r.path / "eval_history.jsonl"), "headline": headline_value(s, t),
                           "headline_metric": GOLD if proxy_value(s, t) is not None else "score",
                           "per_prompt": None, "strata": None}
    for t, v in (teacher_scores or {}).items():
        teachers[t] = {"mean": float(v), "ci": [math.nan, math.nan], "source": "given", "headline": float(v),
                       "headline_metric": "given", "per_prompt": None, "strata": None}
    if not evaluate:
        return base, teachers
    for r in runs:
        scoring = scoring_protocol(r, protocol)
        todo = [t for t in r.tasks if t in base and base[t]["per_prompt"] is None]
        if todo:
            try:
                res = cached_eval(r.cfg.model.checkpoint, todo, scoring, r.cfg.device)
            except UserError:
                res = {}
            for t in todo:
                if t in res:
                    e = reference_entry(res[t], t, str(r.cfg.model.checkpoint), scoring)
                    base[t]["per_prompt"], base[t]["strata"] = e["per_prompt"], e["strata"]
        by_ckpt: Dict[str, List[str]] = {}  # one load per teacher checkpoint, whatever its number of tasks
        for t in r.tasks:
            if t not in teachers:
                by_ckpt.setdefault(teacher_name(r.cfg, t), []).append(t)
        for name, ts in by_ckpt.items():
            try:
                res = cached_eval(name, ts, scoring, r.cfg.device)
            except UserError:
                continue
            for t in ts:
                teachers[t] = reference_entry(res[t], t, name, scoring)
    return base, teachers


def means(d: Dict[str, dict], key: str = "mean") -> Dict[str, float]:
    return {k: v[key] for k, v in d.items() if v.get(key) is not None}


def per_prompt_arrays(d: Dict[str, dict]) -> Dict[str, np.ndarray]:
    return {k: np.asarray(v["per_prompt"]) for k, v in d.items() if v.get("per_prompt")}
