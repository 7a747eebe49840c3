"""The method interface: a small strategy over the runner (``opd_bench.runner.RunContext``)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, Tuple


class Method(ABC):
    name = "method"

    @classmethod
    def check(cls, cfg, tasks) -> None:
        """Raise UserError if the method cannot run ``tasks`` with ``cfg`` (cheap: no model; called before a
        run creates anything, and by ``setup``)."""

    def setup(self, ctx) -> None:
        """Called once the student, optimizer and ledger exist (before any step or resume)."""

    @abstractmethod
    def train_step(self, ctx) -> Dict[str, float]:
        """One round: fresh rollouts, loss, ``ctx.backward`` and ``ctx.optimizer_step``. Returns metrics to log."""

    def stage(self, ctx) -> Tuple[int, str]:
        """(index, label) of the stage the budget spent so far puts the run in; single-stage by default."""
        return 0, self.name

    def start_stage(self, ctx, stage: int) -> None:
        """Called when the run enters a new stage (cascade)."""
