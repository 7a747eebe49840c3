"""The run config a command works under: ``--config`` / ``--set`` / ``--device`` of ``run``, ``eval``,
``report``, ``analyze``, ``check`` and ``compare`` go through :func:`command_config`, so every command configures
the real tasks (reward weights, prompt files) and the backbone (dtype, resolution, T5, LoRA settings of a raw
diffusers folder) exactly as ``run`` does."""
from __future__ import annotations

from typing import List, Optional, Sequence

from .config import RunConfig, load_config


def world_of(cfg: RunConfig) -> str:
    """``embedded`` (the project's own model) or ``real`` (a diffusers backbone): the tasks ``all`` may mean."""
    return "embedded" if cfg.model.backbone == "embedded" else "real"


def apply_config(cfg: RunConfig) -> RunConfig:
    """Make ``cfg`` the process's setting: real tasks get their local paths, and backbones loaded without
    explicit options (a raw diffusers folder: the base model) use its ``model`` section and device."""
    from .backbones import backbone_options, configure_loading
    from .tasks import configure_run_tasks

    configure_run_tasks(cfg)
    configure_loading(cfg.device, backbone_options(cfg.model))
    return cfg


def command_config(config: Optional[str], overrides: Sequence[str] = (), device: Optional[str] = None) -> RunConfig:
    """Load ``config`` (a path or a name under configs/; none = the defaults) with ``--set`` overrides and
    ``--device``, and apply it (:func:`apply_config`)."""
    extra = [f"device={device}"] if device else []
    return apply_config(load_config(config, list(overrides) + extra))


def resolve_tasks(spec: Optional[str], cfg: RunConfig) -> List[str]:
    """``--tasks``: a comma list, or ``all`` = the config's own task list when it names one, else every task of
    the config's world (embedded or real)."""
    from .tasks import parse_tasks

    if spec in (None, "", "all") and cfg.tasks != ["all"]:
        return parse_tasks(cfg.tasks, world_of(cfg))
    return parse_tasks(spec or "all", world_of(cfg))
