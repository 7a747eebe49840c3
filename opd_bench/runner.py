"""The one runner every method plugs into.

It owns everything that is not the method's math: prompt sampling per task, rollouts, rewards, teacher and
reference models, the optimizer step (AdamW, grad-norm clip, optional EMA), the budget ledger, periodic
evaluation, checkpoints (resumable after SIGKILL), the metrics log (JSONL + TensorBoard) and the progress bar.
A method (``opd_bench.methods``) is a small strategy: ``train_step(ctx)`` computes its loss on fresh
rollouts, calls ``ctx.backward`` and ``ctx.optimizer_step``.

Determinism: all randomness of round k derives from (seed, k, purpose), so a resumed run replays exactly
the rounds an uninterrupted run would have (on CPU; wall-clock budgets are the exception).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .backbones import Backbone, backbone_options, load_backbone
from .backbones.base import Condition
from . import runlock, validate
from .checkpoint import (atomic_write_json, atomic_write_text, json_text, load_checkpoint, read_config,
                         recover_interrupted_save, save_checkpoint)
from .config import RunConfig, dump_config, to_dict
from .errors import NonFiniteError, RunStopped, UserError
from .evaluate import EvalProtocol, eval_row, evaluate
from .protocol import curve_due, curve_protocol
from .ledger import Ledger
from .paths import is_run_dir  # noqa: F401  (re-exported: opd_bench.runner.is_run_dir)
from .progress import human_count, human_quantity, progress_bar, say
from .distributed import Dist
from .losses import grpo_advantages
from .microbatch import micro_batches, micro_indices
from .parallel import make_grad_sync
from .rollout import Batch, Rollout, rollout  # noqa: F401  (Batch: re-exported)
from .sampler import Transition, sde_sigma, sde_transition
from .tasks import configure_run_tasks, get_task
from .teachers import load_teacher, reference_policy, resolve_teacher

STATE = "state"
FINAL = "final"


def _seed(*parts) -> int:
    """A stable 63-bit seed from any parts (ints and strings)."""
    return zlib.crc32(json.dumps(parts).encode()) * 2654435761 % (2**63)


def balanced_indices(labels: Sequence[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices into ``labels`` balanced over its categories: the step's slots cycle through the categories
    in one random order (so any two categories' counts differ by at most one), and each slot takes a uniform
    member of its category (without replacement while the category has enough members for its slots)."""
    cats = sorted(set(labels))
    members = {c: [i for i, lab in enumerate(labels) if lab == c] for c in cats}
    order = rng.permutation(len(cats))
    slots = [cats[order[j % len(cats)]] for j in range(n)]
    out = np.empty(n, dtype=np.int64)
    for c in cats:
        where = [j for j, sc in enumerate(slots) if sc == c]
        if where:
            pool = members[c]
            out[where] = np.asarray(pool)[rng.choice(len(pool), size=len(where), replace=len(pool) < len(where))]
    return out


