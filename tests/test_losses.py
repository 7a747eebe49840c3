"""Shared losses (method.md sections 3-4) on small real networks."""
import pytest
import torch
from torch import nn

from opd_bench.losses import (grpo_advantages, kl_to_reference, opd_step_loss, ppo_clip_loss, ppo_opd_advantage_scale,
                              ppo_opd_loss)
from opd_bench.rollout import rollout
from opd_bench.sampler import sde_transition, timestep_schedule, transition_logprob


def test_grpo_advantages_group_and_global():
    r = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 16.0])
    gid = torch.tensor([0, 0, 0, 1, 1, 1])
    a_group = grpo_advantages(r, gid, "group", clip=100)
    g0 = r[:3] - 2.0
    assert torch.allclose(a_group[:3], g0 / (g0.pow(2).mean().sqrt() + 1e-4))
    a_glob = grpo_advantages(r, gid, "global", clip=100)
    assert torch.allclose(a_glob[3:], (r[3:] - 12.0) / (r.std(unbiased=False) + 1e-4))
    # per-group centring: each group's advantages sum to zero
    assert torch.allclose(a_group.view(2, 3).sum(1), torch.zeros(2), atol=1e-5)
    assert grpo_advantages(torch.tensor([0.0, 100.0]), torch.tensor([0, 0]), "group", clip=5).abs().max() <= 5
    with pytest.raises(ValueError):
        grpo_advantages(r, gid, "batch")


def test_ppo_clip_loss_clips_in_the_right_direction():
    lp_old = torch.zeros(2)
    lp = torch.log(torch.tensor([1.5, 0.5]))
    adv = torch.tensor([1.0, -1.0])
    loss, ratio = ppo_clip_loss(lp, lp_old, adv, 0.2)
    # positive advantage with ratio 1.5: objective capped at 1.2 -> loss -1.2; negative adv with ratio .5 -> 0.8
    assert torch.allclose(loss, torch.tensor([-1.2, 0.8]))


def test_on_policy_ratio_is_exactly_one_on_the_embedded_model(tiny_model):
    """Recomputing the log-probs of a rollout with the same parameters gives ratio exactly 1."""
    cond = tiny_model.encode_prompts(["a red circle", "two blue squares", "K7", ""])
    g = torch.Generator().manual_seed(0)
    ro = rollout(tiny_model, cond, steps=6, guidance=3.0, noise_level=0.7, generator=g)
    ts = ro.timesteps
    for j in range(6):
        x = ro.states[:, j]
        v = tiny_model.velocity(x, ts[j], cond, 3.0)  # with grad enabled, as in training
        tr = sde_transition(x, v, ts[j], ts[j + 1], 0.7, t_first=ts[1])
        lp = transition_logprob(ro.states[:, j + 1], tr, "mean")
        _, ratio = ppo_clip_loss(lp, ro.log_probs[:, j], torch.ones(4), 0.2)
        assert torch.equal(ratio, torch.ones_like(ratio)), ratio


class TinyVelocity(nn.Module):
    def __init__(self, d=6):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return torch.tanh(self.lin(x))


def _flat_grad(loss, params, retain=False):
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, retain_graph=retain)])


@pytest.mark.parametrize("noise_level", [0.0, 0.7])
def test_opd_gradient_equals_analytic(noise_level):
    """d/dtheta of the per-step loss = (mu_S - mu_T) / s^2 . dmu_S/dtheta (SDE; 1 instead of 1/s^2 for the ODE)."""
    torch.manual_seed(0)
    d, b = 6, 3
    net = TinyVelocity(d).double()
    params = list(net.parameters())
    ts = timestep_schedule(10, dtype=torch.float64)
    x = torch.randn(b, d, dtype=torch.float64)
    mu_t = torch.randn(b, d, dtype=torch.float64)
    j = 3
    tr = sde_transition(x, net(x), ts[j], ts[j + 1], noise_level, t_first=ts[1])
    std = tr.std if noise_level > 0 else None
    loss = opd_step_loss(tr.mean, mu_t, std).mean()
    auto = _flat_grad(loss, params)

    def mean_fn(*flat_params):
        out = torch.func.functional_call(net, {n: p for (n, _), p in zip(net.named_parameters(), flat_params)}, (x,))
        return sde_transition(x, out, ts[j], ts[j + 1], noise_level, t_first=ts[1]).mean

    jac = torch.autograd.functional.jacobian(mean_fn, tuple(p.detach() for p in params))
    jac = torch.cat([jj.reshape(b * d, -1) for jj in jac], 1)  # [B*D, P]
    s2 = float(tr.std) ** 2 if noise_level > 0 else 1.0
    coeff = ((tr.mean.detach() - mu_t) / s2).reshape(-1) / (b * d)  # mean over samples and dims
    analytic = coeff @ jac
    assert torch.allclose(auto, analytic, rtol=1e-8, atol=1e-10)


