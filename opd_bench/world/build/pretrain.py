"""Pretraining of the embedded text-to-image base model (rectified flow, method.md section 1).

The model learns from generated (caption, image) pairs whose captions are imperfect the way web captions are
(``opd_bench.world.prompts.caption``), so the base model is mediocre and every task leaves headroom for RL.

Loss: x_t = (1 - t) x0 + t eps, target v = eps - x0, MSE; t ~ logit-normal(0, 1) (SD3's sampling of t);
captions are dropped (replaced by the empty prompt) with probability ``caption_dropout`` so CFG works.
The released checkpoint holds the EMA of the weights. Seeded and reproducible on CPU.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import torch

from ...backbones.embedded import DEFAULT_ARCH, GLYPH_MODULES, EmbeddedBackbone
from ...config import build_section, read_config_file
from ...errors import ConfigError
from ...progress import progress_bar
from ...validate import MAX_SEED


@dataclass
class PretrainConfig:
    """One pretraining stage: a config of the typed config system (``opd_bench.config``: YAML files under
    ``configs/``, e.g. ``configs/world/base_stage1.yaml``, plus dotted ``--set`` overrides), read by
    ``opd-bench world pretrain --config ...``."""
    seed: int = 0
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    caption_dropout: float = 0.1
    n_pairs: int = 40_000
    resolution: int = 32
    #: share of text-only scenes in the generated pairs (the rest: GenEval-style and varied scenes); None =
    #: the data's own (world.prompts.TEXT_FRACTION = 0.15 for the mix, 1 for signs)
    text_fraction: Optional[float] = None
    #: model architecture entries (opd_bench.backbones.embedded.DEFAULT_ARCH keys). With ``init`` only
    #: ``spell_quoted`` (tokenise quoted text character by character) and the glyph modules (``glyph_slots``,
    #: ``glyph_pooled``, ``glyph_canvas``: character slots, 0 = none; added to a model that has none) apply.
    #: Entries a config does not give keep these defaults.
    arch: Dict[str, Any] = field(default_factory=lambda: {"spell_quoted": True})
    #: continue from this embedded checkpoint (its weights; fresh optimizer and schedule), "" = from scratch.
    init: str = ""
    #: probability that a caption quotes its scene's text; None = the released base's web-like mix (57%)
    text_quote: Optional[float] = None
    #: learning rate after the linear warmup: "cosine" (decays to 0.1 lr) or "constant" (for scaling curves)
    schedule: str = "cosine"
    #: the generated data (world.prompts.PRETRAINING_DATA): "mix" (web-like captions of every scene kind) or
    #: "signs" (clean text-only signs quoted by the OCR templates; text_fraction must be 1)
    data: str = "mix"


#: learning-rate schedules after the warmup (PretrainConfig.schedule)
SCHEDULES = ("cosine", "constant")
#: most character slots of a glyph module
MAX_GLYPH_SLOTS = 16
#: (lowest, highest) of each bounded number of a PretrainConfig (None = unbounded on that side)
_RANGES = {"seed": (0, MAX_SEED), "steps": (1, 10**8), "batch_size": (1, 65536), "n_pairs": (1, 10**8),
           "lr": (0, None), "weight_decay": (0, None), "warmup": (0, 10**8), "grad_clip": (0, None),
           "ema_decay": (0, 1), "caption_dropout": (0, 1), "resolution": (1, 1024), "text_fraction": (0, 1),
           "text_quote": (0, 1)}


def check_pretrain_config(cfg: PretrainConfig) -> PretrainConfig:
    """``cfg`` with ``text_fraction`` resolved for its data; ConfigError naming the key of a bad value."""
    from ..prompts import PRETRAINING_DATA, TEXT_FRACTION

    for key, (lo, hi) in _RANGES.items():
        v = getattr(cfg, key)
        if v is not None and ((lo is not None and v < lo) or (hi is not None and v > hi)):
            raise ConfigError(f"{key}: must be in [{lo}, {'inf' if hi is None else hi}] (got {v!r})")
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"schedule: {cfg.schedule!r} is not {' or '.join(SCHEDULES)}")
    if cfg.data not in PRETRAINING_DATA:
        raise ConfigError(f"data: {cfg.data!r} is not {' or '.join(PRETRAINING_DATA)}")
    if cfg.data == "signs" and cfg.text_fraction not in (None, 1.0):
        raise ConfigError("text_fraction: data signs is text only, so text_fraction must be 1 (or left out)")
    unknown = sorted(set(cfg.arch) - set(DEFAULT_ARCH))
    if unknown:
        raise ConfigError(f"arch.{unknown[0]}: unknown key (valid: {', '.join(sorted(DEFAULT_ARCH))})")
    if not isinstance(cfg.arch.get("spell_quoted", False), bool):
        raise ConfigError(f"arch.spell_quoted: expected true or false, got {cfg.arch['spell_quoted']!r}")
    for key in GLYPH_MODULES:
        v = cfg.arch.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_GLYPH_SLOTS:
            raise ConfigError(f"arch.{key}: expected an integer in [0, {MAX_GLYPH_SLOTS}], got {v!r}")
    if cfg.text_fraction is None:
        cfg = replace(cfg, text_fraction=1.0 if cfg.data == "signs" else TEXT_FRACTION)
    return cfg


def load_pretrain_config(path: Optional[str] = None, overrides: Sequence[str] = ()) -> PretrainConfig:
    """A checked :class:`PretrainConfig` from a config file (path or name under ``configs/``; None = the
    defaults) plus dotted ``KEY=VALUE`` overrides (``steps=500``, ``arch.glyph_canvas=3``)."""
    data = read_config_file(path)
    if not isinstance(data.get("arch", {}), dict):
        raise ConfigError(f"arch: expected a mapping, got {data['arch']!r}")
    data["arch"] = {**PretrainConfig().arch, **data.get("arch", {})}
    return check_pretrain_config(build_section(PretrainConfig, data, list(overrides)))


def _lr_at(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {cfg.schedule!r} (cosine or constant)")
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def dataset_digest(captions, images: np.ndarray) -> str:
    """sha256 of the generated pretraining data, recorded so a later rerun can check it sees the same data."""
    h = hashlib.sha256()
    h.update("\n".join(captions).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()


def flow_matching_loss(model: EmbeddedBackbone, x0: torch.Tensor, prompts, generator: torch.Generator) -> torch.Tensor:
    """Rectified-flow MSE between the predicted and the true velocity eps - x0 at a logit-normal t."""
    b = x0.shape[0]
    t = torch.sigmoid(torch.randn(b, generator=generator, device=generator.device))
    eps = torch.randn(x0.shape, generator=generator, device=generator.device)
    tb = t.view(b, 1, 1, 1)
    xt = (1 - tb) * x0 + tb * eps
    cond = model.encode_prompts(prompts, cache=False)
    v = model.denoise(xt, t, cond.states, cond.pooled)
    return torch.nn.functional.mse_loss(v, eps - x0)


def pretrain(
    out: Path,
    cfg: PretrainConfig,
    command: str = "",
    pairs: Optional[Callable] = None,
    show_progress: bool = True,
    device: str = "cpu",
    on_step: Optional[Callable[[int, EmbeddedBackbone, dict], bool]] = None,
) -> dict:
    """Train the base model and save it (EMA weights) to ``out``. Returns the recorded metrics.

    ``device``: where to train (the saved checkpoint is the same format). ``on_step(steps_done, model, ema)``
    is called after every optimizer step with the live model and the EMA state dict; returning True stops
    training early (the EMA weights so far are saved). Research scripts use it to sample at milestones."""
    from ..prompts import PRETRAINING_DATA

    cfg = check_pretrain_config(cfg)
    if pairs is None:
        pairs = PRETRAINING_DATA[cfg.data]
    torch.manual_seed(cfg.seed)
    t0 = time.time()
    extra = {} if cfg.text_quote is None else {"text_quote": cfg.text_quote}
    captions, images = pairs(cfg.n_pairs, cfg.seed, cfg.resolution, text_fraction=cfg.text_fraction, **extra)
    data_s = time.time() - t0
    data_sha = dataset_digest(captions, images)
    history = []
    if cfg.init:
        model = EmbeddedBackbone.load(cfg.init)
        if "spell_quoted" in cfg.arch:   # a tokenisation switch, not a weight shape: may change on --init
            model.arch["spell_quoted"] = bool(cfg.arch["spell_quoted"])
        for key in GLYPH_MODULES:   # a new module may be added on --init, never changed
            slots = int(cfg.arch.get(key, 0))
            if slots and not model.arch.get(key):
                model.add_glyph_module(key, slots)
            elif slots and slots != model.arch.get(key):
                raise ValueError(f"--init model has {key}={model.arch.get(key)}, asked for {slots}")
        history = list(model.config.get("training_history", [])) + [model.config.get("training", {})]
        model.set_train_text_encoder(True)
    else:
        arch = dict(cfg.arch)
        arch.setdefault("resolution", cfg.resolution)
        model = EmbeddedBackbone(arch, train_text_encoder=True)
    model.to(device)
    model.train()
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    rng = np.random.default_rng(cfg.seed + 2)
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0).mul_(2).sub_(1).to(device)
    n = len(captions)
    order = rng.permutation(n)
    pos = 0
    losses = []
    t_train = time.time()
    with progress_bar(show_progress) as bar:
        task = bar.add_task("pretrain", total=cfg.steps, unit="steps")
        for step in range(cfg.steps):
            if pos + cfg.batch_size > n:
                order, pos = rng.permutation(n), 0
            idx = order[pos : pos + cfg.batch_size]
            pos += cfg.batch_size
            drop = rng.random(len(idx)) < cfg.caption_dropout
            prompts = ["" if d else captions[i] for i, d in zip(idx, drop)]
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, cfg)
            loss = flow_matching_loss(model, x_all[torch.as_tensor(idx, device=x_all.device)], prompts, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            d = min(cfg.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    if v.dtype.is_floating_point:
                        ema[k].mul_(d).add_(v.detach(), alpha=1 - d)
                    else:
                        ema[k].copy_(v)
            losses.append(loss.item())
            bar.update(task, advance=1, description=f"pretrain loss {np.mean(losses[-50:]):.4f}")
            if on_step is not None and on_step(step + 1, model, ema):
                break
    model.load_state_dict(ema)
    model.to("cpu")
    model.set_train_text_encoder(False)
    model.eval()
    metrics = {
        "final_loss_mean_last_200": float(np.mean(losses[-200:])),
        "first_loss_mean_first_50": float(np.mean(losses[:50])),
        "train_seconds": round(time.time() - t_train, 1),
        "data_seconds": round(data_s, 1),
        "torch_threads": torch.get_num_threads(),
        "data_sha256": data_sha,
    }
    model.save(out, extra_config={"training": {"command": command, "config": asdict(cfg), "metrics": metrics},
                                  "training_history": history}, include_text_encoder=True)
    return metrics
