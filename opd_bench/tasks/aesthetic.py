"""Task ``aesthetic``: a LAION-aesthetic-style learned reward of the embedded world.

Reward = :class:`~opd_bench.world.reward_models.AestheticModel` (tiny CLIP ViT + MLP head) regressing the
hidden gold aesthetic score (:func:`opd_bench.world.gold.gold_aesthetic`: one large centred subject,
contrast, colour harmony, cleanliness, no clutter). Prompt-independent; prompts in tasks/aesthetic/.
"""
from __future__ import annotations

from ..world.gold import gold_aesthetic
from ..world.reward_models import AestheticModel
from ._learned_reward import LearnedRewardTask
from .base import register_task


@register_task("aesthetic")
class AestheticTask(LearnedRewardTask):
    model_class = AestheticModel

    @staticmethod
    def gold_fn(image, record) -> float:
        return gold_aesthetic(image)
