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
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .checkpoint import atomic_write_json
from .protocol import EvalProtocol
from .paths import RELEASED_DIR

#: the local, writable cache (relative to the working directory)
EVAL_CACHE = Path("runs") / ".eval_cache"
#: evaluations shipped with the released checkpoints (read-only; ``scripts/ship_evals.py`` writes them)
SHIPPED_EVALS = RELEASED_DIR / "evals"


def eval_cache_dir() -> Path:
    return Path(os.environ.get("OPD_BENCH_EVAL_CACHE") or EVAL_CACHE)


def cache_key(checkpoint, protocol: EvalProtocol, options: Optional[dict] = None) -> str:
    from .backbones import model_digest, resolve_checkpoint

    return digest_key(model_digest(resolve_checkpoint(checkpoint), options), protocol.to_dict())


def digest_key(digest: str, protocol: dict) -> str:
    """The cache key of a model's digest (:func:`~opd_bench.backbones.model_digest`) under a protocol's dict."""
    return hashlib.sha256((digest + json.dumps(protocol, sort_keys=True)).encode()).hexdigest()[:20]


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
    from .evaluate import evaluate

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


# ------------------------------------------------------------------------------------------- run-folder records
# What a finished run's small files record about its final checkpoint (its final evaluation under a named protocol,
# its analyses), so that an archived copy of the folder without its weights (the claims campaign keeps only the small
# files across machine resets) still gives its part of `report` and `claims`.

#: a run's final-checkpoint evaluation under a protocol: {"digest", "protocol", "results", "seconds", "threads"}
RECORD = "claims_eval.json"
#: the analyses of a run's final checkpoint (each computed once, :func:`recorded`): gradient interference
#: (:func:`opd_bench.analysis.interference.recorded_interference`) and the claims' closed-form vs PPO-style
#: gradient-variance study (:func:`opd_bench.claims.run_analyses`)
INTERFERENCE_RECORD = "claims_interference.json"
VARIANCE_RECORD = "claims_variance.json"


def timed(compute: Callable[[], object]) -> Tuple[object, Dict[str, float]]:
    """(``compute()``, its cost ``{"seconds", "threads"}``): what a record keeps for the campaign's CPU hours."""
    import time

    import torch

    t0 = time.perf_counter()
    res = compute()
    return res, {"seconds": round(time.perf_counter() - t0, 2), "threads": torch.get_num_threads()}


def cost_hours(cost: dict) -> float:
    """CPU hours of a cost :func:`timed` recorded (no threads recorded: one)."""
    return float(cost.get("seconds", 0.0)) * int(cost.get("threads", 1)) / 3600.0


def add_costs(a: dict, b: dict) -> Dict[str, float]:
    """Two :func:`timed` costs as one (``cost_hours`` of the sum is the sum of theirs): at their thread count
    when they share it, else in CPU seconds (one thread)."""
    (sa, ta), (sb, tb) = ((float(c.get("seconds", 0.0)), int(c.get("threads", 1))) for c in (a, b))
    if ta == tb:
        return {"seconds": round(sa + sb, 2), "threads": ta}
    return {"seconds": round(sa * ta + sb * tb, 2), "threads": 1}


def recorded(path: Path, compute: Callable[[], dict]) -> dict:
    """``compute()`` (a JSON mapping) recorded once at ``path`` with its ``_cost`` (:func:`timed`), read back after."""
    path = Path(path)
    if path.is_file():
        return json.loads(path.read_text())
    res, cost = timed(compute)
    res = {**res, "_cost": cost}
    atomic_write_json(path, res)
    return res


def recorded_final(d: Path, tasks: Sequence[str], protocol: EvalProtocol) -> Optional[dict]:
    """Run ``d``'s :data:`RECORD` when it holds ``tasks`` under ``protocol`` (whichever weights it was of), else None."""
    rec = _read_record(Path(d) / RECORD)
    return rec if rec is not None and rec.get("protocol") == protocol.to_dict() and set(tasks) <= set(rec["results"]) \
        else None


