"""The budget ledger (method.md section 6): what "identical budget" means.

Per phase (``teacher``, ``train``, ``eval``) it counts images sampled; denoiser forward passes by model
(student / teacher / reference) and purpose (rollout / training); backward passes; optimizer steps;
reward-model calls; an analytic FLOP estimate of the denoiser (forward = 1x, backward = 2x the forward
FLOPs); and wall-clock seconds. A budget is one of these units; the runner stops every method at the same
value of it in the ``train`` phase.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Dict

PHASES = ("teacher", "train", "eval")
MODELS = ("student", "teacher", "reference")
PURPOSES = ("rollout", "training")

#: budget units -> how they are read off a phase's counters.
UNITS = ("images", "student_nfe", "nfe", "flops", "seconds", "optimizer_steps")


class Ledger:
    def __init__(self, flops_per_forward: float = 0.0, scale: int = 1):
        self.flops_per_forward = float(flops_per_forward)
        #: data parallelism: every rank does the same-shaped work, so per-sample counts are multiplied by the
        #: number of processes to give global totals (optimizer steps and seconds are not scaled).
        self.scale = int(scale)
        self.phases: Dict[str, Dict[str, float]] = {p: defaultdict(float) for p in PHASES}
        self._clock = None

    # ---- counting -----------------------------------------------------------------------------------------
    def add(self, phase: str, key: str, amount: float = 1.0) -> None:
        if phase not in self.phases:
            raise ValueError(f"unknown phase {phase!r}")
        self.phases[phase][key] += amount

    @contextmanager
    def unscaled(self):
        """Counts inside are global already (a gathered evaluation): not multiplied by the number of processes."""
        scale, self.scale = self.scale, 1
        try:
            yield self
        finally:
            self.scale = scale

    def images(self, phase: str, n: int) -> None:
        self.add(phase, "images", n * self.scale)

    def forwards(self, phase: str, model: str, purpose: str, n: int) -> None:
        """``n`` single-sample denoiser forwards (a CFG velocity of a batch of B counts 2B)."""
        assert model in MODELS and purpose in PURPOSES, (model, purpose)
        n *= self.scale
        self.add(phase, f"nfe/{model}/{purpose}", n)
        self.add(phase, "flops", n * self.flops_per_forward)

    def backwards(self, phase: str, n: int) -> None:
        """``n`` single-sample backward passes through the denoiser (2x the forward FLOPs each)."""
        n *= self.scale
        self.add(phase, "backward", n)
        self.add(phase, "flops", 2 * n * self.flops_per_forward)

    def optimizer_step(self, phase: str) -> None:
        self.add(phase, "optimizer_steps", 1)

    def reward_calls(self, phase: str, task: str, n: int) -> None:
        self.add(phase, f"reward_calls/{task}", n * self.scale)

    # ---- wall clock ---------------------------------------------------------------------------------------
    def start_clock(self) -> None:
        self._clock = time.perf_counter()

    def stop_clock(self, phase: str) -> None:
        if self._clock is not None:
            self.add(phase, "seconds", time.perf_counter() - self._clock)
            self._clock = None

    # ---- reading ------------------------------------------------------------------------------------------
    def nfe(self, phase: str, model: str = None) -> float:
        c = self.phases[phase]
        return sum(v for k, v in c.items() if k.startswith("nfe/") and (model is None or k.split("/")[1] == model))

    def spent(self, unit: str, phase: str = "train") -> float:
        c = self.phases[phase]
        if unit == "student_nfe":
            return self.nfe(phase, "student")
        if unit == "nfe":
            return self.nfe(phase)
        if unit in ("images", "flops", "seconds", "optimizer_steps"):
            return c.get(unit, 0.0)
        raise ValueError(f"unknown budget unit {unit!r} (choose from {', '.join(UNITS)})")

    def summary(self, phase: str = "train") -> Dict[str, float]:
        return {u: self.spent(u, phase) for u in UNITS}

    def to_dict(self) -> dict:
        return {"flops_per_forward": self.flops_per_forward, "scale": self.scale,
                "phases": {p: dict(c) for p, c in self.phases.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "Ledger":
        led = cls(d.get("flops_per_forward", 0.0), d.get("scale", 1))
        for p, c in d.get("phases", {}).items():
            led.phases[p] = defaultdict(float, c)
        return led


def with_teacher_cost(student: Dict[str, float], teachers: Dict[str, Dict[str, float]]) -> Dict[str, Dict[str, float]]:
    """DiffusionOPD's spend reported both ways (method.md section 6): ``excluded`` (teachers given),
    ``included_sequential`` (every teacher trained one after another: all units add up) and
    ``included_parallel`` (teachers trained side by side: every count adds up, wall-clock seconds add only the
    slowest teacher)."""
    seq = dict(student)
    par = dict(student)
    for spent in teachers.values():
        for unit, v in spent.items():
            seq[unit] = seq.get(unit, 0.0) + v
            if unit != "seconds":
                par[unit] = par.get(unit, 0.0) + v
    slowest = max((t.get("seconds", 0.0) for t in teachers.values()), default=0.0)
    par["seconds"] = student.get("seconds", 0.0) + slowest
    return {"excluded": dict(student), "included_sequential": seq, "included_parallel": par}


def teacher_spend(checkpoint_dir) -> Dict[str, float]:
    """The training spend recorded with a teacher checkpoint: ``release.ledger.train`` of a released teacher,
    or the ``ledger.json`` of the run whose ``final/`` it is. Empty when unknown."""
    p = Path(checkpoint_dir)
    try:
        cfg = json.loads((p / "config.json").read_text())
        if "release" in cfg:
            return dict(cfg["release"]["ledger"]["train"])
        run_ledger = p.parent / "ledger.json"
        if run_ledger.is_file():
            return dict(json.loads(run_ledger.read_text())["spent"]["train"])
    except (OSError, ValueError, KeyError):
        pass
    return {}
