"""Deliberate CPU thread settings, applied when the package is imported (before torch loads OpenMP).

On a shared machine the default OpenMP wait policy makes idle worker threads spin for a while after each
parallel region. Two such processes on two cores each spin while the other computes, and both slow down by one
to two orders of magnitude instead of two-fold (benchmarks/contention.py measures it). The suite therefore:

- sets ``OMP_WAIT_POLICY=PASSIVE`` (and ``KMP_BLOCKTIME=0`` for Intel's OpenMP) unless the user set them;
- takes its thread count from ``OPD_BENCH_THREADS`` when set (copied to ``OMP_NUM_THREADS`` and
  ``MKL_NUM_THREADS``), else from ``OMP_NUM_THREADS``, else torch's default (the available cores);
  ``run --jobs J`` gives each child process cores // J threads;
- runs onnxruntime (RapidOCR) with one intra-op and one inter-op thread, so it has no spinning pool.

Neither the wait policy nor the pool sizes change results: CPU runs stay bit-identical for a given thread count.
"""
from __future__ import annotations

import os
from typing import MutableMapping

WAIT_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def configure_env(env: MutableMapping[str, str] = os.environ) -> int | None:
    """Set the wait policy and the thread count in ``env`` (user settings win); returns the thread count set,
    or None when torch's default applies. Must run before torch is imported to take effect."""
    for key, value in WAIT_DEFAULTS.items():
        env.setdefault(key, value)
    wanted = env.get("OPD_BENCH_THREADS", "").strip()
    if wanted:
        if not wanted.isdigit() or int(wanted) < 1:
            return None   # reported by the CLI's input checks; never crash an import
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = wanted
        return int(wanted)
    omp = env.get("OMP_NUM_THREADS", "").strip()
    return int(omp) if omp.isdigit() and int(omp) > 0 else None
