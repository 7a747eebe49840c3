"""``opd-bench claims``: the DiffusionOPD paper's claims re-tested, each **confirmed**, **refuted** or **below
resolution** (or **not measured** while its runs are missing).

Three parts, each usable alone:

* the *campaign* (``configs/claims.yaml``): every run behind the claims, as groups of (method, overrides, seeds)
  at one student budget. :func:`run_campaign` trains what is missing: a finished run is read back, an
  interrupted one resumed, so the same command continues a campaign across sessions;
* the *evidence* (:class:`Evidence`): per group and training seed, the final test scores per task (gold scores
  first for the tasks that have one), the score-vs-cost curve, the spend; gathered from run folders by
  :func:`collect`;
* the *claims* (:data:`CLAIMS`): each a statement, the paper's evidence for it, and a measurement with its
  interval. The verdict rule (:func:`verdict`) is one function: a claim is **confirmed** only when its interval
  lies wholly on the claimed side of the null (and, in a family of comparisons, its Holm-adjusted p < 0.05),
  **refuted** when it lies wholly on the other side, and **below resolution** otherwise -- the minimum
  detectable effect at the seeds used is printed beside it.

Seed-level statistics: every model of one training seed is evaluated on identical prompts and noise, so
method differences are paired by seed; intervals are Student-t over seeds (never a percentile bootstrap over a
handful of values). Formulas: docs/method.md §7; protocol: docs/evaluation.md.
"""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import UserError
from .evalcache import (INTERFERENCE_RECORD, RECORD, VARIANCE_RECORD, cost_hours, final_results,  # noqa: F401
                        recorded, timed)
from .stats import BELOW_RESOLUTION, BETTER, WORSE, holm, mde_paired, paired_t, t_interval, verdict_of

CONFIRMED, REFUTED, UNRESOLVED, NOT_MEASURED = "confirmed", "refuted", "below resolution", "not measured"
VERDICTS = (CONFIRMED, REFUTED, UNRESOLVED, NOT_MEASURED)
ALPHA = 0.05


# ------------------------------------------------------------------------------------------------ verdicts


@dataclass
class Measurement:
    """One measured quantity: the estimate, its (1 - ALPHA) interval, the two-sided p of the test against the
    claim's null (Holm-adjusted within its family when ``family`` is set), the minimum detectable effect at the
    ``n`` units (training seeds) used, and how it was computed."""

    estimate: float
    low: float
    high: float
    n: int
    unit: str
    detail: str
    p: Optional[float] = None
    mde: Optional[float] = None
    family: Optional[str] = None


#: the rule :func:`verdict` applies, as the reports state it
VERDICT_RULE = ("Each claim is a quantity and the value the paper's claim must beat (the null). Confirmed only when "
                "the 95% interval excludes the null on the claimed side (and, in a family of comparisons, the "
                "Holm-adjusted p < 0.05); refuted when it excludes it on the other side; else below resolution.")


def verdict(m: Optional[Measurement], null: float, direction: int) -> str:
    """The one verdict rule. ``direction`` +1: the claim says the quantity exceeds ``null``; -1: lies below it."""
    if m is None or any(x is None or math.isnan(x) for x in (m.estimate, m.low, m.high)):
        return NOT_MEASURED   # an infinite bound is a one-sided interval (e.g. a cost never reached), not missing
    lo, hi = sorted((direction * (m.low - null), direction * (m.high - null)))
    v = verdict_of(lo, hi, m.p if m.p is not None else 0.0, ALPHA)
    return {BETTER: CONFIRMED, WORSE: REFUTED, BELOW_RESOLUTION: UNRESOLVED}[v]


def one_sample(values: Sequence[float], null: float, unit: str, detail: str) -> Optional[Measurement]:
    """A t-interval over seeds of ``values`` tested against ``null`` (p from the one-sample t-test)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size < 2:
        return None
    p = paired_t(v, np.full_like(v, null))
    return Measurement(p.diff + null, p.low + null, p.high + null, p.n, unit, detail, p.p, p.mde)


def paired_seeds(a: Dict[int, float], b: Dict[int, float], unit: str, detail: str) -> Optional[Measurement]:
    """a - b paired by training seed (the seeds both have)."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    p = paired_t([a[s] for s in seeds], [b[s] for s in seeds])
    return Measurement(p.diff, p.low, p.high, p.n, unit, f"{detail}; seeds {', '.join(map(str, seeds))}", p.p, p.mde)


def holm_family(ms: Sequence[Optional[Measurement]], family: str) -> None:
    """Replace the p-values of a family of comparisons by their Holm-adjusted values (in place)."""
    live = [m for m in ms if m is not None and m.p is not None and math.isfinite(m.p)]
    for m, q in zip(live, holm([m.p for m in live]) if live else []):
        m.p, m.family = float(q), f"{family} (Holm over {len(live)})"


# ------------------------------------------------------------------------------------------------ evidence


@dataclass
class GroupRuns:
    """One campaign group's finished runs, by training seed."""

    label: str
    method: str
    scores: Dict[int, Dict[str, float]] = field(default_factory=dict)   # seed -> task -> final test score
    proxy: Dict[int, Dict[str, float]] = field(default_factory=dict)    # seed -> task -> proxy score (gold tasks)
    curves: Dict[int, List[Tuple[float, float]]] = field(default_factory=dict)  # seed -> [(student cost, avg)]
    bwt: Dict[int, float] = field(default_factory=dict)
    spent: Dict[int, Dict[str, float]] = field(default_factory=dict)    # seed -> unit -> student-phase spend

    def avg(self, seed: int, tasks: Sequence[str]) -> float:
        return float(np.mean([self.scores[seed][t] for t in tasks]))


@dataclass
class Evidence:
    tasks: List[str]
    groups: Dict[str, GroupRuns]
    base: Dict[str, float]            # full test evals of the base (gold first)
    teacher: Dict[str, float]         # and of each task's teacher
    teacher_cost: Dict[str, float]    # the teachers' recorded training spend, summed, per unit
    unit: str = "images"
    extra: Dict[str, Dict[int, float]] = field(default_factory=dict)   # name -> seed -> value (e.g. variance)
    base_proxy: Dict[str, float] = field(default_factory=dict)     # the same evals scored with the learned proxy
    teacher_proxy: Dict[str, float] = field(default_factory=dict)
    # per task, the per-prompt headline scores and strata of the base's and the teacher's evaluations
    # (report.references.reference_entry): the normalised claims' denominators with their uncertainty
    base_entries: Dict[str, dict] = field(default_factory=dict)
    teacher_entries: Dict[str, dict] = field(default_factory=dict)

    @property
    def gold_tasks(self) -> List[str]:
        """The tasks scored by a hidden gold scorer (their headline differs from the proxy)."""
        return [t for t in self.tasks if t in self.base_proxy and self.base_proxy[t] != self.base.get(t)]

    def group(self, label: str) -> Optional[GroupRuns]:
        g = self.groups.get(label)
        return g if g is not None and len(g.scores) >= 2 else None


def row_scores(row: dict, tasks: Sequence[str]) -> Tuple[Dict[str, float], Dict[str, float]]:
    """(headline, proxy) scores of one eval-history row: gold first, as the report's headline
    (:func:`opd_bench.report.references.headline_value`), and the task's primary (training) score."""
    from .report.references import headline_value

    return ({t: headline_value(row, t) for t in tasks if t in row["scores"]},
            {t: float(row["scores"][t]) for t in tasks if t in row["scores"]})


