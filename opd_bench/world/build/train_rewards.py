"""Train the learned reward models of the embedded world against the hidden gold scorers.

    opd-bench world train-rewards --task aesthetic  --out checkpoints/reward_aesthetic
    opd-bench world train-rewards --task preference --out checkpoints/reward_preference

* aesthetic: MSE regression of the gold aesthetic score from images rendered for the task's *train* prompts
  (and random world scenes) over a broad quality range (:mod:`opd_bench.world.build.reward_data`).
* preference: Bradley-Terry on every pair of candidates of the same train prompt whose gold preference
  differs by more than ``PAIR_MARGIN`` (hard-pair weighted, ``hard_gamma``), plus a small CLIP contrastive
  term (best candidate vs prompt) that helps the text tower learn the vocabulary. The image tower starts
  from the released aesthetic model's (as PickScore fine-tunes a pretrained CLIP), so train ``aesthetic``
  first; ``--init-visual none`` trains from scratch.

Held-out figures use the task's *eval* prompts and a fixed data seed (``HELDOUT_SEED``), so checkpoints
trained with different seeds are compared on the same images. Everything is deterministic given ``seed``
(single-threaded CPU). Metrics and the exact command are stored in the checkpoint's config.json
(``training``).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...checkpoint import checkpoint_digest
from ...paths import RELEASED_DIR
from .reward_data import aesthetic_dataset, comparison_pairs, preference_dataset
from ..reward_models import (AestheticModel, PreferenceModel, build_vocab, images_to_tensor, make_config,
                            model_class, n_params)
from .taste_prompts import make_splits

HELDOUT_SEED = 424242
PAIR_MARGIN = 0.05            # gold difference below which a pair counts as a tie (not trained/evaluated on)
TARGETS = {"aesthetic": ("heldout_spearman", 0.8), "preference": ("heldout_pairwise_accuracy", 0.85)}
DEFAULTS = {
    "aesthetic": {"steps": 450, "n_train": 12000, "batch": 128, "lr": 1e-3, "n_test": 1024},
    "preference": {"steps": 1000, "n_train": 1024, "batch": 24, "lr": 1e-3, "n_test": 256, "per_prompt": 6, "pool": 24,
                   "contrastive_weight": 0.5, "hard_gamma": 1.0, "arch": {"flip_average": True},
                   "init_visual": str(RELEASED_DIR / "reward_aesthetic")},
}


# -------------------------------------------------------------------------------------------- statistics
def rank(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as float64."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return (sums / counts)[inv]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two 1-D arrays."""
    return float(np.corrcoef(rank(a), rank(b))[0, 1])


def pairwise_accuracy(pred: np.ndarray, gold: np.ndarray, margin: float = PAIR_MARGIN) -> float:
    """Share of same-prompt pairs (gold difference > ``margin``) that ``pred`` [P, K] orders like ``gold``."""
    pairs = comparison_pairs(gold, margin)
    if len(pairs) == 0:
        return float("nan")
    p, i, j = pairs.T
    return float((pred[p, i] > pred[p, j]).mean())


# ---------------------------------------------------------------------------------------------- plumbing
def cosine_lr(step: int, steps: int, lr: float, warmup: int = 30) -> float:
    """Linear warm-up then cosine decay to 5% of ``lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * t)))


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.98))


def optimise(model, optimizer, loss: torch.Tensor, step: int, steps: int, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = cosine_lr(step, steps, lr)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def hflip(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Flip a random half of the batch left-right (the gold scores are mirror-invariant)."""
    flip = torch.from_numpy(rng.random(len(x)) < 0.5)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


@torch.no_grad()
def score_all(model, images: torch.Tensor, prompts: Optional[Sequence[str]] = None) -> np.ndarray:
    """Calibrated scores of a float image tensor [N, 3, H, W] as numpy."""
    return model.score(images, prompts).cpu().numpy()


def scoring_ms_per_image(model, images: torch.Tensor, prompts: Optional[Sequence[str]] = None) -> float:
    t0 = time.perf_counter()
    model.score(images, prompts)
    return 1000.0 * (time.perf_counter() - t0) / len(images)


# --------------------------------------------------------------------------------------------- aesthetic
def heldout_aesthetic(n: int, seed: int = HELDOUT_SEED):
    """Held-out (images float [n, 3, H, W], gold [n]) rendered for the aesthetic *eval* prompts."""
    images, gold = aesthetic_dataset(make_splits("aesthetic")["eval"], n, seed)
    return images_to_tensor(images), gold


def evaluate_aesthetic(model: AestheticModel, n: int, seed: int = HELDOUT_SEED) -> Dict[str, float]:
    images, gold = heldout_aesthetic(n, seed)
    pred = score_all(model, images)
    return {"heldout_spearman": spearman(pred, gold), "heldout_pearson": float(np.corrcoef(pred, gold)[0, 1]),
            "heldout_mse": float(np.mean((pred - gold) ** 2)), "heldout_n": int(n),
            "scoring_ms_per_image": scoring_ms_per_image(model, images)}


