"""Losses and advantages shared by every method (method.md sections 3-4). Pure functions of tensors."""
from __future__ import annotations

from typing import Optional

import torch

from .sampler import _bc, gaussian_kl, mean_matching, reduce_dims


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


# ------------------------------------------------------------------------------------------- DiffusionNFT


def nft_optimality(advantages: torch.Tensor, adv_clip: float) -> torch.Tensor:
    """DiffusionNFT's optimality probability r in [0, 1] from advantages (arXiv 2509.16117 section 3.2;
    scripts/train_nft_sd3.py): r = clamp(clip(A, +-c) / c / 2 + 1/2, 0, 1) -- 1/2 at A = 0, 1 at A = c."""
    a = torch.clamp(advantages, -adv_clip, adv_clip)
    return torch.clamp(a / adv_clip / 2.0 + 0.5, 0.0, 1.0)


def nft_loss(v: torch.Tensor, v_old: torch.Tensor, x_t: torch.Tensor, x0: torch.Tensor, t, r: torch.Tensor,
             beta: float, adv_clip: float) -> torch.Tensor:
    """DiffusionNFT's policy loss per sample (arXiv 2509.16117 eq. 8 with its adaptive weighting; the code's
    scripts/train_nft_sd3.py), on the forward-noised clean sample x_t = (1 - t) x0 + t eps:

      v+ = beta v + (1 - beta) sg(v_old),   v- = (1 + beta) sg(v_old) - beta v      (implicit policies)
      x0+- = x_t - t v+-,   w+- = sg(mean |x0+- - x0|) (clipped below at 1e-5)
      L = c / beta * [ r mean((x0+ - x0)^2) / w+ + (1 - r) mean((x0- - x0)^2) / w- ],   c = adv_clip.

    r is the optimality probability (``nft_optimality``); v is the current policy's velocity (with grad)."""
    v_old = v_old.detach()
    tb = _bc(t, x0)

    def weighted_error(v_implicit):
        err = x_t - tb * v_implicit - x0
        w = err.detach().abs().mean(dim=tuple(range(1, x0.ndim)), keepdim=True).clamp(min=1e-5)
        return reduce_dims(err**2 / w, "mean")

    positive = weighted_error(beta * v + (1 - beta) * v_old)
    negative = weighted_error((1 + beta) * v_old - beta * v)
    return adv_clip * (r * positive + (1 - r) * negative) / beta


def nft_old_decay(step: int, flat: float, uprate: float, uphold: float) -> float:
    """The old policy's EMA decay after ``step`` optimizer steps (train_nft_sd3.py return_decay):
    0 before ``flat``, then min((step - flat) * uprate, uphold)."""
    return 0.0 if step < flat else min((step - flat) * uprate, uphold)


# ------------------------------------------------------------------------------------------------- GRPO-Guard


def ratio_norm(log_ratio: torch.Tensor, mean_gap_sq: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """GRPO-Guard's RatioNorm (arXiv 2510.22319, section 4.1) of a Gaussian transition's log importance ratio.

    With Delta = mu_theta - mu_old, s = the transition std and eps the rollout's noise (x' = mu_old + s eps),
    log rho = Delta.eps / s - ||Delta||^2 / (2 s^2): its mean is shifted left by ||Delta||^2 / (2 s^2) (rho < 1 on
    average, so positive-advantage samples rarely reach 1 + eps) and its spread ||Delta|| / s varies with the
    step through s. RatioNorm removes the shift and rescales by s:

      log rho_hat = s (log rho + ||Delta||^2 / (2 s^2)) = Delta.eps,

    centred at 0 with a step-independent scale. ``mean_gap_sq`` is ||Delta||^2 reduced over dimensions as the
    log-probs are (mean or sum)."""
    return std * (log_ratio + mean_gap_sq / (2 * std**2))


def guard_step_weights(timesteps: torch.Tensor, steps, mode: str = "dt") -> torch.Tensor:
    """GRPO-Guard's step-wise gradient reweighting: the trained step j's loss weight 1/|dt_j|, normalised to mean 1
    over ``steps`` (``mode='none'``: all 1). On a shifted grid the steps near noise are short (small dt) and their
    transition means move little per unit velocity, so their policy gradients would otherwise be small."""
    steps = list(steps)
    if mode == "none":
        return torch.ones(len(steps))
    if mode != "dt":
        raise ValueError(f"reweight must be 'dt' or 'none', got {mode!r}")
    inv = torch.stack([1.0 / (timesteps[j] - timesteps[j + 1]).abs() for j in steps]).float()
    return inv / inv.mean()


# ---------------------------------------------------------------------------------------- flow matching / SFT


def flow_matching_loss(v: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The rectified-flow regression per sample: mean over dimensions of (v(x_t, t) - (eps - x0))^2, at
    x_t = (1 - t) x0 + t eps (the target velocity of the suite's convention; SD3, Esser et al. 2024 eq. 1)."""
    return reduce_dims((v - (noise - x0)) ** 2, "mean")


def forward_noise(x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
    """x_t = (1 - t) x0 + t eps (t a float, 0-d or [B])."""
    tb = _bc(t, x0)
    return (1 - tb) * x0 + tb * noise


__all__ = [
    "grpo_advantages",
    "nonzero_advantage_mask",
    "ppo_clip_loss",
    "kl_to_reference",
    "opd_step_loss",
    "ppo_opd_advantage_scale",
    "ppo_opd_loss",
    "reduce_dims",
    "nft_optimality",
    "nft_loss",
    "nft_old_decay",
    "ratio_norm",
    "guard_step_weights",
    "flow_matching_loss",
    "forward_noise",
]
