"""Interference between tasks at a fixed set of parameters (method.md section 7; Yu et al. 2020, Fifty et al. 2021).

(a) Gradient conflict: per-task gradients g_i of the method's OWN loss (DiffusionOPD's closed-form loss of task
    i, or the GRPO loss of task i for multi-reward / cascade RL) on fixed fresh batches; cosine matrix C_ij,
    conflict rate (share of task pairs i < j with C_ij < 0), magnitude imbalance max ||g_i|| / min ||g_i||.
(b) Inter-task affinity by one-step lookahead: the run's own optimizer update on task j's gradient only (an
    AdamW step from the run's saved optimizer state at its lr, after its gradient clip: :func:`optimizer_update`;
    a fresh AdamW, i.e. its first step, for a checkpoint without a run), then Z_{j->i} = 1 - L_i(theta') /
    L_i(theta) on the same fixed batches. One definition for every method.
(c) Negative transfer vs the single-task teachers: per task, method score - teacher score (eval results).

The per-task losses run the methods' own code (``DiffusionOPD.task_loss``, ``grpo_step``) on a
:class:`GradContext`: a ``RunContext`` whose ``backward`` only accumulates gradients (and records each call),
whose ``optimizer_step`` never steps, and whose rollouts can be frozen so that a loss is re-evaluated after a
lookahead step on exactly the same batch.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..backbones import load_backbone
from ..config import RunConfig, build_config, load_config, to_dict
from ..errors import UserError
from ..ledger import Ledger
from ..runner import FINAL, STATE, RunContext, is_run_dir
from ..teachers import teacher_name

#: rounds used by analyses: far beyond any training round, so the batches are fresh (never trained on).
ANALYSIS_ROUND = 10_000_000


# ----------------------------------------------------------------------------------------------- pure math


def cosine_matrix(grads: Sequence[torch.Tensor]) -> np.ndarray:
    """C_ij = <g_i, g_j> / (||g_i|| ||g_j||) of flattened gradients (0 where a gradient is zero)."""
    G = torch.stack([g.reshape(-1).double() for g in grads])
    norms = G.norm(dim=1)
    dots = G @ G.T
    denom = norms[:, None] * norms[None, :]
    C = torch.where(denom > 0, dots / denom.clamp_min(1e-300), torch.zeros_like(dots))
    return C.numpy()


def conflict_rate(C) -> float:
    """Share of task pairs (i < j) whose gradients conflict (C_ij < 0); NaN with fewer than two tasks."""
    C = np.asarray(C, dtype=np.float64)
    iu = np.triu_indices(C.shape[0], k=1)
    return float(np.mean(C[iu] < 0)) if len(iu[0]) else float("nan")


def magnitude_imbalance(norms: Sequence[float]) -> float:
    """max ||g_i|| / min ||g_i|| (inf when a gradient is zero)."""
    n = np.asarray(norms, dtype=np.float64)
    if n.size == 0:
        return float("nan")
    return float("inf") if n.min() <= 0 else float(n.max() / n.min())


def conflict_over_batches(gram: np.ndarray, n_batches: int, n_tasks: int, alpha: float = 0.05) -> dict:
    """Gradient conflict from B fresh batches per task, with intervals.

    ``gram`` is the Gram matrix of the B*T flattened gradients ordered batch-major (row b*T + i is task i's
    gradient on batch b). The cosine of each task pair is taken between the tasks' MEAN gradients over the B
    batches (the expected update directions). Noise in the means shrinks |cos| towards 0, so the interval is
    centred on the jackknife's bias-corrected cosine, with the leave-one-batch-out standard error and a t
    quantile on B - 1 degrees of freedom (coverage 96% in a planted simulation where the uncorrected one
    gives 80%). A pair is "conflict" when its interval lies below 0, "aligned" above,
    else "indistinguishable from 0". The noise floor is the mean cosine between two different batches of the
    SAME task: what single-task gradient noise alone gives (a cross-task cosine is only informative against it).
    """
    from scipy import stats as st

    B, T = int(n_batches), int(n_tasks)
    G = np.asarray(gram, dtype=np.float64).reshape(B, T, B, T)
    tot = G.sum(axis=(0, 2))                                       # <S_i, S_j>, S_i = sum_b g_i^b

    def cos_of(dots):
        d = np.sqrt(np.clip(np.diag(dots), 0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.outer(d, d) > 0, dots / np.outer(d, d), np.nan)

    C = cos_of(tot)
    loo = []
    for b in range(B):   # <S_i - g_i^b, S_j - g_j^b>
        row, col = G[b].sum(axis=1), G[:, :, b].sum(axis=0)       # <g_i^b, S_j>, <S_i, g_j^b>
        loo.append(cos_of(tot - row - col + G[b, :, b, :]))
    loo = np.asarray(loo)
    lo = np.full_like(C, np.nan)
    hi = np.full_like(C, np.nan)
    debiased = C.copy()
    if B >= 2:
        se = np.sqrt((B - 1) / B * ((loo - loo.mean(axis=0)) ** 2).sum(axis=0))
        half = st.t.ppf(1 - alpha / 2, B - 1) * se
        debiased = B * C - (B - 1) * loo.mean(axis=0)   # noise in the means shrinks |cos|: jackknife bias correction
        lo, hi = debiased - half, debiased + half
    iu = np.triu_indices(T, k=1)
    verdicts = np.where(hi < 0, "conflict", np.where(lo > 0, "aligned", "indistinguishable from 0"))
    same = [G[b, i, c, i] / np.sqrt(G[b, i, b, i] * G[c, i, c, i])
            for i in range(T) for b in range(B) for c in range(B) if b != c and G[b, i, b, i] * G[c, i, c, i] > 0]
    return {
        "batches": B, "cosine": C, "cosine_debiased": debiased, "cosine_low": lo, "cosine_high": hi,
        "pair_verdicts": [[str(v) for v in r] for r in verdicts],
        "conflict_rate": conflict_rate(C),
        "resolved_conflict_rate": float(np.mean(hi[iu] < 0)) if len(iu[0]) else float("nan"),
        "same_task_cosine": float(np.mean(same)) if same else float("nan"),
        "per_batch_cross_task_cosine": float(np.mean([G[b, i, b, j] / np.sqrt(G[b, i, b, i] * G[b, j, b, j])
                                                      for b in range(B) for i, j in zip(*iu)
                                                      if G[b, i, b, i] * G[b, j, b, j] > 0])) if len(iu[0]) else float("nan"),
    }


def affinity_from_losses(L0: Sequence[float], L1, self_normalized: bool = False) -> np.ndarray:
    """Z[j][i] from the losses before (L0[i]) and after a step on task j (L1[j][i]).

    Default (Fifty et al.): Z = 1 - L1 / L0 (NaN where L0 is 0). ``self_normalized``: Z = dL[j][i] / dL[i][i]
    with dL = L0 - L1 -- for surrogate losses that are 0 at theta by construction (GRPO's centred advantages),
    where the ratio is undefined; the diagonal is then 1.
    """
    L0 = np.asarray(L0, dtype=np.float64)
    L1 = np.asarray(L1, dtype=np.float64)
    if self_normalized:
        d = L0[None, :] - L1
        diag = np.diag(d)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.abs(diag)[None, :] > 0, d / diag[None, :], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(L0)[None, :] > 0, 1.0 - L1 / L0[None, :], np.nan)


def _add_flat(params: Sequence[torch.Tensor], flat: torch.Tensor) -> None:
    with torch.no_grad():
        off = 0
        for p in params:
            n = p.numel()
            p.add_(flat[off : off + n].reshape(p.shape).to(p.dtype))
            off += n


def optimizer_update(params: Sequence[torch.Tensor], grad: torch.Tensor, make_optimizer: Callable[[], object],
                     state: Optional[dict] = None, grad_clip: float = 0.0) -> torch.Tensor:
    """theta' - theta (flattened) of one step of the optimizer ``make_optimizer()`` (over ``params``) with the
    flattened gradient ``grad``, from the optimizer ``state`` (a ``state_dict``, copied; None = fresh) after
    clipping the gradient's norm to ``grad_clip`` (0 = no clip), as the runner's ``optimizer_step`` does.
    The parameters and the given state are left unchanged."""
    import copy

    saved = [p.detach().clone() for p in params]
    opt = make_optimizer()
    if state is not None:
        opt.load_state_dict(copy.deepcopy(state))
    off = 0
    for p in params:
        n = p.numel()
        p.grad = grad[off : off + n].reshape(p.shape).to(p.dtype).clone()
        off += n
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
    with torch.no_grad():
        delta = torch.cat([(p.detach() - s).reshape(-1).double() for p, s in zip(params, saved)])
        for p, s in zip(params, saved):
            p.copy_(s)
            p.grad = None
    return delta


def lookahead(params: Sequence[torch.Tensor], tasks: Sequence, loss_fn: Callable[[object], float],
              updates: Dict[object, torch.Tensor]) -> Tuple[np.ndarray, np.ndarray]:
    """(L0[i], L1[j][i]): losses at theta, and at theta' = theta + updates[j] for each task j (the flattened
    update of a step on task j alone, e.g. :func:`optimizer_update`); parameters are restored after each j.
    ``loss_fn(i)`` evaluates L_i at the current params."""
    L0 = np.array([loss_fn(i) for i in tasks], dtype=np.float64)
    L1 = np.zeros((len(tasks), len(tasks)))
    saved = [p.detach().clone() for p in params]
    for a, j in enumerate(tasks):
        _add_flat(params, updates[j])
        L1[a] = [loss_fn(i) for i in tasks]
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
    return L0, L1


def negative_transfer(method_scores: Dict[str, float], teacher_scores: Dict[str, float]) -> Dict[str, Optional[float]]:
    """Per task: method score - single-task teacher score (negative = the multi-task model is worse)."""
    return {t: (float(s - teacher_scores[t]) if t in teacher_scores else None) for t, s in method_scores.items()}


# ----------------------------------------------------------------------------------------------- the context


def flat_grad(params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1).double()
                      for p in params])


class GradContext(RunContext):
    """A RunContext for analyses. ``backward`` accumulates gradients and records each call's loss (and, with
    ``record_steps``, its flattened gradient contribution: one per trained step in the methods' loops);
    ``optimizer_step`` only measures the gradient norm. With ``freeze`` set, a rollout is computed once per
    (task, round, prompts, group, noise level) and reused, so losses before and after a lookahead step are
    evaluated on the same batch. OPD's student forwards are recomputed rather than taken from the rollout
    (opd.student_from_rollout off, a same-weights setting): a reused rollout's graded graph would serve one backward."""

    def __init__(self, cfg: RunConfig, tasks: Sequence[str], student, device="cpu"):
        cfg = replace(cfg, opd=replace(cfg.opd, student_from_rollout=False))
        super().__init__(cfg, tasks, student, Ledger(student.flops_per_forward()), device)
        self.record_steps = False
        self.freeze = False
        self.losses: List[float] = []
        self.step_grads: List[torch.Tensor] = []
        self._frozen: Dict[Tuple, object] = {}
        self._by_name: Dict[str, object] = {}

    def teacher(self, task: str):
        """The runner's teacher, loaded once per checkpoint even when several tasks share it."""
        name = teacher_name(self.cfg, task)
        if task not in self._teachers and name in self._by_name:
            self._teachers[task] = self._by_name[name]
        self._by_name[name] = model = super().teacher(task)
        return model

    def backward(self, loss: torch.Tensor, n_samples: int, forwards_per_sample: int = 1) -> None:
        before = flat_grad(self.params) if self.record_steps else None
        if loss.requires_grad:
            loss.backward()
        self.losses.append(float(loss.detach()))
        if self.record_steps:
            self.step_grads.append(flat_grad(self.params) - before)

    def optimizer_step(self) -> float:
        return float(flat_grad(self.params).norm())

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
        self.losses, self.step_grads = [], []

    def rollout(self, task, records, group, noise_level, **options):
        if not self.freeze:
            return super().rollout(task, records, group, noise_level, **options)
        key = (task, self.round, group, float(noise_level), tuple(r["prompt"] for r in records),
               tuple(sorted(options.items())))
        if key not in self._frozen:
            self._frozen[key] = super().rollout(task, records, group, noise_level, **options)
        return self._frozen[key]