def fit_aesthetic(seed: int, steps: int, n_train: int, batch: int, lr: float, log=print, **_) -> AestheticModel:
    images, gold = aesthetic_dataset(make_splits("aesthetic")["train"], n_train, seed)
    x, y = images_to_tensor(images), torch.from_numpy(gold)
    log(f"aesthetic: {n_train} training images, gold mean {gold.mean():.3f} sd {gold.std():.3f}")
    model = AestheticModel(make_config())
    opt = make_optimizer(model, lr)
    rng = np.random.default_rng(seed + 1)
    model.train()
    for step in range(steps):
        idx = torch.from_numpy(rng.choice(n_train, size=batch, replace=False))
        loss = F.mse_loss(model.raw(hflip(x[idx], rng)), y[idx])
        optimise(model, opt, loss, step, steps, lr)
        if step % 100 == 0 or step == steps - 1:
            log(f"  step {step:4d}  mse {loss.item():.4f}")
    return model.eval()


# -------------------------------------------------------------------------------------------- preference
def heldout_preference(n_prompts: int, per_prompt: int = 4, seed: int = HELDOUT_SEED):
    """Held-out (records, images float [P, K, 3, H, W], gold [P, K]) for the preference *eval* prompts."""
    records = make_splits("preference")["eval"][:n_prompts]
    images, gold = preference_dataset(records, per_prompt, seed)
    p, k = gold.shape
    return records, images_to_tensor(images.reshape(p * k, *images.shape[2:])).reshape(p, k, 3, *images.shape[2:4]), gold


def evaluate_preference(model: PreferenceModel, n_prompts: int, seed: int = HELDOUT_SEED) -> Dict[str, float]:
    records, images, gold = heldout_preference(n_prompts, seed=seed)
    p, k = gold.shape
    flat = images.reshape(p * k, *images.shape[2:])
    prompts = [r["prompt"] for r in records for _ in range(k)]
    pred = score_all(model, flat, prompts).reshape(p, k)
    return {"heldout_pairwise_accuracy": pairwise_accuracy(pred, gold),
            "heldout_pairwise_accuracy_all_pairs": pairwise_accuracy(pred, gold, margin=0.0),
            "heldout_pairs": int(len(comparison_pairs(gold, PAIR_MARGIN))),
            "heldout_spearman": spearman(pred.ravel(), gold.ravel()), "heldout_prompts": int(p),
            "scoring_ms_per_image": scoring_ms_per_image(model, flat, prompts)}


