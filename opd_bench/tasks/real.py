"""Real-world tasks (diffusers backbones): the real reward models of ``opd_bench.rewards`` behind the same task
interface as the embedded world. Weights and prompt files come from local paths in the run config::

    tasks: [real_ocr, real_geneval, pickscore]
    real_tasks:
      pickscore: {weights: /models/PickScore_v1, processor: /models/CLIP-ViT-H-14, train_prompts: /data/pickscore/train.txt, eval_prompts: /data/pickscore/test.txt}
      real_geneval: {weights: /models/mask2former-swin-small-coco-instance, color_clip: /models/clip-vit-l-14-openai.safetensors, train_prompts: ..., eval_prompts: /data/geneval/evaluation_metadata.jsonl}

Prompt files: ``.txt`` (one prompt per line; OCR targets are the quoted span) or ``.jsonl`` (records with
``prompt``, or GenEval metadata). A missing weights path or prompt file fails with one line naming it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import torch

from ..errors import UserError
from .base import PromptRecord, Task, register_task


def load_prompt_file(path: str, what: str) -> List[PromptRecord]:
    """Prompt records from a local .txt or .jsonl file (loaded with ``datasets``)."""
    if not path:
        raise UserError(f"{what}: no prompt file configured (set real_tasks.<task>.train_prompts / eval_prompts)")
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{what}: prompt file not found: {p}")
    from datasets import load_dataset

    if p.suffix == ".jsonl":
        if "geneval" in what:
            from ..rewards.geneval_metadata import load_geneval_metadata

            records = load_geneval_metadata(p)
        else:
            records = [dict(r) for r in load_dataset("json", data_files=str(p), split="train")]
    else:
        records = [{"prompt": r["text"].strip()} for r in load_dataset("text", data_files=str(p), split="train")
                   if r["text"].strip()]
    if not records:
        raise UserError(f"{what}: prompt file is empty: {p}")
    return records


class RealTask(Task):
    """A task scored by a real reward model loaded lazily from ``options['weights']``."""

    world = "real"

    def __init__(self, weights: str = "", train_prompts: str = "", eval_prompts: str = "", val_prompts: str = "",
                 **extra):
        self.options = {"weights": weights, **extra}
        # eval_prompts = the test split; val falls back to it when no val file is given
        self.files = {"train": train_prompts, "val": val_prompts or eval_prompts, "test": eval_prompts}
        self._prompts: Dict[str, List[PromptRecord]] = {}
        self._model = None

    def build(self):  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    @property
    def device(self) -> str:
        """Where the reward model runs (``rewards.device``; CPU unless set)."""
        return self.options.get("device") or "cpu"

    @property
    def model(self):
        if self._model is None:
            self._model = self.build()
        return self._model

    def prompts(self, split: str) -> List[PromptRecord]:
        if split not in self._prompts:
            self._prompts[split] = load_prompt_file(self.files.get(split, ""), f"task {self.name} ({split})")
        return self._prompts[split]

    def reward(self, images: torch.Tensor, records: Sequence[PromptRecord]) -> torch.Tensor:
        return self.model(images, list(records))

    def metrics(self, images: torch.Tensor, records: Sequence[PromptRecord]) -> Dict[str, torch.Tensor]:
        return {"score": self.reward(images, records)}


@register_task("pickscore")
class PickScoreTask(RealTask):
    prompt_agnostic = True

    def build(self):
        from ..rewards.pickscore import PickScore

        return PickScore(self.options["weights"], processor_folder=self.options.get("processor") or None,
                         divisor=float(self.options.get("divisor") or 1.0), device=self.device)


@register_task("hpsv2")
class HPSv2Task(RealTask):
    prompt_agnostic = True

    def build(self):
        from ..rewards.hpsv2 import HPSv2

        return HPSv2(self.options["weights"], model_name=self.options.get("model_name") or "ViT-H-14",
                     config_file=self.options.get("config_file") or None, device=self.device)


@register_task("clipscore")
class CLIPScoreTask(RealTask):
    prompt_agnostic = True

    def build(self):
        from ..rewards.clipscore import CLIPScore

        return CLIPScore(self.options["weights"], processor_folder=self.options.get("processor") or None,
                         device=self.device)


@register_task("laion_aesthetic")
class LAIONAestheticTask(RealTask):
    prompt_agnostic = True

    def build(self):
        from ..rewards.aesthetic import LAIONAesthetic

        return LAIONAesthetic(self.options["weights"], self.options.get("head") or "", device=self.device)


@register_task("real_ocr")
class RealOCRTask(RealTask):
    """PP-OCR (rapidocr) on real images; reward = 1 - normalised edit distance (Flow-GRPO)."""

    def build(self):
        from ..rewards.ocr import OCRReward

        return OCRReward()


@register_task("real_geneval")
class RealGenEvalTask(RealTask):
    """GenEval's protocol (a transformers Mask2Former, CLIP colours, GenEval's rules; see
    :mod:`opd_bench.rewards.geneval_detector`) on GenEval's metadata format."""

    category_key = "tag"

    def build(self):
        from ..rewards.geneval_detector import GenEvalDetector

        return GenEvalDetector(self.options["weights"], color_clip=self.options.get("color_clip") or None,
                               clip_model_name=self.options.get("model_name") or "ViT-L-14",
                               clip_config_file=self.options.get("config_file") or None, device=self.device)
