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

from typing import List, Optional

import torch

from .distributed import Dist


class AllReduceSync:
    """``train.grad_sync: allreduce`` (and every single-process run): one bucketed all-reduce at the step."""

    name = "allreduce"

    def __init__(self, dist: Dist, params: List[torch.nn.Parameter]):
        self.dist, self.params = dist, params
        #: optimizer steps whose denoiser gradients the wrapper averaged during the backward / by the all-reduce
        self.counts = {"in_backward": 0, "at_step": 0}

    def expect_backwards(self, n: int) -> None:
        """The update loop's count of backward passes before its next optimizer step (used by ``ddp``)."""

    def after_backward(self) -> None:
        """Called after each backward pass."""

    def reduce(self) -> None:
        """Average the accumulated gradients over the processes (before clipping)."""
        self.dist.mean_([p.grad for p in self.params if p.grad is not None])
        self.counts["at_step"] += 1

    def report(self) -> dict:
        """For the run's ledger report (multi-process runs)."""
        return {"mode": self.name, "steps_synced": dict(self.counts)}


class DDPSync(AllReduceSync):
    """``train.grad_sync: ddp``: accelerate's prepared DistributedDataParallel over the denoiser, synchronising in
    the last declared backward pass of each optimizer step (module docstring)."""

    name = "ddp"

    def __init__(self, dist: Dist, params: List[torch.nn.Parameter], student):
        super().__init__(dist, params)
        self.student = student
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


def make_grad_sync(mode: str, dist: Dist, params: List[torch.nn.Parameter], student) -> AllReduceSync:
    """The run's gradient synchronisation (``train.grad_sync``); the plain all-reduce (a no-op) on one process."""
    if not dist.enabled or mode == "allreduce":
        return AllReduceSync(dist, params)
    if mode == "ddp":
        return DDPSync(dist, params, student)
    raise ValueError(f"train.grad_sync: unknown mode {mode!r}")