def teacher_cost(teachers: Dict[str, str]) -> Dict[str, float]:
    """The teachers' recorded training spend (``ledger.teacher_spend`` of each checkpoint), summed per unit: the
    offset DiffusionOPD's total cost starts from (teachers trained one after another)."""
    from .backbones import resolve_checkpoint
    from .ledger import teacher_spend, with_teacher_cost

    return with_teacher_cost({}, {t: teacher_spend(resolve_checkpoint(p)) for t, p in teachers.items()})["included_sequential"]


# ------------------------------------------------------------------------------------------------ claims


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    paper: str
    null: float
    direction: int
    measure: Callable[[Evidence], Dict[str, Optional[Measurement]]]   # sub-claim key -> measurement


def _reach_teacher(ev: Evidence) -> Dict[str, Optional[Measurement]]:
    """Per task, the student's normalised score (student - base) / (teacher - base) against 0.95. With the base's
    and teacher's per-prompt scores (every campaign): a task whose teacher does not beat the base by more than its
    MDE has no resolved denominator, so its normalised score is unbounded (below resolution, with the reason, as
    the report leaves such a task out of the normalised average); otherwise the interval propagates the
    denominator's uncertainty jointly with the seeds' (comparison.normalised_average_ci: prompts resampled for
    base and teacher together, the seed mean t-distributed). Without them, the denominator is taken as exact."""
    from .comparison import normalised_average_ci
    from .report.headline import normalisation_plan

    g = ev.group("opd")
    out: Dict[str, Optional[Measurement]] = {}
    for t in ev.tasks:
        gap = ev.teacher.get(t, math.nan) - ev.base.get(t, math.nan)
        if g is None or not math.isfinite(gap) or gap <= 0:
            out[t] = None
            continue
        vals = [(g.scores[s][t] - ev.base[t]) / gap for s in sorted(g.scores)]
        seeds_only = one_sample(vals, 0.95, "normalised score", "")
        if seeds_only is None:          # fewer than two finite seed values
            out[t] = None
            continue
        b, tt = ev.base_entries.get(t), ev.teacher_entries.get(t)
        if not (b and tt and b.get("per_prompt") and tt.get("per_prompt")):
            out[t] = replace(seeds_only, detail=f"(student - base) / (teacher - base) per seed, denominator {gap:+.3f} "
                                                "from the full test evals, taken as exact")
            continue
        plan = normalisation_plan([t], {t: b}, {t: tt})[t]
        if not plan["normalised"]:
            out[t] = Measurement(float(np.mean(vals)), -math.inf, math.inf, len(vals), "normalised score",
                                 f"{plan['reason'].split(':')[0]}: the normalised score's denominator is not resolved, "
                                 "so its interval is unbounded", None, seeds_only.mde)
            continue
        est, lo, hi = normalised_average_ci({t: [g.scores[s][t] for s in sorted(g.scores)]}, {t: b["per_prompt"]},
                                            {t: tt["per_prompt"]}, {t: tt.get("strata")})
        out[t] = Measurement(est, lo, hi, len(vals), "normalised score",
                             f"(student - base) / (teacher - base), denominator {plan['gain']:+.3f} (MDE "
                             f"{plan['mde']:.3f}) from the full test evals, its uncertainty propagated jointly with "
                             "the seeds'", None, seeds_only.mde)
    return out


BASELINES = ("multi-reward", "mt-grpo-guard", "mt-nft", "cascade", "cascade-nft")


def _beats_baselines(ev: Evidence) -> Dict[str, Optional[Measurement]]:
    opd = ev.group("opd")
    out: Dict[str, Optional[Measurement]] = {}
    for key in ["average", *ev.tasks]:
        fam = []
        for b in BASELINES:
            g = ev.group(b)
            m = None
            if opd is not None and g is not None:
                if key == "average":
                    a = {s: opd.avg(s, ev.tasks) for s in opd.scores}
                    c = {s: g.avg(s, ev.tasks) for s in g.scores}
                else:
                    a = {s: v[key] for s, v in opd.scores.items()}
                    c = {s: v[key] for s, v in g.scores.items()}
                m = paired_seeds(a, c, "raw score difference", f"DiffusionOPD - {b}, {key}, paired by seed")
            out[f"vs {b}: {key}"] = m
            fam.append(m)
        holm_family(fam, key)
    return out


def reach_cost(curve: Sequence[Tuple[float, float]], target: float) -> float:
    """The first cost at which a score-vs-cost curve reaches ``target`` (linear between eval points); inf if never."""
    prev = None
    for x, y in curve:
        if y >= target:
            if prev is None or prev[1] >= target:
                return float(x)
            (x0, y0) = prev
            return float(x0 + (target - y0) * (x - x0) / (y - y0))
        prev = (x, y)
    return math.inf


def _cost_ratio(ev: Evidence) -> Dict[str, Optional[Measurement]]:
    """log10 of (best baseline's total cost to its final score) / (DiffusionOPD's total cost, teachers included,
    to reach that score), per seed; > 0 means DiffusionOPD is cheaper. The best baseline is the one with the
    highest final test average; both sides are read on the learning curves (val), so the target is that
    baseline's last curve point."""
    opd = ev.group("opd")
    live = {b: ev.group(b) for b in BASELINES if ev.group(b) is not None}
    if opd is None or not live:
        return {"total-cost ratio": None}
    best = max(live, key=lambda b: np.mean([live[b].avg(s, ev.tasks) for s in live[b].scores]))
    g = live[best]
    if not all(g.curves.get(s) for s in g.scores) or not all(opd.curves.get(s) for s in opd.scores):
        return {"total-cost ratio": None}
    # the target on the curves' own scale (the periodic val evaluations): the best baseline's last curve point
    target = float(np.mean([g.curves[s][-1][1] for s in g.scores]))
    offset = ev.teacher_cost.get(ev.unit, 0.0)
    base_cost = float(np.mean([g.spent[s].get(ev.unit, math.nan) for s in g.spent]))
    logs = []
    for s, curve in opd.curves.items():
        c = reach_cost(curve, target)
        logs.append(math.log10(base_cost / (offset + c)) if math.isfinite(c) and c + offset > 0 else -math.inf)
    if any(not math.isfinite(x) for x in logs):   # a seed never reached the target: the ratio is < the last point's
        last = [math.log10(base_cost / (offset + opd.curves[s][-1][0])) for s in opd.curves]
        return {"total-cost ratio": Measurement(float(np.mean(last)), -math.inf, float(max(last)), len(last),
                                                "log10 cost ratio (upper bound)",
                                                f"DiffusionOPD did not reach {best}'s final average {target:.3f} "
                                                f"in every seed; bound from its final spend", None, None)}
    bound = (f"; whatever the student's curve, the ratio is at most log10({base_cost:,.0f} / {offset:,.0f}) = "
             f"{math.log10(base_cost / offset):+.3f}, the teachers' recorded cost alone" if offset > 0 else "")
    m = one_sample(logs, 0.0, "log10 cost ratio",
                   f"{best}'s mean final average {target:.3f} at {base_cost:,.0f} {ev.unit}; DiffusionOPD's cost "
                   f"includes its teachers' {offset:,.0f} {ev.unit}; paper: about 10x (log10 = 1){bound}")
    return {"total-cost ratio": m}