def objective_of(method: str) -> str:
    """The loss whose gradients represent a method (its ``gradient_objective`` trait): ``opd`` or ``grpo``."""
    from ..methods import method_class

    return method_class(method).gradient_objective


def task_loss_and_grad(ctx: GradContext, objective: str, task: str, round_: int) -> Tuple[float, torch.Tensor]:
    """(L_task, flattened gradient) of one task's loss at the current parameters, via the method's own code.

    ``opd``: ``DiffusionOPD().task_loss`` (closed form or PPO-style per ``ctx.cfg.opd``); ``grpo``: one
    ``grpo_step`` (first inner epoch only: exactly the on-policy GRPO gradient; no optimizer step is taken)."""
    from ..methods.grpo import grpo_step
    from ..methods.opd import DiffusionOPD

    ctx.zero_grad()
    ctx.round = round_
    if objective == "opd":
        DiffusionOPD().task_loss(ctx, task)
    elif objective == "grpo":
        grpo_step(ctx, task)
    else:
        raise ValueError(f"unknown objective {objective!r}")
    return float(sum(ctx.losses)), flat_grad(ctx.params)


def analysis_config(cfg: RunConfig, overrides: Sequence[str] = ()) -> RunConfig:
    """The run's config with overrides, one inner GRPO epoch and one minibatch (the gradient at theta), Flow-GRPO's
    objective (the analyses represent every RL method by the GRPO gradient) and no EMA."""
    data = to_dict(cfg)
    cfg = build_config(data, list(overrides))
    cfg.grpo.inner_epochs = 1
    cfg.grpo.minibatches = 1
    cfg.grpo.objective = "grpo"
    cfg.train.ema.enabled = False
    return cfg


