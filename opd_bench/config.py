"""Typed run configuration: YAML files under ``configs/`` validated into dataclasses, with dotted overrides.

Every convention of method.md is an explicit field here (search for "method.md"):
log-prob reduction, KL denominator, advantage std (group/global), detached PPO-OPD advantage, trained-step
fraction, SDE noise level, CFG scales (student and per-teacher), timestep shift.

Errors name the offending dotted key, e.g. ``config error: grpo.adv_std: must be one of group, global (got 'x')``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, get_args, get_origin

import yaml

from .errors import ConfigError, UserError
from .ledger import UNITS
from .paths import CONFIGS_DIR
from .protocol import EvalProtocol

#: ``sampler.grid``: the rollout time grids ``opd_bench.sampler.timestep_schedule`` knows
GRIDS = ("linear", "sd3")
#: the base every config file extends; a recipe and a --config are layered over it (:func:`load_config`)
DEFAULT_CONFIG = CONFIGS_DIR / "default.yaml"


@dataclass
class ModelConfig:
    backbone: Literal["embedded", "sd3"] = "embedded"
    #: released name (e.g. ``base``) or a checkpoint folder / diffusers folder for the sd3 backbone.
    checkpoint: str = "base"
    #: train the text encoder too (pretraining only; RL methods keep it frozen so prompt encodings are cached).
    train_text_encoder: bool = False
    #: LoRA on the student (real backend: r 32 / alpha 64 on the attention projections, method.md section 4).
    lora_rank: int = 32
    lora_alpha: float = 64.0
    #: LoRA target modules (empty = Flow-GRPO's list, opd_bench.backbones.sd3.DEFAULT_TARGETS: attn.{to_q,to_k,to_v,
    #: to_out.0,add_q_proj,add_k_proj,add_v_proj,to_add_out}, so SD3.5's dual-attention attn2 is left out).
    lora_target_modules: List[str] = field(default_factory=list)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    #: output resolution in pixels for latent backbones (0 = the model's own default; SD3.5-M recipe: 512).
    resolution: int = 0
    #: real backend: T5 token budget and whether to load text encoder 3 (T5) at all.
    max_sequence_length: int = 256
    load_t5: bool = True
    #: recompute the denoiser blocks' activations in the backward instead of keeping them (diffusers'
    #: enable_gradient_checkpointing, both backbones): same gradients, much less activation memory, ~1 more forward.
    gradient_checkpointing: bool = False
    #: torch.compile the denoiser's transformer blocks (inductor; both backbones; opd_bench/backbones/compiled.py):
    #: fused kernels, the same results to float rounding; eager with one warning line where inductor cannot compile.
    compile: bool = False
    #: prompt encodings cached on the model's device (LRU; 0 = unbounded, the original behaviour) and, for those
    #: evicted from it, in host memory (LRU; 0 = none: re-encoded when needed). opd_bench/prompt_cache.py.
    prompt_cache_size: int = 0
    prompt_cache_cpu_size: int = 0


@dataclass
class SamplerConfig:
    #: rollout steps N for training (method.md section 3: few, e.g. 10).
    steps: int = 10
    #: SD3 timestep shift s (t' = s t / (1 + (s - 1) t)); 1.0 = no shift.
    shift: float = 1.0
    #: SDE noise level a (method.md section 2) used by GRPO rollouts; 0 = ODE.
    noise_level: float = 0.7
    #: student CFG scale w (the optimised policy is the guided sampler).
    guidance: float = 4.5
    #: method.md section 2: Flow-GRPO averages the transition log-density over dimensions ("mean") or sums it.
    logprob_reduce: Literal["mean", "sum"] = "mean"
    #: method.md section 3: trained steps are the first floor(N * timestep_fraction) steps (Flow-GRPO: 0.9).
    timestep_fraction: float = 0.9
    #: [start, end): an SDE window (Flow-GRPO-Fast, MixGRPO). Only rollout steps start..end-1 are stochastic
    #: and only they are trained (timestep_fraction is then unused); the others take the ODE step, so samples
    #: that share an initial noise (grpo.group_noise: shared) agree up to the window and differ only through
    #: the steps the policy gradient credits. [] = every step stochastic.
    sde_window: List[int] = field(default_factory=list)
    #: the rollout time grid (docs/methods.md): ``linear`` = shift(linspace(1, 0, N + 1)) (the embedded world's
    #: grid), ``sd3`` = diffusers FlowMatchEulerDiscreteScheduler.set_timesteps sigmas (SD3, Flow-GRPO).
    grid: Literal[GRIDS] = "linear"


@dataclass
class GRPOConfig:
    #: samples per prompt.
    group_size: int = 8
    #: method.md section 3: divide centred rewards by the group's std or the global batch std.
    adv_std: Literal["group", "global"] = "global"
    adv_clip: float = 5.0
    #: PPO clip range epsilon.
    clip_range: float = 0.2
    #: KL-to-reference coefficient beta (0 disables the reference forward passes).
    beta: float = 0.004
    #: method.md section 3: D = sigma_j^2 (Flow-GRPO) or sigma_j^2 |dt| (exact Gaussian KL).
    kl_denominator: Literal["sigma2", "sigma2_dt"] = "sigma2"
    inner_epochs: int = 1
    #: initial noise x_0 of a group's samples: one per sample (Flow-GRPO) or one shared by the whole group
    #: (DanceGRPO), so that the group's rewards differ only through the SDE steps, the actions whose
    #: log-probabilities the policy gradient uses.
    group_noise: Literal["independent", "shared"] = "independent"
    #: optimizer steps per batch of rollouts and inner epoch: the batch is shuffled and split into this many
    #: minibatches, so every minibatch after the first is off-policy and the clip acts (Flow-GRPO
    #: scripts/train_sd3.py: gradient_accumulation_steps = num_batches_per_epoch // 2, i.e. 2; 1 = today).
    minibatches: int = 1
    #: drop samples whose advantage is exactly 0 (a group whose rewards all agree) before the update (Flow-GRPO
    #: train_sd3.py's mask, topped up at random to a multiple of ``minibatches``).
    drop_zero_advantage: bool = False
    #: detach the unconditional branch of the student's CFG velocity in the policy gradient (Flow-GRPO
    #: train_sd3.py compute_log_prob: noise_pred_uncond.detach()).
    detach_uncond: bool = False
    #: per-task KL coefficient; missing tasks use ``beta`` (Flow-GRPO config/grpo.py: 0.04 for OCR and GenEval,
    #: 0.01 for PickScore).
    beta_per_task: Dict[str, float] = field(default_factory=dict)
    #: the RL objective that grpo, multi-reward and cascade optimise on their rollouts: Flow-GRPO's clipped
    #: surrogate, GRPO-Guard's (``grpo_guard``), or DiffusionNFT's (``nft``). Multi-task NFT = multi-reward with
    #: ``nft``, Cascade NFT = cascade with it (the ``nft`` and ``grpo-guard`` methods are single-task grpo).
    #: One of the objectives the methods register (``opd_bench.methods.OBJECTIVES``; checked by the RL methods).
    objective: str = "grpo"


@dataclass
class NFTConfig:
    """DiffusionNFT (arXiv 2509.16117; NVlabs/DiffusionNFT scripts/train_nft_sd3.py, config/nft.py)."""

    #: beta of the implicit policies v+ = beta v + (1 - beta) v_old, v- = (1 + beta) v_old - beta v
    #: (config/nft.py: 1.0; OCR 0.1).
    beta: float = 1.0
    #: coefficient of the velocity KL ||v - v_ref||^2 to the reference (train.beta = 1e-4).
    kl_beta: float = 1.0e-4
    #: CFG scale of the rollouts and the training forwards (CFG-free: 1.0).
    guidance: float = 1.0
    #: SDE noise level of the rollouts (the code samples deterministically: 0).
    noise_level: float = 0.0
    #: the old (sampling) policy's update old <- d old + (1 - d) theta after each batch, with
    #: d = 0 below step ``flat`` else min((step - flat) * uprate, uphold): [flat, uprate, uphold]
    #: (decay_type 1 = [0, 0.001, 0.5], the default; OCR's decay_type 2 = [75, 0.0075, 0.999]).
    old_decay: List[float] = field(default_factory=lambda: [0.0, 0.001, 0.5])


@dataclass
class GRPOGuardConfig:
    """GRPO-Guard (arXiv 2510.22319): regulated clipping for flow-matching GRPO."""

    #: RatioNorm: remove the log-ratio's left shift ||mu - mu_old||^2 / (2 s^2) and rescale it by s (losses.py).
    ratio_norm: bool = True
    #: step-wise gradient reweighting: each trained step's loss times 1/|dt_j| normalised to mean 1 (``dt``).
    reweight: Literal["dt", "none"] = "dt"


@dataclass
class OPDConfig:
    #: student rollout sampler: ODE (a = 0, mean matching) or SDE (a > 0, exact Gaussian KL).
    sampler: Literal["ode", "sde"] = "ode"
    #: noise level a for the SDE student sampler (ignored for ode).
    noise_level: float = 0.7
    #: closed-form loss (DiffusionOPD) or the PPO-style ablation (needs sampler=sde).
    objective: Literal["closed_form", "ppo"] = "closed_form"
    #: method.md section 4.3: whether the PPO-style advantage -KL_j is detached (Flow-OPD's code: not detached).
    detach_advantage: bool = True
    clip_range: float = 0.2
    #: the SDE closed-form loss's denominator: the exact Gaussian KL's 2 sigma^2 |dt| (the DiffusionOPD paper) or
    #: 2 sigma^2 (DiffusionOPD's official code, like Flow-GRPO's KL).
    sde_denominator: Literal["2sigma2dt", "2sigma2"] = "2sigma2dt"
    #: how a round's task losses combine: ``sum`` (the suite's original) or ``mean`` (DiffusionOPD's official code).
    task_reduction: Literal["sum", "mean"] = "sum"
    #: per-task teacher CFG scales (method.md section 4: the GenEval teacher uses 1.0); missing -> sampler.guidance.
    teacher_guidance: Dict[str, float] = field(default_factory=dict)
    #: compute a task's teacher transitions at all trained steps in ONE batched no-grad forward after the rollout
    #: (runner.teacher_transitions) instead of one per step: fewer, larger kernels on a GPU; the same means up to
    #: float rounding (so off by default: the default path stays bit-identical).
    batched_teacher: bool = False
    #: differentiate the student through the rollout's own forwards at the trained steps (kept with their graph)
    #: instead of a second forward per step: the same weights bit for bit as ``false``, one student forward fewer
    #: per trained step (benchmarks/train_variants.py, benchmarks/main_job.py); the ledger counts the forwards
    #: actually run. Holds every trained step's activations until its backward (``false``: one step's), so it
    #: suits small models: on by default for the embedded world, off in the SD3.5 recipe (configs/sd35m_opd.yaml).
    #: Not taken with train.micro_batch and on more than one process (the DDP/FSDP reducer expects one forward
    #: per backward): those run the second forward.
    student_from_rollout: bool = True
    #: per-task teacher checkpoints (released name or path); missing -> the released ``teacher_<task>``.
    teachers: Dict[str, str] = field(default_factory=dict)


@dataclass
class MultiRewardConfig:
    mode: Literal["alternate", "weighted_sum"] = "alternate"
    weights: Dict[str, float] = field(default_factory=dict)
    normalize: Literal["none", "per_reward"] = "none"


@dataclass
class CascadeConfig:
    #: task order of the stages; empty = the order of --tasks.
    order: List[str] = field(default_factory=list)
    #: budget share per stage; empty = equal split.
    split: List[float] = field(default_factory=list)


@dataclass
class EMAConfig:
    enabled: bool = False
    #: Flow-GRPO: decay min((1 + k) / (10 + k), decay) updated every ``every`` steps.
    decay: float = 0.9
    every: int = 8
    #: k in the warm-up: the number of EMA ``updates`` so far (the suite's original: decay 0.9 after 648 steps at
    #: every 8) or of ``optimizer_steps`` (Flow-GRPO flow_grpo/ema.py, step(optimization_step): 0.9 after 80).
    warmup: Literal["updates", "optimizer_steps"] = "updates"


@dataclass
class TrainConfig:
    lr: float = 1e-4
    weight_decay: float = 1e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 1.0
    #: prompts per task per optimizer step (GRPO: each prompt gets ``group_size`` samples).
    prompts_per_step: int = 4
    #: how a step's training prompts are drawn: ``uniform`` over the train set, or ``balanced`` over the task's
    #: categories (``category_key``, e.g. GenEval's six tags: each step's prompts cycle through the categories
    #: in a random order, then a uniform prompt within each), matching an eval that averages category means.
    #: Tasks without categories draw uniformly either way.
    prompt_sampling: Literal["uniform", "balanced"] = "uniform"
    #: rows per forward/backward in the training losses (gradient accumulation, opd_bench/microbatch.py): a step's
    #: batch is cut into micro-batches of at most this many rows, each weighted by its share, so the optimizer
    #: step is the whole batch's; only one micro-batch's activations are alive. 0 = the whole batch at once.
    micro_batch: int = 0
    #: how several processes average gradients (opd_bench/parallel.py): ``ddp`` (accelerate's prepared
    #: DistributedDataParallel, synchronising in a step's last backward), ``allreduce`` (one bucketed all-reduce
    #: at the optimizer step), ``fsdp`` (full fine-tuning with weights, gradients and AdamW state sharded over the
    #: processes: FSDP2). One process: ignored.
    grad_sync: Literal["ddp", "allreduce", "fsdp"] = "ddp"
    ema: EMAConfig = field(default_factory=EMAConfig)
    checkpoint_every: int = 10
    log_every: int = 1
    #: accelerate experiment trackers: tensorboard (<run>/tb) and/or wandb (when installed), scalars + per-task
    #: sample grids at every eval (opd_bench/trackers.py).
    trackers: List[str] = field(default_factory=lambda: ["tensorboard"])
    wandb_project: str = ""


@dataclass
class BudgetConfig:
    value: float = 2000
    #: one of the ledger's units (method.md section 6).
    unit: Literal[UNITS] = "images"


@dataclass
class EvalConfig(EvalProtocol):
    """A run's evaluations. Its :class:`~opd_bench.protocol.EvalProtocol` fields are the protocol of the start
    and final evaluations (default: the ``quick`` protocol, 64 test prompts per task x 1 seed; ``shift`` unset =
    ``sampler.shift``); the ``curve_*`` fields schedule the learning-curve evaluations on ``val``."""

    shift: Optional[float] = None
    #: an extra evaluation with the final protocol every N rounds (0 = never)
    every: int = 0
    #: a learning-curve evaluation (``curve_prompts`` val prompts per task x 1 seed) each time the training spend
    #: crosses a multiple of this many images (0 = never): 200 gives 9 points inside the main job's 2,000 images
    curve_every: int = 200
    curve_prompts: int = 8


@dataclass
class RewardsConfig:
    #: where the real reward models (PickScore, HPSv2, CLIPScore, LAION aesthetic, GenEval's detector) run:
    #: ``cpu`` (the default) or an accelerator, e.g. ``cuda`` next to the student. The embedded world's rewards
    #: score on the images' own device either way.
    device: str = "cpu"
    #: an RL step's rollout in this many parts (whole prompt groups), each part scored in a background thread while
    #: the next one is sampled (opd_bench/runner.py RunContext.rollout_and_score): the same samples and rewards.
    #: 1 = one rollout, then the scoring (the original behaviour).
    overlap_parts: int = 1


@dataclass
class RealTaskConfig:
    """Local paths of a real-world task (``opd_bench/tasks/real.py``): reward weights and prompt files."""

    weights: str = ""
    processor: str = ""
    head: str = ""
    model_name: str = ""
    config_file: str = ""
    divisor: float = 1.0
    #: real_geneval: open_clip weights of GenEval's colour classifier (ViT-L-14 "openai"; model_name /
    #: config_file name its architecture); empty = the HSV colour fallback (not GenEval's).
    color_clip: str = ""
    train_prompts: str = ""
    #: the test split (final evaluations)
    eval_prompts: str = ""
    #: the val split (selection, learning curves); empty = eval_prompts (selection then sees the test prompts)
    val_prompts: str = ""


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0
    #: a registered method (``opd_bench.methods.registry``: one module per method)
    method: str = "opd"
    tasks: List[str] = field(default_factory=lambda: ["all"])
    device: str = "cpu"
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    opd: OPDConfig = field(default_factory=OPDConfig)
    nft: NFTConfig = field(default_factory=NFTConfig)
    grpo_guard: GRPOGuardConfig = field(default_factory=GRPOGuardConfig)
    multi_reward: MultiRewardConfig = field(default_factory=MultiRewardConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    #: real-world tasks' local weights and prompt files, by task name.
    real_tasks: Dict[str, RealTaskConfig] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- validation

_POSITIVE = {
    "sampler.steps", "sampler.shift", "grpo.group_size", "grpo.adv_clip", "grpo.inner_epochs", "train.lr",
    "train.prompts_per_step", "train.checkpoint_every", "train.log_every", "budget.value", "eval.steps",
    "eval.batch_size", "train.ema.every", "grpo.minibatches", "nft.beta",
    "rewards.overlap_parts",
}
_NONNEG = {
    "sampler.noise_level", "sampler.guidance", "grpo.clip_range", "grpo.beta", "opd.noise_level",
    "opd.clip_range", "nft.kl_beta", "nft.guidance", "nft.noise_level", "train.weight_decay", "train.grad_clip", "eval.guidance", "eval.prompts_per_task",
    "eval.every", "eval.bootstrap", "model.lora_rank", "model.lora_alpha", "train.micro_batch",
    "model.prompt_cache_size", "model.prompt_cache_cpu_size", "eval.curve_every", "eval.curve_prompts",
}
_UNIT_INTERVAL = {"sampler.timestep_fraction", "train.ema.decay"}
#: sane maxima (a larger value is a typo that would allocate petabytes or never finish)
_MAXIMA = {
    "sampler.steps": 1000, "eval.steps": 1000, "grpo.group_size": 1024, "grpo.inner_epochs": 100,
    "train.prompts_per_step": 4096, "eval.batch_size": 4096, "eval.prompts_per_task": 1_000_000,
    "eval.bootstrap": 1_000_000, "model.lora_rank": 4096, "model.resolution": 8192,
    "model.max_sequence_length": 4096, "train.checkpoint_every": 10**9, "train.log_every": 10**9,
    "train.ema.every": 10**9, "eval.every": 10**9, "eval.curve_every": 10**12, "eval.curve_prompts": 1_000_000,
}


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp, key: str):
    if tp is Any:  # a free-form value (e.g. a model architecture mapping): checked by its consumer
        return value
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key + ".")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(map(str, choices))} (got {value!r})")
        return value
    if origin is typing.Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if origin in (list, List):
        (item_tp,) = get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict):
        _, val_tp = get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or (isinstance(value, float) and not math.isfinite(value)) \
                or int(value) != value:
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{key}: must be a finite number (got {value})") from None
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _build(cls, data: Dict[str, Any], prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (valid: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def _check_finite(key: str, v) -> None:
    """Every number of a config (in lists and mappings too) is finite: NaN or inf is never a valid value."""
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"{key}: must be a finite number (got {v!r})")
    for k, x in (v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()):
        _check_finite(f"{key}.{k}" if isinstance(v, dict) else f"{key}[{k}]", x)


def _check_ranges(cfg: RunConfig) -> None:
    from .validate import MAX_SEED, budget, device_string

    flat = to_flat_dict(cfg)
    for key, v in flat.items():
        _check_finite(key, v)
        if key in _MAXIMA and v > _MAXIMA[key]:
            raise ConfigError(f"{key}: must be at most {_MAXIMA[key]} (got {v!r})")
        if key in _POSITIVE and not v > 0:
            raise ConfigError(f"{key}: must be > 0 (got {v!r})")
        if key in _NONNEG and not v >= 0:
            raise ConfigError(f"{key}: must be >= 0 (got {v!r})")
        if key in _UNIT_INTERVAL and not 0 < v <= 1:
            raise ConfigError(f"{key}: must be in (0, 1] (got {v!r})")
    for task, n in cfg.eval.seeds_per_prompt.items():
        if not (isinstance(n, int) and 1 <= n <= 1000):
            raise ConfigError(f"eval.seeds_per_prompt.{task}: must be an integer in [1, 1000] (got {n!r})")
    if cfg.eval.shift is not None and not cfg.eval.shift > 0:
        raise ConfigError(f"eval.shift: must be > 0 or null (= sampler.shift) (got {cfg.eval.shift!r})")
    for key in ("seed", "eval.seed"):
        if not 0 <= flat[key] <= MAX_SEED:
            raise ConfigError(f"{key}: must be in [0, {MAX_SEED}] (got {flat[key]})")
    try:
        budget(cfg.budget.value, cfg.budget.unit, "budget.value")
        device_string(cfg.device)
    except UserError as e:
        raise ConfigError(str(e)) from None
    from .methods import method_names

    if cfg.method not in method_names():
        raise ConfigError(f"method: must be one of {', '.join(method_names())} (got {cfg.method!r})")
    w, n = cfg.sampler.sde_window, cfg.sampler.steps
    if w and (len(w) != 2 or not 0 <= w[0] < w[1] <= n):
        raise ConfigError(f"sampler.sde_window: expected [start, end] with 0 <= start < end <= sampler.steps ({n}) "
                          f"or [] (got {w!r})")
    if cfg.opd.objective == "ppo" and (cfg.opd.sampler != "sde" or cfg.opd.noise_level <= 0):
        raise ConfigError("opd.objective: 'ppo' needs opd.sampler=sde with opd.noise_level > 0 (undefined for a = 0)")
    if len(cfg.train.betas) != 2 or not all(0 <= b < 1 for b in cfg.train.betas):
        raise ConfigError(f"train.betas: expected two numbers in [0, 1) (got {cfg.train.betas!r})")
    if cfg.cascade.split and (len(cfg.cascade.split) != len(cfg.cascade.order) or any(s <= 0 for s in cfg.cascade.split)):
        raise ConfigError("cascade.split: needs one positive share per entry of cascade.order")
    for name, rt in cfg.real_tasks.items():
        if rt.weights and not Path(rt.weights).expanduser().exists():
            raise ConfigError(f"real_tasks.{name}.weights: path not found: {rt.weights}")
    d = cfg.nft.old_decay
    if len(d) != 3 or d[0] < 0 or d[1] < 0 or not 0 <= d[2] < 1:
        raise ConfigError(f"nft.old_decay: expected [flat >= 0, uprate >= 0, uphold in [0, 1)] (got {d!r})")
    for k, b in cfg.grpo.beta_per_task.items():
        if b < 0:
            raise ConfigError(f"grpo.beta_per_task.{k}: must be >= 0 (got {b})")
    for k, w in cfg.multi_reward.weights.items():
        if w < 0:
            raise ConfigError(f"multi_reward.weights.{k}: must be >= 0 (got {w})")
    if cfg.train.grad_sync == "fsdp" and cfg.model.backbone != "embedded":
        raise ConfigError("train.grad_sync: fsdp shards full fine-tuning (model.backbone embedded); a LoRA student "
                          "is small: use ddp")


def to_dict(cfg) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)


def to_flat_dict(cfg, prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out.update(to_flat_dict(v, prefix + f.name + "."))
        else:
            out[prefix + f.name] = v
    return out


def parse_override(item: str):
    """``a.b.c=value`` -> (["a","b","c"], parsed value). Values are parsed as YAML scalars/lists."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.lr=1e-4")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # YAML 1.1 reads 1e-4 as a string; numbers are coerced per field type in _coerce.
    return key.split("."), value


