"""Text reading for the OCR task: a thin wrapper around RapidOCR (PP-OCR models shipped in the wheel).

The engine is built once, lazily, on the CPU (onnxruntime). Images smaller than ``UPSCALE`` px are
upscaled (bicubic) first, because PP-OCR's detector and recogniser need glyphs tens of pixels high;
a white border is added so text touching the edge is still detected. The angle classifier is off
(our text is never rotated). Cost: see docs/world.md (measured ms/image).
"""
from __future__ import annotations

import logging
from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image

UPSCALE = 128     # side the image is resized to before OCR
PAD = 16          # border (px, after upscaling) added around the image, in the image's edge colour
DET_SIDE = 256    # detector input side


#: RapidOCR's settings: no angle classifier, a small detector input, one onnxruntime thread (no spinning pool,
#: opd_bench/threads.py), and onnxruntime's CPU memory arena on: every call has the same small shapes, so reusing
#: buffers saves ~10% of the OCR time (benchmarks/RESULTS.md) and changes no reading (tests/test_ocr.py)
ENGINE_PARAMS = {
    "Global.use_cls": False,
    "Global.log_level": "error",
    "Det.limit_side_len": DET_SIDE,
    "Det.limit_type": "max",
    "EngineConfig.onnxruntime.intra_op_num_threads": 1,
    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    "EngineConfig.onnxruntime.enable_cpu_mem_arena": True,
}


def make_engine(**overrides):
    """A RapidOCR engine with :data:`ENGINE_PARAMS` (``overrides`` replace some)."""
    from rapidocr import RapidOCR

    logging.getLogger("RapidOCR").setLevel(logging.ERROR)   # "detection result is empty" is not news
    return RapidOCR(params={**ENGINE_PARAMS, **overrides})


@lru_cache(maxsize=1)
def _engine():
    return make_engine()


def _prepare(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.uint8)
    if max(img.shape[:2]) < UPSCALE:
        img = np.asarray(Image.fromarray(img).resize((UPSCALE, UPSCALE), Image.Resampling.BICUBIC))
    edge = np.median(np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]), axis=0).astype(np.uint8)
    out = np.empty((img.shape[0] + 2 * PAD, img.shape[1] + 2 * PAD, 3), np.uint8)
    out[:] = edge
    out[PAD:-PAD, PAD:-PAD] = img
    return out[..., ::-1].copy()   # RapidOCR takes BGR arrays (OpenCV convention)


def read_one(image: np.ndarray, engine=None) -> str:
    """All text RapidOCR finds in one HxWx3 uint8 image, left to right, concatenated without spaces
    (``engine``: another :func:`make_engine`; default the shared one)."""
    res = (engine or _engine())(_prepare(image))
    if res.txts is None or res.boxes is None:
        return ""
    order = np.argsort([float(np.mean(np.asarray(b)[:, 0])) for b in res.boxes])
    return "".join(res.txts[i] for i in order).replace(" ", "")


def read_text(images: np.ndarray | Sequence[np.ndarray]) -> list[str]:
    """Read a batch of HxWx3 uint8 images (array NxHxWx3 or a list); one string per image."""
    return [read_one(img) for img in images]