def resolve_analysis_checkpoint(checkpoint) -> Tuple[Optional[Path], Path]:
    """(run folder or None, checkpoint path) for a run folder, its final/ or state/, or any checkpoint."""
    from ..backbones import resolve_checkpoint

    p = Path(str(checkpoint))
    if p.is_dir() and is_run_dir(p):
        ck = p / FINAL if (p / FINAL).is_dir() else p / STATE
        if not ck.is_dir():
            raise UserError(f"{p}: the run has no final/ or state/ checkpoint yet")
        return p, ck
    if p.is_dir() and p.name in (FINAL, STATE) and is_run_dir(p.parent):
        return p.parent, p
    return None, resolve_checkpoint(checkpoint)


def load_analysis_model(run_dir: Optional[Path], ckpt: Path, cfg: RunConfig, device="cpu"):
    """(student, reference) at the checkpoint. A ``state/`` train state is applied onto the run's base model
    (its saved reference policy too, when there is one); otherwise the reference is the run's base model."""
    from ..checkpoint import load_checkpoint

    opts = _backbone_options(cfg)
    if ckpt.name == STATE and run_dir is not None:
        student = load_backbone(cfg.model.checkpoint, device, opts)
        tensors, _ = load_checkpoint(ckpt, kind="train_state")
        params = list(student.trainable_parameters())
        with torch.no_grad():
            for i, p in enumerate(params):
                p.copy_(tensors[f"param.{i}"])
        reference = None
        if any(k.startswith("reference.") for k in tensors):
            reference = load_backbone(cfg.model.checkpoint, device, opts)
            with torch.no_grad():
                for i, p in enumerate(reference.trainable_parameters()):
                    p.copy_(tensors[f"reference.{i}"])
    else:
        student = load_backbone(ckpt, device)
        reference = None
    if reference is None and cfg.grpo.beta > 0:
        try:
            reference = load_backbone(cfg.model.checkpoint, device, opts)
        except UserError:
            reference = None  # no base: the reference becomes a copy of the student (KL term 0 at theta)
    student.train()
    if reference is not None:
        reference.eval().requires_grad_(False)
    return student, reference