def _cascade_forgets(ev: Evidence) -> Dict[str, Optional[Measurement]]:
    out = {}
    for b in ("cascade", "cascade-nft"):
        g = ev.group(b)
        out[b] = one_sample(list(g.bwt.values()), 0.0, "BWT", "backward transfer per seed (docs/method.md §7)") \
            if g is not None and len(g.bwt) >= 2 else None
    return out


def _joint_interferes(ev: Evidence) -> Dict[str, Optional[Measurement]]:
    out = {}
    for b in ("multi-reward", "mt-nft", "mt-grpo-guard"):
        vals = ev.extra.get(f"conflict/{b}", {})
        out[b] = one_sample(list(vals.values()), 0.0, "resolved conflict rate",
                            "share of task pairs whose gradient-cosine interval over 8 batches lies below 0 (the "
                            "interval holds single-task gradient noise), final checkpoint, per seed")                             if len(vals) >= 2 else None
    return out


def _closed_form_vs_ppo(ev: Evidence) -> Dict[str, Optional[Measurement]]:
    a, b = ev.group("opd-sde"), ev.group("opd-ppo")   # the same SDE rollouts, a = 0.7
    out: Dict[str, Optional[Measurement]] = {"final average": None}
    if a is not None and b is not None:
        out["final average"] = paired_seeds({s: a.avg(s, ev.tasks) for s in a.scores},
                                            {s: b.avg(s, ev.tasks) for s in b.scores}, "raw score difference",
                                            "closed form - PPO-style, final average")
    return out


def _variance_ratio(ev: Evidence) -> Dict[str, Optional[Measurement]]:
    vals = ev.extra.get("log10_variance_ratio", {})
    return {"log10 V(closed)/V(ppo)": one_sample(list(vals.values()), 0.0, "log10 variance ratio",
                                                 "debiased relative gradient variance (plug-in where the PPO "
                                                 "signal is unresolved: conservative), same samples, per seed")
            if len(vals) >= 2 else None}


def _low_noise(ev: Evidence) -> Dict[str, Optional[Measurement]]:
    lo, hi = ev.group("opd-a-low"), ev.group("opd-a-high")
    out: Dict[str, Optional[Measurement]] = {"final average": None, "area under the curve": None}
    if lo is None or hi is None:
        return out
    out["final average"] = paired_seeds({s: lo.avg(s, ev.tasks) for s in lo.scores},
                                        {s: hi.avg(s, ev.tasks) for s in hi.scores}, "raw score difference",
                                        "low a - high a, final average")
    auc = lambda g: {s: float(np.mean([y for _, y in c])) for s, c in g.curves.items() if c}
    out["area under the curve"] = paired_seeds(auc(lo), auc(hi), "mean score over the curve",
                                               "low a - high a, mean of the periodic val evaluations")
    return out


def _beats_sft(ev: Evidence) -> Dict[str, Optional[Measurement]]:
    a, b = ev.group("opd"), ev.group("sft-distill")
    if a is None or b is None:
        return {"final average": None}
    return {"final average": paired_seeds({s: a.avg(s, ev.tasks) for s in a.scores},
                                          {s: b.avg(s, ev.tasks) for s in b.scores}, "raw score difference",
                                          "on-policy distillation - SFT on teacher rollouts, final average")}


PAPER = "arXiv 2605.15055"
CLAIMS: Tuple[Claim, ...] = (
    Claim("student-reaches-teachers", "The student reaches each teacher's score on the teacher's own task "
          "(normalised >= 0.95)", f"{PAPER}: the multi-task student matches its single-task teachers", 0.95, +1,
          _reach_teacher),
    Claim("beats-multitask-and-cascade", "DiffusionOPD beats multi-task GRPO(-Guard), multi-task NFT and "
          "cascade (NFT) on the average and on each task", f"{PAPER}: main comparison, DiffusionOPD best on every "
          "benchmark", 0.0, +1, _beats_baselines),
    Claim("cheaper-at-equal-total-cost", "At equal total cost (teachers included) DiffusionOPD reaches the best "
          "multi-task baseline's final score with far less compute", f"{PAPER}: about 10x less compute", 0.0, +1,
          _cost_ratio),
    Claim("cascade-forgets", "Cascade RL forgets earlier tasks (BWT < 0)", f"{PAPER}: cascade RL is prone to "
          "catastrophic forgetting", 0.0, -1, _cascade_forgets),
    Claim("joint-rl-interferes", "Joint multi-reward RL interferes: gradient conflict above single-task noise",
          f"{PAPER}: cross-task interference and imbalance in joint optimisation", 0.0, +1, _joint_interferes),
    Claim("closed-form-trains-better", "The closed-form objective beats the PPO-style one in training",
          f"{PAPER}: the analytic gradient generalises better than PPO-style policy gradients", 0.0, +1,
          _closed_form_vs_ppo),
    Claim("closed-form-lower-variance", "The closed-form gradient has lower variance than the PPO-style one",
          f"{PAPER}: lower variance (no number given)", 0.0, -1, _variance_ratio),
    Claim("low-noise-trains-faster", "A lower noise level a trains faster and higher",
          f"{PAPER}: noise-level ablation", 0.0, +1, _low_noise),
    Claim("beats-sft", "On-policy distillation beats SFT on teacher rollouts", f"{PAPER}: SFT ablation", 0.0, +1,
          _beats_sft),
)


def evaluate_claims(ev: Evidence) -> List[dict]:
    """Every claim's sub-claims with measurement and verdict (the rows of claims.json)."""
    rows = []
    for c in CLAIMS:
        for key, m in c.measure(ev).items():
            rows.append({"claim": c.id, "statement": c.statement, "paper": c.paper, "part": key, "null": c.null,
                         "direction": c.direction, "measurement": asdict(m) if m is not None else None,
                         "verdict": verdict(m, c.null, c.direction)})
    return rows


# ------------------------------------------------------------------------------------------------ campaign


@dataclass
class Group:
    label: str
    method: str
    seeds: int
    overrides: Dict[str, object] = field(default_factory=dict)
    recipe: Optional[str] = None
    stage: int = 0          # the campaign trains stage by stage (see Campaign.runs)


@dataclass
class Campaign:
    tasks: str
    budget: str
    first_seed: int
    groups: List[Group]
    config: Optional[str] = None
    overrides: Dict[str, object] = field(default_factory=dict)   # applied to every group (before its own)

    def runs(self) -> List[Tuple[Group, int]]:
        """Every (group, seed) in training order: stage by stage (a group's ``stage``, default 0), and within a
        stage seed by seed across its groups in file order. So a campaign cut short (a machine reset, a session's
        end) holds the early stages whole and the current one balanced over its groups, every comparison paired
        on the seeds it has, instead of all of one group and none of the next."""
        runs = [(g.stage, s, k, g) for k, g in enumerate(self.groups)
                for s in range(self.first_seed, self.first_seed + g.seeds)]
        return [(g, s) for _, s, _, g in sorted(runs, key=lambda r: r[:3])]


#: what a campaign file's group may set
GROUP_KEYS = ("method", "seeds", "set", "recipe", "stage")


