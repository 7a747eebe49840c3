"""The task registry. Every module in this package that defines a ``@register_task`` class is a task:
adding a task is adding one file here."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Dict, List

from ..errors import UserError
from .base import PromptRecord, Task, register_task, registry

_loaded = False


def _discover() -> None:
    global _loaded
    if _loaded:
        return
    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("base",) and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True


def task_names() -> List[str]:
    _discover()
    return sorted(registry())


def parse_tasks(spec, world: str = "embedded") -> List[str]:
    """``all`` (every task of ``world``) or a comma list (str or list) -> validated task names in order."""
    names = task_names()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [s.strip() for s in items if s and s.strip()]
    if not items:
        raise UserError("no tasks given (use --tasks all or a comma list, e.g. ocr,geneval)")
    if items == ["all"]:
        return [n for n in names if getattr(registry()[n], "world", "embedded") == world]
    unknown = [s for s in items if s not in names]
    if unknown:
        raise UserError(f"unknown task {unknown[0]!r} (available: {', '.join(names) or 'none'}, or 'all')")
    return list(dict.fromkeys(items))


_instances: Dict[str, Task] = {}
_options: Dict[str, dict] = {}


def configure_tasks(options: Dict[str, dict]) -> None:
    """Per-task constructor options (e.g. the real reward models' local paths from ``real_tasks``)."""
    for name, opts in options.items():
        if _options.get(name) != opts:
            _options[name] = dict(opts)
            _instances.pop(name, None)


def configure_run_tasks(cfg) -> None:
    """``configure_tasks`` from a run config: each real task's local paths (``real_tasks``) and the device of the
    reward models (``rewards.device``)."""
    from dataclasses import asdict

    configure_tasks({k: {**asdict(v), "device": cfg.rewards.device} for k, v in cfg.real_tasks.items()})


def get_task(name: str) -> Task:
    """The (cached) task instance for ``name``."""
    parse_tasks([name])
    if name not in _instances:
        _instances[name] = registry()[name](**_options.get(name, {}))
    return _instances[name]


__all__ = ["Task", "PromptRecord", "register_task", "task_names", "parse_tasks", "get_task", "configure_tasks", "configure_run_tasks"]
