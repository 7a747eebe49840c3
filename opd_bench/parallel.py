"""How a multi-process run averages its gradients (``train.grad_sync``); one process: nothing to do.

Every method accumulates the gradient of one optimizer step over many backward passes (trained steps x
micro-batches x tasks), and the same denoiser serves forwards that need no gradient (rollouts, the
reference, teachers as adapters, NFT's old policy, evaluation). The strategies:

- ``ddp`` (the default): the denoiser is wrapped in accelerate's prepared ``DistributedDataParallel``
  (``Accelerator.prepare_model``; ``broadcast_buffers=False``: its buffers are constants, so forwards run no
  collective). Forwards without gradient skip DDP's reducer; the backward passes of a step run under DDP's
  ``no_sync`` except the last one declared (``RunContext.expect_backwards(n)``, called by each update loop
  with the number of backward passes before its optimizer step), whose backward all-reduces the accumulated
  gradients bucket by bucket while it runs. DDP decides at the FORWARD whether the backward that follows
  synchronises, which is why the count is declared up front. Where no count is declared, or the declared
  count is not reached, the step averages with the bucketed all-reduce below instead (the same mean), and
  trainable parameters outside the denoiser (a trained text encoder) always go that way.
- ``allreduce``: every backward accumulates locally; the optimizer step averages all gradients with one
  all-reduce per ~25 MiB bucket (``distributed.bucketed_mean_``).
- ``fsdp``: full fine-tuning with the denoiser's weights, gradients and optimizer state sharded over the
  processes (FSDP2 ``fully_shard``, per transformer block and then the whole denoiser): see :class:`FSDPSync`.

``sync.reduce()`` is the only call the optimizer step makes; with ``ddp`` / ``allreduce`` the weights every rank
holds after a step are identical and equal to a single process's on the global batch (to float rounding).
"""
from __future__ import annotations

import contextlib
import copy
from typing import List, Optional

import torch

from .distributed import Dist
from .errors import ConfigError


class AllReduceSync:
    """``train.grad_sync: allreduce`` (and every single-process run): one bucketed all-reduce at the step."""

    name = "allreduce"
    #: the trainable weights are shards (fsdp): full weights are gathered for evaluation, saving and copies
    sharded = False

    def __init__(self, dist: Dist, student):
        self.dist, self.student = dist, student
        #: the optimizer's parameters (taken after any sharding)
        self.params: List[torch.nn.Parameter] = list(student.trainable_parameters())
        #: optimizer steps whose denoiser gradients the wrapper averaged during the backward / by the all-reduce
        self.counts = {"in_backward": 0, "at_step": 0}

    def expect_backwards(self, n: int) -> None:
        """The update loop's count of backward passes before its next optimizer step (used by ``ddp``)."""

    def before_backward(self) -> None:
        """Called before each backward pass."""

    def after_backward(self) -> None:
        """Called after each backward pass."""

    def reduce(self) -> None:
        """Average the accumulated gradients over the processes (before clipping)."""
        self.dist.mean_([p.grad for p in self.params if p.grad is not None])
        self.counts["at_step"] += 1

    def report(self) -> dict:
        """For the run's ledger report (multi-process runs; counted since the process started)."""
        return {"mode": self.name, "steps_synced": dict(self.counts)}

    # ---- full weights (identities unless sharded) ----------------------------------------------------------
    def full(self, t: torch.Tensor) -> torch.Tensor:
        """The whole tensor of a (possibly sharded) weight, gradient norm or optimizer state (collective when
        sharded: every process calls it)."""
        return t

    def shard_like(self, full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``full`` cut like ``like`` (this process's shard when ``like`` is sharded; else ``full`` itself)."""
        return full

    def full_weights(self):
        """Context manager: the student's denoiser holds its whole weights (evaluation, saving, a frozen copy)."""
        return contextlib.nullcontext()


class DDPSync(AllReduceSync):
    """``train.grad_sync: ddp``: accelerate's prepared DistributedDataParallel over the denoiser, synchronising in
    the last declared backward pass of each optimizer step (module docstring)."""

    name = "ddp"

    def __init__(self, dist: Dist, student):
        super().__init__(dist, student)
        self.wrapper = None
        self.remaining: Optional[int] = None   # backward passes left before the step, when declared
        self.synced = False                    # the step's gradients were all-reduced by DDP

    def _wrap(self) -> None:
        """Wrap the denoiser (lazily: after the method's setup and a resume have loaded every adapter)."""
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        acc = Accelerator(cpu=not torch.cuda.is_available(),
                          kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)])
        self.wrapper = acc.prepare_model(self.student.transformer)
        if not isinstance(self.wrapper, torch.nn.parallel.DistributedDataParallel):
            raise RuntimeError(f"accelerate did not wrap the denoiser in DDP ({type(self.wrapper).__name__}, "
                               f"distributed type {acc.distributed_type})")
        self.wrapper.require_backward_grad_sync = False   # no_sync until a step's last backward is declared
        self.student.set_parallel(self.wrapper)
        self.covered = {id(p) for p in self.wrapper.parameters() if p.requires_grad}

    def expect_backwards(self, n: int) -> None:
        if self.wrapper is None:
            self._wrap()
        self.remaining, self.synced = int(n), False
        self._arm()

    def _arm(self) -> None:
        # DDP reads this flag in the forward: the next gradient forward's backward synchronises iff it is the last
        self.wrapper.require_backward_grad_sync = self.remaining == 1

    def after_backward(self) -> None:
        if self.remaining is None:
            return
        if self.remaining < 1:
            raise RuntimeError(f"more backward passes than the {self.__class__.__name__} count declared before "
                               "this optimizer step (ctx.expect_backwards): the gradients would not be averaged")
        self.synced = self.synced or self.wrapper.require_backward_grad_sync
        self.remaining -= 1
        self._arm()

    def reduce(self) -> None:
        synced = self.synced and self.remaining == 0
        rest = [p.grad for p in self.params if p.grad is not None and not (synced and id(p) in self.covered)]
        self.dist.mean_(rest)
        self.counts["in_backward" if synced else "at_step"] += 1
        self.remaining, self.synced = None, False
        if self.wrapper is not None:
            self.wrapper.require_backward_grad_sync = False


