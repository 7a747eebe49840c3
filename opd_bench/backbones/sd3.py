"""The real backend: diffusers Stable Diffusion 3 / 3.5 from a local ``StableDiffusion3Pipeline`` folder.

One transformer in memory serves three roles through peft LoRA adapters:

- the **student**: the trainable LoRA adapter ``"student"`` (``trainable_parameters()`` = its weights);
- the **reference** policy: the base model, i.e. the same transformer with every adapter disabled;
- **teachers**: extra named LoRA adapters (``load_teacher(name, path)``), frozen.

Switch roles with the context manager :meth:`SD3Backbone.adapter`::

    with backbone.adapter("ocr"):            # a teacher loaded with load_teacher("ocr", path)
        v_t = backbone.velocity(x, t, cond, guidance=teacher_cfg)
    with backbone.reference():               # == backbone.adapter("reference")
        v_ref = backbone.velocity(x, t, cond, guidance=cfg)
    v_s = backbone.velocity(x, t, cond, guidance=cfg)   # the student (the default adapter)

States live in the VAE's latent space (``latent_shape`` = [C, H/f, W/f]); ``to_images`` decodes with the
VAE's scaling and shift factors, ``from_images`` encodes. ``denoise`` passes ``timestep = t * 1000`` as the
SD3 pipeline does. Prompts are encoded with the pipeline's own ``encode_prompt`` (CLIP-L + CLIP-G, plus T5
when the folder has it; without T5 its part is zeros, as the pipeline allows).

Checkpoints (``save``) hold only the student LoRA (kind ``sd3_lora``) plus a config naming the base folder.
"""
from __future__ import annotations

import hashlib
import json
import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..errors import CheckpointError
from .base import Backbone

KIND = "sd3_lora"
STUDENT = "student"
REFERENCE = "reference"
#: LoRA targets: Flow-GRPO's list (scripts/train_sd3.py), the joint-attention projections of both streams. The
#: ``attn.`` prefix matters: peft matches name suffixes, so SD3.5's dual-attention ``attn2`` projections are
#: left out, as in Flow-GRPO (the bare ``to_q`` would adapt them too).
DEFAULT_TARGETS = ("attn.add_k_proj", "attn.add_q_proj", "attn.add_v_proj", "attn.to_add_out", "attn.to_k",
                   "attn.to_out.0", "attn.to_q", "attn.to_v")
#: the file name diffusers' ``save_lora_weights`` / ``load_lora_weights`` use.
DIFFUSERS_LORA = "pytorch_lora_weights.safetensors"
#: the adapter that holds a frozen copy of the student when the reference is a previous stage (cascade).
STAGE_REFERENCE = "stage_reference"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

DTypeLike = Union[str, torch.dtype, None]


def resolve_dtype(dtype: DTypeLike, device=None) -> torch.dtype:
    """``None``/``"auto"`` -> bfloat16 on CUDA, float32 elsewhere; names map through :data:`DTYPES`."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if str(device or "cpu").startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)} or auto, got {dtype!r}")
    return DTYPES[dtype]


def lora_config_dict(rank: int = 32, alpha: float = 64, target_modules: Optional[Sequence[str]] = None) -> dict:
    """The JSON-able LoRA settings stored in checkpoints (Gaussian A, zero B: the adapter starts as a no-op)."""
    return {"r": int(rank), "lora_alpha": float(alpha), "target_modules": list(target_modules or DEFAULT_TARGETS)}


def _peft_config(cfg: dict):
    from peft import LoraConfig

    return LoraConfig(r=cfg["r"], lora_alpha=cfg["lora_alpha"], target_modules=list(cfg["target_modules"]),
                      init_lora_weights="gaussian")


def architecture_digest(transformer) -> str:
    """sha256 of the transformer's config: LoRA checkpoints record it so they are never put on another model."""
    cfg = {k: v for k, v in dict(transformer.config).items() if not k.startswith("_")}
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ FLOPs

_PER_SAMPLE = re.compile(r"(^time_text_embed\.)|(norm[^.]*\.linear\.)")   # adaLN modulation: once per sample
_TEXT_STREAM = re.compile(r"context|add_|added")                          # the text stream's weights


