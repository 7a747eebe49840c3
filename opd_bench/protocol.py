"""The one evaluation protocol type (issue #19 items 1-2), used by the run config (``eval``), ``opd-bench eval``,
the runner's evaluations, the eval cache and the regression gate.

A protocol says which prompts (``split``, ``prompts_per_task``: all or an evenly spread subset), how many noise
seeds per prompt (``seeds_per_prompt``, per task), and how to sample (steps, guidance, shift, base seed). The noise
of seed index ``j`` of prompt ``i`` of a task is a function of (seed + j, task, i) only
(:func:`opd_bench.evaluate.prompt_noise`), never of the model: every model gets identical prompts and noises, so
any two evaluations under one protocol are paired. Seed index 0 is the one-seed protocol's noise, and seed
index ``j`` equals ``--seed seed+j``.

Named protocols (:data:`NAMED`):

- ``quick``: the runner's default final (and start) evaluation: 64 test prompts per task x 1 seed, spread evenly
  over each test file; cheap, below the resolution a comparison needs, and labelled ``quick`` wherever printed.
- ``full``: every test prompt at :data:`FULL_SEEDS` seeds per prompt, chosen from the measured per-prompt noise
  (docs/evaluation.md) to reach the MDE targets where the CPU budget allows (:func:`full_seeds_rationale`).
  ``opd-bench eval``, ``report`` and ``check`` default to it (``check`` keeps its own small recorded protocol).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Dict, Literal, Optional

#: the protocol's defaults for a run: the ``quick`` protocol on the test split
QUICK_PROMPTS = 64

#: measured per-prompt noise of a teacher-vs-base paired difference (docs/evaluation.md, 2026-12-01): task ->
#: (variance between prompts, variance within a prompt of one image), on the primary (training) score
MEASURED_NOISE = {"ocr": (0.0020, 0.0862), "geneval": (0.0184, 0.1532),
                  "aesthetic": (0.0174, 0.0215), "preference": (0.0131, 0.0213)}
#: MDE targets of issue #19 (raw score, alpha 0.05, power 0.8)
MDE_TARGET = {"ocr": 0.02, "geneval": 0.03, "aesthetic": 0.02, "preference": 0.02}
#: the most seeds per prompt the CPU budget allows a task in the full protocol (2 idle cores, 8.5 images/s)
MAX_FULL_SEEDS = {"ocr": 9, "geneval": 8, "aesthetic": 4, "preference": 2}
#: seeds per prompt of the ``full`` protocol: the seeds each task's target needs on its test split, capped by
#: the CPU budget (asserted against :func:`full_seeds_rationale` in tests/test_protocol.py)
FULL_SEEDS = {"ocr": 8, "geneval": 8, "aesthetic": 4, "preference": 2}


@dataclass
class EvalProtocol:
    """Which prompts, how many noises per prompt, and how to sample them (see the module doc)."""

    #: prompt split: ``test`` for final evaluations, ``val`` for anything that selects (curves, sweeps, teachers)
    split: Literal["train", "val", "test"] = "test"
    #: prompts per task (0 = every prompt of the split); a subset is spread evenly over the file
    prompts_per_task: int = QUICK_PROMPTS
    #: noise seeds per prompt, per task (a task not listed: 1)
    seeds_per_prompt: Dict[str, int] = field(default_factory=dict)
    steps: int = 40
    guidance: float = 4.5
    shift: float = 1.0
    #: base seed of the per-prompt noises
    seed: int = 1234
    batch_size: int = 64
    bootstrap: int = 1000
    #: the denoiser's precision while sampling (opd_bench.precision): ``float32`` (exact, the default) or
    #: ``bfloat16`` autocast (faster on CPUs with AVX512-BF16; other samples, so other scores)
    dtype: Literal["float32", "bfloat16"] = "float32"

    def seeds(self, task: str) -> int:
        return int(self.seeds_per_prompt.get(task, 1))

    def to_dict(self) -> dict:
        """Everything that decides the results (the cache key and the recorded protocol)."""
        d = asdict(self)
        d.pop("batch_size")  # does not change results
        if d["dtype"] == "float32":   # the default stays out of the key: keys recorded before the field still hold
            d.pop("dtype")
        d["seeds_per_prompt"] = {k: int(v) for k, v in sorted(d["seeds_per_prompt"].items()) if int(v) != 1}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EvalProtocol":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_config(cls, cfg) -> "EvalProtocol":
        """The protocol of a run's start and final evaluations: its ``eval`` section (an
        :class:`EvalProtocol` with the curve fields on top); ``eval.shift`` unset = the sampler's shift."""
        e = cfg.eval
        base = {f.name: getattr(e, f.name) for f in fields(cls)}
        base["shift"] = cfg.sampler.shift if e.shift is None else e.shift
        base["seeds_per_prompt"] = dict(e.seeds_per_prompt)
        return cls(**base)


