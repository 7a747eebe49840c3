"""Multi-process training through accelerate (DDP-style data parallelism).

Every rank draws the SAME global prompt list and the same global noise for a step and keeps its contiguous
shard, so a run on W processes computes exactly what one process computes on the global batch: groups stay
on one rank, advantage statistics are formed over the gathered global rewards, gradients are averaged across
ranks before clipping (equal shards, so the average is the global mean; one bucketed all-reduce per
optimizer step), and the ledger counts global work. Evaluation is sharded over the ranks and gathered
(``Dist.split`` / ``Dist.gather_rows``); logging and checkpoints happen on the main process.

Launch with ``accelerate launch --num_processes N -m opd_bench.cli run ...`` (``--cpu`` for gloo on CPU).
"""
from __future__ import annotations

import os
from typing import List

import torch


class Dist:
    """The process group as the runner sees it (a single process when not launched distributed)."""

    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = 0
        self._state = None
        if self.world_size > 1:
            from accelerate import PartialState

            self._state = PartialState(cpu=not torch.cuda.is_available())
            self.world_size = self._state.num_processes
            self.rank = self._state.process_index

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous shard of a global list of ``n`` items (n must divide evenly)."""
        if n % self.world_size:
            from .errors import UserError

            raise UserError(f"a global batch of {n} prompts does not split over {self.world_size} processes "
                            f"(make train.prompts_per_step a multiple of the number of processes)")
        k = n // self.world_size
        return slice(self.rank * k, (self.rank + 1) * k)

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenate a tensor's shards from every rank (rank order)."""
        if not self.enabled:
            return t
        from accelerate.utils import gather

        return gather(t.contiguous())

    def split(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` items split as evenly as possible (evaluation: any ``n``; rank 0
        holds the first items)."""
        k, r = divmod(n, self.world_size)
        start = self.rank * k + min(self.rank, r)
        return slice(start, start + k + (self.rank < r))

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's rows of ``t`` (any number per rank, rank order) on every rank."""
        if not self.enabled:
            return t
        from accelerate.utils import gather_object

        return torch.cat([x for x in gather_object([t.cpu()])])

    def mean_(self, tensors: List[torch.Tensor]) -> None:
        """In-place average across ranks (used for gradients): one all-reduce per bucket of ~25 MiB
        (:func:`bucketed_mean_`), not one per tensor."""
        if not self.enabled:
            return
        bucketed_mean_(tensors, self.world_size)

    def mean_scalars(self, d: dict) -> dict:
        if not self.enabled or not d:
            return d
        keys = sorted(d)
        v = torch.tensor([float(d[k]) for k in keys], dtype=torch.float64)
        self.mean_([v])
        return dict(zip(keys, v.tolist()))

    def barrier(self) -> None:
        if self.enabled:
            self._state.wait_for_everyone()


#: DDP's default bucket size (torch.nn.parallel.DistributedDataParallel bucket_cap_mb=25)
BUCKET_BYTES = 25 * 2**20


def buckets(tensors: List[torch.Tensor], cap_bytes: int = BUCKET_BYTES) -> List[List[torch.Tensor]]:
    """Consecutive groups of tensors of one dtype and device, each at most ``cap_bytes`` (or a single larger
    tensor): the units of one all-reduce each."""
    out: List[List[torch.Tensor]] = []
    size = 0
    for t in tensors:
        nbytes = t.numel() * t.element_size()
        if not out or size + nbytes > cap_bytes or (t.dtype, t.device) != (out[-1][0].dtype, out[-1][0].device):
            out.append([])
            size = 0
        out[-1].append(t)
        size += nbytes
    return out


def bucketed_mean_(tensors: List[torch.Tensor], world_size: int, cap_bytes: int = BUCKET_BYTES) -> None:
    """Average ``tensors`` in place over the process group, bucket by bucket: each bucket is flattened into one
    buffer, summed by one all-reduce, divided and copied back. With gradient accumulation (several backward
    passes per optimizer step: trained steps, micro-batches, tasks) this one reduction at the step moves the
    same bytes in the same number of collectives as DDP's reducer, which could overlap only the last backward."""
    for group in buckets(tensors, cap_bytes):
        flat = torch.cat([t.reshape(-1) for t in group])
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        flat.div_(world_size)
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()
