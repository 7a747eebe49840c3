"""Flow-GRPO (method.md section 3): the teachers' single-task RL, and the step that multi-reward RL and
cascade RL run on their tasks.

Per step, for a task:
  1. sample prompts; roll the student out with the SDE (noise level a), ``group_size`` samples per prompt;
  2. score the images with the task's reward and form group-relative advantages A_i;
  3. on each trained step j, recompute the student's transition at the stored state x_j, take the PPO
     clipped surrogate of the ratio exp(log p_theta - log p_old), plus beta * KL to the reference policy;
  4. one optimizer step per inner epoch (the first inner epoch is exactly on-policy: ratio 1).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch

from ..losses import kl_to_reference, ppo_clip_loss
from ..sampler import transition_logprob
from .base import Method


def grpo_update(ctx, batch, advantages: torch.Tensor) -> Dict[str, float]:
    """Steps 3-4 on a rollout batch with given advantages; returns diagnostics."""
    cfg, s = ctx.cfg.grpo, ctx.cfg.sampler
    steps = ctx.trained_steps()
    stats = {"ratio_first": float("nan"), "clipfrac": 0.0, "kl": 0.0, "policy_loss": 0.0}
    for epoch in range(cfg.inner_epochs):
        for j in steps:
            tr = ctx.student_transition(batch, j)
            logp = transition_logprob(batch.rollout.states[:, j + 1], tr, s.logprob_reduce)
            pl, ratio = ppo_clip_loss(logp, batch.rollout.log_probs[:, j], advantages, cfg.clip_range)
            loss = pl.mean()
            if cfg.beta > 0:
                sigma, dt = ctx.sigma_dt(batch, j)
                kl = kl_to_reference(tr.mean, ctx.reference_transition(batch, j).mean, sigma, dt, cfg.kl_denominator)
                loss = loss + cfg.beta * kl.mean()
                stats["kl"] += kl.mean().item() / (len(steps) * cfg.inner_epochs)
            ctx.backward(loss / len(steps), batch.size)
            if epoch == 0 and j == steps[0]:
                stats["ratio_first"] = ratio.mean().item()
            stats["clipfrac"] += ((ratio - 1).abs() > cfg.clip_range).float().mean().item() / (len(steps) * cfg.inner_epochs)
            stats["policy_loss"] += pl.mean().item() / (len(steps) * cfg.inner_epochs)
        stats["grad_norm"] = ctx.optimizer_step()
    return stats


def grpo_step(ctx, task: str, reward_fn: Optional[Callable] = None) -> Dict[str, float]:
    """A full GRPO step on ``task``'s prompts (reward_fn(batch) overrides the task's own reward)."""
    g = ctx.cfg.grpo
    records = ctx.sample_prompts(task, ctx.cfg.train.prompts_per_step)
    batch = ctx.rollout(task, records, g.group_size, ctx.cfg.sampler.noise_level)
    rewards = reward_fn(batch) if reward_fn else ctx.rewards(batch)
    adv = ctx.advantages(rewards, batch.group_ids, g.adv_std, g.adv_clip)
    return {"reward": rewards.mean().item(), f"reward/{task}": rewards.mean().item(), **grpo_update(ctx, batch, adv)}


class GRPO(Method):
    """Single-task Flow-GRPO (a teacher)."""

    name = "grpo"

    @classmethod
    def check(cls, cfg, tasks) -> None:
        if len(tasks) != 1:
            from ..errors import UserError

            raise UserError(f"--method grpo trains one task at a time (got {', '.join(tasks)}); "
                            "use multi-reward or cascade for several")

    def setup(self, ctx) -> None:
        self.check(ctx.cfg, ctx.tasks)

    def train_step(self, ctx) -> Dict[str, float]:
        return grpo_step(ctx, ctx.tasks[0])
