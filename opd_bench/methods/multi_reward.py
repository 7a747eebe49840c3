"""Multi-reward RL (method.md section 5): GRPO over the union of tasks.

- ``mode: alternate`` (the paper's baseline): steps cycle through the tasks; each task's prompts are scored
  by that task's reward.
- ``mode: weighted_sum`` (Flow-GRPO multi-reward): each step draws prompts from every task and scores every
  sample with sum_k w_k r_k. A task's reward only speaks for prompts it can judge: its own, or any prompt when
  the task is prompt-agnostic (aesthetic, preference); elsewhere it contributes 0 (no signal within a group).
  ``normalize: per_reward`` standardises each reward within its group before weighting (GDPO style).
Either mode optimises ``grpo.objective`` (Flow-GRPO, GRPO-Guard, or DiffusionNFT: Multi-task NFT).
"""
from __future__ import annotations

from typing import Dict

import torch

from ..losses import grpo_advantages
from ..tasks import get_task
from ..rollout import Batch
from .grpo import RLMethod, grpo_step, rl_objective


def _group_standardize(r: torch.Tensor, gids: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    return grpo_advantages(r, gids, "group", clip=float("inf"), eps=eps)


class MultiReward(RLMethod):
    name = "multi-reward"
    config_sections = ("grpo", "multi_reward")

    def train_step(self, ctx) -> Dict[str, float]:
        if ctx.cfg.multi_reward.mode == "alternate":
            task = ctx.tasks[ctx.round % len(ctx.tasks)]
            return grpo_step(ctx, task)
        return self._weighted_sum_step(ctx)

    def _weighted_sum_step(self, ctx) -> Dict[str, float]:
        mr, g = ctx.cfg.multi_reward, ctx.cfg.grpo
        # prompts of every task in one batch: prompts_per_step prompts in total, spread round-robin over tasks
        n = ctx.step_prompts(g.group_size)   # fewer on an image budget's last step
        counts = {t: n // len(ctx.tasks) + (1 if i < n % len(ctx.tasks) else 0) for i, t in enumerate(ctx.tasks)}
        obj = rl_objective(ctx)
        batches = [obj.rollout(ctx, t, ctx.sample_prompts(t, c)) for t, c in counts.items() if c > 0]
        info: Dict[str, float] = {}
        total = []
        for b in batches:
            r = torch.zeros(b.size)
            for k in ctx.tasks:
                if k != b.task and not getattr(get_task(k), "prompt_agnostic", False):
                    continue
                rk = ctx.rewards(b, task=k)
                info[f"reward/{k}@{b.task}"] = rk.mean().item()
                if mr.normalize == "per_reward":
                    rk = _group_standardize(rk, b.group_ids)
                r = r + mr.weights.get(k, 1.0) * rk
            total.append(r)
        batch = Batch.cat(batches)
        rewards = torch.cat(total)
        info["reward"] = rewards.mean().item()
        adv = ctx.advantages(rewards, batch.group_ids, g.adv_std, g.adv_clip)
        return {**info, **obj.update(ctx, batch, adv)}
