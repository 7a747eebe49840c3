"""opd-bench: multi-task RL for text-to-image diffusion models, DiffusionOPD vs its baselines."""
import os as _os

# Never let an accidental hub call hang: the suite loads everything from local paths.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__version__ = "0.1.0"
