"""Flow-GRPO parity (issue 20): the SD3 time grid against diffusers itself, minibatched PPO updates whose clip
acts, zero-advantage dropping, the detached unconditional CFG branch, the EMA warm-up by optimizer step,
per-task KL beta, and a replay of one batch through the suite's GRPO and through an independent implementation
of Flow-GRPO's update (yifan123/flow_grpo scripts/train_sd3.py and flow_grpo/diffusers_patch/
sd3_sde_with_logprob.py, written here from their equations) that must agree on the loss and the gradient."""
import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from tiny_world import make_tiny_world

from opd_bench.backbones import load_backbone
from opd_bench.config import build_config
from opd_bench.ledger import Ledger
from opd_bench.losses import nonzero_advantage_mask
from opd_bench.methods import METHODS
from opd_bench.methods.grpo import grpo_update, kl_weights
from opd_bench.runner import RunContext
from opd_bench.sampler import timestep_schedule


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_tiny_world(tmp_path_factory.mktemp("world"))


def make_ctx(world, **over):
    overrides = ["method=grpo", "tasks=brightness", f"model.checkpoint={world / 'base'}", "sampler.steps=4",
                 "sampler.guidance=2.0", "train.prompts_per_step=4", "grpo.group_size=2"]
    cfg = build_config({}, overrides + [f"{k}={v}" for k, v in over.items()])
    torch.manual_seed(0)
    student = load_backbone(cfg.model.checkpoint)
    return RunContext(cfg, ["brightness"], student, Ledger(student.flops_per_forward()))


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.5])
@pytest.mark.parametrize("n", [1, 2, 3, 10, 28, 40])
def test_sd3_grid_is_diffusers_flow_match_euler_sigmas(n, shift):
    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(n)
    ours = timestep_schedule(n, shift, dtype=torch.float64, grid="sd3")
    assert ours.shape == sched.sigmas.shape
    assert torch.allclose(ours, sched.sigmas.double(), atol=1e-6, rtol=0), (ours, sched.sigmas)


def test_sd3_grid_differs_from_linear_as_the_issue_measured():
    sd3, lin = timestep_schedule(10, 3.0, grid="sd3"), timestep_schedule(10, 3.0)
    assert abs(sd3[-2].item() - 0.0089) < 1e-4 and abs(lin[-2].item() - 0.25) < 1e-6
    assert (sd3 - lin).abs().max() > 0.2
    with pytest.raises(ValueError, match="grid"):
        timestep_schedule(10, 3.0, grid="cosine")


def test_nonzero_advantage_mask_keeps_nonzero_and_tops_up_to_a_multiple():
    adv = torch.tensor([0.0, 0.0, 1.0, -1.0, 0.0, 0.5])
    keep = nonzero_advantage_mask(adv)
    assert keep.tolist() == [False, False, True, True, False, True]
    keep = nonzero_advantage_mask(adv, multiple=2, generator=torch.Generator().manual_seed(0))
    assert int(keep.sum()) == 4 and keep[[2, 3, 5]].all()          # one zero sample put back
    assert not nonzero_advantage_mask(torch.zeros(4), multiple=2).any()


def test_kl_weights_per_task_and_scalar():
    g = SimpleNamespace(beta=0.004, beta_per_task={})
    batch = SimpleNamespace(task="mixed", records=[{"_task": "ocr"}, {"_task": "pickscore"}, {"_task": "x"}])
    assert kl_weights(SimpleNamespace(cfg=SimpleNamespace(grpo=g)), batch) == 0.004
    g.beta_per_task = {"ocr": 0.04, "pickscore": 0.01}
    w = kl_weights(SimpleNamespace(cfg=SimpleNamespace(grpo=g)), batch)
    assert torch.allclose(w, torch.tensor([0.04, 0.01, 0.004]))
    g.beta, g.beta_per_task = 0.0, {"ocr": 0.0}
    assert kl_weights(SimpleNamespace(cfg=SimpleNamespace(grpo=g)), batch) is None


def test_minibatched_updates_make_the_clip_act(world):
    ctx = make_ctx(world, **{"grpo.minibatches": 2, "grpo.clip_range": 1e-4, "train.lr": 1e-3})
    m = METHODS["grpo"]()
    m.setup(ctx)
    info = m.train_step(ctx)
    assert info["ratio_first"] == pytest.approx(1.0, abs=1e-6)
    assert info["clipfrac_late"] > 0, info
    assert ctx.ledger.spent("optimizer_steps") == 2
    ctx1 = make_ctx(world, **{"grpo.clip_range": 1e-4, "train.lr": 1e-3})   # one step per batch: never clipped
    info1 = m.train_step(ctx1)
    assert info1["clipfrac"] == 0 and "clipfrac_late" not in info1


