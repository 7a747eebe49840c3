"""The task interface. A task = train/eval prompt sets + a training reward + evaluation metrics.

Images passed to tasks are float tensors [B, 3, H, W] with values in [0, 1] (CPU or GPU).
A prompt record (:data:`opd_bench.scoring.records.PromptRecord`) is a plain dict with at least the key
``"prompt"`` (str); task-specific metadata (e.g. GenEval's ``tag``/``include``, OCR's ``text``) rides along.

Adding a task is one file in ``opd_bench/tasks/`` that subclasses :class:`Task` and decorates it with
``@register_task("name")``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Dict, List, Optional, Sequence

import torch

from ..scoring.records import PromptRecord

_REGISTRY: Dict[str, Callable[..., "Task"]] = {}


def register_task(name: str):
    def deco(cls):
        if name in _REGISTRY:
            raise ValueError(f"task {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def registry() -> Dict[str, Callable[..., "Task"]]:
    return _REGISTRY


class Task(ABC):
    name: str = "task"
    #: name of the primary metric returned by :meth:`metrics` (the one reports normalise and rank).
    primary_metric: str = "score"
    #: record key whose values are categories (e.g. GenEval's ``tag``): evaluation then reports each category
    #: and the task score is the mean of the category means. None = a plain mean over prompts.
    category_key: Optional[str] = None
    #: categories reported on their own rows but left out of the task score (GenEval's held-out compositions)
    separate_categories: tuple = ()
    #: which world's ``--tasks all`` includes this task: "embedded" (the default world) or "real".
    world: str = "embedded"
    #: True when the reward can judge ANY prompt (aesthetic, preference, PickScore...): multi-reward
    #: ``weighted_sum`` then scores other tasks' prompts with it too.
    prompt_agnostic: bool = False

    @abstractmethod
    def prompts(self, split: str) -> List[PromptRecord]:
        """Prompt records for ``split`` in {"train", "val", "test"} (:mod:`opd_bench.world.build.splits`): val and test
        texts occur in no other set; ``val`` is read by everything that selects, ``test`` by final evaluations."""

    @abstractmethod
    def reward(self, images: torch.Tensor, records: Sequence[PromptRecord]) -> torch.Tensor:
        """Training reward, shape [B], float32 (higher is better)."""

    @abstractmethod
    def metrics(self, images: torch.Tensor, records: Sequence[PromptRecord]) -> Dict[str, torch.Tensor]:
        """Per-sample evaluation metrics, each shape [B]; must contain ``primary_metric``."""
