"""DiffusionOPD (method.md section 4): on-policy distillation of per-task teachers into one student.

Each round, for every task m in turn:
  1. sample prompts of task m and roll the STUDENT out without grad (ODE by default, or the SDE with a > 0),
     keeping the visited states x_j;
  2. at every trained state, compute teacher m's transition mean mu_T(x_j) (no grad, the teacher's own CFG);
  3. the per-step loss is closed-form: the exact Gaussian KL ||mu_S - mu_T||^2 / (2 s_j^2) for the SDE, or
     mean matching 1/2 ||mu_S - mu_T||^2 for the ODE; states are detached, so the gradient flows only through
     mu_S(x_j; theta). A prompt of task m is supervised only by teacher m.
The task losses are summed (``opd.task_reduction: sum``; the official code's ``mean`` averages them) over the
round and ONE optimizer step is taken (gradient-norm clip). ``opd.sde_denominator``: the SDE loss divides by
2 sigma^2 |dt| (the paper's exact KL) or 2 sigma^2 (the official code).

``opd.objective=ppo`` swaps step 3 for the PPO-style ablation: per-step advantage -KL_j estimated at the
sampled action, clipped surrogate on the SDE transition ratio; the advantage is scaled so that its expected
gradient is the closed form's (``losses.ppo_opd_advantage_scale``).
"""
from __future__ import annotations

from typing import Dict, Optional

from ..ledger import with_teacher_cost
from ..losses import opd_step_loss, ppo_opd_advantage_scale, ppo_opd_loss
from ..microbatch import accumulate, weighted
from ..sampler import transition_logprob
from ..teachers import teachers_spend
from .base import Method


class DiffusionOPD(Method):
    name = "opd"
    config_sections = ("opd",)
    uses_teachers = True
    gradient_objective = "opd"

    @classmethod
    def objective_label(cls, cfg) -> str:
        return f"DiffusionOPD {cfg.opd.objective} ({cfg.opd.sampler})"

    def ledger_extras(self, runner, spent: Dict[str, float]) -> dict:
        """The student phase's spend with the teachers' recorded training cost included (read once per run)."""
        if "_teachers_spend" not in self.__dict__:
            self._teachers_spend = teachers_spend(runner.cfg, runner.tasks)
        teachers = self._teachers_spend
        return {"opd_teacher_cost": {"teachers": teachers, "unknown": sorted(t for t, v in teachers.items() if not v),
                                     **with_teacher_cost(spent, teachers)}}

    def setup(self, ctx) -> None:
        for task in ctx.tasks:
            ctx.teacher(task)  # fail early (one clear line) if a teacher is missing

    @staticmethod
    def step_loss(ctx, task: str, batch, j: int, a: float, teacher=None):
        """The per-sample loss at trained step j on (a micro-batch of) the student's rollout; ``teacher``: the
        teacher's transition there when already computed (opd.batched_teacher)."""
        o, s = ctx.cfg.opd, ctx.cfg.sampler
        teacher = ctx.teacher_transition(task, batch, j) if teacher is None else teacher
        graph = batch.rollout.graph or {}   # opd.student_from_rollout: the rollout's own forward, with its graph
        student = graph[j] if j in graph else ctx.student_transition(batch, j)
        if o.objective == "closed_form":
            # opd.sde_denominator: ||mu_S - mu_T||^2 / (2 s^2) with s = sigma sqrt|dt| (paper) or sigma (code)
            std = (student.std if o.sde_denominator == "2sigma2dt" else ctx.sigma_dt(batch, j)[0]) if a > 0 else None
            return opd_step_loss(student.mean, teacher.mean, std)
        action = batch.rollout.states[:, j + 1]
        logp = transition_logprob(action, student, s.logprob_reduce)
        logp_t = transition_logprob(action, teacher, s.logprob_reduce)
        k = ppo_opd_advantage_scale(action[0].numel(), s.logprob_reduce)
        return ppo_opd_loss(logp, batch.rollout.log_probs[:, j], logp_t, o.clip_range, o.detach_advantage, k)[0]

    def task_loss(self, ctx, task: str, weight: float = 1.0, n: Optional[int] = None) -> Dict[str, float]:
        """Task ``task``'s loss over one rollout of ``n`` prompts (default ``train.prompts_per_step``), its
        gradient accumulated with ``weight`` (opd.task_reduction)."""
        o = ctx.cfg.opd
        a = o.noise_level if o.sampler == "sde" else 0.0
        records = ctx.sample_prompts(task, n or ctx.cfg.train.prompts_per_step)
        steps = ctx.trained_steps()
        # opd.student_from_rollout: one process, whole batches (a DDP/FSDP wrapper's reducer expects each graded
        # forward's backward before the next forward; the fused rollout runs every trained step's forward first)
        fused = o.student_from_rollout and not ctx.cfg.train.micro_batch and ctx.dist.world_size == 1
        batch = ctx.rollout(task, records, 1, a, grad_steps=steps if fused else ())
        fw = ctx.student.forwards_per_velocity(ctx.cfg.sampler.guidance)
        sums: Dict[str, object] = {}
        teachers = ctx.teacher_transitions(task, batch, steps) if o.batched_teacher else {}
        for j in steps:
            for w, mic, tr in ctx.micro_batches(batch.size, batch, teachers.get(j)):   # train.micro_batch
                loss = self.step_loss(ctx, task, mic, j, a, tr).mean()
                step_loss = weighted(loss, w) / len(steps)
                ctx.backward(step_loss if weight == 1.0 else step_loss * weight, mic.size, fw)
                accumulate(sums, "loss", loss, w / len(steps))
        total = float(sums["loss"])
        return {f"loss/{task}": total}

    def train_step(self, ctx) -> Dict[str, float]:
        info: Dict[str, float] = {}
        # round-robin over the tasks; gradients accumulate: the task losses' sum, or their mean (official code)
        weight = 1.0 if ctx.cfg.opd.task_reduction == "sum" else 1.0 / len(ctx.tasks)
        # one image per prompt and task: fewer prompts per task on an image budget's last round, decided once
        n = ctx.step_prompts(len(ctx.tasks))
        rows = len(range(n)[ctx.dist.shard(n)])   # this process's prompts of each task
        ctx.expect_backwards(len(ctx.tasks) * len(ctx.trained_steps()) * ctx.micro_parts(rows))
        for task in ctx.tasks:
            info.update(self.task_loss(ctx, task, weight, n))
        info["loss"] = sum(info.values()) * weight
        info["grad_norm"] = ctx.optimizer_step()
        return info
