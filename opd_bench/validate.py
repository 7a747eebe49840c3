"""Input validation done before any work: run names, output locations, numbers, devices; and the guards of a
running job (non-finite losses, gradients, rewards and weights; JSON that stays JSON).

Every check raises :class:`~opd_bench.errors.UserError` with one line naming the input and what to do.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional

from .errors import NonFiniteError, UserError

#: seeds (run and eval) are in [0, MAX_SEED] (torch and numpy accept them; the ledger of a seed sweep stays sane)
MAX_SEED = 2**32 - 1
#: longest run / report / release name (a folder name; staging names add a few characters, 255 is the limit)
MAX_NAME = 100
#: largest budget per ledger unit (finite and reachable; larger ones are a typo that would train forever)
MAX_BUDGET = {"images": 1e12, "student_nfe": 1e15, "nfe": 1e15, "flops": 1e30, "seconds": 1e8,
              "optimizer_steps": 1e10}

_BAD_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


def run_name(name: str, what: str = "--name") -> str:
    """A run (or report, release) name must be one folder name: no path separator, no '..', no control
    characters, at most MAX_NAME characters."""
    if not name or not name.strip():
        raise UserError(f"{what}: empty name; give a folder name such as my_run")
    if _BAD_NAME.search(name) or name in (".", "..") or name != name.strip() or name.startswith("-"):
        raise UserError(f"{what}: {name!r} is not a single folder name (no '/', '\\', '..', leading '-', "
                        "surrounding spaces or control characters); give a name such as my_run")
    if len(name) > MAX_NAME:
        raise UserError(f"{what}: name is {len(name)} characters long, at most {MAX_NAME} allowed")
    return name


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and not p.is_symlink():
        if p.parent == p:
            break
        p = p.parent
    return p


def _probe_write(folder: Path) -> Optional[str]:
    """None when a file can be created in ``folder``, else the OS's reason (the probe file is removed)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".opd-bench-probe.", dir=folder)
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    os.unlink(name)
    return None


def output_dir(path, what: str) -> Path:
    """Check that folder ``path`` is, or can be created as, a writable folder -- before any work is done.
    Nothing is created (a probe file in the nearest existing folder is created and removed at once)."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{what}: {path} exists and is not a folder; give a folder path")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise UserError(f"{what}: cannot create {path}: {base} is not a folder; give another path")
    reason = _probe_write(base)
    if reason:
        raise UserError(f"{what}: cannot write to {base} ({reason}); give a writable location")
    return path


def output_file(path, what: str) -> Path:
    """Check that file ``path`` can be written (its folder exists or can be made, it is not a folder)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{what}: {path} is a folder; give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{what}: {path} is not writable; give a writable location")
    output_dir(path.parent, what)
    return path


def input_file(path, what: str) -> Path:
    """An existing, readable file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{what}: file not found: {path}")
    if not path.is_file():
        raise UserError(f"{what}: {path} is not a file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{what}: {path} is not readable (permission denied)")
    return path


def seed(value: int, what: str = "--seed") -> int:
    if not 0 <= value <= MAX_SEED:
        raise UserError(f"{what}: must be in [0, {MAX_SEED}] (got {value})")
    return value


def budget(value: float, unit: str, what: str = "--budget") -> None:
    """A budget is a finite positive number no larger than :data:`MAX_BUDGET` of its unit."""
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"{what}: must be a finite positive number (got {value})")
    top = MAX_BUDGET.get(unit)
    if top is not None and value > top:
        raise UserError(f"{what}: {value:g} {unit} is beyond the largest budget ({top:g} {unit}); give a smaller one")


def device_string(device: str) -> str:
    """A torch device string (``cpu``, ``cuda``, ``cuda:1``, ``mps``); raises UserError for a malformed one."""
    import torch

    try:
        torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"device: {device!r} is not a device (use cpu, cuda, cuda:N or mps)") from None
    return device


def device_available(device: str, what: str = "device") -> str:
    """The device exists on this machine (a CUDA device needs a GPU, ``cuda:N`` needs N + 1 of them)."""
    import torch

    d = torch.device(device_string(device))
    if d.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UserError(f"{what}: {device} requested but no CUDA GPU is available here; use --set device=cpu")
        if d.index is not None and d.index >= n:
            raise UserError(f"{what}: {device} requested but only {n} CUDA GPU(s) are available")
    elif d.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UserError(f"{what}: mps requested but it is not available here; use --set device=cpu")
    elif d.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"{what}: device type {d.type!r} is not supported (use cpu, cuda or mps)")
    return device


# ------------------------------------------------------------------------------------------ running guards


def finite_json(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, +-inf; numpy scalars too) replaced by None, so that the JSON
    written is strict JSON (no NaN / Infinity tokens)."""
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if isinstance(obj, float) or type(obj).__name__ in ("float32", "float64", "float16"):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def require_finite(what: str, value) -> None:
    """Raise :class:`NonFiniteError` when the scalar or tensor ``value`` holds a NaN or an infinity."""
    import torch

    if torch.is_tensor(value):
        ok = bool(torch.isfinite(value).all())
    else:
        ok = math.isfinite(float(value))
    if not ok:
        raise NonFiniteError(f"{what} is not finite")


def require_finite_tensors(what: str, tensors: Iterable) -> None:
    """All ``tensors`` finite (one fused check), else :class:`NonFiniteError`."""
    import torch

    ts = [t.detach() for t in tensors]
    if ts and not bool(torch.stack([torch.isfinite(t).all() for t in ts]).all()):
        raise NonFiniteError(f"{what} are not finite")


#: training diagnostics that must stay finite (the others, e.g. GRPO's ratio_first, may be NaN by design)
GUARDED_METRICS = ("loss", "policy_loss", "kl", "grad_norm", "reward")


def check_train_info(info: dict) -> None:
    """Every loss / gradient-norm / reward entry of a round's diagnostics is finite."""
    for k, v in info.items():
        if k.split("/")[0] in GUARDED_METRICS:
            require_finite(k, v)


# ------------------------------------------------------------------------------------------------ run preflight

#: config keys that ``opd-bench run`` sets from its own options (a --set of them would be silently replaced)
_RUN_OPTION_KEYS = {"seed": "--first-seed / --seeds", "method": "--method", "tasks": "--tasks", "name": "--name"}


def run_overrides(overrides: Iterable[str]) -> None:
    """``--set`` must not set what ``run``'s own options set (it would be ignored)."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in _RUN_OPTION_KEYS:
            raise UserError(f"--set {key}=...: {key} is set by {_RUN_OPTION_KEYS[key]} (use that option instead)")


def eval_doc(data, path) -> dict:
    """The shape of an ``eval.json`` (``opd-bench eval``): {"protocol": {...}, "tasks": {task: {"per_prompt":
    [{"prompt": str, metric: number, ...}]}}}; anything else is one UserError naming the file and the field."""
    def bad(what):
        raise UserError(f"{path}: not an eval.json written by opd-bench eval ({what}); re-run opd-bench eval")

    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict) or not isinstance(data.get("protocol"), dict):
        bad("no 'tasks' / 'protocol' mappings")
    if not isinstance(data.get("checkpoint", {}), dict):
        bad("'checkpoint' is not a mapping")
    for task, entry in data["tasks"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("per_prompt", []), list):
            bad(f"tasks.{task} has no per_prompt list")
        for i, row in enumerate(entry.get("per_prompt", [])):
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                bad(f"tasks.{task}.per_prompt[{i}] has no prompt")
            for k, v in row.items():
                if k != "prompt" and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                    bad(f"tasks.{task}.per_prompt[{i}].{k} is not a finite number: {v!r}")
    return data
