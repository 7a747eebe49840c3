"""The backbone protocol: "a text-conditioned velocity model with classifier-free guidance".

Both the embedded pixel-space model and the diffusers SD3/FLUX adapters implement it; samplers, methods,
the ledger and the analyses only talk to this interface. Adding a backbone is one adapter class.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..prompt_cache import PromptCache
from ..sampler import cfg_combine


@dataclass
class Condition:
    """Encoded prompts: token states [B, L, D] and pooled [B, P], plus the unconditional (empty prompt) pair
    [1, L, D] / [1, P] used for CFG. Slicing and concatenation keep the shared unconditional part."""

    states: torch.Tensor
    pooled: torch.Tensor
    uncond_states: torch.Tensor
    uncond_pooled: torch.Tensor

    def __len__(self) -> int:
        return self.states.shape[0]

    def index(self, idx) -> "Condition":
        return Condition(self.states[idx], self.pooled[idx], self.uncond_states, self.uncond_pooled)

    def repeat_interleave(self, n: int) -> "Condition":
        return Condition(self.states.repeat_interleave(n, 0), self.pooled.repeat_interleave(n, 0),
                         self.uncond_states, self.uncond_pooled)

    @staticmethod
    def cat(conds: Sequence["Condition"]) -> "Condition":
        c0 = conds[0]
        return Condition(torch.cat([c.states for c in conds]), torch.cat([c.pooled for c in conds]),
                         c0.uncond_states, c0.uncond_pooled)

    def to(self, device) -> "Condition":
        return Condition(self.states.to(device), self.pooled.to(device), self.uncond_states.to(device),
                         self.uncond_pooled.to(device))


class Backbone(nn.Module, ABC):
    """A text-conditioned velocity model v(x, t, c) with CFG, in its own latent space."""

    #: shape of one sample in the space the sampler runs in (pixels for the embedded model, VAE latents for SD3).
    latent_shape: Tuple[int, ...]
    #: capabilities (asked instead of probing for methods): the KL reference policy lives in the student's own
    #: network as an adapter state (``reference()``, ``freeze_reference()``, ``reference_parameters()``) rather than
    #: in a frozen copy; teachers load as adapters on the same network (``load_teacher(name, path)``, ``adapter``)
    has_lora_reference = False
    can_load_teacher = False

    def __init__(self) -> None:
        super().__init__()
        self._prompt_cache = PromptCache()

    # ---- text ---------------------------------------------------------------------------------------------
    @abstractmethod
    def _encode_text(self, prompts: List[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch of prompts -> (states [B, L, D], pooled [B, P])."""

    def encode_prompts(self, prompts: Sequence[str], cache: Optional[bool] = None) -> Condition:
        """Encode prompts (and the empty prompt for CFG). Cached per prompt unless text encoding is trained."""
        cache = (not self.text_encoder_trainable()) if cache is None else cache
        prompts = list(prompts)
        if not cache:
            states, pooled = self._encode_text(prompts + [""])
            return Condition(states[:-1], pooled[:-1], states[-1:], pooled[-1:])
        needed = list(dict.fromkeys(prompts + [""]))
        missing = sorted(p for p in needed if p not in self._prompt_cache)
        got = {p: self._prompt_cache[p] for p in needed if p not in missing}   # held here: eviction can't lose them
        if missing:
            self._prompt_cache.note_miss(len(missing))
            with torch.no_grad():
                states, pooled = self._encode_text(missing)
            for i, p in enumerate(missing):
                got[p] = self._prompt_cache[p] = (states[i], pooled[i])
        states = torch.stack([got[p][0] for p in prompts])
        pooled = torch.stack([got[p][1] for p in prompts])
        us, up = got[""]
        return Condition(states, pooled, us[None], up[None])

    def configure_prompt_cache(self, device_entries: int = 0, cpu_entries: int = 0) -> None:
        """Bound the prompt-encoding cache (``model.prompt_cache_size`` on the model's device, LRU, evicted
        entries kept in a CPU tier of ``model.prompt_cache_cpu_size``; 0 = unbounded): opd_bench.prompt_cache."""
        self._prompt_cache = PromptCache(device_entries, cpu_entries)

    def clear_prompt_cache(self) -> None:
        self._prompt_cache.clear()

    def text_encoder_trainable(self) -> bool:
        return False

    # ---- denoiser -----------------------------------------------------------------------------------------
    @abstractmethod
    def denoise(self, x: torch.Tensor, t: torch.Tensor, states: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """One raw (unguided) denoiser forward: velocity for a batch; ``t`` has shape [B] in [0, 1]."""

    def velocity(self, x: torch.Tensor, t, cond: Condition, guidance: float, detach_uncond: bool = False) -> torch.Tensor:
        """Guided velocity v_uncond + w (v_cond - v_uncond); one batched forward of 2B (B when w == 1).
        ``detach_uncond``: v_uncond carries no gradient (Flow-GRPO's policy gradient)."""
        b = x.shape[0]
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.ndim == 0:
            t = t.expand(b)
        if guidance == 1.0:
            return self.denoise(x, t, cond.states, cond.pooled)
        states = torch.cat([cond.uncond_states.expand(b, *cond.uncond_states.shape[1:]), cond.states])
        pooled = torch.cat([cond.uncond_pooled.expand(b, -1), cond.pooled])
        v = self.denoise(torch.cat([x, x]), torch.cat([t, t]), states, pooled)
        v_uncond, v_cond = v.chunk(2)
        if detach_uncond:
            v_uncond = v_uncond.detach()
        return cfg_combine(v_uncond, v_cond, guidance)

    def forwards_per_velocity(self, guidance: float) -> int:
        """Denoiser forward passes (per sample) one guided velocity costs: 2 with CFG, 1 without."""
        return 1 if guidance == 1.0 else 2

    def compile_blocks(self) -> bool:
        """``model.compile``: compile the denoiser's transformer blocks in place (opd_bench/backbones/compiled.py);
        False when inductor cannot compile here (the blocks stay eager, one warning line)."""
        from .compiled import compile_blocks

        return compile_blocks(self.transformer, self.device)

    @property
    def net(self) -> nn.Module:
        """The module a denoiser forward runs through: the transformer, or the data-parallel wrapper around it that
        :meth:`set_parallel` installed (``train.grad_sync: ddp``, opd_bench/parallel.py)."""
        return self.__dict__.get("_parallel") or self.transformer

    def set_parallel(self, wrapper: Optional[nn.Module]) -> None:
        """Route denoiser forwards through ``wrapper`` (None: the plain transformer). The wrapper is not a
        submodule: checkpoints, state dicts and copies (the frozen reference) see the transformer alone."""
        self.__dict__["_parallel"] = wrapper

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state, _parallel=None) if "_parallel" in state else state
        return state

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """``model.gradient_checkpointing``: the denoiser (a diffusers SD3 transformer on both backbones) keeps only
        each block's inputs and recomputes its activations in the backward (diffusers' non-reentrant
        ``enable_gradient_checkpointing``): the same gradients for about one more forward of compute."""
        t = self.transformer
        t.enable_gradient_checkpointing() if enabled else t.disable_gradient_checkpointing()

    @abstractmethod
    def flops_per_forward(self) -> float:
        """Analytic FLOPs of one unguided denoiser forward for ONE sample (for the budget ledger)."""

    # ---- pixels <-> latent space ----------------------------------------------------------------------------
    @abstractmethod
    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """Decode final states to images [B, 3, H, W] in [0, 1]."""

    @abstractmethod
    def from_images(self, images: torch.Tensor) -> torch.Tensor:
        """Encode images [B, 3, H, W] in [0, 1] to clean states x0 (pretraining / analyses)."""

    # ---- parameters and persistence ------------------------------------------------------------------------
    @abstractmethod
    def trainable_parameters(self) -> List[nn.Parameter]:
        """The parameters RL methods optimise (the whole denoiser, or its LoRA)."""

    @abstractmethod
    def save(self, path: Path, extra_config: Optional[dict] = None) -> Path:
        """Write a checkpoint folder (safetensors + config + manifest)."""


class PolicyView:
    """A frozen policy (teacher or reference) that lives inside another backbone's network as an adapter
    state -- e.g. a named LoRA on the student's own SD3 transformer -- selected by a context manager for the
    duration of each velocity call. Exposes the part of the Backbone interface the runner uses."""

    def __init__(self, model: Backbone, select, parameters=None):
        self.model = model
        self._select = select  # () -> context manager that activates this policy's weights
        self._parameters = parameters  # () -> this policy's own frozen weights (saved with the run state)

    def velocity(self, x, t, cond: Condition, guidance: float) -> torch.Tensor:
        with torch.no_grad(), self._select():
            return self.model.velocity(x, t, cond, guidance)

    def forwards_per_velocity(self, guidance: float) -> int:
        return self.model.forwards_per_velocity(guidance)

    def trainable_parameters(self) -> List[nn.Parameter]:
        return self._parameters() if self._parameters else []
