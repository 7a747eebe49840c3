"""``opd-bench run --dry-run``: resolve what a run command would do -- methods, tasks, each method's recipe,
budget, teachers, run folders and the fully resolved config -- print it, and train nothing. Bad input fails
here exactly as the real run would (one line, exit 2)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from .backbones import resolve_checkpoint
from .config import RunConfig, dump_config
from .errors import UserError
from .paths import CONFIGS_DIR

#: per-method recipes chosen by ``opd-bench sweep`` (configs/recipes/<method>.yaml)
RECIPES_DIR = CONFIGS_DIR / "recipes"
TEACHER_METHODS = ("opd", "sft-distill")


def recipe_path(method: str) -> Path:
    return RECIPES_DIR / f"{method}.yaml"


def objective_of(cfg: RunConfig) -> str:
    """What a method optimises, in words (the RL objective of grpo / multi-reward / cascade)."""
    if cfg.method in ("opd", "sft-distill", "pretrain"):
        return {"opd": f"DiffusionOPD {cfg.opd.objective} ({cfg.opd.sampler})", "sft-distill": "flow matching on "
                "teacher samples", "pretrain": "flow matching"}[cfg.method]
    return {"grpo": "Flow-GRPO", "grpo-guard": "GRPO-Guard", "nft": "DiffusionNFT"}[
        cfg.method if cfg.method in ("nft", "grpo-guard") else cfg.grpo.objective]


def teachers_of(cfg: RunConfig, tasks: List[str], train_teachers: bool) -> dict:
    """{task: resolved teacher checkpoint} for methods that distill teachers; a missing one is one line."""
    if cfg.method not in TEACHER_METHODS:
        return {}
    out = {}
    for t in tasks:
        name = cfg.opd.teachers.get(t, f"teacher_{t}")
        if train_teachers:
            out[t] = f"(trained first with the {t} teacher recipe)"
            continue
        try:
            out[t] = str(resolve_checkpoint(name))
        except UserError:
            raise UserError(f"no teacher for task {t}: {name} not found (pass opd.teachers.{t}=PATH, or "
                            "--train-teachers)") from None
    return out


def describe(cfgs: List[RunConfig], dirs: List[Path], config: Optional[str], train_teachers: bool) -> str:
    """The plan as text: one block per run, then the resolved config of each method (first seed)."""
    from .methods.grpo import SINGLE_TASK, check_single_task
    from .tasks import parse_tasks
    from .train import world_of

    lines = [f"dry run: {len(cfgs)} run(s), nothing is trained"]
    shown = {}
    for c, d in zip(cfgs, dirs):
        tasks = parse_tasks(c.tasks, world_of(c))
        if c.method in SINGLE_TASK:
            check_single_task(c.method, tasks)
        try:
            student = str(resolve_checkpoint(c.model.checkpoint)) if c.model.backbone == "embedded" else c.model.checkpoint
        except UserError as e:
            raise UserError(f"model.checkpoint: {e}") from None
        rec = recipe_path(c.method)
        lines += [
            f"- {c.method} seed {c.seed} -> {d}",
            f"    objective: {objective_of(c)}; tasks: {', '.join(tasks)}",
            f"    budget: {c.budget.value:g} {c.budget.unit}; student: {student} ({c.model.backbone})",
            f"    recipe: {config or 'defaults'} + overrides" + (f" (sweep recipe available: {rec})" if rec.is_file() else ""),
        ]
        for t, p in teachers_of(c, tasks, train_teachers).items():
            lines.append(f"    teacher {t}: {p}")
        shown.setdefault(c.method, c)
    for m, c in shown.items():
        lines += [f"--- resolved config: {m} (seed {c.seed}) ---", dump_config(c).rstrip()]
    return "\n".join(lines)