def _set_dotted(data: Dict[str, Any], parts: List[str], value) -> None:
    node = data
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            node[p] = nxt
        node = nxt
    node[parts[-1]] = value


def _merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def resolve_config_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    for cand in (CONFIGS_DIR / name_or_path, CONFIGS_DIR / f"{name_or_path}.yaml"):
        if cand.is_file():
            return cand
    raise ConfigError(f"config file not found: {name_or_path}")


def load_yaml(path: Path, _seen: tuple = (), _stop: frozenset = frozenset(), _chain: Optional[set] = None) -> Dict[str, Any]:
    """A config file with its ``extends`` chain merged in, up to a file of ``_stop`` (left out); ``_chain``
    collects the files read."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        data = {} if data is None else data
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {str(e).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) YAML file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror or e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    # `extends: other.yaml` composes configs.
    parent = data.pop("extends", None)
    if parent:
        if not isinstance(parent, str):
            raise ConfigError(f"{path}: extends: expected a config name or path, got {parent!r}")
        target = resolve_config_path(str(Path(path).parent / parent)) if (Path(path).parent / parent).is_file() \
            else resolve_config_path(parent)
        seen = _seen + (Path(path).resolve(),)
        if target.resolve() in seen:
            raise ConfigError(f"{path}: extends: {parent} makes a cycle ({' -> '.join(p.name for p in seen)} -> "
                              f"{target.name}); remove one of the extends")
        if target.resolve() not in _stop:
            data = _merge(load_yaml(target, seen, _stop, _chain), data)
    if _chain is not None:
        _chain.add(Path(path).resolve())
    return data


def config_layer(name_or_path: str, below: frozenset = frozenset()) -> Tuple[Dict[str, Any], frozenset]:
    """What a config file sets over the layers below it: its keys and those of its ``extends`` chain up to
    :data:`DEFAULT_CONFIG` or a file in ``below`` (a file a lower layer already holds does not reset what that
    layer set over it: a recipe extending the sweep's --config keeps its tuned values under that same --config).
    Returns the layer and ``below`` with this layer's files added."""
    path, chain, stop = resolve_config_path(name_or_path), set(), below | {DEFAULT_CONFIG.resolve()}
    if path.resolve() in stop:
        return {}, below
    data = load_yaml(path, _stop=stop, _chain=chain)
    return data, below | chain


def build_section(cls, data: Optional[Dict[str, Any]] = None, overrides: Optional[List[str]] = None):
    """Validate a (nested) dict plus dotted ``KEY=VALUE`` overrides into the config dataclass ``cls`` -- the run
    config or another config of the system (pretraining's, ``opd_bench.world.build.pretrain``): types
    coerced, unknown keys and non-finite numbers refused, each error naming its dotted key."""
    data = json.loads(json.dumps(data or {}))
    for item in overrides or []:
        parts, value = parse_override(item)
        _set_dotted(data, parts, value)
    cfg = _build(cls, data)
    for key, v in to_flat_dict(cfg).items():
        _check_finite(key, v)
    return cfg


def read_config_file(path: Optional[str]) -> Dict[str, Any]:
    """The mapping of a config file (path or name under ``configs/``, ``extends`` resolved); {} for None."""
    return load_yaml(resolve_config_path(path)) if path else {}


def build_config(data: Optional[Dict[str, Any]] = None, overrides: Optional[List[str]] = None) -> RunConfig:
    """Validate a (nested) dict plus dotted overrides into a :class:`RunConfig`."""
    cfg = build_section(RunConfig, data, overrides)
    _check_ranges(cfg)
    return cfg


def load_config(path: Optional[str] = None, overrides: Optional[List[str]] = None,
                recipe: Optional[Path] = None) -> RunConfig:
    """``path`` (a name under configs/ or a file; none = the defaults) with dotted ``overrides``. With a
    ``recipe`` (a method's tuned recipe, configs/recipes/<method>.yaml) the layers are default.yaml < recipe <
    ``path`` < overrides."""
    if recipe is None:
        data = read_config_file(path)
    else:
        layer, below = config_layer(str(recipe))
        data = _merge(load_yaml(DEFAULT_CONFIG), layer)
        if path:
            data = _merge(data, config_layer(path, below)[0])
    return build_config(data, overrides)


def parse_budget(spec: Optional[str]) -> Optional[BudgetConfig]:
    """``VALUE[:UNIT]`` -> the typed budget; unit defaults to images."""
    if spec is None:
        return None
    value, _, unit = spec.partition(":")
    unit = unit or "images"
    try:
        v = float(value)
    except ValueError:
        raise UserError(f"--budget: {value!r} is not a number (expected VALUE:UNIT, e.g. 20000:images)") from None
    if unit not in UNITS:
        raise UserError(f"--budget: unknown unit {unit!r} (choose from {', '.join(UNITS)})")
    if not v > 0:
        raise UserError(f"--budget: must be positive (got {value})")
    from .validate import budget as check_budget

    check_budget(v, unit)
    return BudgetConfig(v, unit)


def read_spec_file(path, option: str, what: str, valid: Sequence[str]) -> Dict[str, Any]:
    """A user's YAML spec file (a sweep's grid, a claims campaign) as a mapping: a missing file, invalid YAML, a
    non-mapping or an unknown top-level key is one line naming ``option`` (exit 2)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{option}: {what} not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{option}: {path}: invalid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise UserError(f"{option}: {path}: top level must be a mapping")
    unknown = sorted(set(doc) - set(valid))
    if unknown:
        raise UserError(f"{option}: {path}: unknown key {unknown[0]!r} (valid: {', '.join(valid)})")
    return doc


#: fields whose value leaves a run's weights bit for bit the same (tests/test_default_paths.py): a run folder
#: written under one value continues, and a finished one is read back, under the other (same_settings)
SAME_WEIGHTS_FIELDS = frozenset({"opd.student_from_rollout"})


def same_settings(saved: str, cfg: RunConfig) -> bool:
    """Whether a run folder's saved ``config.yaml`` text holds ``cfg``'s settings. A field the saved file lacks was
    added since it was written; new fields default to the behaviour before them (the project's rule), so a run
    started by older code still continues (a sweep or a campaign spans sessions). Every field the file has must
    equal ``cfg``'s, except the :data:`SAME_WEIGHTS_FIELDS`."""
    def leaves(d, obj, prefix=""):
        out = {}
        for k, v in (d or {}).items():
            sub = getattr(obj, k, None)
            if isinstance(v, dict) and dataclasses.is_dataclass(sub):
                out.update(leaves(v, sub, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out
    old = leaves(yaml.safe_load(saved), cfg)
    new = leaves(yaml.safe_load(dump_config(cfg)), cfg)
    return all(k in new and new[k] == v for k, v in old.items() if k not in SAME_WEIGHTS_FIELDS)


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
