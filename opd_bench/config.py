"""Typed run configuration: YAML files under ``configs/`` validated into dataclasses, with dotted overrides.

Every convention of method.md is an explicit field here (search for "method.md"):
log-prob reduction, KL denominator, advantage std (group/global), detached PPO-OPD advantage, trained-step
fraction, SDE noise level, CFG scales (student and per-teacher), timestep shift.

Errors name the offending dotted key, e.g. ``config error: grpo.adv_std: must be one of group, global (got 'x')``.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, get_args, get_origin

import yaml

from .errors import ConfigError
from .paths import CONFIGS_DIR


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
    #: per-task teacher CFG scales (method.md section 4: the GenEval teacher uses 1.0); missing -> sampler.guidance.
    teacher_guidance: Dict[str, float] = field(default_factory=dict)
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
    unit: Literal["images", "student_nfe", "nfe", "flops", "seconds", "optimizer_steps"] = "images"


@dataclass
class EvalConfig:
    steps: int = 40
    guidance: float = 4.5
    #: prompts per task for the periodic eval during training (0 = all eval prompts).
    prompts_per_task: int = 64
    every: int = 0
    seed: int = 1234
    batch_size: int = 64
    bootstrap: int = 1000


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
    eval_prompts: str = ""


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0
    method: Literal["opd", "grpo", "multi-reward", "cascade", "pretrain"] = "opd"
    tasks: List[str] = field(default_factory=lambda: ["all"])
    device: str = "cpu"
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    opd: OPDConfig = field(default_factory=OPDConfig)
    multi_reward: MultiRewardConfig = field(default_factory=MultiRewardConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    #: real-world tasks' local weights and prompt files, by task name.
    real_tasks: Dict[str, RealTaskConfig] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- validation

_POSITIVE = {
    "sampler.steps", "sampler.shift", "grpo.group_size", "grpo.adv_clip", "grpo.inner_epochs", "train.lr",
    "train.prompts_per_step", "train.checkpoint_every", "train.log_every", "budget.value", "eval.steps",
    "eval.batch_size", "train.ema.every",
}
_NONNEG = {
    "sampler.noise_level", "sampler.guidance", "grpo.clip_range", "grpo.beta", "opd.noise_level",
    "opd.clip_range", "train.weight_decay", "train.grad_clip", "eval.guidance", "eval.prompts_per_task",
    "eval.every", "eval.bootstrap", "model.lora_rank", "model.lora_alpha",
}
_UNIT_INTERVAL = {"sampler.timestep_fraction", "train.ema.decay"}


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp, key: str):
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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
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
        return float(value)
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


def _check_ranges(cfg: RunConfig) -> None:
    flat = to_flat_dict(cfg)
    for key, v in flat.items():
        if key in _POSITIVE and not v > 0:
            raise ConfigError(f"{key}: must be > 0 (got {v!r})")
        if key in _NONNEG and not v >= 0:
            raise ConfigError(f"{key}: must be >= 0 (got {v!r})")
        if key in _UNIT_INTERVAL and not 0 < v <= 1:
            raise ConfigError(f"{key}: must be in (0, 1] (got {v!r})")
    if cfg.grpo.group_size < 2 and cfg.method in ("grpo", "multi-reward", "cascade"):
        raise ConfigError(f"grpo.group_size: GRPO needs groups of at least 2 (got {cfg.grpo.group_size})")
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
    for k, w in cfg.multi_reward.weights.items():
        if w < 0:
            raise ConfigError(f"multi_reward.weights.{k}: must be >= 0 (got {w})")


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


def load_yaml(path: Path) -> Dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    # `extends: other.yaml` composes configs.
    parent = data.pop("extends", None)
    if parent:
        data = _merge(load_yaml(resolve_config_path(str(Path(path).parent / parent))
                                if (Path(path).parent / parent).is_file() else resolve_config_path(parent)), data)
    return data


def build_config(data: Optional[Dict[str, Any]] = None, overrides: Optional[List[str]] = None) -> RunConfig:
    """Validate a (nested) dict plus dotted overrides into a :class:`RunConfig`."""
    data = json.loads(json.dumps(data or {}))
    for item in overrides or []:
        parts, value = parse_override(item)
        _set_dotted(data, parts, value)
    cfg = _build(RunConfig, data)
    _check_ranges(cfg)
    return cfg


def load_config(path: Optional[str] = None, overrides: Optional[List[str]] = None) -> RunConfig:
    data = load_yaml(resolve_config_path(path)) if path else {}
    return build_config(data, overrides)


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
