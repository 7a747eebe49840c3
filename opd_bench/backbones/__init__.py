"""Backbones: one adapter class per model family, all implementing :class:`~.base.Backbone`."""
from __future__ import annotations

from pathlib import Path

from ..checkpoint import CONFIG, read_config
from ..errors import CheckpointError
from ..paths import REPO_ROOT, RELEASED_DIR, asset_root_problem
from .base import Backbone, Condition
from .embedded import EmbeddedBackbone


def released_names():
    if not RELEASED_DIR.is_dir():
        return []
    return sorted(p.name for p in RELEASED_DIR.iterdir() if (p / CONFIG).is_file())


def resolve_checkpoint(name_or_path) -> Path:
    """A checkpoint folder from a path or a released name (``base``, ``teacher_ocr``, ...)."""
    p = Path(str(name_or_path)).expanduser()
    if p.exists():
        return p
    rel = RELEASED_DIR / str(name_or_path)
    if "/" not in str(name_or_path) and rel.is_dir():
        return rel
    problem = asset_root_problem(REPO_ROOT) if "/" not in str(name_or_path) else None
    if problem:
        raise CheckpointError(f"checkpoint {name_or_path}: {problem}")
    names = ", ".join(released_names()) or "none"
    raise CheckpointError(f"checkpoint not found: {name_or_path} (not a folder; released names: {names})")


def model_digest(path, options: dict = None) -> str:
    """sha256 identifying a model for caching evaluations: a checkpoint's manifest digest, or for a raw
    diffusers folder its content digest together with the options it is built with (resolution, dtype, ...)."""
    import hashlib
    import json

    from ..checkpoint import checkpoint_digest

    path = Path(path)
    if (path / "model_index.json").is_file() and not (path / "manifest.json").is_file():
        from .sd3 import pipeline_digest

        blob = pipeline_digest(path) + json.dumps(options or {}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()
    return checkpoint_digest(path)


def backbone_options(model_cfg) -> dict:
    """Construction options for a raw diffusers folder, from the run config's ``model`` section."""
    return {
        "lora_rank": model_cfg.lora_rank, "lora_alpha": model_cfg.lora_alpha,
        "target_modules": model_cfg.lora_target_modules or None, "dtype": model_cfg.dtype,
        "resolution": model_cfg.resolution or None, "max_sequence_length": model_cfg.max_sequence_length,
        "load_t5": model_cfg.load_t5,
    }


#: the command's defaults (``opd_bench.session.apply_config``): device and raw-folder options when not given.
_LOADING: dict = {"device": None, "options": None}


def configure_loading(device=None, options: dict = None) -> None:
    """Defaults of :func:`load_backbone` for this process (set from a command's run config)."""
    _LOADING.update(device=device, options=options)


def load_backbone(name_or_path, device=None, options: dict = None) -> Backbone:
    """Load any backbone checkpoint by released name or path (verifying its manifest). ``options``
    (see :func:`backbone_options`) apply when ``name_or_path`` is a raw diffusers SD3 folder; both default to
    the command's settings (:func:`configure_loading`), else CPU and the model's own defaults."""
    device = device or _LOADING["device"] or "cpu"
    options = _LOADING["options"] if options is None else options
    path = resolve_checkpoint(name_or_path)
    if (path / "model_index.json").is_file():  # sd3: a raw diffusers pipeline folder (fresh student LoRA)
        from .sd3 import SD3Backbone

        return SD3Backbone.from_pretrained(path, device=device, **(options or {}))
    cfg = read_config(path)
    kind = cfg.get("backbone")
    if kind == "embedded":
        model = EmbeddedBackbone.load(path, resolve=resolve_checkpoint)
        if model.text_source and model.text_source.get("from") == str(path) and path.parent == RELEASED_DIR:
            model.text_source["from"] = path.name  # portable reference for checkpoints derived from it
    elif kind == "sd3":  # a student LoRA checkpoint pointing to its base folder
        from .sd3 import SD3Backbone

        model = SD3Backbone.load(path, device=device)
    else:
        raise CheckpointError(f"checkpoint {path}: unknown backbone {kind!r} in {CONFIG}")
    return model.to(device)


__all__ = ["Backbone", "Condition", "EmbeddedBackbone", "load_backbone", "configure_loading", "model_digest", "resolve_checkpoint", "released_names"]