def bradley_terry_loss(logits: torch.Tensor, gold: torch.Tensor, margin: float = PAIR_MARGIN,
                       hard_gamma: float = 0.0) -> torch.Tensor:
    """Mean -log sigmoid(l_i - l_j) over same-prompt pairs with gold_i - gold_j > margin. logits/gold [P, K].

    ``hard_gamma`` > 0 weights each pair by (1 - sigmoid(l_i - l_j)) ** hard_gamma (focal-style, detached
    and renormalised to mean 1), emphasising the pairs the model still orders wrongly or barely right."""
    better = (gold[:, :, None] - gold[:, None, :]) > margin
    if not better.any():
        return logits.sum() * 0.0
    diff = (logits[:, :, None] - logits[:, None, :])[better]
    nll = -F.logsigmoid(diff)
    if hard_gamma > 0:
        w = (1.0 - torch.sigmoid(diff.detach())) ** hard_gamma
        return (w * nll).sum() / w.sum().clamp_min(1e-8)
    return nll.mean()


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric CLIP InfoNCE of P matched (image, text) pairs."""
    logits = scale * image_emb @ text_emb.T
    target = torch.arange(len(logits))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def fit_preference(seed: int, steps: int, n_train: int, batch: int, lr: float, per_prompt: int = 6,
                   pool: Optional[int] = None, contrastive_weight: float = 0.5, hard_gamma: float = 0.0,
                   arch: Optional[Dict[str, Any]] = None, init_visual: Optional[str] = None, log=print,
                   probe=None, **_) -> PreferenceModel:
    """Bradley-Terry (+ contrastive) training. ``init_visual``: an aesthetic checkpoint whose image tower
    initialises the CLIP image tower (PickScore likewise fine-tunes a pretrained CLIP), or None.
    ``pool``: candidates rendered per prompt (default ``per_prompt``); each step draws ``per_prompt`` of
    them per prompt, so later epochs see new pairs."""
    records = make_splits("preference")["train"][:n_train]
    pool = pool or per_prompt
    images, gold = preference_dataset(records, pool, seed)
    p, k = gold.shape
    x = images_to_tensor(images.reshape(p * k, *images.shape[2:])).reshape(p, k, 3, *images.shape[2:4])
    g = torch.from_numpy(gold)
    log(f"preference: {p} prompts x {k} candidates, {len(comparison_pairs(gold, PAIR_MARGIN))} pairs")
    model = PreferenceModel(make_config(**(arch or {})), build_vocab(r["prompt"] for r in records))
    if init_visual:
        model.clip.visual.load_state_dict(AestheticModel.from_checkpoint(init_visual).visual.state_dict())
        log(f"  image tower initialised from {init_visual}")
    tokens = model.tokenizer([r["prompt"] for r in records])
    opt = make_optimizer(model, lr)
    rng = np.random.default_rng(seed + 1)
    model.train()
    for step in range(steps):
        idx = torch.from_numpy(rng.choice(p, size=batch, replace=False))
        if k > per_prompt:   # a fresh subset of each prompt's candidate pool
            cand = torch.from_numpy(np.argsort(rng.random((batch, k)), axis=1)[:, :per_prompt])
        else:
            cand = torch.arange(k).expand(batch, k)
        xb, gb = x[idx[:, None], cand], g[idx[:, None], cand]
        kk = xb.shape[1]
        img_emb = model.encode_images(hflip(xb.reshape(batch * kk, *x.shape[2:]), rng)).reshape(batch, kk, -1)
        txt_emb = model.clip.encode_text(tokens[idx], normalize=True)
        logits = model.logits(img_emb, txt_emb[:, None, :].expand_as(img_emb))
        best = gb.argmax(1)
        loss_bt = bradley_terry_loss(logits, gb, hard_gamma=hard_gamma)
        loss_clip = contrastive_loss(img_emb[torch.arange(batch), best], txt_emb,
                                     model.clip.logit_scale.exp().clamp(max=100.0))
        optimise(model, opt, loss_bt + contrastive_weight * loss_clip, step, steps, lr)
        if step % 50 == 0 or step == steps - 1:
            log(f"  step {step:4d}  bt {loss_bt.item():.4f}  clip {loss_clip.item():.4f}")
        if probe is not None and (step + 1) % 200 == 0 and step + 1 < steps:
            probe(model, step + 1)
            model.train()
    model.eval()
    calibrate(model, x.reshape(p * k, *x.shape[2:]), [r["prompt"] for r in records for _ in range(k)])
    return model


def calibrate(model: PreferenceModel, images: torch.Tensor, prompts: Sequence[str]) -> None:
    """Set the [lo, hi] calibration to the 1st/99th percentile of raw training scores (score ~ [0, 1])."""
    with torch.no_grad():
        raw = torch.cat([model.raw(images[i:i + 256], prompts[i:i + 256]) for i in range(0, len(images), 256)])
    model.calibration.copy_(torch.quantile(raw, torch.tensor([0.01, 0.99])))


# ------------------------------------------------------------------------------------------------ driver
FIT = {"aesthetic": fit_aesthetic, "preference": fit_preference}
EVALUATE = {"aesthetic": lambda m, h: evaluate_aesthetic(m, h["n_test"]),
            "preference": lambda m, h: evaluate_preference(m, h["n_test"])}


def train_reward_model(task: str, out: Path, seed: int = 0, steps: Optional[int] = None, *,
                       command: Optional[str] = None, log=print, **overrides) -> Dict[str, Any]:
    """Train the ``task`` reward model, evaluate it on held-out data, save it to ``out``; return the metrics.

    ``overrides``: any of ``DEFAULTS[task]`` (n_train, batch, lr, n_test, per_prompt).
    """
    model_class(task)  # validates the task name
    hparams = {**DEFAULTS[task], **({"steps": steps} if steps is not None else {}), **overrides}
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = FIT[task](seed=seed, log=log, **hparams)
    train_s = time.perf_counter() - t0
    metrics = EVALUATE[task](model, hparams)
    key, target = TARGETS[task]
    metrics.update({"train_seconds": round(train_s, 1), "params": n_params(model), "target_metric": key,
                    "target": target, "meets_target": bool(metrics[key] >= target)})
    if hparams.get("init_visual"):
        hparams["init_visual_digest"] = checkpoint_digest(hparams["init_visual"])
        hparams["init_visual"] = _relative(hparams["init_visual"])
    training = {"task": task, "seed": seed, "hparams": hparams, "metrics": metrics,
                "command": command or f"train_reward_model({task!r}, {str(out)!r}, seed={seed}, steps={hparams['steps']})",
                "torch_threads": torch.get_num_threads()}
    model.save(out, training=training)
    log(f"{task}: {key} = {metrics[key]:.4f} (target {target}); trained in {train_s:.0f}s; saved {out}")
    return metrics


def _relative(path) -> str:
    """``path`` relative to the repository root when inside it (keeps config.json machine-independent)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(RELEASED_DIR.parent))
    except ValueError:
        return str(p)
