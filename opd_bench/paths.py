"""Where the repository's released assets live (checkpoints, prompt sets, configs, baselines).

The asset root is, in order: ``$OPD_BENCH_HOME`` when set; the source checkout the package was imported from
(an editable install or ``PYTHONPATH``); the current directory when it holds ``checkpoints/`` and ``tasks/`` (a
clone used with a non-editable install). ``asset_root_problem()`` says in one line why no root was found.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ASSET_DIRS = ("checkpoints", "tasks", "configs")


def _has_assets(root: Path) -> bool:
    return all((root / d).is_dir() for d in ASSET_DIRS)


def find_asset_root(env: str | None = None, cwd: Path | None = None) -> Path:
    """The asset root (see the module docstring); the source checkout's parent when nothing has the assets."""
    env = os.environ.get("OPD_BENCH_HOME") if env is None else env
    if env:
        return Path(env).expanduser().resolve()
    for root in (PACKAGE_DIR.parent, (cwd or Path.cwd()).resolve()):
        if _has_assets(root):
            return root
    return PACKAGE_DIR.parent


def asset_root_problem(root: Path) -> str | None:
    """None when ``root`` holds the released assets, else one line saying what to do."""
    if _has_assets(root):
        return None
    missing = ", ".join(d + "/" for d in ASSET_DIRS if not (root / d).is_dir())
    return (f"released assets not found under {root} (missing {missing}): run from a clone of the repository "
            f"or set OPD_BENCH_HOME to one")


REPO_ROOT = find_asset_root()
TASKS_DIR = REPO_ROOT / "tasks"            # prompt sets (datasets-loadable files)
CONFIGS_DIR = REPO_ROOT / "configs"
RELEASED_DIR = REPO_ROOT / "checkpoints"   # released safetensors checkpoints
BASELINES_DIR = REPO_ROOT / "baselines"
REPORTS_DIR = REPO_ROOT / "reports"


def is_run_dir(path: Path) -> bool:
    """A run folder: it holds the run's config.yaml and ledger.json."""
    return (Path(path) / "config.yaml").is_file() and (Path(path) / "ledger.json").is_file()
