"""Methods: small strategies over the one runner. ``METHODS[name]()`` builds one."""
from .base import Method
from .cascade import Cascade
from .grpo import GRPO, OBJECTIVES
from .grpo_guard import GRPOGuard
from .multi_reward import MultiReward
from .nft import NFT
from .opd import DiffusionOPD
from .sft_distill import SFTDistill

METHODS = {"opd": DiffusionOPD, "grpo": GRPO, "multi-reward": MultiReward, "cascade": Cascade, "nft": NFT,
           "grpo-guard": GRPOGuard, "sft-distill": SFTDistill}

__all__ = ["Method", "METHODS", "OBJECTIVES", "DiffusionOPD", "GRPO", "MultiReward", "Cascade", "NFT", "GRPOGuard",
           "SFTDistill"]
