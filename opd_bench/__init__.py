"""opd-bench: multi-task RL for text-to-image diffusion models, DiffusionOPD vs its baselines."""
import os as _os

from .threads import configure_env as _configure_threads

# Never let an accidental hub call hang: the suite loads everything from local paths.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Fair on a shared machine: passive OpenMP waiting, deliberate thread counts (opd_bench/threads.py).
_configure_threads()

__version__ = "0.1.0"
