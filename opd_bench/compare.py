"""Paired comparison of two models' evaluations (e.g. a teacher against the base it was trained from).

Both models are evaluated on the same eval prompts with the same per-prompt noises (``opd-bench eval``), so
the comparison is paired: per prompt, the difference of the two models' scores. Several evaluations per side
(different ``--seed`` values) are averaged per prompt first, which shrinks the sampling noise of binary
metrics such as GenEval's. The CI of the mean difference is a percentile bootstrap over prompts; for a task
with categories (GenEval) the statistic is the mean of the per-category mean differences -- the same
aggregate as the task score -- and prompts are resampled within their category (stratified bootstrap).

The statistics and the verdict come from :mod:`opd_bench.comparison` (the engine ``check`` and the report use
too). Verdicts: ``better`` when the CI lies above zero and the difference is at least ``margin``; ``worse``
when it lies below zero; otherwise ``below resolution`` when |diff| is smaller than the paired MDE (alpha 0.05,
power 0.8: a difference this small could not have been seen), else ``no clear difference`` (including "above
zero but smaller than the margin").
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import validate
from .comparison import compare_values, difference_verdict
from .errors import UserError

#: Protocol fields that must agree between the two sides (the seed may differ within a side).
PROTOCOL_KEYS = ("steps", "guidance", "shift")


def load_eval(path) -> dict:
    """An ``eval.json`` written by ``opd-bench eval`` (a folder holding one, or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / "eval.json"
    if not p.is_file():
        raise UserError(f"no eval.json at {path}")
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: not a readable eval.json ({e.__class__.__name__})") from None
    validate.eval_doc(data, p)
    data["_path"] = str(p)
    return data


def is_eval_of(path, checkpoint) -> bool:
    """Whether the eval.json at ``path`` evaluated exactly ``checkpoint`` (folder or released name): the sha256
    recorded by ``opd-bench eval`` must equal the checkpoint's current digest."""
    from .backbones import resolve_checkpoint
    from .checkpoint import checkpoint_digest

    recorded = load_eval(path).get("checkpoint", {}).get("sha256")
    return recorded == checkpoint_digest(resolve_checkpoint(checkpoint))


def _per_prompt(evals: Sequence[dict], task: str, metric: str, side: str) -> Dict[str, float]:
    """Per-prompt mean of ``metric`` over the side's evaluations (which must share the prompt set)."""
    seeds = [e["protocol"].get("seed") for e in evals]
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{side}: two evaluations use the same seed {seeds}; they are the same samples, "
                        "evaluate with different --seed values")
    table: Optional[Dict[str, List[float]]] = None
    for e in evals:
        rows = e["tasks"].get(task, {}).get("per_prompt")
        if not rows:
            raise UserError(f"{e['_path']}: no per-prompt results for task {task}")
        cur: Dict[str, List[float]] = {}
        for r in rows:
            if metric not in r:
                raise UserError(f"{e['_path']}: task {task} has no metric {metric!r}")
            cur.setdefault(r["prompt"], []).append(float(r[metric]))
        if table is None:
            table = cur
        elif set(cur) != set(table):
            raise UserError(f"{side}: {e['_path']} evaluated other {task} prompts than {evals[0]['_path']}")
        else:
            for k, v in cur.items():
                table[k].extend(v)
    return {k: float(np.mean(v)) for k, v in (table or {}).items()}


@dataclass
class TaskComparison:
    task: str
    metric: str
    n_prompts: int
    base: float
    candidate: float
    diff: float
    ci_low: float
    ci_high: float
    #: fraction of prompts where the candidate scores higher / lower (per-prompt means)
    wins: float
    losses: float
    verdict: str
    categories: Dict[str, Dict[str, float]] = field(default_factory=dict)
    #: minimum detectable paired difference (alpha 0.05, power 0.8) and the paired t-interval and p
    #: (None where undefined: fewer than two prompts)
    mde: Optional[float] = None
    t_low: Optional[float] = None
    t_high: Optional[float] = None
    p: Optional[float] = None


def compare_task(task: str, base: Sequence[dict], candidate: Sequence[dict], *, metric: str = "score",
                 categories: Optional[Dict[str, str]] = None, margin: float = 0.05, n_boot: int = 2000,
                 seed: int = 0) -> TaskComparison:
    """Paired comparison on one task. ``categories`` maps prompt -> category (stratified statistic)."""
    b = _per_prompt(base, task, metric, "base")
    c = _per_prompt(candidate, task, metric, "candidate")
    prompts = [p for p in b if p in c]
    if not prompts:
        raise UserError(f"task {task}: the two sides share no eval prompt")
    if len(prompts) != len(b) or len(prompts) != len(c):
        raise UserError(f"task {task}: the two sides evaluated different prompt sets "
                        f"({len(b)} vs {len(c)}, {len(prompts)} shared); evaluate both with the same --prompts")
    cats = None
    if categories:
        missing = [p for p in prompts if p not in categories]
        if missing:
            raise UserError(f"task {task}: prompt {missing[0]!r} is not in the task's eval set")
        cats = [categories[p] for p in prompts]
    r = compare_values([b[p] for p in prompts], [c[p] for p in prompts], cats, n_boot=n_boot, seed=seed)
    per_cat = {k: {"n": v["n"], "base": v["reference"], "candidate": v["candidate"], "diff": v["diff"]}
               for k, v in r.strata.items()} if cats else {}
    return TaskComparison(task=task, metric=metric, n_prompts=len(prompts), base=r.reference, candidate=r.candidate,
                          diff=r.diff, ci_low=r.ci[0], ci_high=r.ci[1], wins=r.wins, losses=r.losses,
                          verdict=difference_verdict(r.diff, r.ci, r.mde, margin), categories=per_cat,
                          mde=_finite(r.mde), t_low=_finite(r.t_ci[0]), t_high=_finite(r.t_ci[1]), p=_finite(r.p))


