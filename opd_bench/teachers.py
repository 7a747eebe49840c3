"""Teacher and reference resolution, in one place: which checkpoint is task m's teacher (``opd.teachers``, else the
released ``teacher_<task>``), the one message when it is missing, how a teacher or the KL reference policy is held
next to a student (a frozen copy, or an adapter on a LoRA backbone's own network), and the teachers' recorded
training spend (the ledger's teacher cost)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Dict, Iterable

from .backbones import resolve_checkpoint
from .errors import UserError

def released_teacher(task: str) -> str:
    """The name of task ``task``'s released teacher checkpoint (a ``--train-teachers`` run is named so too)."""
    return f"teacher_{task}"


def teacher_name(cfg, task: str) -> str:
    """Task ``task``'s teacher as configured: ``opd.teachers.<task>``, else the released one."""
    return str(cfg.opd.teachers.get(task, released_teacher(task)))


def resolve_teacher(cfg, task: str) -> Path:
    """The checkpoint folder of ``task``'s teacher; a missing one is one line saying what to do."""
    name = teacher_name(cfg, task)
    try:
        return resolve_checkpoint(name)
    except UserError:
        raise UserError(f"no teacher for task {task}: {name} not found (train one with `opd-bench run --method grpo "
                        f"--tasks {task}`, pass --set opd.teachers.{task}=PATH, or --train-teachers)") from None


def resolve_teachers(cfg, tasks: Iterable[str]) -> Dict[str, Path]:
    """{task: teacher checkpoint folder} for every task (the first missing one is one line)."""
    return {t: resolve_teacher(cfg, t) for t in tasks}


def teachers_spend(cfg, tasks: Iterable[str]) -> Dict[str, Dict[str, float]]:
    """Each task's teacher's recorded training spend (empty where unknown)."""
    from .ledger import teacher_spend

    return {t: teacher_spend(p) for t, p in resolve_teachers(cfg, tasks).items()}


def load_teacher(student, task: str, path: Path, device):
    """Task ``task``'s frozen teacher policy next to ``student``: a named adapter on the student's own network when
    the backbone can hold one (LoRA), else a separately loaded frozen backbone."""
    from .backbones import load_backbone
    from .backbones.base import PolicyView

    if student.can_load_teacher:
        student.load_teacher(task, path)
        return PolicyView(student, lambda: student.adapter(task))
    return load_backbone(path, device).eval().requires_grad_(False)


def reference_policy(student):
    """The KL reference policy of ``student`` as it is now: the LoRA backbone's reference adapter state (no second
    copy), else a frozen deep copy of the student."""
    from .backbones.base import PolicyView

    if student.has_lora_reference:
        return PolicyView(student, student.reference, student.reference_parameters)
    return copy.deepcopy(student).eval().requires_grad_(False)
