"""GRPO-Guard (Wang et al., arXiv 2510.22319, "Mitigating Implicit Over-Optimization in Flow Matching via
Regulated Clipping"): Flow-GRPO with a regulated clip. An objective over the runner's group rollouts, so it runs
alone (``--method grpo-guard``: the paper's OCR and aesthetic teacher recipe) and inside multi-reward (the paper's
MT-GRPO-Guard baseline: ``--method multi-reward --set grpo.objective=grpo-guard``) and cascade.

Two changes to Flow-GRPO's update (everything else -- minibatches, KL, dropping, detaching -- is shared):
  1. RatioNorm (``grpo_guard.ratio_norm``): the clip sees log rho_hat = s (log rho + ||mu - mu_old||^2 / (2 s^2))
     (``losses.ratio_norm``), centred at ratio 1 with the same scale at every step, so that the clip constrains
     overconfident positive updates; the rollout keeps each transition's old mean mu_old for it;
  2. step-wise gradient reweighting (``grpo_guard.reweight``): step j's loss is weighted by 1/|dt_j|
     normalised to mean 1 (``losses.guard_step_weights``).
The authors' code was not public when this was written: the objective follows the paper's description.
"""
from __future__ import annotations

from typing import Dict

import torch

from ..losses import guard_step_weights, ppo_clip_loss, ratio_norm, reduce_dims
from ..sampler import transition_logprob
from .grpo import GRPO, OBJECTIVES, GRPOObjective, grpo_update


def guard_surrogate(ctx, sub, j: int, tr, adv: torch.Tensor):
    """GRPO-Guard's per-step term: the clipped surrogate of the RatioNorm'd ratio, times the step's weight."""
    gg, reduce = ctx.cfg.grpo_guard, ctx.cfg.sampler.logprob_reduce
    logp = transition_logprob(sub.rollout.states[:, j + 1], tr, reduce)
    log_ratio = logp - sub.rollout.log_probs[:, j]
    if gg.ratio_norm:
        gap = reduce_dims((tr.mean - sub.rollout.means[:, j]) ** 2, reduce)
        log_ratio = ratio_norm(log_ratio, gap, tr.std)
    loss, ratio = ppo_clip_loss(log_ratio, torch.zeros_like(log_ratio), adv, ctx.cfg.grpo.clip_range)
    steps = ctx.trained_steps()
    w = guard_step_weights(sub.rollout.timesteps, steps, gg.reweight)[steps.index(j)]
    return loss * w.to(loss.device), ratio


class GuardObjective(GRPOObjective):
    name = "grpo-guard"
    label = "GRPO-Guard"

    def rollout(self, ctx, task: str, records):
        return ctx.rollout(task, records, ctx.cfg.grpo.group_size, ctx.cfg.sampler.noise_level, keep_means=True)

    def update(self, ctx, batch, advantages: torch.Tensor) -> Dict[str, float]:
        return grpo_update(ctx, batch, advantages, surrogate=guard_surrogate)


OBJECTIVES["grpo-guard"] = GuardObjective


class GRPOGuard(GRPO):
    """Single-task GRPO-Guard."""

    name = "grpo-guard"
    objective = "grpo-guard"
    config_sections = ("grpo", "grpo_guard")