def test_detached_unconditional_branch_carries_no_gradient(world):
    model = load_backbone(world / "base")
    cond = model.encode_prompts(["a red circle", "a blue square"])
    x, w = torch.randn(2, *model.latent_shape, generator=torch.Generator().manual_seed(0)), 3.0
    params = model.trainable_parameters()

    def grad(fn):
        return torch.autograd.grad(fn().square().sum(), params, allow_unused=True)

    g_detached = grad(lambda: model.velocity(x, 0.7, cond, w, detach_uncond=True))
    # hand-derived: v = (1 - w) sg(v_u) + w v_c, so d/dtheta only sees w v_c (v_u enters as a constant)
    with torch.no_grad():
        v_u = model.denoise(x, torch.full((2,), 0.7), cond.uncond_states.expand(2, -1, -1), cond.uncond_pooled.expand(2, -1))
    g_hand = grad(lambda: (1 - w) * v_u + w * model.denoise(x, torch.full((2,), 0.7), cond.states, cond.pooled))
    g_full = grad(lambda: model.velocity(x, 0.7, cond, w))
    flat = lambda gs: torch.cat([g.flatten() for g in gs if g is not None])
    a, b, full = flat(g_detached), flat(g_hand), flat(g_full)
    assert (a - b).norm() < 1e-5 * b.norm()        # equal up to float rounding (batched 2B vs B forwards)
    assert (a - full).norm() > 1e-2 * full.norm()


@pytest.mark.parametrize("warmup,decay", [("updates", 0.1), ("optimizer_steps", 0.5)])
def test_ema_warmup_by_update_or_optimizer_step(world, warmup, decay):
    ctx = make_ctx(world, **{"train.ema.enabled": True, "train.ema.every": 8, "train.ema.warmup": warmup,
                             "train.weight_decay": 0.0})
    for group in ctx.optimizer.param_groups:
        group["lr"] = 0.0                       # weights stay put: the EMA's own arithmetic is checked
    for m in ctx.ema:
        m.zero_()
    for _ in range(8):
        for p in ctx.params:
            p.grad = torch.zeros_like(p)
        ctx.optimizer_step()
    # the first EMA update happens at optimizer step 8: decay min((1 + k) / (10 + k), 0.9), k = 0 or 8
    for m, p in zip(ctx.ema, ctx.params):
        assert torch.allclose(m, (1 - decay) * p.detach(), atol=1e-7)


# ----------------------------------------------------------------------------- replay against Flow-GRPO's update


