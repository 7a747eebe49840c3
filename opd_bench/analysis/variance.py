"""Gradient variance of the training estimators at fixed parameters (method.md section 7).

At a checkpoint theta, K independent mini-batches (fresh prompts and noise) of n samples each give gradients
g_1..g_K of the trainable parameters (flattened) for each estimator:

- ``opd_ode``: closed-form DiffusionOPD, ODE student rollouts (mean matching);
- ``opd_sde``: closed-form DiffusionOPD, SDE student rollouts (exact Gaussian KL);
- ``opd_ppo``: PPO-style OPD on the SDE (advantage -KL_j at the sampled action, clipped surrogate);
- ``grpo``:    GRPO on its own objective (the task's reward; n = prompts x group size).

With g_bar = mean_k g_k: relative variance V = mean_k ||g_k - g_bar||^2 / ||g_bar||^2 and SNR = 1 / V; the
same per trained timestep (the gradient of that step's term only), and V against the batch size n.
Moments are accumulated in a streaming way (no K x D matrix is kept), so it also runs on large LoRAs.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..errors import UserError
from .interference import ANALYSIS_ROUND, GradContext, task_loss_and_grad

ESTIMATORS = ("opd_ode", "opd_sde", "opd_ppo", "grpo")


# ----------------------------------------------------------------------------------------------- pure math


def variance_stats(grads) -> Dict[str, float]:
    """V, SNR, ||g_bar||^2 and mean_k ||g_k - g_bar||^2 of K stacked gradients [K, D]."""
    G = torch.as_tensor(np.asarray(grads) if not torch.is_tensor(grads) else grads).double()
    G = G.reshape(G.shape[0], -1)
    m = GradMoments()
    for g in G:
        m.add(g)
    return m.stats()


class GradMoments:
    """Streaming moments of K gradients, kept per block (sample k goes to block k mod B) for a jackknife.

    Plain (plug-in) statistics: V = mean_k ||g_k - g_bar||^2 / ||g_bar||^2 and SNR = 1 / V. When the true mean
    gradient is small next to the noise, ||g_bar||^2 is mostly noise (E||g_bar||^2 = ||mu||^2 + tr(Sigma) / K) and
    V saturates at K - 1 whatever the estimator. The debiased statistic removes that term:
    S = sum_k ||g_k - g_bar||^2 / (K - 1) estimates tr(Sigma) without bias, ||mu||^2 is estimated by
    ||g_bar||^2 - S / K, and V_debiased = S / (||g_bar||^2 - S / K) (inf when the estimated signal is <= 0:
    "signal indistinguishable from 0"). Its 95% interval is a leave-one-block-out jackknife with a t quantile
    on B - 1 degrees of freedom."""

    def __init__(self, blocks: int = 8):
        self.blocks = max(1, int(blocks))
        self.k = 0
        self.sums: List[Optional[torch.Tensor]] = [None] * self.blocks
        self.sqs = [0.0] * self.blocks
        self.counts = [0] * self.blocks

    def add(self, g: torch.Tensor) -> None:
        g = g.detach().reshape(-1).double()
        b = self.k % self.blocks
        self.sums[b] = g.clone() if self.sums[b] is None else self.sums[b] + g
        self.sqs[b] += float(g @ g)
        self.counts[b] += 1
        self.k += 1

    @property
    def sum(self) -> torch.Tensor:
        return sum(s for s in self.sums if s is not None)

    @property
    def sq(self) -> float:
        return float(sum(self.sqs))

    def mean(self) -> torch.Tensor:
        return self.sum / self.k

    @staticmethod
    def _debiased(total: torch.Tensor, sq: float, k: int) -> float:
        if k < 2:
            return float("nan")
        mean = total / k
        mn2 = float(mean @ mean)
        s = max(0.0, (sq - k * mn2) / (k - 1))
        signal = mn2 - s / k
        return s / signal if signal > 0 else float("inf")

    def debiased_interval(self, alpha: float = 0.05) -> tuple:
        """(V_debiased, low, high) with the leave-one-block-out jackknife (nan bounds with < 2 filled blocks)."""
        from scipy import stats as st

        total, sq = self.sum, self.sq
        est = self._debiased(total, sq, self.k)
        used = [b for b in range(self.blocks) if self.counts[b] > 0]
        if len(used) < 2 or self.k - max(self.counts) < 2:
            return est, float("nan"), float("nan")
        loo = np.array([self._debiased(total - self.sums[b], sq - self.sqs[b], self.k - self.counts[b]) for b in used])
        if not np.isfinite(est) or not np.all(np.isfinite(loo)):
            return est, float("nan"), float("inf")
        n = len(used)
        se = float(np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2)))
        half = float(st.t.ppf(1 - alpha / 2, n - 1)) * se
        return est, max(0.0, est - half), est + half

    def stats(self) -> Dict[str, float]:
        if self.k == 0:
            return {"k": 0, "V": float("nan"), "SNR": float("nan"), "mean_norm2": float("nan"), "var": float("nan"),
                    "V_debiased": float("nan"), "V_debiased_low": float("nan"), "V_debiased_high": float("nan")}
        mean = self.mean()
        mn2 = float(mean @ mean)
        var = max(0.0, self.sq / self.k - mn2)
        vd, lo, hi = self.debiased_interval()
        return {
            "k": self.k, "mean_norm2": mn2, "var": var,
            "V": var / mn2 if mn2 > 0 else float("inf"),
            "SNR": mn2 / var if var > 0 else float("inf"),
            "V_debiased": vd, "V_debiased_low": lo, "V_debiased_high": hi,
            "signal_resolved": bool(np.isfinite(vd)),
        }


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = float(a.norm()), float(b.norm())
    return float(a @ b) / (na * nb) if na > 0 and nb > 0 else float("nan")


# ----------------------------------------------------------------------------------------------- estimators


def estimator_config(cfg, estimator: str, n: int):
    """A copy of ``cfg`` set up so one call of the estimator's loss uses ``n`` samples."""
    c = copy.deepcopy(cfg)
    c.grpo.inner_epochs = 1
    if estimator.startswith("opd_"):
        c.train.prompts_per_step = n
        c.opd.sampler = "ode" if estimator == "opd_ode" else "sde"
        c.opd.objective = "ppo" if estimator == "opd_ppo" else "closed_form"
        if c.opd.sampler == "sde" and c.opd.noise_level <= 0:
            raise UserError("the SDE estimators need opd.noise_level > 0")
    elif estimator == "grpo":
        group = max(2, min(c.grpo.group_size, n))
        if n % group:
            raise UserError(f"GRPO at {n} samples: not a multiple of the group size {group}")
        c.grpo.group_size = group
        c.train.prompts_per_step = n // group
    else:
        raise UserError(f"unknown estimator {estimator!r} (choose from {', '.join(ESTIMATORS)})")
    return c


