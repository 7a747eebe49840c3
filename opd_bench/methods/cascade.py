"""Cascade RL (method.md section 5): single-task GRPO stages in a configured task order; stage k starts from
stage k-1's weights (fresh optimizer, and the reference policy for the KL becomes the previous stage's
model). The budget is split across the stages (equal by default, or ``cascade.split``)."""
from __future__ import annotations

from typing import Dict, List, Tuple

from ..errors import UserError
from .grpo import RLMethod, grpo_step


class Cascade(RLMethod):
    name = "cascade"
    config_sections = ("grpo", "cascade")
    trains_tasks_in_sequence = True

    @classmethod
    def check(cls, cfg, tasks) -> None:
        super().check(cfg, tasks)
        unknown = [t for t in cfg.cascade.order or tasks if t not in tasks]
        if unknown:
            raise UserError(f"cascade.order: task {unknown[0]!r} is not among --tasks ({', '.join(tasks)})")

    @classmethod
    def task_order(cls, cfg, tasks) -> List[str]:
        return list(cfg.cascade.order or tasks)

    def setup(self, ctx) -> None:
        super().setup(ctx)   # grpo.objective: grpo | grpo-guard | nft (Cascade NFT)
        self.order: List[str] = self.task_order(ctx.cfg, ctx.tasks)
        split = ctx.cfg.cascade.split or [1.0] * len(self.order)
        total = float(sum(split))
        self.bounds = []  # cumulative budget fraction at the end of each stage
        acc = 0.0
        for s in split:
            acc += s / total
            self.bounds.append(acc)

    def stage(self, ctx) -> Tuple[int, str]:
        frac = ctx.ledger.spent(ctx.cfg.budget.unit) / ctx.cfg.budget.value
        for k, b in enumerate(self.bounds):
            if frac < b - 1e-12:
                return k, self.order[k]
        return len(self.order) - 1, self.order[-1]

    def start_stage(self, ctx, stage: int) -> None:
        ctx.reset_optimizer()
        ctx.reset_reference()

    def train_step(self, ctx) -> Dict[str, float]:
        k, task = self.stage(ctx)
        return {"stage": k, **grpo_step(ctx, task)}
