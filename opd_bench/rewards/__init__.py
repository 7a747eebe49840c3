"""Real reward models for the real (SD3) backend, each loaded from a local path (no downloads):

- :class:`~.ocr.OCRReward` -- RapidOCR reading + Flow-GRPO's 1 - normalised edit distance;
- :class:`~.pickscore.PickScore` -- transformers CLIP, ``logit_scale * cos(image, text)``;
- :class:`~.hpsv2.HPSv2` and :class:`~.clipscore.CLIPScore` -- open_clip models;
- :class:`~.aesthetic.LAIONAesthetic` -- CLIP ViT-L/14 image embedding + the LAION MLP head;
- :class:`~.geneval_detector.GenEvalDetector` -- a transformers object detector + GenEval's rules;
- :class:`~.async_reward.AsyncReward` -- scoring in a background thread (submit -> future).

Every model is called as ``model(images, records) -> Tensor[B]`` (float32, CPU) with images [B, 3, H, W] in
[0, 1] and records = prompt records (dicts with ``"prompt"``) or plain prompt strings.
"""
from .async_reward import AsyncReward, RewardServer
from .common import RewardModel, RewardWeightsMissing

__all__ = ["AsyncReward", "RewardServer", "RewardModel", "RewardWeightsMissing"]
