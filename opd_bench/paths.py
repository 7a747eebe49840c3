"""Where the repository's released assets live."""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
TASKS_DIR = REPO_ROOT / "tasks"            # prompt sets (datasets-loadable files)
CONFIGS_DIR = REPO_ROOT / "configs"
RELEASED_DIR = REPO_ROOT / "checkpoints"   # released safetensors checkpoints
BASELINES_DIR = REPO_ROOT / "baselines"
REPORTS_DIR = REPO_ROOT / "reports"


def is_run_dir(path: Path) -> bool:
    """A run folder: it holds the run's config.yaml and ledger.json."""
    return (Path(path) / "config.yaml").is_file() and (Path(path) / "ledger.json").is_file()
