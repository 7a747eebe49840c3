"""SFT distillation (the DiffusionOPD paper's off-policy ablation): the same teachers and schedule as OPD, but the
teachers generate the images and the student fits them with the flow-matching loss.

Each round, for every task m in turn (as ``opd``: ``train.prompts_per_step`` prompts, one optimizer step per
round, task losses combined by ``opd.task_reduction``):
  1. teacher m samples clean images x0 online for the student's prompts of task m (the ODE on the sampler's grid
     and steps, at the teacher's CFG ``opd.teacher_guidance``);
  2. at each trained step's time t_j: fresh noise eps, x_t = (1 - t) x0 + t eps, and the student's conditional
     velocity fits eps - x0 (``losses.flow_matching_loss``). The student never sees its own states: off-policy.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch

from ..losses import flow_matching_loss, forward_noise
from ..microbatch import accumulate, weighted
from ..sampler import euler_step, timestep_schedule
from .opd import DiffusionOPD


class SFTDistill(DiffusionOPD):
    name = "sft-distill"
    #: its own flow-matching loss has no analysis estimator; the analyses use the RL policy gradient, as before
    gradient_objective = "grpo"

    @classmethod
    def objective_label(cls, cfg) -> str:
        return "flow matching on teacher samples"

    @torch.no_grad()
    def teacher_samples(self, ctx, task: str, cond) -> torch.Tensor:
        """Teacher ``task``'s ODE samples (clean states) for ``cond``, counted in the ledger."""
        s = ctx.cfg.sampler
        teacher, w = ctx.teacher(task), ctx.cfg.opd.teacher_guidance.get(task, s.guidance)
        ts = timestep_schedule(s.steps, s.shift, device=ctx.student.device, grid=s.grid)
        x = ctx.randn_rows((len(cond), *ctx.student.latent_shape), ctx.generator("sft", task)).to(ts.device)
        for j in range(s.steps):
            x = euler_step(x, teacher.velocity(x, ts[j], cond, w), ts[j], ts[j + 1])
        ctx.timesteps = ts
        ctx.ledger.images(ctx.phase, len(cond))
        ctx.ledger.forwards(ctx.phase, "teacher", "rollout", len(cond) * s.steps * teacher.forwards_per_velocity(w))
        return x

    def task_loss(self, ctx, task: str, weight: float = 1.0, n: Optional[int] = None) -> Dict[str, float]:
        records = ctx.sample_prompts(task, n or ctx.cfg.train.prompts_per_step)
        cond = ctx.student.encode_prompts([r["prompt"] for r in records])
        x0 = self.teacher_samples(ctx, task, cond)
        steps, gen = ctx.trained_steps(), ctx.generator("sft-noise", task)
        sums: Dict[str, object] = {"loss": 0.0}
        for j in steps:
            t = ctx.timesteps[j]
            noise_all = ctx.randn_rows(x0.shape, gen).to(x0.device)
            for w, c, x0_m, noise in ctx.micro_batches(len(records), cond, x0, noise_all):   # train.micro_batch
                v = ctx.student.velocity(forward_noise(x0_m, noise, t), t, c, 1.0)
                ctx.ledger.forwards(ctx.phase, "student", "training", len(c))
                loss = flow_matching_loss(v, x0_m, noise).mean()
                ctx.backward(weighted(loss * weight, w) / len(steps), len(c))
                accumulate(sums, "loss", loss, w / len(steps))
        total = float(sums["loss"])
        return {f"loss/{task}": total}