def load_campaign(path: Path) -> Campaign:
    from .config import read_spec_file

    path = Path(path)
    doc = read_spec_file(path, "--spec", "campaign file",
                         ("tasks", "budget", "first_seed", "seeds", "config", "set", "groups"))
    groups = []
    for label, g in (doc.get("groups") or {}).items():
        if not isinstance(g, dict) or "method" not in g:
            raise UserError(f"--spec: {path}: group {label!r} needs a 'method'")
        unknown = sorted(set(g) - set(GROUP_KEYS))
        if unknown:
            raise UserError(f"--spec: {path}: group {label!r}: unknown key {unknown[0]!r} "
                            f"(valid: {', '.join(GROUP_KEYS)})")
        stage = g.get("stage", 0)
        if isinstance(stage, bool) or not isinstance(stage, int):
            raise UserError(f"--spec: {path}: group {label!r}: stage must be an integer, got {stage!r}")
        groups.append(Group(str(label), str(g["method"]), int(g.get("seeds", doc.get("seeds", 5))),
                            dict(g.get("set") or {}), g.get("recipe"), stage))
    if not groups:
        raise UserError(f"--spec: {path}: no groups")
    return Campaign(str(doc.get("tasks", "all")), str(doc.get("budget", "2000:images")),
                    int(doc.get("first_seed", 0)), groups, doc.get("config"), dict(doc.get("set") or {}))


def run_dir(runs_dir: Path, group: Group, seed: int) -> Path:
    return Path(runs_dir) / group.label / f"s{seed}"


def recipe_of(group: Group) -> Optional[Path]:
    """The tuned recipe a group runs (``opd-bench sweep``'s configs/recipes/<name>.yaml): the group's ``recipe``
    name, else its label's recipe, else its method's; None while no sweep has written one."""
    from .plan import recipe_for

    for name in (group.recipe, group.label, group.method):
        if name and recipe_for(name) is not None:
            return recipe_for(name)
    return None


def run_config(camp: Campaign, group: Group, seed: int):
    """The run's typed config: default.yaml < the group's recipe < the campaign's config file < the campaign's and
    the group's overrides < method, tasks, seed and budget (as ``opd-bench run`` layers them)."""
    from dataclasses import replace

    from .config import parse_budget
    from .config import load_config
    from .session import resolve_tasks

    sets = [f"{k}={json.dumps(v)}" for k, v in {**camp.overrides, **group.overrides}.items()]
    cfg = load_config(camp.config, sets, recipe=recipe_of(group))
    cfg.method, cfg.seed, cfg.budget = group.method, seed, replace(parse_budget(camp.budget))
    cfg.tasks = list(resolve_tasks(camp.tasks, cfg))
    cfg.name = f"claims_{group.label}"
    return cfg


def status(camp: Campaign, runs_dir: Path) -> Dict[str, List[str]]:
    """Each run's state: done (summary written), partial (a resumable state), missing."""
    out: Dict[str, List[str]] = {"done": [], "partial": [], "missing": []}
    for g, s in camp.runs():
        d = run_dir(runs_dir, g, s)
        key = "done" if (d / "summary.json").is_file() else "partial" if (d / "state").exists() else "missing"
        out[key].append(f"{g.label}/s{s}")
    return out