def _backbone_options(cfg: RunConfig) -> Optional[dict]:
    try:
        from ..backbones import backbone_options
    except ImportError:  # pragma: no cover - older backbones module
        return None
    return backbone_options(cfg.model)


def make_context(cfg: RunConfig, tasks: Sequence[str], student, reference=None, device="cpu") -> GradContext:
    ctx = GradContext(cfg, tasks, student, device)
    ctx.reference = reference
    return ctx


def interference(ctx: GradContext, objective: str, tasks: Sequence[str], optimizer_state: Optional[dict] = None,
                 round_: int = ANALYSIS_ROUND, batches: int = 8) -> dict:
    """Cosines, conflict rate, imbalance and lookahead affinity of ``objective``'s per-task losses at the
    context's current parameters, on fixed fresh batches (round ``round_``). The lookahead step is the run's own
    optimizer update (:func:`optimizer_update`: its AdamW at its lr and clip, from ``optimizer_state``, the run's
    saved state; None = a fresh optimizer's first step). The
    conflict statistics with intervals (:func:`conflict_over_batches`) use ``batches`` fresh batches per task
    (rounds ``round_`` .. ``round_ + batches - 1``); ``cosine`` and ``conflict_rate`` are those of round_ alone."""
    tasks = list(tasks)
    ctx.freeze = True
    losses, grads = {}, {}
    for t in tasks:
        losses[t], grads[t] = task_loss_and_grad(ctx, objective, t, round_)
    batch_grads = [grads[t] for t in tasks]
    ctx.freeze = False   # more fresh batches for the conflict statistics (never re-read: not frozen)
    for b in range(1, batches):
        batch_grads += [task_loss_and_grad(ctx, objective, t, round_ + b)[1] for t in tasks]
    ctx.freeze = True
    stacked = torch.stack([g.reshape(-1).double() for g in batch_grads])
    conflict = conflict_over_batches((stacked @ stacked.T).numpy(), batches, len(tasks))
    del stacked, batch_grads
    C = cosine_matrix([grads[t] for t in tasks])
    norms = [float(grads[t].norm()) for t in tasks]
    updates = {t: optimizer_update(ctx.params, grads[t], ctx._make_optimizer, optimizer_state,
                                   ctx.cfg.train.grad_clip) for t in tasks}
    L0, L1 = lookahead(ctx.params, tasks, lambda t: task_loss_and_grad(ctx, objective, t, round_)[0], updates)
    ctx.zero_grad()
    self_norm = objective == "grpo"
    Z = affinity_from_losses(L0, L1, self_normalized=self_norm)
    ctx.freeze = False
    return {
        "objective": objective, "tasks": tasks, "cosine": C.tolist(), "grad_norms": dict(zip(tasks, norms)),
        "conflict_rate": conflict_rate(C), "magnitude_imbalance": magnitude_imbalance(norms),
        "conflict_over_batches": {k: (_clean(v) if isinstance(v, np.ndarray) else v) for k, v in conflict.items()},
        "lookahead_step": "the run's optimizer update (AdamW from its saved state)" if optimizer_state is not None
        else "a fresh AdamW's first step (no saved optimizer state)",
        "lookahead_step_norm": {t: float(u.norm()) for t, u in updates.items()}, "loss_before": dict(zip(tasks, L0.tolist())), "loss_after": L1.tolist(),
        "affinity": _clean(Z), "affinity_definition": (
            "Z[j][i] = (L_i(theta) - L_i(theta'_j)) / (L_i(theta) - L_i(theta'_i)) (GRPO's surrogate is 0 at theta)"
            if self_norm else "Z[j][i] = 1 - L_i(theta'_j) / L_i(theta)"),
    }


