"""Evaluations of fixed checkpoints, computed once: cached by (model digest, evaluation protocol, task).

Two tiers are read, in order: the local cache (``runs/.eval_cache/``, or ``$OPD_BENCH_EVAL_CACHE``; written) and
the evaluations shipped with the released checkpoints (``checkpoints/evals/``; read-only; ``scripts/ship_evals.py``
writes them, ``index.json`` says which checkpoint, task and protocol each holds), so that the final table's base
and teacher columns and the report's teacher scores are never re-scored under the default protocol. A digest covers the weights (and, for a raw diffusers folder, the build options), and the
protocol covers everything that decides the samples (prompts, seeds, steps, guidance, shift), so an entry can
only be reused for exactly the evaluation it records.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .checkpoint import atomic_write_json
from .evaluate import EvalProtocol, evaluate
from .paths import RELEASED_DIR

#: the local, writable cache (relative to the working directory)
EVAL_CACHE = Path("runs") / ".eval_cache"
#: evaluations shipped with the released checkpoints (read-only; ``scripts/ship_evals.py`` writes them)
SHIPPED_EVALS = RELEASED_DIR / "evals"


def eval_cache_dir() -> Path:
    return Path(os.environ.get("OPD_BENCH_EVAL_CACHE") or EVAL_CACHE)


def cache_key(checkpoint, protocol: EvalProtocol, options: Optional[dict] = None) -> str:
    from .backbones import model_digest, resolve_checkpoint

    digest = model_digest(resolve_checkpoint(checkpoint), options)
    return hashlib.sha256((digest + json.dumps(protocol.to_dict(), sort_keys=True)).encode()).hexdigest()[:20]


def lookup(checkpoint, tasks: Sequence[str], protocol: EvalProtocol, options: Optional[dict] = None) -> Dict[str, dict]:
    """The cached per-task results of ``checkpoint`` under ``protocol`` (either tier); tasks without one are absent."""
    from .backbones import resolve_checkpoint

    key = cache_key(resolve_checkpoint(checkpoint), protocol, options)
    out = {}
    for t in tasks:
        hit = next((f for f in (eval_cache_dir() / f"{key}_{t}.json", SHIPPED_EVALS / f"{key}_{t}.json")
                    if f.is_file()), None)
        if hit is not None:
            out[t] = json.loads(hit.read_text())
    return out


def store(checkpoint, protocol: EvalProtocol, results: Dict[str, dict], options: Optional[dict] = None) -> None:
    """Cache per-task results of ``checkpoint`` under ``protocol`` in the local tier."""
    from .backbones import resolve_checkpoint

    key = cache_key(resolve_checkpoint(checkpoint), protocol, options)
    cache = eval_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    for t, res in results.items():
        atomic_write_json(cache / f"{key}_{t}.json", res)


def evaluate_cached(checkpoint, tasks: Sequence[str], protocol: EvalProtocol, device="cpu",
                    options: Optional[dict] = None, show_progress: bool = True,
                    label: Optional[str] = None) -> Tuple[Dict[str, dict], List[str]]:
    """(per-task results, the tasks that had to be computed now). ``options`` build a raw diffusers folder (the
    real backend's base model, :func:`~opd_bench.backbones.backbone_options`)."""
    from .backbones import load_backbone, resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    out = lookup(path, tasks, protocol, options)
    todo = [t for t in tasks if t not in out]
    if todo:
        res = evaluate(load_backbone(path, device, options), todo, protocol, show_progress=show_progress,
                       label=label or path.name)
        store(path, protocol, {t: res["tasks"][t] for t in todo}, options)
        out.update({t: res["tasks"][t] for t in todo})
    return out, todo


def cached_eval(checkpoint, tasks: Sequence[str], protocol: EvalProtocol, device="cpu",
                options: Optional[dict] = None) -> Dict[str, dict]:
    """Per-task results of ``checkpoint`` under ``protocol``, from a cache tier or computed (and cached) now."""
    return evaluate_cached(checkpoint, tasks, protocol, device, options)[0]
