"""The machine key of exact-number tests: recorded bit-for-bit results hold on the machine kind that recorded them."""
from pathlib import Path

import torch


def machine_key() -> str:
    """What decides float rounding here: the torch build, its CPU kernel level, and the CPU generation (AMX or
    not: MKL and oneDNN pick other fp32 kernels on Sapphire Rapids than on earlier AVX-512 parts)."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return f"{torch.__version__} {torch.backends.cpu.get_cpu_capability()} {'amx' if ' amx_tile' in flags else 'no-amx'}"
