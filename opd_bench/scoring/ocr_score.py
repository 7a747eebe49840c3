"""Flow-GRPO's OCR score of a reading against a target text, shared by the embedded world's OCR task
(:mod:`opd_bench.tasks.ocr`) and the real OCR reward (:mod:`opd_bench.rewards.ocr`): spaces removed and
case ignored, 1 if the target occurs in the reading, else ``1 - min(edit_distance, len(target)) /
len(target)`` (so in [0, 1])."""
from __future__ import annotations


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def normalize_text(s: str) -> str:
    """``s`` without whitespace, lower case (what the OCR score compares)."""
    return "".join(s.split()).lower()


def ocr_score(reading: str, target: str) -> float:
    """Flow-GRPO's OCR reward of ``reading`` for ``target`` (see the module docstring)."""
    r, t = normalize_text(reading), normalize_text(target)
    if not t:
        return float(not r)
    if t in r:
        return 1.0
    return 1.0 - min(edit_distance(r, t), len(t)) / len(t)


def ocr_exact(reading: str, target: str) -> float:
    """1.0 when ``reading`` equals ``target`` after normalisation, else 0.0."""
    return float(normalize_text(reading) == normalize_text(target))