def _clean(M) -> list:
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in np.asarray(M, dtype=np.float64)]


def saved_optimizer_state(run_dir: Optional[Path]) -> Optional[dict]:
    """The optimizer state a run saved with its last train state (``state/``; at the end of a run, the state of
    its final step), or None when there is none."""
    from ..checkpoint import load_checkpoint
    from ..runner import optimizer_state

    if run_dir is None or not (Path(run_dir) / STATE).is_dir():
        return None
    tensors, meta = load_checkpoint(Path(run_dir) / STATE, kind="train_state")
    return optimizer_state(tensors, meta) if "param_groups" in meta else None


def run_analysis_context(run_path: Path, device=None, overrides: Sequence[str] = (), which: str = FINAL):
    """(config, tasks, gradient context) at a run's ``final/`` (or ``state/``) checkpoint, on ``device`` (default:
    the run's own), for the analyses."""
    cfg = analysis_config(load_config(str(Path(run_path) / "config.yaml")), overrides)
    from ..tasks import parse_tasks

    tasks = parse_tasks(cfg.tasks)
    ckpt = Path(run_path) / which
    if not ckpt.is_dir():
        raise UserError(f"{run_path}: no {which}/ checkpoint")
    device = device or cfg.device
    student, reference = load_analysis_model(Path(run_path), ckpt, cfg, device)
    return cfg, tasks, make_context(cfg, tasks, student, reference, device)


