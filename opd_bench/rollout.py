"""Rollouts: run the guided sampler from noise, recording every visited state, the timesteps and the
per-step log-probabilities (SDE) -- everything GRPO and DiffusionOPD need to train on the trajectory."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

from .backbones.base import Backbone, Condition
from .sampler import SDEStep, Transition, sde_step, timestep_schedule


@dataclass
class Rollout:
    images: torch.Tensor          # [B, 3, H, W] in [0, 1]
    states: torch.Tensor          # [B, N + 1, *latent]: x_0 (noise) ... x_N (final)
    timesteps: torch.Tensor       # [N + 1]: 1 = t_0 > ... > t_N = 0
    log_probs: Optional[torch.Tensor]  # [B, N] per-step log p(x_{j+1} | x_j); None for the ODE, NaN at ODE steps
    noise_level: float
    #: [B, N, *latent] the mean of every transition (``keep_means``: GRPO-Guard's RatioNorm needs the old mean)
    means: Optional[torch.Tensor] = None
    #: step j -> the sampling model's own transition at x_j WITH its autograd graph (``grad_steps``): the forward
    #: a method would otherwise repeat to differentiate the policy at the visited states
    graph: Optional[Dict[int, Transition]] = None

    @property
    def final(self) -> torch.Tensor:
        return self.states[:, -1]

    def __len__(self) -> int:
        return self.states.shape[0]

    def index(self, idx) -> "Rollout":
        """The rollout of the samples ``idx`` (a minibatch); the time grid is shared."""
        lp = None if self.log_probs is None else self.log_probs[idx]
        means = None if self.means is None else self.means[idx]
        return Rollout(self.images[idx], self.states[idx], self.timesteps, lp, self.noise_level, means)


@torch.no_grad()
def rollout(
    model: Backbone,
    cond: Condition,
    *,
    steps: int,
    guidance: float,
    noise_level: float = 0.0,
    shift: float = 1.0,
    generator: Optional[torch.Generator] = None,
    logprob_reduce: str = "mean",
    keep_states: bool = True,
    x_init: Optional[torch.Tensor] = None,
    global_batch: Optional[tuple] = None,
    sde_steps: Optional[Sequence[int]] = None,
    grid: str = "linear",
    keep_means: bool = False,
    grad_steps: Sequence[int] = (),
) -> Rollout:
    """Sample len(cond) images with the ODE (noise_level = 0) or Flow-GRPO's SDE (noise_level > 0).

    Randomness comes only from ``generator`` (initial noise unless ``x_init`` is given, then per-step noise),
    so a rollout is reproducible given the generator's seed. ``global_batch=(start, total)``: this batch is the
    slice [start, start + B) of a global batch of ``total`` samples (data parallelism) -- noise is drawn for the
    whole global batch and sliced, so the shard sees exactly the noise a single process would.
    ``sde_steps``: only these steps are stochastic (an SDE window, Flow-GRPO-Fast / MixGRPO); the others take the
    ODE step, and their entry of ``log_probs`` is NaN. None = every step (when ``noise_level`` > 0).
    ``grid``: the time grid (``sampler.timestep_schedule``: ``linear`` or SD3's ``sd3``). ``keep_means``: also
    record each transition's mean (``Rollout.means``). ``grad_steps``: at these steps the velocity is computed
    with autograd on and the transition, graph included, is kept in ``Rollout.graph`` (the same numbers as a
    no-grad forward; the recorded states, means and log-probabilities are detached, so sampling is unchanged).
    """
    device = model.device
    b = len(cond)
    ts = timestep_schedule(steps, shift, device=device, grid=grid)
    start, total = global_batch or (0, b)

    def noise():
        return torch.randn((total, *model.latent_shape), generator=generator, device=device)[start : start + b]

    x = noise() if x_init is None else x_init.to(device)
    states = [x] if keep_states else None
    log_probs, means = [], []
    stochastic = set(range(steps) if sde_steps is None else sde_steps) if noise_level > 0 else set()
    graph = {}
    for j in range(steps):
        a = noise_level if j in stochastic else 0.0
        with torch.enable_grad() if j in grad_steps else contextlib.nullcontext():
            v = model.velocity(x, ts[j], cond, guidance)
            step = sde_step(x, v, ts[j], ts[j + 1], a, t_first=ts[1], reduce=logprob_reduce,
                            noise=noise() if a > 0 else None)
        if j in grad_steps:
            if a == noise_level:   # the transition sde_transition gives at noise_level (an ODE step in an SDE
                graph[j] = Transition(step.mean, step.std)   # window's rollout is not: it is left out)
            step = SDEStep(*(None if t is None else t.detach() for t in step))
        x = step.next
        if keep_means:
            means.append(step.mean)
        if keep_states:
            states.append(x)
        log_probs.append(step.log_prob)
    if stochastic:   # NaN (in the log-probs' own dtype) where a step of the window's rollout was the ODE
        ref = next(lp for lp in log_probs if lp is not None)
        log_probs = [torch.full_like(ref, float("nan")) if lp is None else lp for lp in log_probs]
    return Rollout(
        images=model.to_images(x),
        states=torch.stack(states, 1) if keep_states else x[:, None],
        timesteps=ts,
        log_probs=torch.stack(log_probs, 1) if stochastic else None,
        noise_level=noise_level,
        means=torch.stack(means, 1) if keep_means else None,
        graph=graph or None,
    )


@dataclass
class Batch:
    """A rollout of some prompts of one task, each repeated ``group`` times (GRPO groups)."""

    task: str
    records: List[dict]           # one per sample (prompts repeated ``group`` times)
    group_ids: torch.Tensor       # [B] prompt index of each sample
    cond: Condition
    rollout: Rollout
    noise_level: float

    @property
    def size(self) -> int:
        return len(self.records)

    def index(self, idx: torch.Tensor) -> "Batch":
        """The samples ``idx`` of the batch (a minibatch), group ids kept."""
        i = idx.tolist()
        return Batch(self.task, [self.records[k] for k in i], self.group_ids[idx], self.cond.index(idx),
                     self.rollout.index(idx), self.noise_level)

    @staticmethod
    def cat(batches: Sequence["Batch"]) -> "Batch":
        """One batch from several rollouts with the same schedule (group ids kept distinct)."""
        b0 = batches[0]
        gids, offset = [], 0
        for b in batches:
            gids.append(b.group_ids + offset)
            offset += int(b.group_ids.max()) + 1
        lps = [b.rollout.log_probs for b in batches]
        means = [b.rollout.means for b in batches]
        ro = Rollout(
            images=torch.cat([b.rollout.images for b in batches]),
            states=torch.cat([b.rollout.states for b in batches]),
            timesteps=b0.rollout.timesteps,
            log_probs=None if lps[0] is None else torch.cat(lps),
            noise_level=b0.noise_level,
            means=None if means[0] is None else torch.cat(means),
        )
        task = b0.task if all(b.task == b0.task for b in batches) else "mixed"
        return Batch(task, [r for b in batches for r in b.records], torch.cat(gids),
                     Condition.cat([b.cond for b in batches]), ro, b0.noise_level)