def estimator_variance(ctx: GradContext, estimator: str, task: str, n: int, k: int, round0: int = ANALYSIS_ROUND) -> dict:
    """V / SNR of one estimator on one task with K mini-batches of n samples, overall and per trained step.
    Batch k uses round ``round0 + k`` (fresh prompts and noise, the same for every estimator)."""
    base_cfg = ctx.cfg
    ctx.cfg = estimator_config(base_cfg, estimator, n)
    ctx.record_steps = True
    ctx.freeze = False
    objective = "opd" if estimator.startswith("opd_") else "grpo"
    total = GradMoments()
    per_step: List[GradMoments] = []
    losses = []
    try:
        for b in range(k):
            loss, g = task_loss_and_grad(ctx, objective, task, round0 + b)
            total.add(g)
            losses.append(loss)
            for j, gj in enumerate(ctx.step_grads):
                if len(per_step) <= j:
                    per_step.append(GradMoments())
                per_step[j].add(gj)
    finally:
        ctx.cfg = base_cfg
        ctx.record_steps = False
        ctx.zero_grad()
    ts = ctx.timesteps
    steps = ctx.trained_steps()
    return {
        **total.stats(), "n": n, "loss_mean": float(np.mean(losses)),
        "per_step": [{"step": j, "t": float(ts[j]) if ts is not None else None, **m.stats()}
                     for j, m in zip(steps, per_step)],
        "_mean_grad": total.mean(),
    }