def _is_dtensor(t) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def _set_tensor(module: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    """Replace parameter or buffer ``name`` (a dotted path) of ``module`` by ``value`` (a frozen parameter)."""
    *path, leaf = name.split(".")
    for part in path:
        module = getattr(module, part)
    if leaf in module._parameters:
        module._parameters[leaf] = torch.nn.Parameter(value, requires_grad=False)
    else:
        module._buffers[leaf] = value


class FSDPSync(AllReduceSync):
    """``train.grad_sync: fsdp``: full fine-tuning with the denoiser's weights, gradients and AdamW state sharded over
    the processes (FSDP2 ``fully_shard`` on each transformer block, then on the whole denoiser; gloo on CPU, NCCL
    on GPUs). Gradients are reduce-scattered (averaged) in a step's last declared backward pass; the others
    accumulate unsharded (FSDP2's ``set_requires_gradient_sync(False)``, its no_sync). Whatever needs whole
    weights gets them gathered: :meth:`full_weights` puts a plain copy of the denoiser (every shard all-gathered,
    on every process) in the student for evaluation, saving and the frozen KL reference, and the train state
    is saved whole (:meth:`full`) and re-sharded when loaded (:meth:`shard_like`), so an fsdp state resumes
    under any sync mode and process count. The EMA and NFT's old policy are shards like the weights."""

    name = "fsdp"
    sharded = True

    def __init__(self, dist: Dist, student):
        if student.has_lora_reference:
            raise ConfigError("train.grad_sync: fsdp shards full fine-tuning (model.backbone embedded); a LoRA "
                              "student is small: use ddp")
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        net = student.transformer
        # the denoiser's structure without its weights, for the plain copies of full_weights (weights on meta)
        self._shell = copy.deepcopy(net).to("meta")
        mesh = init_device_mesh("cuda" if torch.cuda.is_available() else "cpu", (dist.world_size,))
        for block in net.transformer_blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(net, mesh=mesh)
        super().__init__(dist, student)
        self.remaining: Optional[int] = None

    def expect_backwards(self, n: int) -> None:
        self.remaining = int(n)

    def before_backward(self) -> None:
        # FSDP2 reads the flag in the backward: reduce-scatter in the step's last declared one (or in every one
        # when no count was declared; then they simply add up averaged)
        self.student.transformer.set_requires_gradient_sync(self.remaining is None or self.remaining == 1)

    def after_backward(self) -> None:
        if self.remaining is not None:
            if self.remaining < 1:
                raise RuntimeError("more backward passes than declared before this optimizer step "
                                   "(ctx.expect_backwards): the last ones' gradients would not be averaged")
            self.remaining -= 1

    def reduce(self) -> None:
        if self.remaining:   # fewer backwards than declared: the accumulated gradients were never reduced
            raise RuntimeError(f"{self.remaining} declared backward pass(es) did not run before the optimizer step")
        self.dist.mean_([p.grad for p in self.params if p.grad is not None and not _is_dtensor(p.grad)])
        self.counts["in_backward"] += 1
        self.remaining = None

    def full(self, t: torch.Tensor) -> torch.Tensor:
        return t.full_tensor() if _is_dtensor(t) else t

    def shard_like(self, full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if not _is_dtensor(like) or _is_dtensor(full):
            return full
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full.detach().to(like.device, like.dtype), like.device_mesh, like.placements)

    @contextlib.contextmanager
    def full_weights(self):
        sharded = self.student.transformer
        plain = copy.deepcopy(self._shell)
        with torch.no_grad():
            for name, p in sharded.named_parameters():
                _set_tensor(plain, name, self.full(p.detach()).clone())
            for name, b in sharded.named_buffers():
                _set_tensor(plain, name, b.clone())
        plain.train(sharded.training)
        self.student.transformer = plain
        try:
            yield
        finally:
            self.student.transformer = sharded


def make_grad_sync(mode: str, dist: Dist, student) -> AllReduceSync:
    """The run's gradient synchronisation (``train.grad_sync``); the plain all-reduce (a no-op) on one process.
    ``fsdp`` shards the student's denoiser here: take the optimizer's parameters from ``.params``."""
    if not dist.enabled or mode == "allreduce":
        return AllReduceSync(dist, student)
    if mode == "ddp":
        return DDPSync(dist, student)
    if mode == "fsdp":
        return FSDPSync(dist, student)
    raise ValueError(f"train.grad_sync: unknown mode {mode!r}")
