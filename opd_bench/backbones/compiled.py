"""``model.compile``: the denoiser's transformer blocks compiled by ``torch.compile`` (inductor), on both backbones.

Each block of ``transformer.transformer_blocks`` is compiled in place (``nn.Module.compile``: parameter names,
state dicts, checkpoints, adapters and the data-parallel wrappers of opd_bench/parallel.py see the same module),
so the attention, the adaptive norms and the MLP of a block run as fused kernels while the loop over blocks,
gradient checkpointing and the LoRA adapter switches stay in Python. The first forwards of each batch shape
compile (seconds to minutes); the results equal eager execution to float rounding.

Inductor generates C++ on the CPU: where no C++ compiler is found the blocks stay eager, with one warning line.
"""
from __future__ import annotations

import sys
from typing import Optional

import torch

_warned = False


def compiler_problem(device) -> Optional[str]:
    """Why inductor cannot compile for ``device`` on this machine (None when it can): on the CPU it needs a C++
    compiler (``torch._inductor.config.cpp.cxx``, ``$CXX``)."""
    if torch.device(device).type != "cpu":
        return None
    from torch._inductor import cpp_builder

    try:
        cpp_builder.get_cpp_compiler()
    except Exception as e:   # torch._inductor.exc.InvalidCxxCompiler, or a compiler that does not run
        return f"inductor finds no C++ compiler for the CPU ({str(e).splitlines()[0][:160]})"
    return None


def compile_blocks(transformer: torch.nn.Module, device) -> bool:
    """Compile ``transformer``'s blocks in place; False (eager, one warning line per process) when inductor cannot
    compile here."""
    global _warned
    problem = compiler_problem(device)
    if problem:
        if not _warned:
            print(f"warning: model.compile: {problem}; running the transformer blocks eager", file=sys.stderr)
            _warned = True
        return False
    for block in transformer.transformer_blocks:
        block.compile()
    return True
