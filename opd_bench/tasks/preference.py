"""Task ``preference``: a PickScore-style learned reward of the embedded world.

Reward = :class:`~opd_bench.world.reward_models.PreferenceModel` (tiny CLIP; logit_scale * cos(image,
prompt)), trained with Bradley-Terry on same-prompt pairs labelled by the hidden gold preference
(:func:`opd_bench.world.gold.gold_preference`: 0.7 prompt faithfulness + 0.3 gold aesthetic). Records in
tasks/preference/ carry the structured ``spec`` the gold scorer checks.
"""
from __future__ import annotations

from ..world.gold import gold_preference
from ..world.reward_models import PreferenceModel
from ._learned_reward import LearnedRewardTask
from .base import register_task


@register_task("preference")
class PreferenceTask(LearnedRewardTask):
    model_class = PreferenceModel

    @staticmethod
    def gold_fn(image, record) -> float:
        return gold_preference(image, record)
