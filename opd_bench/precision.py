"""Sampling precision of the evaluations (``eval.dtype``, issue 26 item 3).

``float32`` (the default) samples exactly as before. ``bfloat16`` runs the denoiser's forwards under CPU (or
CUDA) autocast: matmuls, convolutions and attention in bfloat16, while the ODE state, the Euler steps, the
prompt encodings and the scoring stay float32. On a CPU with AVX512-BF16 that is about 1.4x the sampling
throughput (benchmarks/eval_dtype.py measures it and the paired score difference); the samples differ from
float32 ones, so the setting is part of the protocol (its cache key and label) and never a default.
"""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

#: eval.dtype values -> the autocast dtype (None: no autocast)
DTYPES = {"float32": None, "bfloat16": torch.bfloat16}


def sampling_precision(device, dtype: str) -> ContextManager:
    """The context the denoiser's forwards run in for ``eval.dtype`` ``dtype`` on ``device``."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown eval.dtype {dtype!r} (one of {', '.join(DTYPES)})")
    if DTYPES[dtype] is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[dtype])