def named(name: str, base: Optional[EvalProtocol] = None) -> EvalProtocol:
    """The named protocol ``quick`` or ``full`` with ``base``'s sampling settings (steps, guidance, shift, seed)."""
    base = base or EvalProtocol()
    if name not in NAMED:
        from .errors import UserError

        raise UserError(f"unknown protocol {name!r} (one of {', '.join(NAMED)})")
    return replace(base, **NAMED[name])


#: the selection fields of each named protocol
NAMED = {
    "quick": {"split": "test", "prompts_per_task": QUICK_PROMPTS, "seeds_per_prompt": {}},
    "full": {"split": "test", "prompts_per_task": 0, "seeds_per_prompt": dict(FULL_SEEDS)},
}


def label(protocol: EvalProtocol) -> str:
    """``quick`` / ``full`` when the protocol selects exactly as that named one does, else a short description
    (``val, 16 prompts x 1 seed``): what every printed table and history row says it scored. A non-default
    ``dtype`` is appended (``quick, bfloat16``)."""
    d = protocol.to_dict()
    precision = "" if protocol.dtype == "float32" else f", {protocol.dtype}"
    for name, sel in NAMED.items():
        if all(d[k] == (EvalProtocol(**{k: v}).to_dict()[k]) for k, v in sel.items()):
            return name + precision
    seeds = sorted(set(protocol.seeds_per_prompt.values()) or {1})
    n = "all" if not protocol.prompts_per_task else str(protocol.prompts_per_task)
    return f"{protocol.split}, {n} prompts x {'/'.join(map(str, seeds))} seed{'s' if seeds != [1] else ''}{precision}"


def curve_protocol(cfg) -> EvalProtocol:
    """The periodic (learning-curve) evaluation of a run: ``eval.curve_prompts`` val prompts per task x 1 seed,
    sampled as the final evaluation is."""
    return replace(EvalProtocol.from_config(cfg), split="val", prompts_per_task=cfg.eval.curve_prompts,
                   seeds_per_prompt={})


def curve_due(images_before: float, images_after: float, every: int) -> bool:
    """Whether a training step that moved the spend from ``images_before`` to ``images_after`` training images
    crossed a multiple of ``every`` (0 = never): the curve evaluations' schedule, a function of the ledger only,
    so a resumed run evaluates at the same points."""
    return every > 0 and int(images_after // every) > int(images_before // every)


def full_seeds_rationale(test_prompts: Dict[str, int]) -> Dict[str, dict]:
    """Per task: the seeds per prompt its MDE target needs on ``test_prompts[task]`` prompts with the measured
    noise, the CPU cap, the seeds chosen, and the MDE they reach (``stats.mde_paired``)."""
    import numpy as np

    from .stats import mde_paired, seeds_for_mde

    out = {}
    for task, n in test_prompts.items():
        vb, vw = MEASURED_NOISE[task]
        need = seeds_for_mde(vb, vw, n, MDE_TARGET[task])
        chosen = min(need or MAX_FULL_SEEDS[task], MAX_FULL_SEEDS[task])
        out[task] = {"prompts": n, "needed": need, "cap": MAX_FULL_SEEDS[task], "chosen": chosen,
                     "target": MDE_TARGET[task], "mde": mde_paired(float(np.sqrt(vb + vw / chosen)), n)}
    return out