def _read_record(path: Path) -> Optional[dict]:
    """The :data:`RECORD`-shaped mapping at ``path`` (a dict whose ``results`` is a dict), else None."""
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("results"), dict) else None


def _seeded(digest: str, protocol: dict) -> Path:
    return eval_cache_dir() / "records" / f"{digest_key(digest, protocol)}.json"


def seed_from_record(path: Path) -> bool:
    """Keep a copy of a run-folder :data:`RECORD` in the local cache tier, under the digest and protocol it
    records, so that :func:`final_results` of weights with that digest -- a run trained again bit for bit after
    its folder was lost, only its small files archived -- takes it (its cost included) instead of scoring again;
    a record of some of the tasks (a scoring killed part way) spares those.
    False for a file that is not a record."""
    rec = _read_record(path)
    ok = rec is not None and isinstance(rec.get("digest"), str) and isinstance(rec.get("protocol"), dict)
    if ok:   # the cache key needs the digest and the protocol, which a record read with its weights may lack
        atomic_write_json(_seeded(rec["digest"], rec["protocol"]), rec)
    return ok


def final_results(d: Path, tasks: Sequence[str], protocol: EvalProtocol, device="cpu") -> Dict[str, dict]:
    """Per-task results of run ``d``'s final checkpoint under ``protocol``, recorded in the run folder
    (:data:`RECORD`: the checkpoint's digest, the protocol, the results, the cost) so that the folder's small files
    alone (an archived copy whose weights are gone) still give its scores. Computed through the eval cache when the
    record is missing, is of other weights or another protocol, or lacks a task; a record read without the
    weights is one of the same protocol and tasks. The record is written after each task, so a scoring killed
    part way keeps its finished tasks: scoring the same weights again (in this folder, or after the folder was lost
    and the weights trained again bit for bit, :func:`seed_from_record`) computes only the rest, and the record's
    cost adds both parts."""
    from .backbones import model_digest
    from .errors import CheckpointError, UserError

    d = Path(d)
    rec = recorded_final(d, tasks, protocol)
    try:
        digest = model_digest(d / "final")
    except CheckpointError as e:
        if rec is not None:
            return {t: rec["results"][t] for t in tasks}
        raise UserError(f"run {d}: its final checkpoint cannot be read ({e}) and {d / RECORD} does not hold its "
                        "evaluation under this protocol: retrain it (move the folder away)") from None
    if rec is not None and rec.get("digest") == digest:
        return {t: rec["results"][t] for t in tasks}
    proto = protocol.to_dict()
    # what was scored of these weights before: in this folder by a scoring that was killed, or in a folder since
    # lost (the seeded record); the seeded one may be the whole evaluation
    priors = [r for r in (_record_of(d / RECORD, digest, proto), _record_of(_seeded(digest, proto), digest, proto))
              if r is not None]
    prior = max(priors, key=lambda r: len(r["results"]), default=None)
    results = dict(prior["results"]) if prior else {}
    cost = {"seconds": prior.get("seconds", 0.0), "threads": prior.get("threads", 1)} if prior else None
    todo = [t for t in tasks if t not in results]
    for t in todo:
        res, spent = timed(lambda: cached_eval(d / "final", [t], protocol, device))
        results[t] = res[t]
        cost = spent if cost is None else add_costs(cost, spent)
        atomic_write_json(d / RECORD, {"digest": digest, "protocol": proto, "results": results, **cost})
    if not todo and prior is not None:   # all from a lost folder's record: this folder records it too
        atomic_write_json(d / RECORD, {**prior, "digest": digest, "protocol": proto})
    return {t: results[t] for t in tasks}


def _record_of(path: Path, digest: str, protocol: dict) -> Optional[dict]:
    """The :data:`RECORD` at ``path`` when it is one of weights ``digest`` under ``protocol`` (any tasks), else None."""
    rec = _read_record(path)
    return rec if rec is not None and rec.get("digest") == digest and rec.get("protocol") == protocol else None
