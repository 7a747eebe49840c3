"""``opd-bench sweep``: equal tuning. Every method is tuned on the same declared grid protocol -- the same number
of trials and the same per-trial budget -- selected on the held-out split, and the chosen recipe is written to
``configs/recipes/<method>.yaml`` with the whole sweep table in its header.

A sweep file (YAML) declares the protocol and the grid; ``methods`` adds or replaces keys per method:

    trials: 8                  # trials per method (the same for every method)
    budget: 2000:images        # per-trial budget (the same for every method)
    seed: 0                    # draws the trials from the grid and seeds every trial's run
    grid:                      # dotted config keys -> candidate values
      train.lr: [3.0e-5, 1.0e-4, 3.0e-4]
      grpo.beta: [0.004, 0.04]
      grpo.group_noise: [independent, shared]
      train.ema.enabled: [false, true]
    methods:
      nft: {nft.beta: [0.1, 1.0]}
    reference:                 # per method: its documented recipe, run as one more trial (trial_ref)
      grpo: {grpo.beta: 0.04, grpo.group_noise: shared, train.ema.enabled: true}
      opd: {}                  # {} = the shipped default

When the grid has more points than ``trials``, the trials are a seeded draw without replacement; a grid with
fewer points than ``trials`` is an error (methods would not get equal tuning). When the file has a ``reference``
section, every method swept with it must have an entry (equal trial count: ``trials`` drawn + 1 reference); the
reference trial (folder ``trial_ref``, after the drawn ``trial_0..``, which keep their index and settings) is
trained, evaluated on val and selected like any other, so the chosen recipe is never worse on val than the
documented one. Selection: the highest mean over tasks of the final evaluation on the ``val`` split, each task
scored as the report's headline scores it (:func:`~opd_bench.report.references.headline_value`: the hidden gold
scorer first where the task has one, aesthetic and preference; the learned proxy the methods train on would reward
a recipe that hacks it, as MT-NFT's lr 3e-4 trial did: val proxy aesthetic 0.69, gold 0.36, OCR collapsed to 0.02).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from .checkpoint import atomic_write_json, atomic_write_text
from .config import load_config
from .errors import UserError

#: every trial's final evaluation (the score the sweep selects on) reads this split, never test
SELECTION_SPLIT = "val"
#: what the table's task columns hold (the recipe header says it)
SELECTION_SCORES = "gold scorer first, as the report's headline"


@dataclass
class SweepSpec:
    trials: int
    budget: str
    seed: int = 0
    grid: Dict[str, List[Any]] = field(default_factory=dict)
    #: the method's documented recipe (dotted key -> value) run as one extra trial; None = no reference trial
    reference: Optional[Dict[str, Any]] = None


#: the reference trial's label in tables and its folder ``trial_<REFERENCE>``
REFERENCE = "ref"


def load_spec(path: Path, method: str) -> SweepSpec:
    """The sweep file's protocol and ``method``'s grid (the shared grid updated by ``methods.<method>``; ``method``
    is the recipe's name, e.g. ``mt-nft`` for multi-reward with the NFT objective)."""
    from .config import read_spec_file

    path = Path(path)
    doc = read_spec_file(path, "--grid", "sweep file", ("trials", "budget", "seed", "grid", "methods", "reference"))
    grid = dict(doc.get("grid") or {})
    grid.update((doc.get("methods") or {}).get(method) or {})
    if not isinstance(doc.get("trials"), int) or doc["trials"] < 1:
        raise UserError(f"--grid: {path}: 'trials' must be a positive integer (the same for every method)")
    if not isinstance(doc.get("budget"), str) or ":" not in doc["budget"]:
        raise UserError(f"--grid: {path}: 'budget' must be VALUE:UNIT, e.g. 2000:images (the same for every method)")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise UserError(f"--grid: {path}: grid.{k} must be a non-empty list of values")
    reference = None
    if "reference" in doc:
        refs = doc["reference"]
        if not isinstance(refs, dict) or method not in refs:
            raise UserError(f"--grid: {path}: reference.{method} is missing: give every method its documented "
                            "recipe ({} for the shipped default) so that every method gets the same trials")
        reference = refs[method] or {}
        if not isinstance(reference, dict):
            raise UserError(f"--grid: {path}: reference.{method} must be a mapping of config keys to values")
    return SweepSpec(doc["trials"], doc["budget"], int(doc.get("seed", 0)), grid, reference)


def draw_trials(spec: SweepSpec) -> List[Dict[str, Any]]:
    """``spec.trials`` distinct grid points (all of them, in order, when the grid has exactly that many)."""
    keys = sorted(spec.grid)
    points = [dict(zip(keys, vals)) for vals in itertools.product(*(spec.grid[k] for k in keys))]
    if len(points) < spec.trials:
        raise UserError(f"--grid: the grid has {len(points)} point(s), fewer than trials={spec.trials}: widen it "
                        "so that every method gets the same number of trials")
    if len(points) == spec.trials:
        return points
    pick = np.random.default_rng(spec.seed).choice(len(points), size=spec.trials, replace=False)
    return [points[i] for i in sorted(pick)]


def _override(key: str, value) -> str:
    return f"{key}={json.dumps(value)}"


def _nest(flat: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in flat.items():
        node = out
        *parents, last = k.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = v
    return out


def recipe_text(method: str, base: Optional[str], chosen: Dict[str, Any], table: List[dict], spec: SweepSpec,
                tasks: List[str], name: Optional[str] = None) -> str:
    """The recipe YAML: ``extends`` the sweep's base config with the chosen values; the sweep table as comments.
    ``name``: the recipe's name where it is not the method's (mt-nft runs method multi-reward)."""
    keys = table_keys(spec)
    ref = "" if spec.reference is None else f" + 1 reference trial ({REFERENCE}: the documented recipe)"
    what = method if name in (None, method) else f"{name} (method {method})"
    head = [f"# Recipe for {what}, chosen by `opd-bench sweep` on the {SELECTION_SPLIT} split.",
            f"# Protocol: {spec.trials} trials{ref}, {spec.budget} per trial, seed {spec.seed}, tasks "
            f"{', '.join(tasks)}; selection = highest mean final score over the tasks ({SELECTION_SCORES}).",
            "# trial | " + " | ".join(keys) + " | " + " | ".join(tasks) + " | mean"]
    for row in table:
        mark = ("  <- chosen" if row["chosen"] else "") + ("  (reference)" if row["trial"] == REFERENCE else "")
        head.append(f"# {row['trial']} | " + " | ".join(str(row["params"][k]) for k in keys) + " | "
                    + " | ".join(f"{row['scores'].get(t, float('nan')):.4f}" for t in tasks)
                    + f" | {row['mean']:.4f}{mark}")
    if all("halfwidth" in r for r in table):
        tied = not_resolved_from_chosen(table)
        half = next(r["halfwidth"] for r in table if r["chosen"])
        older = [r for r in table if r.get("proxy_interval")]
        head.append(f"# Resolution: the chosen trial's mean has a 95% half-width of {half:.4f} (from each task's "
                    "recorded interval of the score it is selected on"
                    + (f"; {'trials' if len(older) > 1 else 'trial'} {', '.join(str(r['trial']) for r in older)} "
                       f"{'were' if len(older) > 1 else 'was'} scored before a gold score's interval was recorded, "
                       f"so {'theirs take' if len(older) > 1 else 'its takes'} the proxy's for "
                       f"{', '.join(sorted({t for r in older for t in r['proxy_interval']}))}" if older else "")
                    + "); "
                    + (f"trials {', '.join(map(str, tied))} lie within the interval of their difference to it, so "
                       "the choice among them is below resolution." if tied else
                       "every other trial lies outside the interval of its difference to it."))
    body = {"extends": base if base else "default.yaml", "method": method, **_nest(chosen)}
    return "\n".join(head) + "\n" + yaml.safe_dump(body, sort_keys=False)


def mean_halfwidth(ci: Dict[str, Any], tasks: Sequence[str]) -> float:
    """Half-width of the 95% interval of a trial's mean score over ``tasks`` from each task's own interval,
    the tasks' evaluations being independent: sqrt(sum h_t^2) / T; nan when a task has no interval."""
    h = [(ci[t][1] - ci[t][0]) / 2 if t in ci else float("nan") for t in tasks]
    return float(np.sqrt(np.sum(np.square(h))) / len(h))


def headline_intervals(row: dict, tasks: Sequence[str]) -> Tuple[Dict[str, Any], List[str]]:
    """Each task's recorded 95% interval of the score the selection reads (report.references.headline_ci), and
    the gold-scored tasks whose row, recorded before a gold score's interval was kept, gives only the proxy's
    (taken in its place; the recipe's header says so)."""
    from .report.references import headline_ci

    cis, proxy = {}, []
    for t in tasks:
        ci = headline_ci(row, t)
        if ci is None and t in (row.get("ci") or {}):
            ci = row["ci"][t]
            proxy.append(t)
        if ci is not None:
            cis[t] = ci
    return cis, proxy


def not_resolved_from_chosen(table: List[dict]) -> List[Any]:
    """The trials whose mean lies within the unpaired 95% interval of its difference to the chosen trial's
    (sqrt(h_a^2 + h_b^2); conservative: the trials share prompts and noise, so the paired interval is narrower):
    among these the selection is below the evaluation's resolution."""
    best = next(r for r in table if r["chosen"])
    return [r["trial"] for r in table if r is not best
            and abs(best["mean"] - r["mean"]) <= float(np.hypot(best["halfwidth"], r["halfwidth"]))]


def table_keys(spec: SweepSpec) -> List[str]:
    """The sweep table's parameter columns: the grid's keys and the reference's."""
    return sorted(set(spec.grid) | set(spec.reference or {}))


def trial_params(spec: SweepSpec, cfg) -> Dict[str, Any]:
    """A trial's row: its value of every table column, read from its resolved config (so the reference's shipped
    defaults, and a drawn trial's value of a key only the reference sets, show the values they stand for)."""
    from .config import to_flat_dict

    flat = to_flat_dict(cfg)
    return {k: flat[k] for k in table_keys(spec)}


def _trial(run, cfg, d: Path) -> dict:
    """One trial: a finished trial is read back, an interrupted one resumed (a sweep is many hours: rerunning
    the command continues it); a folder holding another config is refused rather than overwritten."""
    from .config import same_settings

    if (d / "config.yaml").is_file() and not same_settings((d / "config.yaml").read_text(), cfg):
        raise UserError(f"sweep trial folder {d} holds a different config: pick another --runs-dir")
    if (d / "summary.json").is_file():
        return json.loads((d / "summary.json").read_text())
    return run(cfg, d, resume=(d / "state").exists())


def run_sweep(method: str, tasks_spec: str, spec: SweepSpec, config: Optional[str], overrides: List[str],
              runs_dir: Path, recipes_dir: Path, run=None, recipe_name: Optional[str] = None) -> Dict[str, Any]:
    """Run ``method``'s trials (each a full run to the per-trial budget, ending with the final evaluation),
    select the best on the val split (each trial's final evaluation reads it), write ``recipes_dir/<method>.yaml`` and ``runs_dir/sweep_<method>/
    sweep.json``. ``run(cfg, run_dir, resume) -> summary`` defaults to the one runner (train.run_one); finished
    trials are reused and interrupted ones resumed when the command is rerun. ``recipe_name`` (default: the
    method) names the recipe file and the runs folder, e.g. ``mt-nft`` for multi-reward with the NFT objective."""
    from .config import parse_budget
    from .report.references import headline_value
    from .tasks import parse_tasks
    from .train import run_one, world_of

    run = run or run_one
    budget = parse_budget(spec.budget)
    trials = draw_trials(spec)   # trial k keeps its index and settings: the reference is only ever added after
    base = overrides + [f"method={method}", f"seed={spec.seed}", f"eval.split={SELECTION_SPLIT}"]
    probe = load_config(config, base + [_override(k, v) for k, v in trials[0].items()])
    tasks = parse_tasks(tasks_spec, world_of(probe))
    points = list(enumerate(trials)) + ([(REFERENCE, spec.reference)] if spec.reference is not None else [])
    cfgs = [load_config(config, base + [f"tasks={','.join(tasks)}"] + [_override(k, v) for k, v in t.items()])
            for _, t in points]   # every trial's config is validated before any trains
    for cfg in cfgs:
        cfg.budget = replace(budget)   # the same per-trial budget for every trial and method
    label = recipe_name or method
    out = Path(runs_dir) / f"sweep_{label}"
    table = []
    for (k, _), cfg in zip(points, cfgs):
        cfg.name = f"sweep_{label}_trial{k}"
        summary = _trial(run, cfg, out / f"trial_{k}")
        scores = {t: headline_value(summary["final"], t) for t in tasks}
        cis, proxy = headline_intervals(summary["final"], tasks)
        table.append({"trial": k, "params": trial_params(spec, cfg), "scores": scores,
                      "mean": float(np.mean([scores[x] for x in tasks])),
                      "halfwidth": mean_halfwidth(cis, tasks), "proxy_interval": proxy})
    best = max(range(len(table)), key=lambda i: table[i]["mean"])
    for i, row in enumerate(table):
        row["chosen"] = i == best
    recipes_dir = Path(recipes_dir)
    recipes_dir.mkdir(parents=True, exist_ok=True)
    path = recipes_dir / f"{label}.yaml"
    atomic_write_text(path, recipe_text(method, config, table[best]["params"], table, spec, tasks, label))
    result = {"method": method, "tasks": tasks, "split": SELECTION_SPLIT, "trials": spec.trials,
              "budget": spec.budget, "seed": spec.seed, "grid": spec.grid, "reference": spec.reference,
              "table": table, "not_resolved_from_chosen": not_resolved_from_chosen(table), "recipe": str(path)}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep.json", result)
    return result
