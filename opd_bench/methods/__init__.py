"""Methods: small strategies over the one runner. ``METHODS[name]()`` builds one."""
from .base import Method
from .cascade import Cascade
from .grpo import GRPO
from .multi_reward import MultiReward
from .opd import DiffusionOPD

METHODS = {"opd": DiffusionOPD, "grpo": GRPO, "multi-reward": MultiReward, "cascade": Cascade}

__all__ = ["Method", "METHODS", "DiffusionOPD", "GRPO", "MultiReward", "Cascade"]