def sd3_transformer_flops(transformer, image_tokens: int, text_tokens: int) -> float:
    """Analytic forward FLOPs of an SD3 MM-DiT for ONE sample: 2 * params * tokens for every weight, with the
    image-stream weights applied to the image tokens, the text-stream weights (``context``/``add_*``) to the
    text tokens and the adaLN modulation / timestep MLPs once; plus attention (QK^T and AV: 4 * T^2 * width
    per joint block, and 4 * N_img^2 * width per SD3.5 dual-attention block). LoRA weights are not counted."""
    flops = 0.0
    for name, p in transformer.named_parameters():
        if "lora_" in name or p.ndim < 2:
            continue   # adapters and biases/norm scales (negligible) are not counted
        if _PER_SAMPLE.search(name):
            tokens = 1
        elif _TEXT_STREAM.search(name):
            tokens = text_tokens
        else:
            tokens = image_tokens
        flops += 2.0 * p.numel() * tokens
    cfg = transformer.config
    width = cfg.num_attention_heads * cfg.attention_head_dim
    total = image_tokens + text_tokens
    for block in transformer.transformer_blocks:
        flops += 4.0 * total**2 * width
        if getattr(block, "attn2", None) is not None:
            flops += 4.0 * image_tokens**2 * width
    return flops


# ------------------------------------------------------------------------------------------------ loading

def _check_pipeline_folder(folder: Path) -> None:
    if not (folder / "model_index.json").is_file():
        raise CheckpointError(
            f"SD3 base model not found: {folder} (expected a local diffusers StableDiffusion3Pipeline folder with "
            f"model_index.json, transformer/, vae/, text_encoder/, text_encoder_2/, tokenizers and scheduler/)")


def _has_t5(folder: Path) -> bool:
    entry = json.loads((folder / "model_index.json").read_text()).get("text_encoder_3")
    return bool(entry and entry[0]) and (folder / "text_encoder_3").is_dir()


def dtype_kwarg(dtype: torch.dtype) -> dict:
    """The dtype keyword of ``from_pretrained`` for the installed diffusers: ``dtype`` from 0.40 (where
    ``torch_dtype`` is deprecated), ``torch_dtype`` before (where ``dtype`` is silently ignored)."""
    import diffusers
    from packaging.version import Version

    return {"dtype" if Version(diffusers.__version__).release >= (0, 40) else "torch_dtype": dtype}