def parse_shard(text: Optional[str]) -> Tuple[int, int]:
    """``--shard I/N`` -> (I, N) with 0 <= I < N; None -> (0, 1), the whole campaign."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        i, n = -1, 0
    if not 0 <= i < n:
        raise UserError(f"--shard: {text!r} is not I/N with 0 <= I < N, e.g. 0/2 and 1/2 for two processes")
    return i, n


def in_shard(position: int, shard: Tuple[int, int]) -> bool:
    """Whether the item at ``position`` of a fixed order belongs to shard ``(i, n)``: every n-th, from the i-th."""
    return position % shard[1] == shard[0]


def parse_start_before(text: Optional[str], now: Optional[datetime] = None) -> Optional[float]:
    """``--start-before`` -> a POSIX time: ``HH:MM`` is that time today (local clock; already past: nothing starts,
    so every process of one campaign, whenever it starts, reads the same time), else an ISO date-time
    (``2026-12-02T17:50``, e.g. past midnight); None -> None (no limit)."""
    if text is None:
        return None
    now = now or datetime.now()
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if m and int(m[1]) < 24 and int(m[2]) < 60:
        return now.replace(hour=int(m[1]), minute=int(m[2]), second=0, microsecond=0).timestamp()
    if not m:
        try:
            return datetime.fromisoformat(text.strip()).timestamp()
        except ValueError:
            pass
    raise UserError(f"--start-before: {text!r} is neither HH:MM nor an ISO date-time (e.g. 17:50 or 2026-12-02T17:50)")


def run_campaign(camp: Campaign, runs_dir: Path, run=None, shard: Tuple[int, int] = (0, 1),
                 after: Optional[Callable[[Group, Path], None]] = None, start_before: Optional[float] = None,
                 clock: Callable[[], float] = time.time) -> List[Path]:
    """Train every run not finished yet, in the campaign's order: finished runs are skipped, interrupted ones
    resumed (``run(cfg, dir, resume) -> summary``, default the one runner), so rerunning continues it. With
    ``shard=(i, n)`` only every n-th run from the i-th (:func:`in_shard`): n processes, each with its own shard,
    train the campaign side by side (each run folder is owned by one process); every config is still validated.
    ``after(group, dir)`` runs on each of the shard's finished runs as soon as it is trained (or, trained before,
    when its turn comes): :func:`complete_run`, which scores it while its weights exist. From ``start_before`` (a
    ``clock()`` time) on, no run that is not :data:`COMPLETE` is started, trained or scored (a machine that goes
    away at a known time then loses no work half done); the one in progress finishes."""
    from .train import run_one

    run = run or run_one
    cfgs = [(g, s, run_config(camp, g, s)) for g, s in camp.runs()]   # every config validated before any trains
    dirs = []
    from .config import same_settings

    for g, s, cfg in cfgs:
        d = run_dir(runs_dir, g, s)
        if (d / "config.yaml").is_file() and not same_settings((d / "config.yaml").read_text(), cfg):
            raise UserError(f"campaign run folder {d} holds another config than its group now gives (a recipe or the "
                            "campaign file changed since it started): move it away to retrain it, or restore the "
                            "settings")
    for k, (g, s) in enumerate(camp.runs()):
        d = run_dir(runs_dir, g, s)
        dirs.append(d)
        if not in_shard(k, shard):
            continue
        if start_before is not None and clock() >= start_before and not (d / COMPLETE).is_file():
            continue
        if not (d / "summary.json").is_file():
            # resolved again when its turn comes: a recipe a sweep wrote since this process started (a shard
            # that starts while another recipe's sweep still runs) is the one the run takes
            run(run_config(camp, g, s), d, resume=(d / "state").exists())
        if after is not None and (d / "summary.json").is_file():
            after(g, d)
    return dirs


#: written in a run folder once everything the report reads from its weights is recorded there (its final
#: evaluation, its analyses): the folder's small files alone then give its part of the report, so an archived
#: copy of a run without the marker is trained again rather than restored (scripts/claims_campaign.sh)
COMPLETE = "claims_complete.json"


def complete_run(group: Group, d: Path, tasks: Sequence[str], protocol,
                 analysis: Optional[Tuple[int, int]] = None) -> None:
    """Record run ``d``'s final evaluation under ``protocol`` (:func:`final_results`) and, with
    ``analysis=(k, batch)``, its analyses (:func:`run_analyses`), then mark the folder :data:`COMPLETE`. Each step
    is cached, so calling it again costs nothing."""
    from .checkpoint import atomic_write_json

    final_results(d, tasks, protocol)
    if analysis is not None:
        run_analyses(group, d, *analysis)
    atomic_write_json(d / COMPLETE, {"protocol": protocol.to_dict(), "tasks": list(tasks),
                                     "analyses": None if analysis is None else list(analysis)})


def warm_evaluations(camp: Campaign, runs_dir: Path, references: Dict[str, Dict[str, str]], tasks: Sequence[str],
                     protocol, shard: Tuple[int, int] = (0, 1), analysis: Optional[Tuple[int, int]] = None) -> int:
    """Score this shard's share of the finished runs' final checkpoints (campaign order; recorded in each run
    folder, :func:`final_results`) and of the reference models (``{name: {task: checkpoint}}``, one evaluation per
    task, into the eval cache) under ``protocol``, and with ``analysis=(k, batch)`` compute its runs' analyses
    (:func:`run_analyses`), so the report's invocation reads them all back; ``n`` processes split the work as they
    split the training. Returns how many evaluations this shard made or found."""
    from .evalcache import cached_eval

    jobs = [(g, run_dir(runs_dir, g, s), list(tasks)) for g, s in camp.runs()]
    jobs = [(g, d, ts) for g, d, ts in jobs if (d / "summary.json").is_file()]
    jobs += [(None, ck, [t]) for name in sorted(references) for t, ck in sorted(references[name].items())]
    mine = [job for k, job in enumerate(jobs) if in_shard(k, shard)]
    for g, where, ts in mine:
        if g is None:
            cached_eval(where, ts, protocol)
            continue
        final_results(where, ts, protocol)
        if analysis is not None:
            run_analyses(g, where, *analysis)
    return len(mine)


def cpu_hours(runs_dir: Path, sweeps_dir: Optional[Path] = None, recipes: Sequence[str] = (),
              superseded_dir: Optional[Path] = None) -> Dict[str, float]:
    """The campaign's recorded CPU hours (wall seconds x threads x processes), by part: ``runs``, every campaign
    run's ledger (training and its in-run evaluations, all phases); ``final_evaluations``, the full-protocol
    evaluations :func:`final_results` recorded in the run folders; ``analyses``, the interference and variance
    measurements cached there (:func:`run_analyses`); ``sweeps``, the equal-tuning trials of
    ``recipes`` under ``sweeps_dir`` (sweep_<recipe>/trial_*/summary.json, whose ledger the sweep keeps), with
    ``sweep_trials`` their count; ``superseded``, all three of the runs under ``superseded_dir/<reason>/`` (runs
    whose group's recipe changed after they ran: spent, no longer reported); ``total``. A ledger or record without
    threads counts one; what no file records (a file written before it recorded its cost, a trial whose folder is
    gone) is not counted."""
    def hours(ledger: dict) -> float:
        secs = sum(float(p.get("seconds", 0.0)) for p in (ledger.get("spent") or {}).values())
        return secs * int(ledger.get("threads", 1)) * int(ledger.get("processes", 1)) / 3600.0

    def run_parts(folder: Path) -> Tuple[float, float, float]:
        runs = sum(hours(json.loads(led.read_text())) for led in folder.glob("*/s*/ledger.json"))
        evals = sum(cost_hours(json.loads(rec.read_text())) for rec in folder.glob(f"*/s*/{RECORD}"))
        analyses = sum(cost_hours(json.loads(f.read_text()).get("_cost") or {})
                       for name in ANALYSIS_FILES for f in folder.glob(f"*/s*/{name}"))
        return runs, evals, analyses

    out = {"sweeps": 0.0, "sweep_trials": 0}
    out["runs"], out["final_evaluations"], out["analyses"] = run_parts(Path(runs_dir))
    for name in (recipes if sweeps_dir is not None else ()):
        for summ in Path(sweeps_dir).glob(f"sweep_{name}/trial_*/summary.json"):
            out["sweeps"] += hours(json.loads(summ.read_text()).get("ledger") or {})
            out["sweep_trials"] += 1
    sup = Path(superseded_dir) if superseded_dir is not None else None
    out["superseded"] = sum(sum(run_parts(d)) for d in (sup.iterdir() if sup is not None and sup.is_dir() else ())
                            if d.is_dir())
    out["total"] = out["runs"] + out["final_evaluations"] + out["analyses"] + out["sweeps"] + out["superseded"]
    return out


# ------------------------------------------------------------------------------------------------ collection


def group_runs(camp: Campaign, runs_dir: Path, group: Group, tasks: Sequence[str], unit: str,
               protocol=None, view=None) -> GroupRuns:
    """A group's finished runs read back: final test scores (gold first) -- under ``protocol`` when given (the
    full protocol: every test prompt at several seeds, through the eval cache, so each final checkpoint is
    scored once; ``view(results) -> results`` reads them another way, e.g. :func:`seed_half`), else the run's own
    final evaluation --, the val learning curve, BWT, spend."""
    from .analysis import curve_rows, load_run
    from .evaluate import eval_row
    from .analysis.forgetting import backward_transfer, cascade_order, score_matrix
    from .methods import method_class

    out = GroupRuns(group.label, group.method)
    for g, s in camp.runs():
        d = run_dir(runs_dir, g, s)
        if g is not group or not (d / "summary.json").is_file():
            continue
        run = load_run(d)
        row = run.final_row
        if protocol is not None:
            res = final_results(d, tasks, protocol, run.cfg.device)
            row = eval_row(view(res) if view else res, "final", protocol)
        out.scores[s], out.proxy[s] = row_scores(row, tasks)
        out.spent[s] = dict(run.spent("train"))
        out.curves[s] = [(float(r["budget"].get(unit, 0.0)), float(np.mean(list(row_scores(r, tasks)[0].values()))))
                         for r in curve_rows(run.history) if set(tasks) <= set(r.get("scores", {}))]
        if method_class(group.method).trains_tasks_in_sequence:
            order = cascade_order(run)
            _, R = score_matrix(run.history, order, cascade=True)
            if R.shape[0] == len(order):
                out.bwt[s] = backward_transfer(R)
    return out


def collect(camp: Campaign, runs_dir: Path, teachers: Dict[str, str], base: Tuple[dict, dict],
            teacher: Tuple[dict, dict], extra: Optional[Dict[str, Dict[int, float]]] = None,
            protocol=None, view=None) -> Evidence:
    """The evidence of a campaign from its run folders; ``base``/``teacher``: (gold-first, proxy) full test evals
    (:func:`reference_scores`); ``teachers``: {task: checkpoint} whose recorded spend is DiffusionOPD's offset."""
    from .session import resolve_tasks
    from .config import load_config

    unit = camp.budget.split(":", 1)[1]
    tasks = resolve_tasks(camp.tasks, load_config(camp.config, []))
    groups = {g.label: group_runs(camp, runs_dir, g, tasks, unit, protocol, view) for g in camp.groups}
    return Evidence(list(tasks), groups, base[0], teacher[0], teacher_cost(teachers), unit, dict(extra or {}),
                    base[1], teacher[1], base[2] if len(base) > 2 else {}, teacher[2] if len(teacher) > 2 else {})