class RunContext:
    """What a method sees: the models, the tasks, and the runner's accounting helpers."""

    def __init__(self, cfg: RunConfig, tasks: Sequence[str], student: Backbone, ledger: Ledger, device="cpu",
                 dist: Optional[Dist] = None):
        self.cfg = cfg
        self.dist = dist or Dist()
        self.tasks = list(tasks)
        self.student = student
        self.ledger = ledger
        self.device = device
        self.round = 0
        self.phase = "train"
        if cfg.model.gradient_checkpointing:
            student.set_gradient_checkpointing(True)
        if cfg.model.compile:
            student.compile_blocks()
        if cfg.model.prompt_cache_size:
            student.configure_prompt_cache(cfg.model.prompt_cache_size, cfg.model.prompt_cache_cpu_size)
        self.sync = make_grad_sync(cfg.train.grad_sync, self.dist, student)   # fsdp: shards the denoiser
        self.params = self.sync.params
        self.optimizer = self._make_optimizer()
        self.ema: Optional[List[torch.Tensor]] = None
        self.ema_updates = 0
        if cfg.train.ema.enabled:
            self.ema = [p.detach().clone() for p in self.params]
        self.reference: Optional[Backbone] = None
        self._teachers: Dict[str, Backbone] = {}
        self.timesteps = None
        #: a method's own state tensors (e.g. NFT's old policy), saved with the train state and restored on resume.
        self.extra: Dict[str, torch.Tensor] = {}
        #: (first prompt, prompts of the whole rollout on this process) while a rollout is sampled in parts
        self._part: Optional[tuple] = None

    # ---- randomness ---------------------------------------------------------------------------------------
    def generator(self, *purpose) -> torch.Generator:
        return torch.Generator().manual_seed(_seed(self.cfg.seed, self.round, *purpose))

    def rng(self, *purpose) -> np.random.Generator:
        return np.random.default_rng(_seed(self.cfg.seed, self.round, "np", *purpose))

    def randn_rows(self, shape, generator: torch.Generator) -> torch.Tensor:
        """This process's ``shape[0]`` rows of ONE global draw of world_size x shape[0] rows (contiguous, like its
        shard of the prompts): every row gets the noise it gets in a single-process run (there: the draw itself)."""
        n = shape[0]
        z = torch.randn((self.dist.world_size * n, *shape[1:]), generator=generator)
        return z[self.dist.rank * n : (self.dist.rank + 1) * n]

    # ---- prompts ------------------------------------------------------------------------------------------
    def step_prompts(self, images_per_prompt: int) -> int:
        """Prompts for the next step: ``train.prompts_per_step``, or fewer on the last step of an image budget
        so that the run stops at its value (:func:`last_step_prompts`). A step taken outside the budget loop
        (analyses, a spent budget) takes the full ``train.prompts_per_step``."""
        n = self.cfg.train.prompts_per_step
        left = self.cfg.budget.value - self.ledger.spent("images")
        return last_step_prompts(n, images_per_prompt, left) if self.cfg.budget.unit == "images" and left > 0 else n

    def sample_prompts(self, task: str, n: int) -> List[dict]:
        """This process's shard of ``n`` prompts drawn for the step (the same global draw on every rank)."""
        spec = get_task(task)
        pool = spec.prompts("train")
        if not pool:
            raise UserError(f"task {task}: the train prompt set is empty")
        rng = self.rng("prompts", task)
        if self.cfg.train.prompt_sampling == "balanced" and spec.category_key:
            idx = balanced_indices([r[spec.category_key] for r in pool], n, rng)
        else:
            idx = rng.choice(len(pool), size=n, replace=len(pool) < n)
        return [dict(pool[i], _task=task) for i in idx[self.dist.shard(n)]]

    # ---- rollouts -----------------------------------------------------------------------------------------
    def rollout(self, task: str, records: List[dict], group: int, noise_level: float, guidance: Optional[float] = None,
                keep_means: bool = False, grad_steps: Sequence[int] = ()) -> Batch:
        """Student rollout (no grad) of ``group`` samples per prompt, counted in the ledger; with
        ``grpo.group_noise: shared`` a group's samples start from the same initial noise. ``guidance``: the CFG
        scale (default ``sampler.guidance``); ``keep_means``: record the transitions' means; ``grad_steps``: keep
        the student's transitions at these steps with their graph (``Rollout.graph``, rollout.rollout)."""
        s = self.cfg.sampler
        rep = [r for r in records for _ in range(group)]
        gids = torch.arange(len(records)).repeat_interleave(group)
        cond = self.student.encode_prompts([r["prompt"] for r in rep])
        gen = self.generator("rollout", task)
        first, n = self._part or (0, len(records))   # these prompts are [first, first + len) of the rollout's n
        x_init = None
        if group > 1 and self.cfg.grpo.group_noise == "shared":   # one x_0 per prompt (the global draw, sliced)
            x_init = self.randn_rows((n, *self.student.latent_shape), gen)[first : first + len(records)]
            x_init = x_init.repeat_interleave(group, dim=0)
        w = s.guidance if guidance is None else guidance
        ro = rollout(self.student, cond, steps=s.steps, guidance=w, noise_level=noise_level, shift=s.shift,
                     generator=gen, logprob_reduce=s.logprob_reduce, x_init=x_init,
                     global_batch=((self.dist.rank * n + first) * group, self.dist.world_size * n * group),
                     sde_steps=self.trained_steps() if s.sde_window else None, grid=s.grid, keep_means=keep_means,
                     grad_steps=grad_steps)
        self.timesteps = ro.timesteps
        self.ledger.images(self.phase, len(rep))
        self.ledger.forwards(self.phase, "student", "rollout", len(rep) * s.steps * self.student.forwards_per_velocity(w))
        return Batch(task, rep, gids, cond, ro, noise_level)

    def trained_steps(self) -> List[int]:
        """method.md section 3: the first floor(N * timestep_fraction) steps (at least one), or the steps of
        ``sampler.sde_window`` when one is set."""
        if self.cfg.sampler.sde_window:
            return list(range(*self.cfg.sampler.sde_window))
        n = self.cfg.sampler.steps
        return list(range(max(1, math.floor(n * self.cfg.sampler.timestep_fraction + 1e-9))))

    def advantages(self, rewards: torch.Tensor, group_ids: torch.Tensor, std_mode: str, clip: float) -> torch.Tensor:
        """GRPO advantages with statistics over the GLOBAL batch (gathered from every rank), sliced back."""
        n_groups = int(group_ids.max()) + 1
        all_r = self.dist.gather(rewards)
        all_g = self.dist.gather(group_ids + self.dist.rank * n_groups)
        adv = grpo_advantages(all_r, all_g, std_mode, clip)
        b = rewards.shape[0]
        return adv[self.dist.rank * b : (self.dist.rank + 1) * b]

    def rollout_and_score(self, task: str, records: List[dict], roll) -> tuple:
        """(``roll(records)``: a Batch, its rewards under ``task``'s reward). With ``rewards.overlap_parts`` k > 1
        the prompts are rolled out in k parts, each scored in a background thread while the next part is sampled
        (the reward models then work during the student's rollout): every sample gets the noise it gets in one
        rollout (its rows of the same global draws), so the batch and rewards are the one rollout's."""
        k = min(self.cfg.rewards.overlap_parts, len(records))
        if k <= 1:
            batch = roll(records)
            return batch, self.rewards(batch)
        from concurrent.futures import ThreadPoolExecutor

        batches, scores = [], []
        with ThreadPoolExecutor(1, thread_name_prefix="reward") as pool:
            for idx in torch.arange(len(records)).tensor_split(k):
                self._part = (int(idx[0]), len(records))
                try:
                    batches.append(roll([records[i] for i in idx.tolist()]))
                finally:
                    self._part = None
                b = batches[-1]
                scores.append(pool.submit(torch.no_grad()(get_task(task).reward), b.rollout.images, b.records))
            batch = Batch.cat(batches)
            return batch, self.rewards(batch, scored=torch.cat([f.result() for f in scores]))

    def rewards(self, batch: Batch, task: Optional[str] = None, scored: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``task``'s rewards of the batch (``scored``: already computed), checked and counted."""
        task = task or batch.task
        r = (get_task(task).reward(batch.rollout.images, batch.records) if scored is None else scored).float()
        if not self.dist.enabled:  # across processes a NaN reward stops every rank at the (all-reduced) gradient
            validate.require_finite(f"reward of task {task}", r)
        self.ledger.reward_calls(self.phase, task, batch.size)
        return r

    # ---- transitions --------------------------------------------------------------------------------------
    def transition(self, model: Backbone, role: str, batch: Batch, j: int, guidance: float, purpose="training",
                   **velocity_options) -> Transition:
        """The transition N(mean, std^2) of ``model`` at the stored state x_j of the batch's trajectory."""
        ts = batch.rollout.timesteps
        x = batch.rollout.states[:, j]
        v = model.velocity(x, ts[j], batch.cond, guidance, **velocity_options)
        self.ledger.forwards(self.phase, role, purpose, batch.size * model.forwards_per_velocity(guidance))
        return sde_transition(x, v, ts[j], ts[j + 1], batch.noise_level, t_first=ts[1])

    def student_transition(self, batch: Batch, j: int, detach_uncond: bool = False) -> Transition:
        """``detach_uncond``: the CFG's unconditional branch carries no gradient (grpo.detach_uncond)."""
        options = {"detach_uncond": True} if detach_uncond else {}
        return self.transition(self.student, "student", batch, j, self.cfg.sampler.guidance, **options)

    @torch.no_grad()
    def reference_transition(self, batch: Batch, j: int) -> Transition:
        ref = self.get_reference()
        return self.transition(ref, "reference", batch, j, self.cfg.sampler.guidance)

    @torch.no_grad()
    def teacher_transition(self, task: str, batch: Batch, j: int) -> Transition:
        g = self.cfg.opd.teacher_guidance.get(task, self.cfg.sampler.guidance)
        return self.transition(self.teacher(task), "teacher", batch, j, g)

    @torch.no_grad()
    def teacher_transitions(self, task: str, batch: Batch, steps: Sequence[int]) -> Dict[int, Transition]:
        """``opd.batched_teacher``: teacher ``task``'s transitions at every trained state of the batch from ONE
        batched forward of len(steps) x B rows (the states are known once the rollout is done; the teacher
        needs no gradient), instead of one forward per step: the same means up to float rounding."""
        g = self.cfg.opd.teacher_guidance.get(task, self.cfg.sampler.guidance)
        teacher, ts, states = self.teacher(task), batch.rollout.timesteps, batch.rollout.states
        x = torch.cat([states[:, j] for j in steps])
        t = torch.cat([ts[j].expand(batch.size) for j in steps])
        v = teacher.velocity(x, t, Condition.cat([batch.cond] * len(steps)), g)
        self.ledger.forwards(self.phase, "teacher", "training", len(steps) * batch.size * teacher.forwards_per_velocity(g))
        return {j: sde_transition(states[:, j], vj, ts[j], ts[j + 1], batch.noise_level, t_first=ts[1])
                for j, vj in zip(steps, v.split(batch.size))}

    def sigma_dt(self, batch: Batch, j: int):
        ts = batch.rollout.timesteps
        return sde_sigma(ts[j], batch.noise_level, t_first=ts[1]), ts[j + 1] - ts[j]

    # ---- models -------------------------------------------------------------------------------------------
    def get_reference(self) -> Backbone:
        """The KL reference policy: a frozen copy of the student as it was at the (stage) start, or -- for a LoRA
        backbone -- the adapter-disabled base network itself (no second copy)."""
        if self.reference is None:
            with self.sync.full_weights():   # fsdp: a frozen copy of the whole weights
                self.reference = reference_policy(self.student)
        return self.reference

    def reset_reference(self) -> None:
        """The reference policy becomes the current student (cascade: the previous stage's weights); a LoRA
        backbone keeps it as a frozen adapter copy of the student LoRA."""
        self.reference = None
        if self.student.has_lora_reference:
            self.student.freeze_reference()
        self.get_reference()

    def teacher(self, task: str) -> Backbone:
        if task not in self._teachers:
            self._teachers[task] = load_teacher(self.student, task, resolve_teacher(self.cfg, task), self.device)
            if self.cfg.model.compile and isinstance(self._teachers[task], Backbone):   # a separate network
                self._teachers[task].compile_blocks()
        return self._teachers[task]

    def micro_batches(self, n: int, *items):
        """``train.micro_batch``: (weight, *items' rows) per micro-batch of a batch of ``n`` rows, for gradient
        accumulation (``opd_bench.microbatch``); one part, the items themselves with weight 1.0, by default."""
        return micro_batches(n, self.cfg.train.micro_batch, *items)

    def micro_parts(self, n: int) -> int:
        """How many micro-batches :meth:`micro_batches` cuts a batch of ``n`` rows into."""
        return len(micro_indices(n, self.cfg.train.micro_batch))

    def expect_backwards(self, n: int) -> None:
        """An update loop declares the ``n`` backward passes it runs before its next optimizer step: with
        ``train.grad_sync: ddp`` only the last one synchronises the gradients (opd_bench/parallel.py)."""
        self.sync.expect_backwards(n)

    # ---- optimisation -------------------------------------------------------------------------------------
    def _make_optimizer(self):
        t = self.cfg.train
        return torch.optim.AdamW(self.params, lr=t.lr, weight_decay=t.weight_decay, betas=tuple(t.betas))

    def reset_optimizer(self) -> None:
        self.optimizer = self._make_optimizer()

    def backward(self, loss: torch.Tensor, n_samples: int, forwards_per_sample: int = 1) -> None:
        """Back-propagate ``loss``; the ledger counts ``n_samples * forwards_per_sample`` single-sample backward
        passes: a CFG velocity computed as one batched forward of both halves is differentiated through both
        (2 per sample; ``Backbone.forwards_per_velocity``), even when the unconditional half is detached."""
        self.sync.before_backward()
        loss.backward()
        self.sync.after_backward()
        self.ledger.backwards(self.phase, n_samples * forwards_per_sample)

    def optimizer_step(self) -> float:
        """Average gradients across processes, clip, step, zero grads, update the EMA. Returns the pre-clip norm."""
        self.sync.reduce()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.train.grad_clip) if self.cfg.train.grad_clip > 0 \
            else torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in self.params if p.grad is not None]))
        norm = self.sync.full(norm)
        validate.require_finite("gradient norm", norm)  # before the step: the weights stay the last good ones
        self.optimizer.step()
        validate.require_finite_tensors("weights after the optimizer step", self.params)
        self.optimizer.zero_grad(set_to_none=True)
        self.ledger.optimizer_step(self.phase)
        steps = int(self.ledger.spent("optimizer_steps", self.phase))
        e = self.cfg.train.ema
        if self.ema is not None and steps % e.every == 0:
            k = self.ema_updates if e.warmup == "updates" else steps
            d = min((1 + k) / (10 + k), e.decay)
            with torch.no_grad():
                for m, p in zip(self.ema, self.params):
                    m.mul_(d).add_(p.detach(), alpha=1 - d)
            self.ema_updates += 1
        return float(norm)

    def swapped_weights(self, values: Optional[List[torch.Tensor]]):
        """Context manager: the student runs with ``values`` in place of its trainable weights (None: unchanged)."""
        return _SwapWeights(self.params, values)

    @contextlib.contextmanager
    def eval_weights(self):
        """Context manager: swap the EMA weights in (when enabled) for evaluation / saving; whole weights
        (``train.grad_sync: fsdp`` gathers its shards: every process enters it)."""
        with _SwapWeights(self.params, self.ema), self.sync.full_weights():
            yield


