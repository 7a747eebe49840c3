"""Sampler kernels (method.md section 2): exactness and statistical checks."""
import math

import pytest
import torch

from opd_bench.sampler import (
    Transition,
    cfg_combine,
    euler_step,
    gaussian_kl,
    sde_sigma,
    sde_step,
    sde_transition,
    timestep_schedule,
    transition_logprob,
)


def test_schedule_endpoints_and_shift():
    t = timestep_schedule(10)
    assert t[0] == 1 and t[-1] == 0 and torch.all(t[1:] < t[:-1])
    ts = timestep_schedule(10, shift=3.0)
    assert ts[0] == 1 and ts[-1] == 0
    # shift pushes intermediate times towards noise: t' = s t / (1 + (s - 1) t) > t
    assert torch.all(ts[1:-1] > t[1:-1])
    assert torch.allclose(ts[5], torch.tensor(3 * 0.5 / (1 + 2 * 0.5)))


def test_zero_noise_sde_step_is_exactly_euler():
    g = torch.Generator().manual_seed(0)
    x, v = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    ts = timestep_schedule(10)
    for j in range(10):
        step = sde_step(x, v, ts[j], ts[j + 1], 0.0, t_first=ts[1])
        assert torch.equal(step.next, euler_step(x, v, ts[j], ts[j + 1]))
        assert torch.equal(step.mean, x + v * (ts[j + 1] - ts[j]))
        assert step.log_prob is None


def test_sigma_uses_t1_at_t_equal_one():
    ts = timestep_schedule(10)
    s0 = sde_sigma(ts[0], 0.7, t_first=ts[1])
    assert torch.isfinite(s0) and torch.allclose(s0, 0.7 * torch.sqrt(torch.tensor(1.0) / (1 - ts[1])))


@pytest.mark.parametrize("j", [0, 4, 8])
def test_sde_samples_match_stated_mean_and_variance(j):
    n = 100_000
    ts = timestep_schedule(10)
    x = torch.full((n, 4), 1.5)
    v = torch.tensor([0.5, -1.0, 2.0, -0.3]).expand(n, 4)
    g = torch.Generator().manual_seed(j)
    step = sde_step(x, v, ts[j], ts[j + 1], 0.7, t_first=ts[1], generator=g)
    # the stated mean/std, written out from method.md
    t, dt = ts[j], ts[j + 1] - ts[j]
    sigma = 0.7 * math.sqrt(t / (1 - (ts[1] if t == 1 else t)))
    mean = x[0] * (1 + sigma**2 * dt / (2 * t)) + v[0] * (1 + sigma**2 * (1 - t) / (2 * t)) * dt
    var = sigma**2 * (-dt)
    assert torch.allclose(step.mean[0], mean, rtol=1e-5)
    emp_mean = step.next.double().mean(0)
    # the transition is isotropic (std^2 I): pool the variance estimate over the dimensions
    emp_var = step.next.double().var(0).mean()
    assert torch.all((emp_mean - mean.double()).abs() / mean.double().abs() < 0.01)
    assert abs(emp_var.item() - float(var)) / float(var) < 0.01


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_logprob_equals_torch_normal(reduce):
    g = torch.Generator().manual_seed(1)
    mean, x = torch.randn(5, 3, 4, 4, generator=g), torch.randn(5, 3, 4, 4, generator=g)
    std = torch.tensor(0.37)
    lp = transition_logprob(x, Transition(mean, std), reduce)
    ref = torch.distributions.Normal(mean, std).log_prob(x).flatten(1)
    ref = ref.sum(1) if reduce == "sum" else ref.mean(1)
    assert torch.allclose(lp, ref, atol=1e-5)


def test_logprob_undefined_for_ode():
    with pytest.raises(ValueError):
        transition_logprob(torch.zeros(1, 2), Transition(torch.zeros(1, 2), torch.tensor(0.0)))


def test_closed_form_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(2)
    d, n = 8, 200_000
    mp, mq = torch.randn(1, d, generator=g), torch.randn(1, d, generator=g)
    std = torch.tensor(0.8)
    kl = gaussian_kl(mp, mq, std, reduce="sum").item()
    xs = mp + std * torch.randn(n, d, generator=g)
    p, q = torch.distributions.Normal(mp, std), torch.distributions.Normal(mq, std)
    mc = (p.log_prob(xs) - q.log_prob(xs)).sum(1).mean().item()
    assert abs(mc - kl) / kl < 0.02
    # mean reduction is the per-dimension average
    assert math.isclose(gaussian_kl(mp, mq, std, reduce="mean").item(), kl / d, rel_tol=1e-6)


def test_cfg_combination():
    u, c = torch.tensor([1.0, 2.0]), torch.tensor([3.0, -1.0])
    assert torch.equal(cfg_combine(u, c, 1.0), c)
    assert torch.equal(cfg_combine(u, c, 0.0), u)
    assert torch.allclose(cfg_combine(u, c, 4.5), u + 4.5 * (c - u))


def test_sde_transition_accepts_per_sample_times():
    ts = timestep_schedule(10)
    x, v = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    idx = torch.tensor([1, 4, 7])
    batched = sde_transition(x, v, ts[idx], ts[idx + 1], 0.5, t_first=ts[1])
    for k, j in enumerate(idx.tolist()):
        single = sde_transition(x[k : k + 1], v[k : k + 1], ts[j], ts[j + 1], 0.5, t_first=ts[1])
        assert torch.allclose(batched.mean[k], single.mean[0], atol=1e-6)
        assert torch.allclose(batched.std[k].flatten()[0], single.std)
