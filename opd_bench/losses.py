"""Losses and advantages shared by every method (method.md sections 3-4). Pure functions of tensors."""
from __future__ import annotations

from typing import Optional

import torch

from .sampler import gaussian_kl, mean_matching, reduce_dims


def grpo_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    std_mode: str = "global",
    clip: float = 5.0,
    eps: float = 1e-4,
) -> torch.Tensor:
    """A_i = clip((r_i - mean_group) / (std + eps), -clip, clip).

    ``std_mode``: ``group`` divides by each group's std, ``global`` by the std of the whole batch
    (Flow-GRPO's default). Stds are population stds (unbiased=False), as Flow-GRPO's numpy code.
    """
    rewards = rewards.to(torch.float32)
    group_ids = torch.as_tensor(group_ids, device=rewards.device)
    uniq, inv = torch.unique(group_ids, return_inverse=True)
    n = torch.zeros(len(uniq), dtype=rewards.dtype, device=rewards.device).index_add_(0, inv, torch.ones_like(rewards))
    s = torch.zeros_like(n).index_add_(0, inv, rewards)
    mean = (s / n)[inv]
    centred = rewards - mean
    if std_mode == "group":
        var = torch.zeros_like(n).index_add_(0, inv, centred**2) / n
        std = var.sqrt()[inv]
    elif std_mode == "global":
        std = rewards.std(unbiased=False).expand_as(rewards)
    else:
        raise ValueError(f"adv_std must be 'group' or 'global', got {std_mode!r}")
    return torch.clamp(centred / (std + eps), -clip, clip)


def nonzero_advantage_mask(advantages: torch.Tensor, multiple: int = 1,
                           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Flow-GRPO's sample filter (scripts/train_sd3.py, "mask for samples where all advantages are zero"): keep
    samples with a nonzero advantage; when the count is not a multiple of ``multiple`` (the minibatches), dropped
    samples are put back at random until it is (if there are enough). A sample's advantage is exactly 0 when it
    equals its group mean, i.e. with binary rewards when the whole group agrees."""
    keep = advantages != 0
    short = (-int(keep.sum())) % multiple
    dropped = torch.nonzero(~keep).flatten()
    if short and len(dropped) >= short:
        keep[dropped[torch.randperm(len(dropped), generator=generator)[:short]]] = True
    return keep


def ppo_clip_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip_range: float):
    """Per-sample clipped surrogate max(-A rho, -A clip(rho, 1 - eps, 1 + eps)); returns (loss, ratio)."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped), ratio


def kl_to_reference(
    mean: torch.Tensor,
    ref_mean: torch.Tensor,
    sigma: torch.Tensor,
    dt: torch.Tensor,
    denominator: str = "sigma2",
) -> torch.Tensor:
    """GRPO's KL penalty per sample: ||mu_theta - mu_ref||^2 / (2 D), averaged over dimensions.

    ``denominator``: ``sigma2`` uses D = sigma_j^2 (Flow-GRPO drops dt), ``sigma2_dt`` the exact Gaussian
    KL's D = s_j^2 = sigma_j^2 |dt|.
    """
    if denominator == "sigma2":
        var = sigma**2
    elif denominator == "sigma2_dt":
        var = sigma**2 * dt.abs()
    else:
        raise ValueError(f"kl_denominator must be 'sigma2' or 'sigma2_dt', got {denominator!r}")
    return gaussian_kl(mean, ref_mean, var.sqrt())


def opd_step_loss(student_mean: torch.Tensor, teacher_mean: torch.Tensor, std: Optional[torch.Tensor]) -> torch.Tensor:
    """DiffusionOPD's closed-form per-step loss, per sample, averaged over dimensions.

    SDE (std > 0): exact Gaussian KL ||mu_S - mu_T||^2 / (2 s_j^2). ODE (std None or 0): mean matching
    1/2 ||mu_S - mu_T||^2. The teacher mean is a fixed target (detached here).
    """
    teacher_mean = teacher_mean.detach()
    if std is None or bool(torch.all(torch.as_tensor(std) == 0)):
        return mean_matching(student_mean, teacher_mean)
    return gaussian_kl(student_mean, teacher_mean, std)


def ppo_opd_advantage_scale(dim: int, reduce: str) -> float:
    """The factor k in PPO-style OPD's advantage A_j = -k (log p_S(a_j) - log p_T(a_j)), with log-probs reduced
    over the D = ``dim`` dimensions by ``reduce``, that makes its expected gradient the closed form's
    (``opd_step_loss``: the KL averaged over dimensions, KL_sum / D).

    Derivation: with log p_r = c log p_sum (c = 1/D for ``mean``, 1 for ``sum``), the on-policy surrogate's
    gradient is -A grad log p_r, whose expectation under a ~ p_S is k c^2 grad KL_sum (the score-function
    identity grad KL = E[(log p_S - log p_T) grad log p_S]). Matching grad KL_sum / D gives k = 1 / (D c^2):
    D for ``mean`` and 1/D for ``sum``. (k = 1, the naive choice, is 1/D of the closed form with ``mean`` and
    D times it with ``sum``.)"""
    if reduce == "mean":
        return float(dim)
    if reduce == "sum":
        return 1.0 / dim
    raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")


def ppo_opd_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    teacher_log_prob: torch.Tensor,
    clip_range: float,
    detach_advantage: bool = True,
    advantage_scale: float = 1.0,
):
    """PPO-style OPD (the ablation): per-step advantage A_j = -k (log p_S(a_j) - log p_T(a_j)), a single-sample
    estimate of -KL_j at the sampled action, in a clipped surrogate. Returns (loss, ratio).

    With k = ``ppo_opd_advantage_scale(D, reduce)`` its expected gradient equals the closed-form loss's gradient
    (``opd_step_loss``); the estimate adds the zero-mean term KL_j grad log p(a_j). With
    ``detach_advantage=False`` the advantage also carries gradient (as Flow-OPD's code does).
    """
    adv = -advantage_scale * (log_prob - teacher_log_prob)
    if detach_advantage:
        adv = adv.detach()
    return ppo_clip_loss(log_prob, old_log_prob, adv, clip_range)


__all__ = [
    "grpo_advantages",
    "nonzero_advantage_mask",
    "ppo_clip_loss",
    "kl_to_reference",
    "opd_step_loss",
    "ppo_opd_advantage_scale",
    "ppo_opd_loss",
    "reduce_dims",
]