class _SwapWeights:
    def __init__(self, params, ema):
        self.params, self.ema, self.saved = params, ema, None

    def __enter__(self):
        if self.ema is not None:
            self.saved = [p.detach().clone() for p in self.params]
            with torch.no_grad():
                for p, m in zip(self.params, self.ema):
                    p.copy_(m)

    def __exit__(self, *exc):
        if self.saved is not None:
            with torch.no_grad():
                for p, s in zip(self.params, self.saved):
                    p.copy_(s)


# ------------------------------------------------------------------------------------------------- run dir


class RunDir:
    """runs/<name>/: config.yaml, ledger.json, metrics.jsonl, eval_history.jsonl, state/, final/, tb/."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def config(self):
        return self.path / "config.yaml"

    def append_jsonl(self, name: str, row: dict) -> None:
        with open(self.path / name, "a") as f:
            f.write(json_text(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_jsonl(self, name: str) -> List[dict]:
        p = self.path / name
        if not p.is_file():
            return []
        rows = []
        for line in p.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                break  # a line torn by a kill: everything after it is discarded on resume
            if not isinstance(row, dict) or not isinstance(row.get("round"), int):
                break  # garbage, not a row of ours: discarded like a torn line
            rows.append(row)
        return rows

    def truncate_jsonl(self, name: str, keep) -> None:
        rows = [r for r in self.read_jsonl(name) if keep(r)]
        atomic_write_text(self.path / name, "".join(json_text(r) + "\n" for r in rows))


def last_step_prompts(n: int, images_per_prompt: int, images_left: float) -> int:
    """``n`` prompts, or as many as the images left need (rounded up, at least 1): a step of ``images_per_prompt``
    images per prompt then ends an image budget exactly when the budget is a multiple of ``images_per_prompt``,
    and otherwise overshoots it by less than one prompt's images."""
    return max(1, min(n, math.ceil(images_left / images_per_prompt)))


