"""Flow-matching sampler kernels: pure, backbone-independent functions (method.md sections 1-2).

Conventions: x_t = (1 - t) x0 + t eps, t = 1 is noise, t = 0 is data, the model predicts v = eps - x0.
A schedule runs 1 = t_0 > t_1 > ... > t_N = 0 and dt_j = t_{j+1} - t_j < 0.

Time arguments may be Python floats, 0-d tensors or per-sample tensors of shape [B]; they broadcast against
the state ``x`` of shape [B, ...].
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Union

import torch

TimeLike = Union[float, torch.Tensor]


#: the training-time discretisation of diffusers' FlowMatchEulerDiscreteScheduler (SD3's ``num_train_timesteps``).
SD3_TRAIN_TIMESTEPS = 1000


def shift_time(t, shift: float):
    """SD3's timestep shift t' = s t / (1 + (s - 1) t) (identity at s = 1)."""
    return shift * t / (1.0 + (shift - 1.0) * t)


def timestep_schedule(n_steps: int, shift: float = 1.0, device=None, dtype=torch.float32,
                      grid: str = "linear") -> torch.Tensor:
    """The N+1 times 1 = t_0 > ... > t_N = 0 of a rollout (``sampler.grid``).

    ``linear``: shift(linspace(1, 0, N + 1)) -- the suite's original grid; its last step is shift(1/N) -> 0.
    ``sd3``: the sigmas of diffusers' ``FlowMatchEulerDiscreteScheduler.set_timesteps(N)`` (what SD3, Flow-GRPO
    and DiffusionOPD sample with): shift(linspace(1, shift(1/1000), N)) followed by 0. The shift is applied
    twice to the lower end (once by the scheduler's constructor to its training sigmas, once by set_timesteps),
    so at N = 10, s = 3 the grid is [1, .960, ..., .278, .0089, 0]: the last step starts almost at data.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    if grid == "linear":
        t = shift_time(torch.linspace(1.0, 0.0, n_steps + 1, dtype=torch.float64), shift)
    elif grid == "sd3":
        sigma_min = shift_time(1.0 / SD3_TRAIN_TIMESTEPS, shift)
        t = torch.cat([shift_time(torch.linspace(1.0, sigma_min, n_steps, dtype=torch.float64), shift),
                       torch.zeros(1, dtype=torch.float64)])
    else:
        raise ValueError(f"unknown grid {grid!r} (sampler.grid: opd_bench.config.GRIDS)")
    return t.to(device=device, dtype=dtype)


def _bc(t: TimeLike, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a time (float, 0-d or [B]) to x's shape [B, 1, 1, ...]."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        return t
    return t.reshape(t.shape[0], *([1] * (x.ndim - 1)))


def cfg_combine(v_uncond: torch.Tensor, v_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: v = v_uncond + w (v_cond - v_uncond)."""
    return v_uncond + scale * (v_cond - v_uncond)


def euler_step(x: torch.Tensor, v: torch.Tensor, t: TimeLike, t_next: TimeLike) -> torch.Tensor:
    """ODE (Euler) transition x_{j+1} = x_j + v dt."""
    return x + v * (_bc(t_next, x) - _bc(t, x))


def sde_sigma(t: TimeLike, noise_level: float, t_first: Optional[TimeLike] = None) -> torch.Tensor:
    """Flow-GRPO's sigma_j = a sqrt(t_j / (1 - t_j)); at t_j = 1 the denominator uses t_1 (``t_first``)."""
    t = torch.as_tensor(t, dtype=torch.float32) if not torch.is_tensor(t) else t
    if noise_level == 0:
        return torch.zeros_like(t)
    denom_t = t
    if t_first is not None:
        denom_t = torch.where(t >= 1.0, torch.as_tensor(t_first, dtype=t.dtype, device=t.device), t)
    return noise_level * torch.sqrt(t / (1.0 - denom_t))


class Transition(NamedTuple):
    """A Gaussian transition N(mean, std^2 I); std broadcasts against mean (0 for the ODE)."""

    mean: torch.Tensor
    std: torch.Tensor


def sde_transition(
    x: torch.Tensor,
    v: torch.Tensor,
    t: TimeLike,
    t_next: TimeLike,
    noise_level: float,
    t_first: Optional[TimeLike] = None,
) -> Transition:
    """Mean and std of Flow-GRPO's SDE transition from x_j given velocity v (method.md section 2).

    mean = x (1 + sigma^2 dt / (2 t)) + v (1 + sigma^2 (1 - t) / (2 t)) dt,   std = sigma sqrt(-dt).
    With noise_level = 0 the mean is exactly the Euler step and std = 0.
    """
    if noise_level == 0:
        return Transition(euler_step(x, v, t, t_next), torch.zeros((), dtype=x.dtype, device=x.device))
    tb, tnb = _bc(t, x), _bc(t_next, x)
    dt = tnb - tb
    sigma = sde_sigma(tb, noise_level, None if t_first is None else _bc(t_first, x))
    mean = x * (1 + sigma**2 / (2 * tb) * dt) + v * (1 + sigma**2 * (1 - tb) / (2 * tb)) * dt
    return Transition(mean, sigma * torch.sqrt(-dt))


def transition_logprob(x_next: torch.Tensor, tr: Transition, reduce: str = "mean") -> torch.Tensor:
    """log N(x_next; mean, std^2 I) per sample, reduced over non-batch dims by ``mean`` or ``sum``."""
    std = tr.std
    try:   # checked on the device: no host sync in the step loop on an accelerator (a device-side assert there)
        torch._assert_async(torch.all(std > 0))
    except RuntimeError:
        raise ValueError("the log-probability of a deterministic (ODE, noise_level = 0) transition is undefined") from None
    lp = -((x_next.detach() - tr.mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return reduce_dims(lp, reduce)


def reduce_dims(x: torch.Tensor, reduce: str) -> torch.Tensor:
    """Reduce all but the batch dim by ``mean`` or ``sum``."""
    dims = tuple(range(1, x.ndim))
    if reduce == "mean":
        return x.mean(dim=dims)
    if reduce == "sum":
        return x.sum(dim=dims)
    raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")


class SDEStep(NamedTuple):
    next: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    log_prob: Optional[torch.Tensor]


def sde_step(
    x: torch.Tensor,
    v: torch.Tensor,
    t: TimeLike,
    t_next: TimeLike,
    noise_level: float,
    *,
    t_first: Optional[TimeLike] = None,
    generator: Optional[torch.Generator] = None,
    noise: Optional[torch.Tensor] = None,
    reduce: str = "mean",
) -> SDEStep:
    """One SDE transition: returns (next state, mean, std, log-prob of next state). ODE when noise_level = 0
    (then next == mean exactly and log_prob is None)."""
    tr = sde_transition(x, v, t, t_next, noise_level, t_first)
    if noise_level == 0:
        return SDEStep(tr.mean, tr.mean, tr.std, None)
    if noise is None:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    nxt = tr.mean + tr.std * noise
    return SDEStep(nxt, tr.mean, tr.std, transition_logprob(nxt, tr, reduce))


def gaussian_kl(mean_p: torch.Tensor, mean_q: torch.Tensor, std: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """Closed-form KL(N(mean_p, s^2 I) || N(mean_q, s^2 I)) = ||mean_p - mean_q||^2 / (2 s^2), per sample."""
    return reduce_dims((mean_p - mean_q) ** 2 / (2 * std**2), reduce)


def mean_matching(mean_p: torch.Tensor, mean_q: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """The ODE (a = 0) limit used by DiffusionOPD: 1/2 ||mean_p - mean_q||^2 per sample."""
    return reduce_dims(0.5 * (mean_p - mean_q) ** 2, reduce)