def _finite(x: float) -> Optional[float]:
    return float(x) if np.isfinite(x) else None


def compare(base_paths: Sequence, candidate_paths: Sequence, tasks: Optional[Sequence[str]] = None, *,
            margin: float = 0.05, n_boot: int = 2000, seed: int = 0) -> dict:
    """Compare every task both sides evaluated (or ``tasks``). Returns a JSON-ready dict."""
    from .tasks import get_task

    if not base_paths or not candidate_paths:
        raise UserError("compare: give at least one --base and one --candidate evaluation")
    base = [load_eval(p) for p in base_paths]
    cand = [load_eval(p) for p in candidate_paths]
    ref = {k: base[0]["protocol"].get(k) for k in PROTOCOL_KEYS}
    for e in base + cand:
        got = {k: e["protocol"].get(k) for k in PROTOCOL_KEYS}
        if got != ref:
            raise UserError(f"{e['_path']}: eval protocol {got} differs from {ref}; "
                            "a paired comparison needs the same sampler settings")
    shared = set.intersection(*[set(e["tasks"]) for e in base + cand])
    if tasks:
        for t in tasks:
            if t not in shared:
                raise UserError(f"task {t}: not evaluated in every given eval.json")
        names = list(tasks)
    else:
        names = sorted(shared)
    if not names:
        raise UserError("compare: the evaluations share no task")
    out = {"base": [e["_path"] for e in base], "candidate": [e["_path"] for e in cand],
           "base_checkpoint": base[0].get("checkpoint", {}).get("name"),
           "candidate_checkpoint": cand[0].get("checkpoint", {}).get("name"),
           "protocol": ref, "seeds": {"base": [e["protocol"].get("seed") for e in base],
                                      "candidate": [e["protocol"].get("seed") for e in cand]},
           "margin": margin, "bootstrap": n_boot, "tasks": {}}
    for name in names:
        task = get_task(name)
        key = getattr(task, "category_key", None)
        # prompt texts are unique across splits: one map serves evaluations of val or test
        cat_map = {r["prompt"]: r[key] for s in ("val", "test") for r in task.prompts(s)} if key else None
        res = compare_task(name, base, cand, metric=task.primary_metric, categories=cat_map, margin=margin,
                           n_boot=n_boot, seed=seed)
        out["tasks"][name] = asdict(res)
    return out


def comparison_table(result: dict):
    """A rich table of :func:`compare`'s result (GenEval categories indented under their task)."""
    from rich.table import Table

    b = result.get("base_checkpoint") or "base"
    c = result.get("candidate_checkpoint") or "candidate"
    seeds = result["seeds"]
    t = Table(title=f"{c} (cand.) vs {b} (base): paired by prompt, {len(seeds['candidate'])} + "
                    f"{len(seeds['base'])} seeds, 95% bootstrap CI, margin {result['margin']}")
    for col in ("task", "n", "base", "cand.", "diff", "95% CI", "MDE", "verdict"):
        t.add_column(col, justify="left" if col in ("task", "verdict") else "right", no_wrap=col != "verdict",
                     overflow="fold")
    style = {"better": "green", "worse": "red"}
    for name, r in result["tasks"].items():
        t.add_row(name, str(r["n_prompts"]), f"{r['base']:.3f}", f"{r['candidate']:.3f}", f"{r['diff']:+.3f}",
                  f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]", _mde(r),
                  f"[{style.get(r['verdict'], 'yellow')}]{r['verdict']}[/]")
        for k, v in r["categories"].items():
            t.add_row(f"  {k}", str(v["n"]), f"{v['base']:.3f}", f"{v['candidate']:.3f}", f"{v['diff']:+.3f}",
                      "", "", "")
    return t


def comparison_markdown(result: dict) -> str:
    """The same table as Markdown, for reports/."""
    b = result.get("base_checkpoint") or "base"
    c = result.get("candidate_checkpoint") or "candidate"
    lines = [f"| task | prompts | {b} | {c} | diff | 95% CI | MDE | verdict |", "|---|---|---|---|---|---|---|---|"]
    for name, r in result["tasks"].items():
        lines.append(f"| {name} | {r['n_prompts']} | {r['base']:.3f} | {r['candidate']:.3f} | {r['diff']:+.3f} | "
                     f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] | {_mde(r)} | {r['verdict']} |")
        for k, v in r["categories"].items():
            lines.append(f"| &nbsp;&nbsp;{k} | {v['n']} | {v['base']:.3f} | {v['candidate']:.3f} | "
                         f"{v['diff']:+.3f} | | | |")
    return "\n".join(lines) + "\n"


def _mde(r: dict) -> str:
    """The MDE cell (older compare.json files have none)."""
    m = r.get("mde")
    return "-" if m is None or not np.isfinite(m) else f"{m:.3f}"