def reference_scores(checkpoints: Dict[str, str], protocol, view=None) -> Tuple[Dict[str, float], Dict[str, float],
                                                                               Dict[str, dict]]:
    """(gold-first, proxy, entries) test scores of fixed checkpoints ({task: checkpoint}), from the eval cache
    (computed once per checkpoint and protocol); ``view`` as in :func:`group_runs`. ``entries[task]``: the per-prompt
    headline scores and category strata (:func:`opd_bench.report.references.reference_entry`), which the
    normalised claims need to propagate the teacher - base denominator's uncertainty."""
    from .evalcache import cached_eval
    from .evaluate import eval_row
    from .report.references import reference_entry

    head, proxy, entries = {}, {}, {}
    for t, ck in checkpoints.items():
        res = cached_eval(ck, [t], protocol)
        res = view(res) if view else res
        h, p = row_scores(eval_row(res, "reference", protocol), [t])
        head[t], proxy[t] = h[t], p[t]
        entries[t] = reference_entry(res[t], t, str(ck), protocol)
    return head, proxy, entries


#: the joint multi-task groups whose interference is measured, and the estimators of the variance claim
JOINT_GROUPS = ("multi-reward", "mt-grpo-guard", "mt-nft")
VARIANCE_PAIR = ("opd_sde", "opd_ppo")


#: the analyses' numbers cached in a run folder (:func:`run_analyses`), each with its ``_cost``
ANALYSIS_FILES = (INTERFERENCE_RECORD, VARIANCE_RECORD)


def run_analyses(group: Group, d: Path, k: int = 16, batch: int = 8) -> Dict[str, float]:
    """The analysis numbers one finished run contributes, each computed once and cached in its folder
    (``claims_interference.json``, ``claims_variance.json``): a joint group's resolved gradient-conflict rate
    (share of task pairs whose cosine interval over 8 batches lies below 0: single-task gradient noise is inside
    that interval) and, for the opd group, log10 of the debiased relative variance of closed-form over
    PPO-style OPD gradients (same samples, ``k`` batches of ``batch``, averaged over tasks) at its final
    checkpoint. ``{key: value}``, keys as in :func:`analyses`. Every other group's first run scored while its
    weights exist records its interference too (one per group, not a claim): what `report`'s interference section
    shows for that method once the campaign's weights are gone."""
    from .analysis import interference as itf
    from .analysis import variance as var

    out: Dict[str, float] = {}
    if group.label in JOINT_GROUPS:
        res = itf.recorded_interference(d)
        out[f"conflict/{group.label}"] = float(res["conflict_over_batches"]["resolved_conflict_rate"])
    elif (d / "final").is_dir() and not any((p / INTERFERENCE_RECORD).is_file() for p in d.parent.glob("s*")):
        itf.recorded_interference(d)
    if group.label == "opd":
        def study():
            _, tasks, ctx = itf.run_analysis_context(d)
            return var._jsonable(var.variance_study(ctx, tasks, VARIANCE_PAIR, k, (batch,)))
        res = recorded(d / VARIANCE_RECORD, study)
        ratios = [var.variance_ratio(res["results"][t], VARIANCE_PAIR) for t in res["tasks"]]
        ratios = [r for r in ratios if r is not None]
        if ratios:
            out["log10_variance_ratio"] = float(np.mean(np.log10(ratios)))
    return out


def analyses(camp: Campaign, runs_dir: Path, k: int = 16, batch: int = 8) -> Dict[str, Dict[int, float]]:
    """Per-seed analysis numbers of every finished run (:func:`run_analyses`): ``{key: {seed: value}}``."""
    extra: Dict[str, Dict[int, float]] = {}
    for g, s in camp.runs():
        d = run_dir(runs_dir, g, s)
        if (d / "summary.json").is_file():
            for key, v in run_analyses(g, d, k, batch).items():
                extra.setdefault(key, {})[s] = v
    return extra


# ------------------------------------------------------------------------------------------------ seed split

#: the headline verdict of a confirmed or refuted claim whose two eval-seed halves disagree in sign
UNSTABLE = "unstable across eval seeds"
HEADLINE_VERDICTS = (CONFIRMED, REFUTED, UNSTABLE, UNRESOLVED, NOT_MEASURED)
#: what the seed-split check finds per sub-claim
HOLDS, FLIPS, LOSES, GAINS = "holds", "flips", "loses resolution", "resolved in a half only"
CANNOT, NOT_SEEDED = "cannot split", "not from the test evaluations"


