"""Checkpoints: safetensors weights + JSON config + a sha256 manifest, written atomically.

Layout of a checkpoint folder::

    model.safetensors   the tensors (never pickle)
    config.json         {"kind": ..., ...} everything needed to rebuild the model
    manifest.json       {"format": 1, "files": {name: {"sha256": ..., "bytes": ...}}}

Every file is written to a temporary name, fsync'd and renamed; the manifest is written last, so a crash
mid-save never leaves a folder whose manifest vouches for a half-written file. When overwriting an existing
checkpoint the new files are staged in a sibling folder which replaces the old one only once complete, so the
previous checkpoint stays loadable until the new one is whole.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .errors import CheckpointError
from .validate import finite_json

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # full disk, read-only disk, Ctrl-C: no orphan temp file, ``path`` untouched
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj, **kwargs) -> str:
    """Strict JSON (non-finite floats become null: no NaN / Infinity tokens)."""
    return json.dumps(finite_json(obj), allow_nan=False, **kwargs)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json_text(obj, indent=2, sort_keys=True) + "\n")


def _contiguous_cpu(tensors: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def save_checkpoint(path, tensors: Dict[str, torch.Tensor], config: dict, *, kind: str,
                    extra_files: Optional[Dict[str, bytes]] = None) -> Path:
    """Save ``tensors`` and ``config`` as a checkpoint folder at ``path`` (atomically); ``extra_files`` (name ->
    bytes, e.g. the same weights in another library's format) are written beside them and listed in the
    manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted_save(path)
    stage = path.with_name(f".{path.name}.staging.{os.getpid()}")
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    try:
        cfg = dict(config)
        cfg["kind"] = kind
        atomic_write_bytes(stage / WEIGHTS, save(_contiguous_cpu(tensors)))
        atomic_write_json(stage / CONFIG, cfg)
        for name, data in (extra_files or {}).items():
            atomic_write_bytes(stage / name, data)
        files = {}
        for name in (WEIGHTS, CONFIG, *(extra_files or {})):
            p = stage / name
            files[name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        atomic_write_json(stage / MANIFEST, {"format": FORMAT_VERSION, "files": files})
    except BaseException:  # full disk, Ctrl-C...: remove the half-made stage, the previous checkpoint stays
        shutil.rmtree(stage, ignore_errors=True)
        raise
    # Swap the staged folder in: the old checkpoint (if any) is moved aside first and removed only after.
    old = path.with_name(f".{path.name}.old.{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(stage, path)
    _fsync_dir(path.parent)
    if old.exists():
        shutil.rmtree(old)
    return path


def recover_interrupted_save(path) -> bool:
    """If a save was killed between moving the old checkpoint aside and moving the new one in (two renames),
    put the old one back. Returns True when something was recovered."""
    path = Path(path)
    if path.exists() or not path.parent.is_dir():
        return False
    olds = sorted(path.parent.glob(f".{path.name}.old.*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in olds:
        if (old / MANIFEST).is_file():
            os.replace(old, path)
            return True
    return False


def verify_checkpoint(path) -> dict:
    """Check every file against the manifest; return the manifest. Raises CheckpointError naming the bad file."""
    path = Path(path)
    recover_interrupted_save(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_dir():
        raise CheckpointError(f"checkpoint must be a folder with {WEIGHTS}, {CONFIG} and {MANIFEST}: {path}")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise CheckpointError(f"checkpoint {path} has no {MANIFEST} (not a checkpoint, or an interrupted save)")
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"corrupted manifest {mpath}: {e}") from None
    if not isinstance(files, dict) or not all(
            isinstance(m, dict) and isinstance(n, str) and n == Path(n).name and n not in (".", "..")
            for n, m in files.items()):
        raise CheckpointError(f"corrupted manifest {mpath}: 'files' must map file names to {{sha256, bytes}}")
    for name in (WEIGHTS, CONFIG):
        if name not in files:
            raise CheckpointError(f"manifest {mpath} does not list {name}")
    for name, meta in files.items():
        fp = path / name
        if not fp.is_file():
            raise CheckpointError(f"checkpoint file missing: {fp}")
        size = fp.stat().st_size
        if size != meta.get("bytes"):
            raise CheckpointError(
                f"checkpoint file {fp} is {size} bytes, manifest says {meta.get('bytes')} (truncated or tampered)"
            )
        if sha256_file(fp) != meta.get("sha256"):
            raise CheckpointError(f"checkpoint file {fp} does not match its sha256 in the manifest (tampered)")
    return manifest


def read_config(path) -> dict:
    """The checkpoint's config.json, after verifying the manifest."""
    verify_checkpoint(path)
    try:
        cfg = json.loads((Path(path) / CONFIG).read_text())
    except ValueError as e:  # UnicodeDecodeError included
        raise CheckpointError(f"corrupted {Path(path) / CONFIG}: {e}") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"corrupted {Path(path) / CONFIG}: expected a JSON object, got {type(cfg).__name__}")
    return cfg


def load_checkpoint(path, *, kind: Optional[str] = None) -> Tuple[Dict[str, torch.Tensor], dict]:
    """Verify and load a checkpoint: returns (tensors, config). Never unpickles anything."""
    path = Path(path)
    config = read_config(path)
    if kind is not None and config.get("kind") != kind:
        raise CheckpointError(f"checkpoint {path} is a {config.get('kind')!r} checkpoint, expected {kind!r}")
    try:
        tensors = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path / WEIGHTS}: {e}") from None
    return tensors, config


def checkpoint_digest(path) -> str:
    """One sha256 identifying a checkpoint: the hash of its manifest (which hashes every file)."""
    verify_checkpoint(path)
    return sha256_file(Path(path) / MANIFEST)