def optimizer_state(tensors: Dict[str, torch.Tensor], meta: dict) -> dict:
    """The optimizer's ``state_dict`` saved in a train state (``state/``: tensors ``optim.<pid>.<name>``, scalars and
    param groups in its config)."""
    state: Dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for k, v in meta["optim_scalars"].items():
        pid, name = k.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


class Runner:
    def __init__(self, cfg: RunConfig, run_dir: Path, method, tasks: Sequence[str], show_progress: bool = True,
                 log_tensorboard: bool = True):
        self.cfg = cfg
        self.dir = RunDir(run_dir)
        self.method = method
        self.tasks = list(tasks)
        self.show_progress = show_progress
        self.log_tensorboard = log_tensorboard
        self._tb = None
        #: the stage the run is in (cascade); changes only through method.start_stage, saved with the state.
        self.stage = 0

    # ---- evaluation ---------------------------------------------------------------------------------------
    def run_eval(self, ctx: RunContext, label: str, curve: bool = False) -> Optional[dict]:
        """Evaluate under the run's protocol (``eval``), or the learning-curve protocol (``curve``: val subset;
        TensorBoard ``curve/<task>``, no sample grids), each process on its part of the prompts (gathered: every
        rank gets the whole result); the main process writes the eval-history row. Returns the row (None off
        the main rank)."""
        protocol = curve_protocol(self.cfg) if curve else EvalProtocol.from_config(self.cfg)
        row = self._run_eval(ctx, label, protocol, curve)
        ctx.dist.barrier()
        return row if ctx.dist.is_main else None

    @staticmethod
    def _start_cacheable(ctx: RunContext, label: str) -> bool:
        """A start evaluation scores the unchanged starting checkpoint (before any training, a full-weight
        backbone, one process): its result is the checkpoint's, so it is read from and written to the eval cache."""
        return label.startswith("start") and not ctx.round and ctx.dist.world_size == 1 \
            and not ctx.student.has_lora_reference

    def _start_from_cache(self, ctx: RunContext, label: str, protocol: EvalProtocol,
                          curve: bool = False) -> Optional[dict]:
        """A start evaluation is the evaluation of the run's starting checkpoint, which never changes: served from
        the eval cache (the released checkpoints ship theirs) when present, else computed and cached by the
        caller. Only before any training, for full-weight backbones on one process. Its sample grid (first
        images, the same noises) is drawn without scoring. None when it must be computed."""
        if not self._start_cacheable(ctx, label):
            return None
        from . import evalcache
        from .evaluate import first_images
        from .trackers import GRID_SAMPLES

        hit = evalcache.lookup(self.cfg.model.checkpoint, self.tasks, protocol, backbone_options(self.cfg.model))
        if len(hit) < len(self.tasks):
            return None
        samples = {}
        if self.log_tensorboard and not curve:
            with ctx.eval_weights():
                samples = {t: (first_images(ctx.student, t, protocol, GRID_SAMPLES), None, None) for t in self.tasks}
        return {"tasks": hit, "_images": samples, "cached": True}

    def _run_eval(self, ctx: RunContext, label: str, protocol: EvalProtocol, curve: bool) -> dict:
        t0 = time.perf_counter()
        res = self._start_from_cache(ctx, label, protocol, curve)
        if res is None:
            with ctx.eval_weights():
                res = evaluate(ctx.student, self.tasks, protocol,
                               show_progress=self.show_progress, label=f"{self.cfg.method} s{self.cfg.seed} ({label})",
                               keep_images=self.log_tensorboard and not curve, dist=ctx.dist)
            if self._start_cacheable(ctx, label):
                from . import evalcache

                evalcache.store(self.cfg.model.checkpoint, protocol, res["tasks"], backbone_options(self.cfg.model))
        samples = res.pop("_images", {})
        n = 0 if res.pop("cached", False) else sum(t["images"] for t in res["tasks"].values())
        with ctx.ledger.unscaled():   # n is the gathered, global count
            ctx.ledger.images("eval", n)
            ctx.ledger.forwards("eval", "student", "rollout", n * protocol.steps * ctx.student.forwards_per_velocity(protocol.guidance))
        ctx.ledger.add("eval", "seconds", time.perf_counter() - t0)
        row = {"round": ctx.round, "label": label, "stage": self.method.stage(ctx)[0],
               "budget": ctx.ledger.summary("train"), **eval_row(res["tasks"], label, protocol)}
        if not ctx.dist.is_main:
            return row
        self.dir.append_jsonl("eval_history.jsonl", row)
        self._tb_scalars({f"{'curve' if curve else 'eval'}/{k}": v for k, v in row["scores"].items()}, ctx)
        if self.log_tensorboard and samples:
            from .trackers import sample_grid

            self._logger.grids({f"samples/{t}": sample_grid(imgs) for t, (imgs, _, _) in samples.items()},
                               int(ctx.ledger.spent("images")))
        return row

    # ---- logging ------------------------------------------------------------------------------------------
    @property
    def _logger(self):
        """The run's trackers (TensorBoard by default, wandb when asked: ``train.trackers``)."""
        if self._tb is None:
            from .trackers import RunLogger

            self._tb = RunLogger(self.dir.path, self.cfg.train.trackers, self.cfg.train.wandb_project,
                                 self.cfg.name, to_dict(self.cfg))
        return self._tb

    def _tb_scalars(self, scalars: Dict[str, float], ctx: RunContext) -> None:
        if self.log_tensorboard:
            self._logger.scalars(scalars, int(ctx.ledger.spent("images")))

    # ---- state --------------------------------------------------------------------------------------------
    def save_state(self, ctx: RunContext) -> None:
        if ctx.dist.is_main or ctx.sync.sharded:   # fsdp: every process gathers the shards, the main one writes
            self._save_state(ctx)
        ctx.dist.barrier()

    def _save_state(self, ctx: RunContext) -> None:
        full = ctx.sync.full
        tensors = {f"param.{i}": full(p.detach()) for i, p in enumerate(ctx.params)}
        if ctx.ema is not None:
            tensors.update({f"ema.{i}": full(m) for i, m in enumerate(ctx.ema)})
        tensors.update({f"extra.{k}": full(v) for k, v in ctx.extra.items()})
        if ctx.reference is not None:
            tensors.update({f"reference.{i}": p.detach() for i, p in enumerate(ctx.reference.trainable_parameters())})
        opt = ctx.optimizer.state_dict()
        scalars = {}
        for pid, st in opt["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"optim.{pid}.{k}"] = full(v)
                else:
                    scalars[f"{pid}.{k}"] = v
        if not ctx.dist.is_main:
            return
        meta = {
            "round": ctx.round, "ema_updates": ctx.ema_updates, "param_groups": opt["param_groups"],
            "optim_scalars": scalars, "ledger": ctx.ledger.to_dict(), "stage": self.stage,
        }
        save_checkpoint(self.dir.path / STATE, tensors, meta, kind="train_state")
        atomic_write_json(self.dir.path / "ledger.json", self.ledger_report(ctx))

    def load_state(self, ctx: RunContext) -> None:
        tensors, meta = load_checkpoint(self.dir.path / STATE, kind="train_state")
        like = ctx.sync.shard_like   # fsdp: this process's shards of the saved whole tensors
        with torch.no_grad():
            for i, p in enumerate(ctx.params):
                p.copy_(like(tensors[f"param.{i}"], p))
            if ctx.ema is not None:
                for i, m in enumerate(ctx.ema):
                    m.copy_(like(tensors[f"ema.{i}"], m))
            if any(k.startswith("reference.") for k in tensors):
                if ctx.student.has_lora_reference:
                    ctx.reset_reference()   # create the frozen adapter; its saved weights are copied in below
                ref = ctx.get_reference()
                for i, p in enumerate(ref.trainable_parameters()):
                    p.copy_(tensors[f"reference.{i}"])
        ctx.extra.update({k[len("extra."):]: like(v, ctx.extra.get(k[len("extra."):], v))
                          for k, v in tensors.items() if k.startswith("extra.")})
        opt = optimizer_state(tensors, meta)
        for pid, st in opt["state"].items():
            st.update({k: like(v, ctx.params[pid]) for k, v in st.items() if torch.is_tensor(v) and v.dim()})
        ctx.optimizer.load_state_dict(opt)
        ctx.round = meta["round"]
        ctx.ema_updates = meta["ema_updates"]
        ctx.ledger = Ledger.from_dict(meta["ledger"])
        self.stage = meta["stage"]

    def ledger_report(self, ctx: RunContext) -> dict:
        report = {
            "budget": {"value": self.cfg.budget.value, "unit": self.cfg.budget.unit},
            "spent": {p: ctx.ledger.summary(p) for p in ("teacher", "train", "eval")},
            "counters": ctx.ledger.to_dict(),
            "rounds": ctx.round,
            # what the wall seconds ran on: CPU hours = seconds x threads x processes (claims states them)
            "threads": torch.get_num_threads(), "processes": ctx.dist.world_size,
        }
        if ctx.dist.enabled:
            report["grad_sync"] = ctx.sync.report()
        report.update(self.method.ledger_extras(self, report["spent"]["train"]))
        return report

    # ---- the loop -----------------------------------------------------------------------------------------
    def budget_left(self, ctx: RunContext) -> float:
        """Budget left, agreed by every process (wall-clock seconds differ slightly between ranks)."""
        spent = ctx.dist.mean_scalars({"spent": ctx.ledger.spent(self.cfg.budget.unit)})["spent"]
        return self.cfg.budget.value - spent

    def run(self, resume: bool = False) -> dict:
        """Train to the budget (``resume``: from the saved state, or from the start when none was saved yet).
        The main process owns the run folder meanwhile (a second owner exits 2 naming it). A non-finite loss,
        gradient, reward or weight, or a failed write (full / read-only disk), stops the run with
        :class:`RunStopped` (exit 3): the last good state stays in ``state/``, resumable."""
        validate.device_available(self.cfg.device)
        validate.device_available(self.cfg.rewards.device, "rewards.device")
        if not Dist().is_main:
            return self._run(resume)
        with runlock.own(self.dir.path):
            recover_interrupted_save(self.dir.path / STATE)  # a save killed between its two renames
            if not resume:
                runlock.refuse_existing(self.dir.path)
            try:
                return self._run(resume)
            except NonFiniteError as e:
                raise NonFiniteError(f"{self.dir.path}: {e}: run stopped; {self._state_note()} "
                                     "(lower train.lr or check the config and rewards)") from None
            except OSError as e:
                what = f"cannot write {e.filename}" if e.filename else "a write failed"
                raise RunStopped(f"{self.dir.path}: {what} ({e.strerror or e}): run stopped; {self._state_note()} "
                                 "(free space or fix permissions first)") from None

    def _state_note(self) -> str:
        try:
            r = read_config(self.dir.path / STATE)["round"]
            return f"the last good state (round {r}) is in {self.dir.path / STATE}; continue with " \
                   f"opd-bench run --resume {self.dir.path}"
        except (UserError, KeyError):
            return f"no state was saved yet; restart with opd-bench run --resume {self.dir.path}"

    def _run(self, resume: bool) -> dict:
        cfg = self.cfg
        configure_run_tasks(cfg)
        dist = Dist()
        main = dist.is_main
        if self.log_tensorboard and main:
            from .trackers import check_trackers

            check_trackers(cfg.train.trackers)   # wandb asked but not installed: one line before any work
        torch.manual_seed(cfg.seed)
        student = load_backbone(cfg.model.checkpoint, cfg.device, backbone_options(cfg.model))
        student.train()
        ledger = Ledger(student.flops_per_forward(), scale=dist.world_size)
        ctx = RunContext(cfg, self.tasks, student, ledger, cfg.device, dist)
        self.method.setup(ctx)
        if main:
            self.dir.path.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        if resume and (self.dir.path / STATE).exists():
            self.load_state(ctx)
            r = ctx.round
            if main and self.show_progress:
                say(f"resuming {self.dir.path} from its state at round {r}: spent "
                    f"{human_quantity(ctx.ledger.spent(cfg.budget.unit), cfg.budget.unit)} of the "
                    f"{human_quantity(cfg.budget.value, cfg.budget.unit)} budget"
                    + (f", stage {self.stage}" if self.stage else ""))
            if main:
                self.dir.truncate_jsonl("metrics.jsonl", lambda row: row["round"] <= r)
                # evals at the saved round that run after the save (stage ends, the final eval) are redone
                self.dir.truncate_jsonl("eval_history.jsonl", lambda row: row["round"] < r or (
                    row["round"] == r and not row["label"].startswith(("end of stage", "final"))))
        else:
            if main:
                for name in ("metrics.jsonl", "eval_history.jsonl"):
                    (self.dir.path / name).unlink(missing_ok=True)
                atomic_write_text(self.dir.config, dump_config(cfg))
            self.run_eval(ctx, "start")
            if cfg.eval.curve_every:
                self.run_eval(ctx, "start curve", curve=True)
            self.save_state(ctx)
        stage = self.stage
        with progress_bar(self.show_progress and main) as bar:
            head = f"train {cfg.method} s{cfg.seed}"
            job = bar.add_task(f"{head} round {ctx.round}", total=cfg.budget.value, unit=cfg.budget.unit,
                               completed=min(cfg.budget.value, ctx.ledger.spent(cfg.budget.unit)))
            while self.budget_left(ctx) > 0:
                new_stage = self.method.stage(ctx)[0]
                if new_stage != stage:
                    self.run_eval(ctx, f"end of stage {stage}")
                    self.method.start_stage(ctx, new_stage)
                    stage = self.stage = new_stage
                images_before = ctx.ledger.spent("images")
                ctx.ledger.start_clock()
                info = dist.mean_scalars({k: float(v) for k, v in self.method.train_step(ctx).items()})
                validate.check_train_info(info)
                ctx.ledger.stop_clock("train")
                ctx.round += 1
                if main:
                    self.dir.append_jsonl("metrics.jsonl", {"round": ctx.round, "stage": stage,
                                                            "budget": ctx.ledger.summary("train"), **info})
                    self._tb_scalars({f"train/{k}": v for k, v in info.items()}, ctx)
                bar.update(job, completed=min(cfg.budget.value, ctx.ledger.spent(cfg.budget.unit)),
                           description=f"{head} round {human_count(ctx.round)}: "
                           + " ".join(f"{k}={v:.3f}" for k, v in list(info.items())[:3]))
                if cfg.eval.every and ctx.round % cfg.eval.every == 0 and self.budget_left(ctx) > 0:
                    self.run_eval(ctx, f"round {ctx.round}")
                if curve_due(images_before, ctx.ledger.spent("images"), cfg.eval.curve_every) \
                        and self.budget_left(ctx) > 0:
                    self.run_eval(ctx, f"curve {human_count(ctx.ledger.spent('images'))} images", curve=True)
                if ctx.round % cfg.train.checkpoint_every == 0:
                    self.save_state(ctx)
        if cfg.eval.curve_every:
            self.run_eval(ctx, "final curve", curve=True)
        final = self.run_eval(ctx, "final")
        self.save_state(ctx)
        summary = {"final": final, "ledger": self.ledger_report(ctx)}
        with ctx.eval_weights():   # every process: fsdp gathers the whole weights
            if main:
                ctx.student.save(self.dir.path / FINAL, extra_config={"run": to_dict(cfg), "final_eval": final["scores"]})
        if main:
            atomic_write_json(self.dir.path / "summary.json", summary)
            if self._tb is not None:
                self._tb.close()
                self._tb = None
        dist.barrier()
        return summary