def variance_study(ctx: GradContext, tasks: Sequence[str], estimators: Sequence[str] = ESTIMATORS, k: int = 16,
                   batch_sizes: Sequence[int] = (2, 4, 8), progress=None) -> dict:
    """Every estimator on every task at every batch size (the headline numbers at the largest size), plus the
    cosine between the mean gradients of closed-form SDE OPD and PPO-style OPD (same objective: ~1)."""
    sizes = sorted(set(int(s) for s in batch_sizes))
    out = {"k": k, "batch_sizes": sizes, "tasks": list(tasks), "estimators": list(estimators), "results": {}}
    for task in tasks:
        res: Dict[str, dict] = {}
        means = {}
        for est in estimators:
            by_size = {}
            for n in sizes:
                if progress:
                    progress(f"{task}: {est} at {n} samples x {k} batches")
                r = estimator_variance(ctx, est, task, n, k)
                means[(est, n)] = r.pop("_mean_grad")
                by_size[n] = r
            head = by_size[sizes[-1]]
            res[est] = {**{kk: v for kk, v in head.items()},
                        "by_batch_size": {str(n): {"V": by_size[n]["V"], "SNR": by_size[n]["SNR"]} for n in sizes}}
        n = sizes[-1]
        if ("opd_sde", n) in means and ("opd_ppo", n) in means:
            res["cos_mean_opd_sde_vs_ppo"] = cosine(means[("opd_sde", n)], means[("opd_ppo", n)])
        out["results"][task] = res
    return out


def write_variance(result: dict, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from ..checkpoint import atomic_write_json

    p = out_dir / "variance.json"
    atomic_write_json(p, _jsonable(result))
    plot_variance(result, out_dir)
    return p


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None if np.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _f(v) -> float:
    if v is None:
        return float("nan")
    if isinstance(v, str):
        return float(v)
    return float(v)


# ----------------------------------------------------------------------------------------------- plots


def plot_variance(result: dict, out_dir: Path, prefix: str = "variance") -> List[Path]:
    """<prefix>_overall.png (V per estimator and task, log scale), <prefix>_per_step.png (V per trained step),
    <prefix>_batch.png (V against the batch size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    tasks, ests = result["tasks"], result["estimators"]
    paths = []

    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 + 0.6 * len(tasks) * max(1, len(ests))), 3.8))
    w = 0.8 / max(1, len(ests))
    for e_i, est in enumerate(ests):
        vals = [_f(result["results"][t].get(est, {}).get("V")) for t in tasks]
        ax.bar(np.arange(len(tasks)) + e_i * w, vals, width=w, label=est)
    ax.set_xticks(np.arange(len(tasks)) + w * (len(ests) - 1) / 2, tasks)
    ax.set_yscale("log")
    ax.set_ylabel("relative variance V (log)")
    ax.set_title(f"gradient relative variance, {result['batch_sizes'][-1]} samples/batch, K={result['k']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / f"{prefix}_overall.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.6), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        for est in ests:
            ps = result["results"][t].get(est, {}).get("per_step", [])
            ax.plot([p["step"] for p in ps], [_f(p["V"]) for p in ps], marker="o", label=est)
        ax.set_yscale("log")
        ax.set_xlabel("trained step j (0 = noise)")
        ax.set_ylabel("relative variance V (log)")
        ax.set_title(f"{t}: per-timestep V")
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / f"{prefix}_per_step.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.6), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        for est in ests:
            bs = result["results"][t].get(est, {}).get("by_batch_size", {})
            xs = sorted(int(n) for n in bs)
            ax.plot(xs, [_f(bs[str(n)]["V"]) for n in xs], marker="o", label=est)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("samples per mini-batch")
        ax.set_ylabel("relative variance V (log)")
        ax.set_title(f"{t}: V vs batch size")
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / f"{prefix}_batch.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def variance_ratio(task_result: dict, pair: Sequence[str]) -> Optional[float]:
    """V(pair[0]) / V(pair[1]) on one task of a study (:func:`variance_study`, or its JSON read back): the debiased
    relative variances where both are resolved; where one is not (its mean gradient's estimated signal <= 0: V
    infinite), the plug-in V of both, which cannot exceed K - 1 and so understates the noisier estimator's
    variance -- a ratio pulled towards 1, conservative against either side. None when a plug-in V is 0 or missing."""
    a, b = (task_result[e] for e in pair)
    ok = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0
    if ok(a.get("V_debiased")) and ok(b.get("V_debiased")):
        return float(a["V_debiased"]) / float(b["V_debiased"])
    return float(a["V"]) / float(b["V"]) if ok(a.get("V")) and ok(b.get("V")) else None


def load_variance(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"--variance: cannot read {path}: {e}") from None
