"""DiffusionNFT (Zheng et al., arXiv 2509.16117; NVlabs/DiffusionNFT scripts/train_nft_sd3.py): online RL on the
forward process. An objective over the runner's group rollouts, so it runs alone (``--method nft``, one task),
as Multi-task NFT (``--method multi-reward --set grpo.objective=nft``) and as Cascade NFT (``cascade`` with it).

Per batch:
  1. the OLD policy (a slow EMA of the trained weights, ``nft.old_decay``) samples clean images x0 with CFG
     ``nft.guidance`` (1.0: CFG-free) and the ODE (``nft.noise_level`` 0); rewards give group advantages A and
     the optimality probability r = clip(A)/c/2 + 1/2 (``losses.nft_optimality``);
  2. on each trained step's time t_j: fresh noise, x_t = (1 - t) x0 + t eps, the current and old velocities
     there, and the loss of ``losses.nft_loss`` (implicit positive / negative policies, adaptive weights), plus
     ``nft.kl_beta`` ||v - v_ref||^2; ``grpo.minibatches`` optimizer steps per batch;
  3. old <- d old + (1 - d) theta, d = ``losses.nft_old_decay`` of the optimizer steps so far.
No likelihoods and no SDE: any sampler works, and the policy is trained without CFG.
"""
from __future__ import annotations

from typing import Dict, List

import torch

from ..losses import forward_noise, nft_loss, nft_old_decay, nft_optimality, reduce_dims
from ..microbatch import accumulate, weighted
from .grpo import GRPO, OBJECTIVES, GRPOObjective, minibatch_indices

_OLD = "nft.old.{}"


class NFTObjective(GRPOObjective):
    name = "nft"
    label = "DiffusionNFT"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        for i, p in enumerate(ctx.params):   # the old policy starts at the student (a resume restores it)
            ctx.extra.setdefault(_OLD.format(i), p.detach().clone())

    @staticmethod
    def old_weights(ctx) -> List[torch.Tensor]:
        return [ctx.extra[_OLD.format(i)] for i in range(len(ctx.params))]

    def rollout(self, ctx, task: str, records):
        n = ctx.cfg.nft
        with ctx.swapped_weights(self.old_weights(ctx)):
            return ctx.rollout(task, records, ctx.cfg.grpo.group_size, n.noise_level, guidance=n.guidance)

    def update(self, ctx, batch, advantages: torch.Tensor) -> Dict[str, float]:
        n, g = ctx.cfg.nft, ctx.cfg.grpo
        r_all = nft_optimality(advantages, g.adv_clip)
        steps, ts = ctx.trained_steps(), batch.rollout.timesteps
        n_mb = min(g.minibatches, batch.size)
        terms = len(steps) * g.inner_epochs * n_mb
        stats = {"optimality": r_all.mean().item()}
        sums: Dict[str, object] = {"policy_loss": 0.0, "kl": 0.0, "loss": 0.0}   # device-side, read at the end
        fw = ctx.student.forwards_per_velocity(n.guidance)
        for epoch in range(g.inner_epochs):
            for mb, idx in enumerate(minibatch_indices(ctx, batch.size, n_mb, epoch)):
                sub = batch if idx is None else batch.index(idx)
                r_sub = r_all if idx is None else r_all[idx]
                x0_sub = sub.rollout.final
                gen = ctx.generator("nft", epoch, mb)
                ctx.expect_backwards(len(steps) * ctx.micro_parts(sub.size))
                for j in steps:
                    t = ts[j]
                    xt_sub = forward_noise(x0_sub, ctx.randn_rows(x0_sub.shape, gen).to(x0_sub.device), t)
                    for w, cond, x0, x_t, r in ctx.micro_batches(sub.size, sub.cond, x0_sub, xt_sub, r_sub):
                        rows = len(cond)
                        with torch.no_grad(), ctx.swapped_weights(self.old_weights(ctx)):
                            v_old = ctx.student.velocity(x_t, t, cond, n.guidance)
                        v = ctx.student.velocity(x_t, t, cond, n.guidance)
                        pl = nft_loss(v, v_old, x_t, x0, t, r, n.beta, g.adv_clip).mean()
                        loss = pl
                        ctx.ledger.forwards(ctx.phase, "student", "training", 2 * rows * fw)
                        if n.kl_beta > 0:
                            with torch.no_grad():
                                v_ref = ctx.get_reference().velocity(x_t, t, cond, n.guidance)
                            ctx.ledger.forwards(ctx.phase, "reference", "training", rows * fw)
                            kl = reduce_dims((v - v_ref) ** 2, "mean").mean()
                            loss = loss + n.kl_beta * kl
                            accumulate(sums, "kl", kl, w / terms)
                        ctx.backward(weighted(loss, w) / len(steps), rows, fw)
                        accumulate(sums, "policy_loss", pl, w / terms)
                        accumulate(sums, "loss", loss, w / terms)
                stats["grad_norm"] = ctx.optimizer_step()
        stats.update({k: float(v) for k, v in sums.items()})
        d = nft_old_decay(int(ctx.ledger.spent("optimizer_steps", ctx.phase)), *n.old_decay)
        with torch.no_grad():
            for old, p in zip(self.old_weights(ctx), ctx.params):
                old.mul_(d).add_(p.detach(), alpha=1 - d)
        stats["old_decay"] = d
        return stats


OBJECTIVES["nft"] = NFTObjective


class NFT(GRPO):
    """Single-task DiffusionNFT."""

    name = "nft"
    objective = "nft"
    config_sections = ("grpo", "nft")