def seed_half(results: Dict[str, dict], half: int, protocol, unsplit: Optional[set] = None) -> Dict[str, dict]:
    """Per-task eval results (``cached_eval``'s) re-summarised on one half of each task's noise seeds: half 0 =
    seed indices 0..k/2-1, half 1 = k/2..k-1 of the k seeds per prompt, from the evaluation's own per-seed scores
    (``per_seed``: nothing is sampled again). A task evaluated at one seed per prompt (no ``per_seed``) cannot be
    split: it is kept whole and its name added to ``unsplit``."""
    from .evaluate import select_records, summarize_task
    from .tasks import get_task

    out: Dict[str, dict] = {}
    for t, res in results.items():
        per_seed = res.get("per_seed")
        records = select_records(get_task(t).prompts(res.get("split", protocol.split)), protocol.prompts_per_task)
        if not per_seed or [r["prompt"] for r in records] != [p["prompt"] for p in res.get("per_prompt", [])]:
            out[t] = res
            if unsplit is not None:
                unsplit.add(t)
            continue
        k = len(next(iter(per_seed.values()))[0])
        cols = list(range(k // 2)) if half == 0 else list(range(k // 2, k))
        per_sample = {m: np.asarray(v, dtype=np.float64)[:, cols].mean(axis=1) for m, v in per_seed.items()}
        kept = {key: v for key, v in res.items() if key not in ("per_prompt", "per_seed")}
        per_prompt = [{"prompt": r["prompt"], **{m: float(v[i]) for m, v in per_sample.items()}}
                      for i, r in enumerate(records)]
        out[t] = {**kept, **summarize_task(get_task(t), records, per_sample, protocol.bootstrap, protocol.seed),
                  "per_prompt": per_prompt, "seed_indices": cols}
    return out


def seed_halves(camp: Campaign, runs_dir: Path, base: Dict[str, str], teachers: Dict[str, str], protocol,
                extra: Optional[Dict[str, Dict[int, float]]] = None) -> Tuple[Evidence, Evidence, List[str]]:
    """The campaign's evidence twice, each on one half of the test evaluations' noise seeds (every model: the
    runs' final checkpoints, the base ``{task: checkpoint}`` and the ``teachers``), read from the evaluations
    already cached under ``protocol``; and the tasks that could not be split (one seed per prompt)."""
    unsplit: set = set()
    halves = []
    for h in (0, 1):
        view = lambda res, h=h: seed_half(res, h, protocol, unsplit)
        b, t = reference_scores(base, protocol, view), reference_scores(teachers, protocol, view)
        halves.append(collect(camp, runs_dir, teachers, b, t, extra, protocol, view))
    return halves[0], halves[1], sorted(unsplit)


def _side(m: Optional[dict], null: float, direction: int) -> int:
    """+1 / -1: the measurement's estimate on the claimed / the other side of the null; 0: none or on it."""
    if m is None or m.get("estimate") is None or not math.isfinite(m["estimate"]):
        return 0
    return int(np.sign(direction * (m["estimate"] - null)))


def split_status(full: str, halves: Sequence[str]) -> str:
    """What the two halves' verdicts say about the full verdict: ``holds`` (both equal it), ``flips`` (a half
    decides the opposite way, of the full verdict or of the other half), ``loses resolution`` (the full verdict
    is decided, a half is not), ``resolved in a half only`` (the full verdict is not decided, a half is)."""
    decided = {CONFIRMED, REFUTED}
    opposite = {CONFIRMED: REFUTED, REFUTED: CONFIRMED}
    if all(h == full for h in halves):
        return HOLDS
    if decided <= set(halves) or (full in decided and opposite[full] in halves):
        return FLIPS
    return LOSES if full in decided else GAINS


def _part_tasks(part: str, tasks: Sequence[str]) -> List[str]:
    """The tasks a sub-claim reads: the one its name ends with (``ocr``, ``vs cascade: ocr``), else all."""
    named = [t for t in tasks if part == t or part.endswith(f": {t}")]
    return named or list(tasks)


def seed_split(rows: List[dict], halves: Optional[Tuple[Evidence, Evidence, List[str]]],
               tasks: Sequence[str]) -> None:
    """Adds to every claims row its ``seed_split`` (the verdicts and estimates on each half of the eval seeds, and
    :func:`split_status`) and its ``headline`` verdict: a confirmed or refuted verdict whose halves' estimates lie
    on opposite sides of the null is demoted to ``unstable across eval seeds`` (in place)."""
    by_half = [evaluate_claims(ev) for ev in halves[:2]] if halves else None
    unsplit = set(halves[2]) if halves else set(tasks)
    for i, r in enumerate(rows):
        r["headline"] = r["verdict"]
        if by_half is None or set(_part_tasks(r["part"], tasks)) <= unsplit:
            r["seed_split"] = {"status": CANNOT, "detail": "one noise seed per prompt in the test evaluations "
                               "(--protocol run, or a task evaluated at one seed): no halves to compare"}
            continue
        a, b = by_half[0][i], by_half[1][i]
        ms = [a["measurement"], b["measurement"]]
        same = all(m == r["measurement"] for m in ms)
        sides = [_side(m, r["null"], r["direction"]) for m in ms]
        status = NOT_SEEDED if same and r["measurement"] is not None else split_status(r["verdict"],
                                                                                        [a["verdict"], b["verdict"]])
        r["seed_split"] = {"status": status, "verdicts": [a["verdict"], b["verdict"]],
                           "estimates": [None if m is None else m["estimate"] for m in ms],
                           "unsplit_tasks": sorted(unsplit & set(_part_tasks(r["part"], tasks)))}
        if r["verdict"] in (CONFIRMED, REFUTED) and sides[0] * sides[1] < 0:
            r["headline"] = UNSTABLE


def _verdict_cell(r: dict) -> str:
    """A sub-claim's headline verdict, with the rule's verdict beside it where the seed split demoted it."""
    head = r.get("headline", r["verdict"])
    return head if head == r["verdict"] else f"{head} (rule: {r['verdict']})"


def _split_cell(r: dict) -> str:
    s = r.get("seed_split") or {}
    if "verdicts" not in s:
        return s.get("status", "-")
    est = ", ".join("-" if e is None else f"{e:+.3f}" for e in s["estimates"])
    return f"{s['status']} ({' / '.join(s['verdicts'])}; {est})"


# ------------------------------------------------------------------------------------------------ output


def _fmt(m: Optional[dict]) -> str:
    if m is None:
        return "-"
    lo = "-inf" if m["low"] == -math.inf else f"{m['low']:+.3f}"
    s = f"{m['estimate']:+.3f} [{lo}, {m['high']:+.3f}] {m['unit']}, n = {m['n']}"
    if m["n"] >= 2 and m["low"] == m["high"] == m["estimate"]:
        s += ", the same in every seed (no spread: no MDE)"
    elif m.get("mde") is not None and math.isfinite(m["mde"]):
        s += f", MDE {m['mde']:.3f}"
    if m.get("family"):
        s += f", p {m['p']:.3g} ({m['family']})"
    return s


def threats(ev: Evidence, rows: Sequence[dict], flips: Sequence[dict]) -> List[str]:
    """Threats to validity, written from what was measured."""
    n_runs = sum(len(g.scores) for g in ev.groups.values())
    out = [f"The embedded world is small: 32x32 procedural scenes, four tasks, a model of a few million parameters, "
           f"{n_runs} finished runs behind these verdicts. Effects that need scale (SD3.5 at 512 px, real reward "
           "models, human preference) are not tested here and may not transfer.",
           "Aesthetic and preference are scored with hidden gold scorers; the methods train on learned proxies. "
           "The proxy-minus-gold gain per group:"]
    for label, g in ev.groups.items():
        gold = ev.gold_tasks if g.scores else []
        gaps = [np.mean([(g.proxy[s][t] - ev.base_proxy[t]) - (g.scores[s][t] - ev.base[t]) for s in g.scores])
                for t in gold]
        if gaps:
            out.append(f"  - {label}: {', '.join(f'{t} {x:+.3f}' for t, x in zip(gold, gaps))}")
    offset = ev.teacher_cost.get(ev.unit, 0.0)
    spends = [v for b in BASELINES if b in ev.groups for v in ev.groups[b].spent.values() if v.get(ev.unit)]
    budgets = [float(v[ev.unit]) for v in spends]
    if offset > 0 and budgets and offset >= max(budgets):
        out.append(f"DiffusionOPD's teachers recorded {offset:,.0f} {ev.unit} of training, {offset / max(budgets):.0f}x "
                   f"a baseline's whole budget ({max(budgets):,.0f} {ev.unit}): at equal total cost the cost claim is "
                   "decided by how the teachers were trained (their recipes and budgets), not by how fast the student "
                   "learns; teachers trained more cheaply, or reused across many students, would change it.")
        seconds = sum(float(v.get("seconds", 0.0)) for v in spends)
        if seconds > 0:   # what an equal-total-budget baseline would have cost at the baselines' recorded rate
            hours = (offset + max(budgets)) * seconds / sum(budgets) / 3600
            out.append(f"No baseline was trained at that equal total budget ({offset + max(budgets):,.0f} {ev.unit} "
                       f"a run, about {hours:.1f} h each at the baselines' recorded training rate): the cost claim "
                       "reads their score-vs-total-cost curves, which end at their own budget, so it asks whether "
                       "DiffusionOPD reaches their final score, not what they would reach with the teachers' compute.")
    n_unres = sum(r["verdict"] == UNRESOLVED for r in rows)
    out.append(f"{n_unres} of {len(rows)} sub-claims are below resolution at the seeds used: more seeds or a larger "
               "test split would be needed to decide them.")
    unstable = [r for r in rows if r.get("seed_split", {}).get("status") in (FLIPS, LOSES)]
    if any("verdicts" in r.get("seed_split", {}) for r in rows):
        out.append(f"{len(unstable)} sub-claims change verdict between two disjoint halves of the test evaluations' "
                   "noise seeds (flip or lose resolution); decided verdicts whose halves disagree in sign are shown "
                   f"as '{UNSTABLE}' in the headline" + (":" if unstable else "."))
        out += [f"  - {r['claim']} / {r['part']}: {_split_cell(r)}" for r in unstable]
    else:
        out.append("The eval-seed split check could not run (one noise seed per prompt): no verdict was checked "
                   "at a second set of eval seeds.")
    if flips:
        out.append("Verdicts that change with the scoring (gold vs proxy):")
        out += [f"  - {f['claim']} / {f['part']}: {f['gold']} with gold scores, {f['proxy']} with the proxy" for f in flips]
    else:
        out.append("No verdict changes when aesthetic and preference are scored with the proxy instead of gold.")
    return out


def proxy_view(ev: Evidence) -> Evidence:
    """The same evidence scored with the learned proxies (what the methods were trained on)."""
    groups = {k: GroupRuns(g.label, g.method, {s: dict(g.scores[s], **g.proxy[s]) for s in g.scores}, g.proxy,
                           g.curves, g.bwt, g.spent) for k, g in ev.groups.items()}
    return Evidence(ev.tasks, groups, dict(ev.base, **ev.base_proxy), dict(ev.teacher, **ev.teacher_proxy),
                    ev.teacher_cost, ev.unit, ev.extra, ev.base_proxy, ev.teacher_proxy)


def verdict_flips(ev: Evidence, gold: Optional[List[dict]] = None) -> List[dict]:
    """The sub-claims whose verdict changes when aesthetic and preference are scored with the learned proxy;
    ``gold``: the gold-first rows already evaluated (:func:`evaluate_claims`)."""
    gold, proxy = gold or evaluate_claims(ev), evaluate_claims(proxy_view(ev))
    return [{"claim": a["claim"], "part": a["part"], "gold": a["verdict"], "proxy": b["verdict"]}
            for a, b in zip(gold, proxy) if a["verdict"] != b["verdict"]]


def write_claims(ev: Evidence, out: Path, status_: Dict[str, List[str]], hours, command: str,
                 halves: Optional[Tuple[Evidence, Evidence, List[str]]] = None) -> dict:
    """claims.json, report.md and report.html in ``out``; ``halves``: :func:`seed_halves` (the eval-seed split
    check; None: it cannot run); ``hours``: :func:`cpu_hours`'s parts, or a total."""
    from .checkpoint import atomic_write_json, atomic_write_text

    hours = dict(hours) if isinstance(hours, dict) else {"total": float(hours)}

    rows = evaluate_claims(ev)
    seed_split(rows, halves, ev.tasks)
    flips = verdict_flips(ev, rows)
    doc = {"claims": rows, "verdict_rule": VERDICT_RULE,
           "tasks": ev.tasks, "unit": ev.unit, "teacher_cost": ev.teacher_cost, "base": ev.base,
           "teacher": ev.teacher, "runs": status_, "cpu_hours": hours["total"], "cpu_hours_by_part": hours, "command": command,
           "threats": threats(ev, rows, flips), "flips": flips,
           "seed_split_rule": f"Every verdict recomputed on two disjoint halves of each task's eval noise seeds "
           f"(seed indices 0..k/2-1 and k/2..k-1, from the cached evaluations); a confirmed or refuted verdict whose "
           f"halves' estimates lie on opposite sides of the null is shown as '{UNSTABLE}' in the headline."}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "claims.json", doc)
    md = render_markdown(doc)
    atomic_write_text(out / "report.md", md)
    atomic_write_text(out / "report.html", render_html(doc))
    return doc


def summary_table(doc: dict) -> List[List[str]]:
    """One row per claim: its headline verdicts (counted over sub-claims; a decided verdict unstable across eval
    seeds is counted as such) and the first sub-claim's evidence."""
    table = []
    for c in CLAIMS:
        rows = [r for r in doc["claims"] if r["claim"] == c.id]
        head = lambda r: r.get("headline", r["verdict"])
        counts = {v: sum(head(r) == v for r in rows) for v in HEADLINE_VERDICTS}
        verdicts = ", ".join(f"{k} {n}" for k, n in counts.items() if n) if len(rows) > 1 else head(rows[0])
        first = next((r for r in rows if r["measurement"] is not None), rows[0])
        table.append([c.statement, verdicts, f"{first['part']}: {_fmt(first['measurement'])}"])
    return table


def hours_text(doc: dict) -> str:
    """The report's CPU-hours sentence (:func:`cpu_hours`)."""
    h = doc.get("cpu_hours_by_part") or {"total": doc["cpu_hours"]}
    if "runs" not in h:
        return f"{h['total']:.1f} CPU hours recorded"
    return (f"{h['total']:.1f} CPU hours recorded: {h['runs']:.1f} training the runs (with their in-run evaluations), "
            f"{h['final_evaluations']:.1f} in their full-protocol final evaluations, {h['analyses']:.1f} in "
            f"the analyses, {h['sweeps']:.1f} in {h['sweep_trials']} equal-tuning sweep trials"
            + (f", {h['superseded']:.1f} in runs superseded by a recipe change" if h.get("superseded") else "")
            + " (the shipped base and teacher evaluations not counted)")


def render_markdown(doc: dict) -> str:
    lines = ["# DiffusionOPD's claims, re-tested", "",
             f"Reproduce: `{doc['command']}`. Runs: {len(doc['runs']['done'])} finished, {len(doc['runs']['partial'])} "
             f"partial, {len(doc['runs']['missing'])} missing; {hours_text(doc)}.", "",
             "**Verdict rule.** " + doc["verdict_rule"], "", "| claim | verdict | evidence |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in summary_table(doc)]
    lines += ["", "## Every sub-claim", "", "**Eval-seed halves.** " + doc.get("seed_split_rule", ""), "",
              "| claim | part | paper | measured | verdict | eval-seed halves |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['claim']} | {r['part']} | {r['paper']} | {_fmt(r['measurement'])}"
              f"{'; ' + r['measurement']['detail'] if r['measurement'] else ''} | **{_verdict_cell(r)}** |"
              f" {_split_cell(r)} |" for r in doc["claims"]]
    lines += ["", "## Threats to validity", ""] + [t if t.startswith("  -") else f"- {t}" for t in doc["threats"]]
    if doc["runs"]["missing"] or doc["runs"]["partial"]:
        lines += ["", "## Runs not finished", "", ", ".join(doc["runs"]["partial"] + doc["runs"]["missing"])]
    return "\n".join(lines) + "\n"


def render_html(doc: dict) -> str:
    import html

    def table(head, rows):
        h = "".join(f"<th>{html.escape(x)}</th>" for x in head)
        b = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"

    sub = [[r["claim"], r["part"], r["paper"], _fmt(r["measurement"]), _verdict_cell(r), _split_cell(r)]
           for r in doc["claims"]]
    return ("<!doctype html><html><head><meta charset='utf-8'><title>DiffusionOPD claims</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{border:1px solid #ccc;padding:4px 8px;"
            "vertical-align:top}table{border-collapse:collapse;margin:1em 0}</style></head><body>"
            "<h1>DiffusionOPD's claims, re-tested</h1>"
            f"<p>Reproduce: <code>{html.escape(doc['command'])}</code>; {html.escape(hours_text(doc))}.</p>"
            f"<p><b>Verdict rule.</b> {html.escape(doc['verdict_rule'])}</p>"
            + table(["claim", "verdict", "evidence"], summary_table(doc)) + "<h2>Every sub-claim</h2>"
            + table(["claim", "part", "paper", "measured", "verdict", "eval-seed halves"], sub)
            + "<h2>Threats to validity</h2><ul>"
            + "".join(f"<li>{html.escape(t)}</li>" for t in doc["threats"]) + "</ul></body></html>")
