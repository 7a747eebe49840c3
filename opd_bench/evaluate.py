"""Evaluation of a model under an :class:`~opd_bench.protocol.EvalProtocol` (a split's prompts, several noise seeds
per prompt, ODE with more steps than training rollouts, noise seeded by (prompt, seed index) only), shared by
``opd-bench eval``, the runner's evaluations and the regression gate."""
from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .backbones.base import Backbone
from .checkpoint import atomic_write_json
from .errors import UserError
from .precision import sampling_precision
from .progress import progress_bar
from .protocol import EvalProtocol, label as protocol_label
from .rollout import rollout
from .stats import bootstrap_ci, stratified_bootstrap_ci
from .tasks import get_task


def select_records(records: List[dict], k: int) -> List[dict]:
    """``k`` records spread evenly over the list (all when k <= 0 or k >= len)."""
    if k <= 0 or k >= len(records):
        return list(records)
    idx = np.linspace(0, len(records) - 1, k).round().astype(int)
    return [records[i] for i in idx]


def prompt_noise(seed: int, task: str, index: int, shape: Sequence[int]) -> torch.Tensor:
    """The initial noise of eval prompt ``index`` of ``task``: a function of (seed, task, index) only, so a
    prompt's sample does not depend on batching, on the model or on which other prompts are evaluated (seed
    index ``j`` of a protocol uses ``seed + j``)."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(task.encode()) * 7919 + index) % (2**63))
    return torch.randn(tuple(shape), generator=g)


def eval_row(results: Dict[str, dict], label: str, protocol: EvalProtocol) -> dict:
    """An eval-history row's scores (the runner's ``eval_history.jsonl`` shape) from per-task results."""
    return {"label": label, "protocol": protocol_label(protocol), "split": protocol.split,
            "scores": {t: v["mean"] for t, v in results.items()},
            "ci": {t: [v["ci_low"], v["ci_high"]] for t, v in results.items()},
            "metrics": {t: v.get("metrics") or {} for t, v in results.items()},
            "metric_ci": {t: v["metric_ci"] for t, v in results.items() if "metric_ci" in v},
            "categories": {t: {c: x["mean"] for c, x in v.get("categories", {}).items()} for t, v in results.items()}}


def first_images(model: Backbone, task: str, protocol: EvalProtocol, n: int) -> torch.Tensor:
    """The first ``n`` images :func:`evaluate` draws for ``task`` under ``protocol`` (its first prompts at seed
    index 0, the same noises), without scoring anything: a sample grid for an evaluation served from the cache."""
    records = select_records(get_task(task).prompts(protocol.split), protocol.prompts_per_task)[:n]
    noises = torch.stack([prompt_noise(protocol.seed, task, i, model.latent_shape) for i in range(len(records))])
    return generate(model, [r["prompt"] for r in records], noises, protocol)


def generate(model: Backbone, prompts: List[str], noises: torch.Tensor, protocol: EvalProtocol,
             on_batch=None) -> torch.Tensor:
    """ODE samples (images in [0, 1]) for prompts from the given initial noises, in batches
    (``on_batch(n)`` is called after each batch of n images, e.g. to advance a progress bar). Prompts are encoded
    outside inference mode and in float32 whatever ``protocol.dtype``: their encodings are cached and shared with
    training and with float32 evaluations. The sampler runs in inference mode (the same numbers as no_grad)."""
    out = []
    for s in range(0, len(prompts), protocol.batch_size):
        cond = model.encode_prompts(prompts[s : s + protocol.batch_size])
        with torch.inference_mode(), sampling_precision(model.device, protocol.dtype):
            r = rollout(model, cond, steps=protocol.steps, guidance=protocol.guidance, noise_level=0.0,
                        shift=protocol.shift, x_init=noises[s : s + protocol.batch_size], keep_states=False)
        out.append(r.images.float().cpu().clone())   # a normal tensor again (usable outside inference mode)
        if on_batch is not None:
            on_batch(len(out[-1]))
    return torch.cat(out)


def summarize_task(task, records: List[dict], per_sample: Dict[str, np.ndarray], n_boot: int, seed: int) -> dict:
    """Task summary: primary score mean + 95% CI; per-category breakdown where the task has categories
    (then the overall score is the mean of the category means, as GenEval reports it)."""
    score = per_sample[task.primary_metric]
    out = {"n": len(records), "metrics": {k: float(np.mean(v)) for k, v in per_sample.items()},
           # every metric's plain mean (``metrics``) with its 95% interval: a gold scorer's, for one, is the
           # headline's interval (report.references.headline_ci)
           "metric_ci": {k: list(bootstrap_ci(v, n_boot, seed)) for k, v in per_sample.items()}}
    cat_key = getattr(task, "category_key", None)
    if cat_key:
        cats: Dict[str, list] = {}
        for r, s in zip(records, score):
            cats.setdefault(str(r.get(cat_key)), []).append(float(s))
        out["categories"] = {}
        for c, vals in sorted(cats.items()):
            lo, hi = bootstrap_ci(vals, n_boot, seed)
            out["categories"][c] = {"mean": float(np.mean(vals)), "ci_low": lo, "ci_high": hi, "n": len(vals)}
        # categories reported on their own rows only (GenEval's held-out compositions) stay out of the score
        scored = {c: v for c, v in cats.items() if c not in getattr(task, "separate_categories", ())} or cats
        out["mean"] = float(np.mean([np.mean(v) for v in scored.values()]))
        out["ci_low"], out["ci_high"] = stratified_bootstrap_ci(scored, n_boot, seed)
    else:
        out["mean"] = float(np.mean(score))
        out["ci_low"], out["ci_high"] = bootstrap_ci(score, n_boot, seed)
    return out


def evaluate(
    model: Backbone,
    tasks: Sequence[str],
    protocol: EvalProtocol,
    out_dir: Optional[Path] = None,
    show_progress: bool = True,
    keep_images: bool = False,
    checkpoint: Optional[dict] = None,
    label: Optional[str] = None,
    dist=None,
) -> dict:
    """Evaluate ``model`` on every task; returns (and optionally writes) the results dict.
    ``checkpoint`` (e.g. name and sha256) is recorded in it as provenance; ``label`` names the model in the
    progress lines (default: the checkpoint's name). ``dist`` (``opd_bench.distributed.Dist``): every rank samples
    and scores its contiguous part of each task's prompts and the per-sample metrics are gathered, so every
    rank returns the single-process result (each sample's noise depends only on its prompt's index)."""
    label = label or (checkpoint or {}).get("name") or "model"
    results = {"protocol": protocol.to_dict(), "protocol_label": protocol_label(protocol), "tasks": {}, "timing": {}}
    if checkpoint:
        results["checkpoint"] = checkpoint
    images_by_task = {}
    model.eval()
    with progress_bar(show_progress) as bar:
        for k, name in enumerate(tasks):
            task = get_task(name)
            records = select_records(task.prompts(protocol.split), protocol.prompts_per_task)
            if not records:
                raise UserError(f"task {name}: no {protocol.split} prompts")
            n_seeds = protocol.seeds(name)
            # sharded over processes by prompt (each rank a contiguous part); the noise of (prompt i, seed j)
            # depends only on i and j, so every rank count gives the single-process samples
            sharded = dist is not None and dist.enabled and len(records) >= dist.world_size
            part = dist.split(len(records)) if sharded else slice(None)
            mine = records[part]
            # prompt-major: sample (i, j) is prompt i at seed index j
            flat = [r for r in mine for _ in range(n_seeds)]
            named = protocol_label(protocol)
            head = (f"eval {label} · {name} ({k + 1}/{len(tasks)}, "
                    + (f"{named} protocol: " if named in ("quick", "full") else "")
                    + f"{len(records)} {protocol.split} prompts x {n_seeds} seed{'s' if n_seeds > 1 else ''})")
            job = bar.add_task(f"{head}: sampling", total=len(flat))
            t0 = time.time()
            noises = torch.stack([prompt_noise(protocol.seed + j, name, i, model.latent_shape)
                                  for i in range(len(records))[part] for j in range(n_seeds)])
            images = generate(model, [r["prompt"] for r in flat], noises, protocol,
                              on_batch=lambda n: bar.update(job, advance=n))
            bar.remove_task(job)
            t1 = time.time()
            job = bar.add_task(f"{head}: scoring", total=len(flat))
            metrics = {}
            with torch.no_grad():
                for s in range(0, len(flat), protocol.batch_size):
                    m = task.metrics(images[s : s + protocol.batch_size], flat[s : s + protocol.batch_size])
                    for key, v in m.items():
                        metrics.setdefault(key, []).append(torch.as_tensor(v).float().cpu())
                    bar.update(job, advance=len(flat[s : s + protocol.batch_size]))
            bar.remove_task(job)
            gather = dist.gather_rows if sharded else (lambda t: t)
            per_seed = {key: gather(torch.cat(v)).numpy().reshape(len(records), n_seeds) for key, v in metrics.items()}
            per_sample = {key: v.mean(axis=1) for key, v in per_seed.items()}   # prompt means over the seeds
            t2 = time.time()
            summary = summarize_task(task, records, per_sample, protocol.bootstrap, protocol.seed)
            summary["split"], summary["seeds_per_prompt"] = protocol.split, n_seeds
            summary["images"] = len(records) * n_seeds   # every process's share: counted once
            summary["per_prompt"] = [
                {"prompt": r["prompt"], **{key: float(v[i]) for key, v in per_sample.items()}} for i, r in enumerate(records)
            ]
            if n_seeds > 1:   # every draw: per metric, one list of n_seeds scores per prompt (per_prompt's order)
                summary["per_seed"] = {key: [[float(x) for x in row] for row in v] for key, v in per_seed.items()}
            results["tasks"][name] = summary
            results["timing"][name] = {"sample_s": round(t1 - t0, 2), "score_s": round(t2 - t1, 2),
                                       "score_ms_per_image": round(1000 * (t2 - t1) / len(flat), 2)}
            images_by_task[name] = (images[::n_seeds], mine, per_seed[task.primary_metric][part, 0])
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_dir / "eval.json", results)
        for name, (images, records, score) in images_by_task.items():
            save_grid(images[:16], [r["prompt"] for r in records[:16]], score[:16], out_dir / f"samples_{name}.png")
    if keep_images:
        results["_images"] = images_by_task
    return results


def save_grid(images: torch.Tensor, captions: List[str], scores, path: Path, cols: int = 4) -> Path:
    """A readable PNG grid of samples (nearest-neighbour upscaled) with prompts and scores as titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    rows = max(1, (n + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.2, rows * 2.5))
    for k, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k].permute(1, 2, 0).numpy(), interpolation="nearest")
            title = captions[k] if len(captions[k]) <= 28 else captions[k][:26] + "…"
            ax.set_title(f"{title}\n{float(scores[k]):.2f}", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def results_table(results: Dict[str, dict], title: str = "evaluation"):
    """A rich table: rows = tasks (+ GenEval categories), columns = the evaluated models."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("task")
    labels = list(results)
    for lab in labels:
        table.add_column(lab, justify="right")
    first = results[labels[0]]["tasks"]
    for name in first:
        cells = []
        for lab in labels:
            t = results[lab]["tasks"].get(name)
            cells.append("-" if t is None else f"{t['mean']:.3f} [{t['ci_low']:.3f}, {t['ci_high']:.3f}]")
        table.add_row(f"[bold]{name}", *cells)
        for cat in first[name].get("categories", {}):
            cells = []
            for lab in labels:
                c = results[lab]["tasks"].get(name, {}).get("categories", {}).get(cat)
                cells.append("-" if c is None else f"{c['mean']:.3f}")
            table.add_row(f"  {cat}", *cells)
    return table