def test_opd_loss_and_gradient_vanish_when_student_equals_teacher():
    torch.manual_seed(0)
    net = TinyVelocity()
    x = torch.randn(4, 6)
    ts = timestep_schedule(10)
    tr = sde_transition(x, net(x), ts[2], ts[3], 0.7, t_first=ts[1])
    loss = opd_step_loss(tr.mean, tr.mean.detach(), tr.std).mean()
    g = _flat_grad(loss, list(net.parameters()))
    assert loss.item() == 0.0 and torch.count_nonzero(g) == 0


def test_kl_denominators():
    m, r = torch.ones(2, 4), torch.zeros(2, 4)
    sigma, dt = torch.tensor(0.5), torch.tensor(-0.1)
    assert torch.allclose(kl_to_reference(m, r, sigma, dt, "sigma2"), torch.full((2,), 1 / (2 * 0.25)))
    assert torch.allclose(kl_to_reference(m, r, sigma, dt, "sigma2_dt"), torch.full((2,), 1 / (2 * 0.025)))


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_ppo_opd_expected_gradient_equals_the_closed_form(reduce):
    """Issue 20: E[grad of PPO-style OPD] = grad of the suite's closed-form loss (opd_step_loss, KL averaged over
    dimensions) for either log-prob reduction, by Monte Carlo on a small network (D = 16): cosine >= 0.99 and
    norms within 5%. The unscaled advantage (k = 1) is off by D (mean: 1/D, sum: D times)."""
    torch.manual_seed(0)
    d, n = 16, 200_000
    net = TinyVelocity(d).double()
    params = list(net.parameters())
    ts = timestep_schedule(10, dtype=torch.float64)
    x = torch.randn(1, d, dtype=torch.float64).expand(n, d)
    j = 4
    tr_s = sde_transition(x, net(x), ts[j], ts[j + 1], 0.9, t_first=ts[1])
    mu_t = tr_s.mean.detach()[:1] + 0.5 * tr_s.std * torch.randn(1, d, dtype=torch.float64)
    closed = _flat_grad(opd_step_loss(tr_s.mean[:1], mu_t, tr_s.std).mean(), params, retain=True)
    a = (tr_s.mean.detach() + tr_s.std * torch.randn(n, d, dtype=torch.float64))
    lp = transition_logprob(a, tr_s, reduce)
    lp_t = transition_logprob(a, type(tr_s)(mu_t.expand(n, d), tr_s.std), reduce)
    k = ppo_opd_advantage_scale(d, reduce)
    loss, ratio = ppo_opd_loss(lp, lp.detach(), lp_t, clip_range=10.0, advantage_scale=k)
    assert torch.equal(ratio, torch.ones_like(ratio))
    est = _flat_grad(loss.mean(), params, retain=True)
    cos = torch.dot(est, closed) / (est.norm() * closed.norm())
    assert cos >= 0.99 and abs(est.norm() / closed.norm() - 1) < 0.05, (cos, est.norm() / closed.norm())
    naive, _ = ppo_opd_loss(lp, lp.detach(), lp_t, clip_range=10.0)
    ratio_naive = _flat_grad(naive.mean(), params).norm() / closed.norm()
    assert abs(ratio_naive - (1 / d if reduce == "mean" else d)) < 0.1 * (1 / d if reduce == "mean" else d)


def test_ppo_opd_advantage_scale_by_hand():
    assert ppo_opd_advantage_scale(3072, "mean") == 3072 and ppo_opd_advantage_scale(4, "sum") == 0.25
    lp, lp_t = torch.tensor([-1.0]), torch.tensor([-1.5])
    loss, _ = ppo_opd_loss(lp, lp.clone(), lp_t, 0.2, advantage_scale=4.0)
    assert torch.allclose(loss, torch.tensor([2.0]))        # A = -4 (-1 + 1.5) = -2, ratio 1: loss = -A = 2
    with pytest.raises(ValueError):
        ppo_opd_advantage_scale(4, "max")