def run_interference(run_path: Path, device="cpu", overrides: Sequence[str] = (), which: str = FINAL) -> dict:
    """Interference of a run's method at its ``final/`` (or ``state/``) checkpoint."""
    cfg, tasks, ctx = run_analysis_context(run_path, device, overrides, which)
    out = interference(ctx, objective_of(cfg.method), tasks, saved_optimizer_state(Path(run_path)))
    out.update({"run": str(run_path), "checkpoint": str(Path(run_path) / which), "method": cfg.method,
                "seed": cfg.seed})
    return out


def recorded_interference(run_path: Path, device="cpu") -> dict:
    """:func:`run_interference` at the run's final checkpoint, recorded in its folder
    (:data:`~opd_bench.evalcache.INTERFERENCE_RECORD`): computed once, then read back, also once the weights are
    gone (an archived claims-campaign run). `report` and `claims` both read it."""
    from ..evalcache import INTERFERENCE_RECORD, recorded

    return recorded(Path(run_path) / INTERFERENCE_RECORD, lambda: run_interference(run_path, device))


# ----------------------------------------------------------------------------------------------- plots


def text_colour(rgba) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgba``: black above a WCAG relative
    luminance of 0.179 (where the contrasts with black and with white are equal), else white."""
    def lin(c):
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(float(c)) for c in rgba[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.179 else "white"


def plot_matrices(results: Dict[str, dict], path) -> None:
    """Heatmaps: per run, the cosine matrix C_ij and the lookahead affinity Z_{j->i}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(results))
    fig, axes = plt.subplots(n, 2, figsize=(9, 3.8 * n), squeeze=False)
    for row, (lab, r) in zip(axes, results.items()):
        tasks = r["tasks"]
        for ax, key, title, lim in ((row[0], "cosine", "gradient cosine C_ij", 1.0),
                                    (row[1], "affinity", "lookahead affinity Z_{j->i}", None)):
            M = np.array([[np.nan if v is None else v for v in rr] for rr in r[key]], dtype=np.float64)
            v = lim if lim is not None else max(1e-12, float(np.nanmax(np.abs(M))) if np.isfinite(M).any() else 1.0)
            im = ax.imshow(M, cmap="RdBu", vmin=-v, vmax=v)
            ax.set_xticks(range(len(tasks)), tasks, rotation=30, fontsize=8)
            ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
            for i in range(len(tasks)):
                for j in range(len(tasks)):
                    if np.isfinite(M[i, j]):
                        ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=9,
                                color=text_colour(im.cmap(im.norm(M[i, j]))))
            ax.set_title(f"{lab}: {title}", fontsize=9)
            ax.set_xlabel("task i" if key == "cosine" else "task i (evaluated)")
            ax.set_ylabel("task j" if key == "cosine" else "task j (stepped on)")
            fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
