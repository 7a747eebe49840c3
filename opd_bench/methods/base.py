"""The method interface: a small strategy over the runner (``opd_bench.runner.RunContext``).

A method owns its identity: its ``name`` (the registry's key), the config sections it reads and its traits,
which the runner, the plan, validation, the analyses and the report ask instead of comparing its name."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, List, Tuple

from ..errors import UserError


class Method(ABC):
    name = "method"
    #: the config sections (``RunConfig`` fields) the method reads besides the shared ones (model, sampler,
    #: train, budget, eval)
    config_sections: Tuple[str, ...] = ()
    #: distils per-task teachers (``opd.teachers``): their checkpoints are resolved, checked before the run and
    #: their training spend is added to the ledger report
    uses_teachers = False
    #: trains one task per run (a teacher)
    single_task = False
    #: trains its tasks one after the other (cascade): forgetting is read per stage
    trains_tasks_in_sequence = False
    #: the loss whose per-task gradients represent the method in the interference and variance analyses
    #: (``opd``: DiffusionOPD's own loss; ``grpo``: the RL policy gradient)
    gradient_objective = "grpo"

    @classmethod
    def check(cls, cfg, tasks) -> None:
        """Raise UserError if the method cannot run ``tasks`` with ``cfg`` (cheap: no model; called before a
        run creates anything, and by ``setup``)."""
        if cls.single_task and len(tasks) != 1:
            raise UserError(f"--method {cls.name} trains one task at a time (got {', '.join(tasks)}); "
                            "use multi-reward or cascade for several")

    @classmethod
    def task_order(cls, cfg, tasks) -> List[str]:
        """The order the method trains ``tasks`` in (cascade: its stages; else the tasks as given)."""
        return list(tasks)

    @classmethod
    def objective_label(cls, cfg) -> str:
        """What the method optimises, in words (``run --dry-run``)."""
        return cls.name

    @classmethod
    def needs_reference(cls, cfg) -> bool:
        """Whether a run with ``cfg`` computes a KL to a frozen reference policy."""
        return False

    def ledger_extras(self, runner, spent: Dict[str, float]) -> dict:
        """Entries the method adds to the run's ledger report, given the train phase's spend."""
        return {}

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
