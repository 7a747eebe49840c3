"""Micro-batching with gradient accumulation (``train.micro_batch``).

A method's loss over a batch of B rows is a mean of per-row terms, so it splits exactly into micro-batches
of at most ``micro_batch`` rows: mean(loss) = sum_m (B_m / B) mean_m(loss). Each micro-batch is pushed through
its own forward and backward with the weight B_m / B, the gradients accumulate in ``.grad``, and the optimizer
step that follows is the one the whole batch would have taken (to float rounding). Only activations of one
micro-batch are alive at a time: the memory of a step is that of ``micro_batch`` rows, whatever B is.

``micro_batch: 0`` (the default) is one part, the batch itself, with weight exactly 1.0: today's computation.
"""
from __future__ import annotations

from typing import Iterator, List, Optional, Tuple

import torch


def micro_indices(n: int, micro: int) -> List[Optional[torch.Tensor]]:
    """Contiguous row indices of the micro-batches of a batch of ``n`` rows, ``micro`` rows at most each;
    [None] (the whole batch, not indexed) when ``micro`` is 0 or at least ``n``."""
    if micro <= 0 or micro >= n:
        return [None]
    return list(torch.arange(n).split(micro))


def take(item, idx: Optional[torch.Tensor]):
    """Rows ``idx`` of ``item``: a Batch / Condition (``.index``), a per-row tensor, a tuple of them (a
    Transition; its size-1 parts broadcast and stay), or anything else (a scalar, None: shared by every row)
    unchanged."""
    if idx is None:
        return item
    if isinstance(item, tuple):   # a Transition (mean, std): its per-row parts
        return type(item)(*(take(x, idx) if torch.is_tensor(x) and x.dim() > 0 and x.shape[0] > 1 else x
                            for x in item))
    if hasattr(item, "index") and not torch.is_tensor(item):
        return item.index(idx)
    if torch.is_tensor(item) and item.dim() > 0:
        return item[idx.to(item.device)]
    return item


def micro_batches(n: int, micro: int, *items) -> Iterator[Tuple]:
    """(weight, *items restricted to the micro-batch) for each micro-batch of ``n`` rows; the weights
    (rows / n) sum to 1, and are exactly 1.0 for the single part of ``micro`` 0."""
    for idx in micro_indices(n, micro):
        w = 1.0 if idx is None else len(idx) / n
        yield (w, *(take(x, idx) for x in items))


def weighted(loss: torch.Tensor, w: float) -> torch.Tensor:
    """``loss * w``, and ``loss`` itself for w == 1 (no extra op: the default path stays bit-identical)."""
    return loss if w == 1.0 else loss * w


def accumulate(sums: dict, key: str, value, w: float = 1.0) -> None:
    """``sums[key] += w * value`` for a metric, kept on the value's device in float64 (no host sync: a step loop
    reads its metrics once, at the end)."""
    v = value.detach().double() if torch.is_tensor(value) else float(value)
    v = v if w == 1.0 else v * w
    sums[key] = v if key not in sums else sums[key] + v
