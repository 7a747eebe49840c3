"""Flow-GRPO (method.md section 3): the teachers' single-task RL, and the step that multi-reward RL and
cascade RL run on their tasks.

Per step, for a task:
  1. sample prompts; roll the student out with the SDE (noise level a), ``group_size`` samples per prompt;
  2. score the images with the task's reward and form group-relative advantages A_i;
  3. on each trained step j, recompute the student's transition at the stored state x_j, take the PPO
     clipped surrogate of the ratio exp(log p_theta - log p_old), plus beta * KL to the reference policy;
  4. per inner epoch, ``grpo.minibatches`` optimizer steps on a shuffled split of the batch (Flow-GRPO: 2);
     the first is exactly on-policy (ratio 1), the later ones are off-policy, where the clip acts.
Flow-GRPO parity switches (docs/methods.md): ``grpo.drop_zero_advantage``, ``grpo.detach_uncond``,
``grpo.beta_per_task``, ``sampler.grid: sd3``, ``train.ema.warmup: optimizer_steps``.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Union

import torch

from ..errors import ConfigError
from ..losses import kl_to_reference, nonzero_advantage_mask, ppo_clip_loss
from ..microbatch import accumulate, weighted
from ..sampler import transition_logprob
from .base import Method


def kl_weights(ctx, batch) -> Union[float, torch.Tensor, None]:
    """The KL coefficient: ``grpo.beta``, or per sample by its prompt's task when ``grpo.beta_per_task`` is set
    (a mixed multi-reward batch weighs each sample by its own task's beta); None when every beta is 0."""
    g = ctx.cfg.grpo
    if not g.beta_per_task:
        return g.beta if g.beta > 0 else None
    w = torch.tensor([g.beta_per_task.get(r.get("_task", batch.task), g.beta) for r in batch.records])
    return w if bool((w > 0).any()) else None


def minibatch_indices(ctx, n: int, minibatches: int, epoch: int) -> List[Optional[torch.Tensor]]:
    """Flow-GRPO's split of a batch of rollouts (train_sd3.py): shuffle the samples, cut them into
    ``minibatches`` near-equal parts, one optimizer step each. [None] (the whole batch, unshuffled) for 1."""
    if minibatches <= 1:
        return [None]
    perm = torch.randperm(n, generator=ctx.generator("minibatches", epoch))
    return list(torch.tensor_split(perm, minibatches))


def flow_grpo_surrogate(ctx, sub, j: int, tr, adv: torch.Tensor):
    """Flow-GRPO's clipped surrogate at step j: (per-sample loss, ratio exp(log p_theta - log p_old))."""
    logp = transition_logprob(sub.rollout.states[:, j + 1], tr, ctx.cfg.sampler.logprob_reduce)
    return ppo_clip_loss(logp, sub.rollout.log_probs[:, j], adv, ctx.cfg.grpo.clip_range)


def grpo_update(ctx, batch, advantages: torch.Tensor, surrogate: Callable = flow_grpo_surrogate) -> Dict[str, float]:
    """Steps 3-4 on a rollout batch with given advantages; returns diagnostics (``clipfrac_late``: the clip
    fraction of the minibatches after each inner epoch's first; absent with one minibatch). ``surrogate(ctx, sub, j,
    transition, adv) -> (loss, ratio)`` is the per-step policy term (GRPO-Guard swaps it)."""
    cfg = ctx.cfg.grpo
    steps = ctx.trained_steps()
    stats = {"ratio_first": float("nan"), "clipfrac": 0.0, "kl": 0.0, "policy_loss": 0.0, "loss": 0.0}
    if cfg.drop_zero_advantage:
        keep = nonzero_advantage_mask(advantages, cfg.minibatches, ctx.generator("drop_zero_advantage"))
        stats["kept"] = keep.float().mean().item()
        if not bool(keep.any()):
            return stats  # every group agreed: nothing to learn from this batch
        idx = torch.nonzero(keep).flatten()
        batch, advantages = batch.index(idx), advantages[idx]
    beta = kl_weights(ctx, batch)
    n_mb = min(cfg.minibatches, batch.size)
    terms = len(steps) * cfg.inner_epochs * n_mb
    fw = ctx.student.forwards_per_velocity(ctx.cfg.sampler.guidance)
    late, sums = [], {}   # device-side sums (no host sync in the loop), read once at the end
    for epoch in range(cfg.inner_epochs):
        for mb, idx in enumerate(minibatch_indices(ctx, batch.size, n_mb, epoch)):
            sub, adv = (batch, advantages) if idx is None else (batch.index(idx), advantages[idx])
            b = beta[idx] if torch.is_tensor(beta) and idx is not None else beta
            ctx.expect_backwards(len(steps) * ctx.micro_parts(sub.size))
            for j in steps:
                step = {}
                for w, mic, a, bm in ctx.micro_batches(sub.size, sub, adv, b):   # train.micro_batch
                    tr = ctx.student_transition(mic, j, True) if cfg.detach_uncond else ctx.student_transition(mic, j)
                    pl, ratio = surrogate(ctx, mic, j, tr, a)
                    loss = pl.mean()
                    if bm is not None:
                        sigma, dt = ctx.sigma_dt(mic, j)
                        kl = kl_to_reference(tr.mean, ctx.reference_transition(mic, j).mean, sigma, dt, cfg.kl_denominator)
                        loss = loss + (bm * kl.mean() if isinstance(bm, float) else (bm * kl).mean())
                        accumulate(step, "kl", kl.mean(), w)
                    ctx.backward(weighted(loss, w) / len(steps), mic.size, fw)
                    accumulate(step, "ratio", ratio.mean(), w)
                    accumulate(step, "clipfrac", ((ratio - 1).abs() > cfg.clip_range).float().mean(), w)
                    accumulate(step, "policy_loss", pl.mean(), w)
                    accumulate(step, "loss", loss, w)
                if epoch == 0 and mb == 0 and j == steps[0]:
                    sums["ratio_first"] = step["ratio"]
                for k in ("clipfrac", "kl", "policy_loss", "loss"):
                    if k in step:
                        accumulate(sums, k, step[k], 1.0 / terms)
                if mb > 0:
                    late.append(step["clipfrac"])
            stats["grad_norm"] = ctx.optimizer_step()
    stats.update({k: float(v) for k, v in sums.items()})
    if late:
        stats["clipfrac_late"] = float(sum(late)) / len(late)
    return stats


class GRPOObjective:
    """An RL objective over the runner's group rollouts: how to roll out a task's prompts and how to update on
    the batch given its advantages. Flow-GRPO's; GRPO-Guard and DiffusionNFT register their own (``OBJECTIVES``),
    and grpo, multi-reward and cascade run whichever ``grpo.objective`` names."""

    name = "grpo"
    label = "Flow-GRPO"

    def __init__(self, ctx) -> None:
        self.ctx = ctx

    def rollout(self, ctx, task: str, records):
        return ctx.rollout(task, records, ctx.cfg.grpo.group_size, ctx.cfg.sampler.noise_level)

    def update(self, ctx, batch, advantages: torch.Tensor) -> Dict[str, float]:
        return grpo_update(ctx, batch, advantages)


OBJECTIVES: Dict[str, type] = {"grpo": GRPOObjective}


def rl_objective(ctx, name: Optional[str] = None):
    """The run's RL objective (``name`` or ``grpo.objective``), built once per context and kept on it."""
    name = name or ctx.cfg.grpo.objective
    cache = ctx.__dict__.setdefault("_rl_objectives", {})
    if name not in cache:
        cache[name] = OBJECTIVES[name](ctx)
    return cache[name]


def grpo_step(ctx, task: str, reward_fn: Optional[Callable] = None, objective: Optional[str] = None) -> Dict[str, float]:
    """A full RL step on ``task``'s prompts with the run's objective (reward_fn(batch) overrides the task's own
    reward; ``objective`` overrides ``grpo.objective``)."""
    g = ctx.cfg.grpo
    obj = rl_objective(ctx, objective)
    records = ctx.sample_prompts(task, ctx.step_prompts(g.group_size))   # fewer on an image budget's last step
    if reward_fn:
        batch = obj.rollout(ctx, task, records)
        rewards = reward_fn(batch)
    else:   # rewards.overlap_parts: parts of the rollout scored while the next is sampled
        batch, rewards = ctx.rollout_and_score(task, records, lambda part: obj.rollout(ctx, task, part))
    adv = ctx.advantages(rewards, batch.group_ids, g.adv_std, g.adv_clip)
    return {"reward": rewards.mean().item(), f"reward/{task}": rewards.mean().item(), **obj.update(ctx, batch, adv)}


class RLMethod(Method):
    """A method over the runner's group rollouts with an RL objective (``objective``, or ``grpo.objective`` when
    None): its ``grpo`` section (plus the objective's own section) sets the groups, advantages, clip and KL."""

    config_sections: tuple = ("grpo",)
    objective: Optional[str] = None

    @classmethod
    def objective_name(cls, cfg) -> str:
        return cls.objective or cfg.grpo.objective

    @classmethod
    def check(cls, cfg, tasks) -> None:
        super().check(cfg, tasks)
        from . import OBJECTIVES   # every method module imported: each registers its objective

        if cfg.grpo.objective not in OBJECTIVES:
            raise ConfigError(f"grpo.objective: must be one of {', '.join(OBJECTIVES)} (got {cfg.grpo.objective!r})")
        if cfg.grpo.group_size < 2:
            raise ConfigError(f"grpo.group_size: GRPO needs groups of at least 2 (got {cfg.grpo.group_size})")

    def setup(self, ctx) -> None:
        self.check(ctx.cfg, ctx.tasks)
        rl_objective(ctx, self.objective)   # built before a resume restores its state

    @classmethod
    def objective_label(cls, cfg) -> str:
        from . import OBJECTIVES

        return OBJECTIVES[cls.objective_name(cfg)].label

    @classmethod
    def needs_reference(cls, cfg) -> bool:
        if cls.objective_name(cfg) == "nft":
            return cfg.nft.kl_beta > 0
        return cfg.grpo.beta > 0 or any(b > 0 for b in cfg.grpo.beta_per_task.values())


class GRPO(RLMethod):
    """Single-task RL (a teacher): Flow-GRPO, or the objective ``objective`` forces (subclasses)."""

    name = "grpo"
    single_task = True

    def train_step(self, ctx) -> Dict[str, float]:
        return grpo_step(ctx, ctx.tasks[0], objective=self.objective)
