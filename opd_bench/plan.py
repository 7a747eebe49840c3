"""``opd-bench run --dry-run``: resolve what a run command would do -- methods, tasks, each method's recipe,
budget, teachers, run folders and the fully resolved config -- print it, and train nothing. Bad input fails
here exactly as the real run would (one line, exit 2)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

from .backbones import resolve_checkpoint
from .config import RunConfig, dump_config
from .errors import UserError
from .methods import method_class
from .paths import CONFIGS_DIR
from .teachers import resolve_teachers

#: per-method recipes chosen by ``opd-bench sweep`` (configs/recipes/<method>.yaml); OPD_BENCH_RECIPES_DIR puts
#: them elsewhere (the test suite points it at an empty folder: its small runs test code paths, not the recipes)
RECIPES_DIR = Path(os.environ.get("OPD_BENCH_RECIPES_DIR") or CONFIGS_DIR / "recipes")


def recipe_path(method: str) -> Path:
    return RECIPES_DIR / f"{method}.yaml"


def recipe_for(method: str) -> Optional[Path]:
    """The tuned recipe ``opd-bench run --method <method>`` layers under --config, when ``opd-bench sweep`` wrote one."""
    path = recipe_path(method)
    return path if path.is_file() else None


def teachers_of(cfg: RunConfig, tasks: List[str], train_teachers: bool) -> dict:
    """{task: resolved teacher checkpoint} for methods that distill teachers; a missing one is one line."""
    if not method_class(cfg.method).uses_teachers:
        return {}
    if train_teachers:
        return {t: f"(trained first with the {t} teacher recipe)" for t in tasks}
    return {t: str(p) for t, p in resolve_teachers(cfg, tasks).items()}


def describe(cfgs: List[RunConfig], dirs: List[Path], config: Optional[str], train_teachers: bool,
             recipes: bool = True) -> str:
    """The plan as text: one block per run, then the resolved config of each method (first seed)."""
    from .tasks import parse_tasks
    from .train import world_of

    lines = [f"dry run: {len(cfgs)} run(s), nothing is trained"]
    shown = {}
    for c, d in zip(cfgs, dirs):
        tasks = parse_tasks(c.tasks, world_of(c))
        method = method_class(c.method)
        method.check(c, tasks)
        try:
            student = str(resolve_checkpoint(c.model.checkpoint)) if c.model.backbone == "embedded" else c.model.checkpoint
        except UserError as e:
            raise UserError(f"model.checkpoint: {e}") from None
        rec = recipe_for(c.method)
        recipe = str(rec) if recipes and rec else ("none" if recipes else "ignored (--no-recipe)")
        lines += [
            f"- {c.method} seed {c.seed} -> {d}",
            f"    objective: {method.objective_label(c)}; tasks: {', '.join(tasks)}",
            f"    config sections: {', '.join(method.config_sections) or '-'}; KL reference: "
            f"{'yes' if method.needs_reference(c) else 'no'}",
            f"    budget: {c.budget.value:g} {c.budget.unit}; student: {student} ({c.model.backbone})",
            f"    recipe: {recipe}; config: {config or 'defaults'} + overrides",
        ]
        for t, p in teachers_of(c, tasks, train_teachers).items():
            lines.append(f"    teacher {t}: {p}")
        shown.setdefault(c.method, c)
    for m, c in shown.items():
        lines += [f"--- resolved config: {m} (seed {c.seed}) ---", dump_config(c).rstrip()]
    return "\n".join(lines)