def pipeline_digest(folder) -> str:
    """sha256 identifying a raw diffusers folder without reading gigabytes: every file's relative path and size,
    plus the full content of its small files (configs, tokenizers, scheduler; <= 1 MiB) and the first and last
    MiB of each large weight file. Used to cache the base model's evaluation (it has no manifest)."""
    folder = Path(folder).expanduser().resolve()
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = f.stat().st_size
        h.update(f"{f.relative_to(folder)}\0{size}\0".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                h.update(fh.read())
    return h.hexdigest()


def load_pipeline(folder, dtype: torch.dtype = torch.float32, load_t5: bool = True):
    """``StableDiffusion3Pipeline.from_pretrained`` of a local folder; T5 skipped when absent or not wanted."""
    from diffusers import StableDiffusion3Pipeline

    folder = Path(folder).expanduser()
    _check_pipeline_folder(folder)
    extra = {} if (load_t5 and _has_t5(folder)) else {"text_encoder_3": None, "tokenizer_3": None}
    try:
        pipe = StableDiffusion3Pipeline.from_pretrained(str(folder), local_files_only=True, **dtype_kwarg(dtype),
                                                        **extra)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot load the SD3 pipeline from {folder}: {str(e).splitlines()[0][:300]}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ------------------------------------------------------------------------------------------------ backbone

class SD3Backbone(Backbone):
    """SD3/SD3.5 velocity model in VAE latent space with a LoRA student, the base as reference, LoRA teachers."""

    has_lora_reference = True
    can_load_teacher = True

    def __init__(self, pipe, *, base_folder=None, resolution: Optional[int] = None, lora: Optional[dict] = None,
                 max_sequence_length: int = 256, vae_batch: int = 8):
        super().__init__()
        self.pipe = pipe
        self.base_folder = None if base_folder is None else str(Path(base_folder).expanduser().resolve())
        self.transformer = pipe.transformer
        self.vae = pipe.vae
        self.text_encoders = nn.ModuleList(
            [m for m in (pipe.text_encoder, pipe.text_encoder_2, pipe.text_encoder_3) if m is not None])
        for m in (self.transformer, self.vae, self.text_encoders):
            m.requires_grad_(False)
        self.max_sequence_length = int(max_sequence_length)
        self.vae_batch = int(vae_batch)
        self.resolution = int(resolution or pipe.default_sample_size * pipe.vae_scale_factor)
        multiple = pipe.vae_scale_factor * self.transformer.config.patch_size
        if self.resolution % multiple:
            raise ValueError(f"resolution {self.resolution} must be a multiple of {multiple} (VAE factor x patch)")
        side = self.resolution // pipe.vae_scale_factor
        self.latent_shape = (self.transformer.config.in_channels, side, side)
        self.lora = dict(lora or lora_config_dict())
        self._add_adapter(STUDENT, self.lora)
        self.teachers: Dict[str, dict] = {}
        #: True once freeze_reference made the reference a frozen copy of the student (cascade stages)
        self._staged_reference = False
        self._active = STUDENT
        self._switch(STUDENT)

    # ---- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, folder, lora=None, *, resolution: Optional[int] = None, dtype: DTypeLike = None,
                        device=None, lora_rank: int = 32, lora_alpha: float = 64,
                        target_modules: Optional[Sequence[str]] = None, max_sequence_length: int = 256,
                        load_t5: bool = True) -> "SD3Backbone":
        """Build from a local SD3 pipeline folder. ``lora``: a student checkpoint saved by :meth:`save` whose
        weights (and LoRA settings) are loaded; otherwise a fresh student LoRA (rank/alpha/targets given)."""
        lora_tensors, lora_cfg = (None, lora_config_dict(lora_rank, lora_alpha, target_modules))
        if lora is not None:
            lora_tensors, saved = load_checkpoint(lora, kind=KIND)
            lora_cfg = saved["lora"]
        pipe = load_pipeline(folder, resolve_dtype(dtype, device), load_t5)
        model = cls(pipe, base_folder=folder, resolution=resolution, lora=lora_cfg,
                    max_sequence_length=max_sequence_length)
        if lora_tensors is not None:
            model._check_arch(saved, lora)
            model._set_adapter_weights(STUDENT, lora_tensors, lora)
        return model.to(device) if device is not None else model

    @classmethod
    def load(cls, path, base=None, device=None, dtype: DTypeLike = None) -> "SD3Backbone":
        """Load a student checkpoint written by :meth:`save`; its base folder comes from the checkpoint's config
        unless ``base`` overrides it (e.g. the base model moved)."""
        _, cfg = load_checkpoint(path, kind=KIND)
        base = base or cfg.get("base")
        if not base or not Path(base).expanduser().is_dir():
            raise CheckpointError(f"checkpoint {path} needs its SD3 base folder {base!r}, which does not exist "
                                  f"(pass base=/path/to/the/diffusers/folder)")
        model = cls.from_pretrained(base, lora=path, resolution=cfg.get("resolution"),
                                    dtype=dtype or cfg.get("dtype"), device=device,
                                    max_sequence_length=cfg.get("max_sequence_length", 256))
        model.config = cfg
        return model

    # ---- adapters: student / reference / teachers ------------------------------------------------------------
    @property
    def active_adapter(self) -> str:
        """``"student"``, ``"reference"`` (adapters disabled) or a teacher's name."""
        return self._active

    def adapter_names(self) -> List[str]:
        return [STUDENT, REFERENCE, *self.teachers]

    @contextmanager
    def adapter(self, name: str) -> Iterator["SD3Backbone"]:
        """Run the block with adapter ``name`` active (``"reference"`` = the base model), then switch back."""
        previous = self._active
        self._switch(name)
        try:
            yield self
        finally:
            self._switch(previous)

    def reference(self):
        """Context manager: the reference policy -- the base model (every adapter disabled), or after
        :meth:`freeze_reference` the student as it was then."""
        return self.adapter(REFERENCE)

    def freeze_reference(self) -> None:
        """Make the reference policy a frozen copy of the current student LoRA (cascade: stage k's KL reference
        is stage k-1's model), held in the adapter ``stage_reference`` on the same transformer."""
        if not self._staged_reference:
            previous = self._active
            self._add_adapter(STAGE_REFERENCE, self.lora)
            self._staged_reference = True
            self._switch(previous)
        with torch.no_grad():
            for dst, src in zip(self.reference_parameters(), self.trainable_parameters()):
                dst.copy_(src)

    def reference_parameters(self) -> List[nn.Parameter]:
        """The frozen stage reference's LoRA weights (same order as :meth:`trainable_parameters`); [] while the
        reference is the base model."""
        return [p for n, p in self._lora_parameters() if f".{STAGE_REFERENCE}." in n]

    def _switch(self, name: str) -> None:
        if name == REFERENCE and not self._staged_reference:
            self.transformer.disable_adapters()
        elif name == REFERENCE:
            self.transformer.set_adapter(STAGE_REFERENCE)
            self.transformer.enable_adapters()
        elif name == STUDENT or name in self.teachers:
            self.transformer.set_adapter(name)
            self.transformer.enable_adapters()
        else:
            raise KeyError(f"unknown adapter {name!r} (known: {', '.join(self.adapter_names())})")
        self._active = name
        # peft toggles requires_grad when switching; only the student is ever trainable.
        for pname, p in self._lora_parameters():
            p.requires_grad_(f".{STUDENT}." in pname)

    def _lora_parameters(self) -> Iterator[Tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.transformer.named_parameters() if "lora_" in n)

    def load_teacher(self, name: str, path) -> None:
        """Add a frozen teacher adapter ``name`` from a LoRA checkpoint saved by :meth:`save` (kind sd3_lora) or
        from a peft adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``)."""
        if name in (STUDENT, REFERENCE, STAGE_REFERENCE) or name in self.teachers:
            raise ValueError(f"adapter name {name!r} is reserved or already loaded")
        tensors, cfg = self._read_adapter(path)
        previous = self._active
        self._add_adapter(name, cfg)
        self.teachers[name] = {"path": str(path), "lora": cfg}
        try:
            self._set_adapter_weights(name, tensors, path)
        except CheckpointError:
            self._switch(previous)
            self.transformer.delete_adapters(name)
            del self.teachers[name]
            raise
        finally:
            self._switch(previous)

    def _add_adapter(self, name: str, cfg: dict) -> None:
        """Inject LoRA adapter ``name`` (peft activates it). Its weights are kept in float32 even on a bf16/fp16
        base (peft computes the LoRA branch in the adapter's dtype), so AdamW updates are not lost to rounding."""
        with warnings.catch_warnings():   # peft warns that the model now holds several adapters: intended
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            self.transformer.add_adapter(_peft_config(cfg), adapter_name=name)
        for pname, p in self._lora_parameters():
            if f".{name}." in pname and p.dtype != torch.float32:
                p.data = p.data.float()

    def _read_adapter(self, path) -> Tuple[Dict[str, torch.Tensor], dict]:
        path = Path(path).expanduser()
        if (path / "adapter_config.json").is_file():
            return _read_peft_folder(path)
        if path.suffix == ".safetensors" or (path.is_dir() and (path / DIFFUSERS_LORA).is_file()
                                             and not (path / "manifest.json").is_file()):
            return read_diffusers_lora(path)
        tensors, cfg = load_checkpoint(path, kind=KIND)
        self._check_arch(cfg, path)
        return tensors, cfg["lora"]

    def _check_arch(self, cfg: dict, path) -> None:
        want = cfg.get("base_arch")
        if want and want != architecture_digest(self.transformer):
            raise CheckpointError(f"LoRA checkpoint {path} was trained on a different transformer architecture "
                                  f"than {self.base_folder}")

    def _set_adapter_weights(self, name: str, tensors: Dict[str, torch.Tensor], path) -> None:
        from peft import set_peft_model_state_dict

        expected = {n for n, _ in self._lora_parameters() if f".{name}." in n}
        try:
            result = set_peft_model_state_dict(self.transformer, tensors, adapter_name=name)
        except RuntimeError as e:   # shape mismatch
            raise CheckpointError(f"LoRA weights in {path} do not fit adapter {name!r}: {str(e)[:200]}") from None
        missing = sorted(k for k in result.missing_keys if k in expected)
        unexpected = sorted(result.unexpected_keys)
        if missing or unexpected:
            raise CheckpointError(f"LoRA weights in {path} do not fit adapter {name!r} ({len(missing)} missing, "
                                  f"{len(unexpected)} unexpected, e.g. {(missing or unexpected)[0]})")

    # ---- text ---------------------------------------------------------------------------------------------
    def _encode_text(self, prompts: List[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        states, _, pooled, _ = self.pipe.encode_prompt(
            prompts, None, None, device=self.device, do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length)
        return states, pooled

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The base transformer's dtype (LoRA adapters are float32)."""
        return next(p.dtype for n, p in self.transformer.named_parameters() if "lora_" not in n)

    @property
    def scheduler_shift(self) -> float:
        """The timestep shift the pipeline's scheduler uses (SD3.5: 3.0); pass it as ``sampler.shift``."""
        return float(self.pipe.scheduler.config.get("shift", 1.0))

    # ---- denoiser -----------------------------------------------------------------------------------------
    def denoise(self, x, t, states, pooled):
        """Raw velocity; the transformer runs in its dtype, the result comes back in x's dtype. The timestep
        stays float32 (t * 1000, as the pipeline passes ``scheduler.timesteps``)."""
        dt = self.dtype
        out = self.net(hidden_states=x.to(dt), encoder_hidden_states=states.to(dt),
                               pooled_projections=pooled.to(dt), timestep=(t * 1000.0).float(),
                               return_dict=False)[0]
        return out.to(x.dtype)

    def text_tokens(self) -> int:
        """Text sequence length: CLIP's context (77) + the T5 length (``max_sequence_length``)."""
        return int(self.pipe.tokenizer_max_length) + self.max_sequence_length

    def image_tokens(self) -> int:
        p = self.transformer.config.patch_size
        return (self.latent_shape[1] // p) * (self.latent_shape[2] // p)

    def flops_per_forward(self) -> float:
        return sd3_transformer_flops(self.transformer, self.image_tokens(), self.text_tokens())

    # ---- latents <-> pixels ---------------------------------------------------------------------------------
    def _vae_factors(self) -> Tuple[float, float]:
        cfg = self.vae.config
        return float(cfg.scaling_factor), float(getattr(cfg, "shift_factor", None) or 0.0)

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """Decode latents (in chunks of ``vae_batch``) to images [B, 3, H, W] in [0, 1], float32."""
        scale, shift = self._vae_factors()
        out = []
        for chunk in x.split(self.vae_batch):
            lat = chunk.to(self.vae.dtype) / scale + shift
            out.append(self.vae.decode(lat, return_dict=False)[0].float())
        return ((torch.cat(out).clamp(-1, 1) + 1) / 2)

    def from_images(self, images: torch.Tensor) -> torch.Tensor:
        """Encode images [B, 3, H, W] in [0, 1] to clean latents x0 (the posterior mean), float32."""
        scale, shift = self._vae_factors()
        out = []
        for chunk in images.split(self.vae_batch):
            img = chunk.to(self.device, self.vae.dtype) * 2 - 1
            lat = self.vae.encode(img).latent_dist.mode()
            out.append(((lat - shift) * scale).float())
        return torch.cat(out)

    # ---- parameters and persistence ------------------------------------------------------------------------
    def trainable_parameters(self) -> List[nn.Parameter]:
        """The student LoRA's weights (the only trainable parameters)."""
        return [p for n, p in self._lora_parameters() if f".{STUDENT}." in n]

    def student_state_dict(self) -> Dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(self.transformer, adapter_name=STUDENT)

    def save(self, path, extra_config: Optional[dict] = None) -> Path:
        """Write the student LoRA only (kind ``sd3_lora``) + a config pointing to the base folder, and the same
        LoRA in diffusers' format (``pytorch_lora_weights.safetensors``, ``transformer.``-prefixed keys, rank /
        alpha / targets in its metadata), so ``StableDiffusion3Pipeline.load_lora_weights(path)`` applies it."""
        config = {
            "backbone": "sd3",
            "base": self.base_folder,
            "base_arch": architecture_digest(self.transformer),
            "lora": self.lora,
            "resolution": self.resolution,
            "max_sequence_length": self.max_sequence_length,
            "dtype": next(k for k, v in DTYPES.items() if v == self.dtype),
        }
        config.update(extra_config or {})
        state = self.student_state_dict()
        return save_checkpoint(path, state, config, kind=KIND,
                               extra_files={DIFFUSERS_LORA: diffusers_lora_bytes(state, self.lora)})


def _read_peft_folder(path: Path) -> Tuple[Dict[str, torch.Tensor], dict]:
    """A peft adapter folder -> (state dict keyed like the transformer's modules, our LoRA settings)."""
    from safetensors.torch import load_file

    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"peft adapter folder {path} has no adapter_model.safetensors")
    cfg = json.loads((path / "adapter_config.json").read_text())
    prefixes = ("base_model.model.", "transformer.")
    tensors = {}
    for k, v in load_file(str(weights)).items():
        for pre in prefixes:
            if k.startswith(pre):
                k = k[len(pre):]
        tensors[k] = v
    targets = cfg.get("target_modules") or DEFAULT_TARGETS
    return tensors, lora_config_dict(cfg.get("r", 8), cfg.get("lora_alpha", cfg.get("r", 8)), sorted(targets))


def pipeline_sigmas(steps: int) -> List[float]:
    """``sigmas=`` for ``StableDiffusion3Pipeline.__call__`` that make the stock pipeline sample on opd-bench's
    ODE schedule (``sampler.timestep_schedule``: the scheduler applies its shift to linspace(1, 0, N + 1)[:-1];
    left to itself it would end at its sigma_min instead of 1/N)."""
    return [1.0 - i / steps for i in range(steps)]


def diffusers_lora_bytes(state: Dict[str, torch.Tensor], lora: dict) -> bytes:
    """The student LoRA as diffusers writes it: ``StableDiffusion3Pipeline.save_lora_weights`` itself (keys
    ``transformer.<module>.lora_{A,B}.weight``, the LoraConfig's r / lora_alpha / target_modules as safetensors
    metadata, which ``load_lora_weights`` reads back: without it diffusers would assume alpha = r)."""
    import tempfile

    from diffusers import StableDiffusion3Pipeline

    meta = {"r": int(lora["r"]), "lora_alpha": float(lora["lora_alpha"]),
            "target_modules": list(lora["target_modules"])}
    with tempfile.TemporaryDirectory() as tmp:
        StableDiffusion3Pipeline.save_lora_weights(
            tmp, transformer_lora_layers={k: v.detach().cpu().contiguous() for k, v in state.items()},
            transformer_lora_adapter_metadata=meta)
        return (Path(tmp) / DIFFUSERS_LORA).read_bytes()


def read_diffusers_lora(path: Path) -> Tuple[Dict[str, torch.Tensor], dict]:
    """A LoRA in diffusers' format (a ``.safetensors`` file or a folder with ``pytorch_lora_weights.safetensors``,
    e.g. written by ``StableDiffusion3Pipeline.save_lora_weights`` or ``transformer.save_lora_adapter``) -> (state
    dict keyed like the transformer's modules, our LoRA settings). Rank from the weights, alpha from the metadata
    (diffusers' default alpha = r when there is none), targets = the adapted modules."""
    from diffusers import StableDiffusion3Pipeline

    try:
        state, meta = StableDiffusion3Pipeline.lora_state_dict(str(path), return_lora_metadata=True)
    except (OSError, ValueError, EnvironmentError) as e:
        raise CheckpointError(f"cannot read the diffusers LoRA {path}: {str(e).splitlines()[0][:200]}") from None
    prefix = "transformer."
    tensors = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}
    ranks = {v.shape[0] for k, v in tensors.items() if ".lora_A." in k}
    if len(ranks) != 1:
        raise CheckpointError(f"diffusers LoRA {path}: expected transformer LoRA weights of one rank, found "
                              f"{sorted(ranks) or 'none'}")
    rank = ranks.pop()
    meta = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in (meta or {}).items()}
    targets = meta.get("target_modules") or sorted({k.split(".lora_")[0] for k in tensors})
    return tensors, lora_config_dict(rank, meta.get("lora_alpha", rank), sorted(targets))