def flow_grpo_reference_update(model, ref_model, batch, rewards, cfg, perm_generator, capture):
    """Flow-GRPO's update written from its code's equations, independent of opd_bench's sampler and losses:
    advantages per prompt (mean) over the global std + 1e-4, clipped to +-adv_clip_max; the mask of samples
    whose advantage is zero; a shuffle into num_batches chunks, one optimizer step each (AdamW, grad-norm clip);
    per trained step j: CFG with the unconditional prediction detached, sde_step_with_logprob's mean and
    log-prob at the stored next latent, the clipped surrogate, and beta * ||mean - mean_ref||^2 / (2 std_dev_t^2)
    averaged over dimensions. Returns the per-minibatch (loss, grads) in ``capture``."""
    g, s = cfg.grpo, cfg.sampler
    r = rewards.double().numpy()
    gid = batch.group_ids.numpy()
    mean = np.array([r[gid == k].mean() for k in gid])
    adv = torch.tensor(np.clip((r - mean) / (r.std() + 1e-4), -g.adv_clip, g.adv_clip), dtype=torch.float32)
    mask = adv != 0
    idx = torch.nonzero(mask).flatten()
    sched = FlowMatchEulerDiscreteScheduler(shift=s.shift)
    sched.set_timesteps(s.steps)
    sigmas = sched.sigmas.float()
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                            betas=tuple(cfg.train.betas))
    n_train = math.floor(s.steps * s.timestep_fraction + 1e-9)
    perm = torch.randperm(len(idx), generator=perm_generator)
    for chunk in torch.tensor_split(perm, g.minibatches):
        sel = idx[chunk]
        lat, old_lp, a = batch.rollout.states[sel], batch.rollout.log_probs[sel], adv[sel]
        cs, cp = batch.cond.states[sel], batch.cond.pooled[sel]
        us = batch.cond.uncond_states.expand(len(sel), -1, -1)
        up = batch.cond.uncond_pooled.expand(len(sel), -1)
        total = 0.0
        for j in range(n_train):
            sigma, sigma_prev, sigma_max = sigmas[j], sigmas[j + 1], sigmas[1]
            x, t = lat[:, j], sigma.expand(len(sel))

            def guided(m):
                out = m.denoise(torch.cat([x, x]), torch.cat([t, t]), torch.cat([us, cs]), torch.cat([up, cp]))
                u, c = out.chunk(2)
                u = u.detach()
                return u + s.guidance * (c - u)

            dt = sigma_prev - sigma
            std_dev_t = torch.sqrt(sigma / (1 - (sigma_max if sigma == 1 else sigma))) * s.noise_level

            def prev_mean(v):
                return x * (1 + std_dev_t**2 / (2 * sigma) * dt) + v * (1 + std_dev_t**2 * (1 - sigma) / (2 * sigma)) * dt

            mu = prev_mean(guided(model))
            with torch.no_grad():
                mu_ref = prev_mean(guided(ref_model))
            std = std_dev_t * torch.sqrt(-dt)
            lp = (-((lat[:, j + 1] - mu) ** 2) / (2 * std**2) - torch.log(std) - math.log(math.sqrt(2 * math.pi)))
            lp = lp.mean(dim=(1, 2, 3))
            ratio = torch.exp(lp - old_lp[:, j])
            policy = torch.mean(torch.maximum(-a * ratio, -a * torch.clamp(ratio, 1 - g.clip_range, 1 + g.clip_range)))
            kl = torch.mean(((mu - mu_ref) ** 2).mean(dim=(1, 2, 3)) / (2 * std_dev_t**2))
            loss = policy + g.beta * kl
            (loss / n_train).backward()          # accelerate divides by the accumulation steps
            total += loss.item() / n_train
        capture.append((total, [p.grad.clone() for p in model.trainable_parameters()]))
        torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), cfg.train.grad_clip)
        opt.step()
        opt.zero_grad()
    return mask


def test_suite_grpo_update_equals_flow_grpo_on_a_replayed_batch(world):
    over = {"sampler.grid": "sd3", "sampler.shift": 3.0, "sampler.steps": 4, "sampler.timestep_fraction": 0.75,
            "grpo.minibatches": 2, "grpo.clip_range": 1e-4, "grpo.beta": 0.04, "grpo.detach_uncond": True,
            "grpo.drop_zero_advantage": True, "grpo.adv_std": "global", "train.lr": 3e-4,
            "train.prompts_per_step": 4, "grpo.group_size": 2}
    ctx = make_ctx(world, **over)
    ctx.get_reference()
    independent = copy.deepcopy(ctx.student)
    ref_model = copy.deepcopy(ctx.student).requires_grad_(False)
    batch = ctx.rollout("brightness", ctx.sample_prompts("brightness", 4), 2, ctx.cfg.sampler.noise_level)
    rewards = ctx.rewards(batch)
    rewards[batch.group_ids == 1] = 0.5          # one group whose rewards agree: its advantages are zero
    adv = ctx.advantages(rewards, batch.group_ids, "global", ctx.cfg.grpo.adv_clip)
    suite = []
    step = ctx.optimizer_step

    def capturing_step():
        suite.append([p.grad.clone() for p in ctx.params])
        return step()

    ctx.optimizer_step = capturing_step
    info = grpo_update(ctx, batch, adv)
    theirs = []
    mask = flow_grpo_reference_update(independent, ref_model, batch, rewards, ctx.cfg,
                                      ctx.generator("minibatches", 0), theirs)
    assert int(mask.sum()) == 6 and info["kept"] == pytest.approx(6 / 8)
    assert len(suite) == len(theirs) == 2
    # the minibatch losses (about +-0.6) nearly cancel in the mean the suite logs: compare at their scale
    scale = max(abs(t[0]) for t in theirs)
    assert info["loss"] == pytest.approx(sum(t[0] for t in theirs) / 2, abs=1e-5 * scale)
    assert info["clipfrac_late"] > 0
    for k, (ours, (_, ref)) in enumerate(zip(suite, theirs)):
        a = torch.cat([g.flatten() for g in ours])
        b = torch.cat([g.flatten() for g in ref])
        assert b.norm() > 0
        assert (a - b).norm() < 1e-4 * b.norm(), (k, (a - b).norm() / b.norm())
