"""Scoring in the background so it overlaps the next rollout: ``future = server.submit(images, records)``.

A thread (not a process) is enough: reward models spend their time in torch / onnxruntime kernels, which
release the GIL, and the models are shared without copies. Images are detached (and moved to the CPU when
``to_cpu``) before submission, so the caller may free or overwrite its tensors.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence

import torch

RewardFn = Callable[[torch.Tensor, Sequence], torch.Tensor]


class AsyncReward:
    """Wrap ``fn(images, records) -> Tensor[B]``; ``submit`` returns a ``concurrent.futures.Future``. Calls run
    one at a time, in submission order (``workers=1``), so a non-thread-safe model is safe."""

    def __init__(self, fn: RewardFn, workers: int = 1, to_cpu: bool = True):
        self.fn, self.to_cpu = fn, to_cpu
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reward")

    def submit(self, images: torch.Tensor, records: Sequence) -> "Future[torch.Tensor]":
        images = images.detach()
        images = images.cpu() if self.to_cpu else images.clone()
        return self._pool.submit(self._score, images, list(records))

    def _score(self, images, records):
        with torch.no_grad():
            return self.fn(images, records)

    def __call__(self, images: torch.Tensor, records: Sequence) -> torch.Tensor:
        """Synchronous scoring (same function, same thread pool order)."""
        return self.submit(images, records).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "AsyncReward":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: the name the issue uses.
RewardServer = AsyncReward
