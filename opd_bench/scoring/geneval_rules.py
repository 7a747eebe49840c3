"""GenEval's rule engine, on a list of detections (from our parser or, later, a real detector).

Metadata format = GenEval's ``evaluation_metadata.jsonl``: ``tag``, ``include`` (list of
``{class, count, color?, position?}``, position ``[relation, index of an earlier include entry]``) and an
optional ``exclude`` (list of ``{class, count}``: fewer than ``count`` such objects must be present).

Logic follows GenEval's ``evaluate_images.py``:
- detections of a class are ranked (by confidence there, by area here: largest first) and the top
  ``count`` of them are checked; fewer than ``count`` fails. Counting prompts say "exactly n" via
  ``include count n`` + ``exclude count n+1``;
- colour: all top-``count`` detections must have the colour;
- position: every checked object must stand in the relation to every object of the target group, and
  the target group must itself have matched; relations from bounding-box centres with GenEval's margin
  ``POSITION_THRESHOLD = 0.1``: the centre offset shrinks by 0.1 x (sum of the two box sizes) per axis,
  then "right of" needs the shrunk x offset > 0.5 x the unshrunk distance (so roughly within 60 degrees
  of the axis and clear of the other box by 10% of their sizes).

:func:`judge_detections` also returns partial credit for training rewards: each include entry scores
presence ``min(found, count) / count``, colour (if asked) the fraction of its top-``count`` with the right
colour, position (if asked) 1 if the relation holds against the target's detections (0 if either is
missing); each exclude entry scores 1 if satisfied. The credit is the mean of these terms; it is 1 exactly
when the prompt is correct.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

POSITION_THRESHOLD = 0.1
RELATIONS = ("left of", "right of", "above", "below")


class DetectionLike(Protocol):
    shape: str
    color: str
    area: float
    bbox: tuple


@dataclass
class Verdict:
    correct: bool
    credit: float
    reasons: list[str] = field(default_factory=list)


def relative_position(box_a: Sequence[float], box_b: Sequence[float],
                      threshold: float = POSITION_THRESHOLD) -> set[str]:
    """Relations of box A relative to box B (x0, y0, x1, y1; y grows downwards), GenEval's rule."""
    ca = ((box_a[0] + box_a[2]) / 2, (box_a[1] + box_a[3]) / 2)
    cb = ((box_b[0] + box_b[2]) / 2, (box_b[1] + box_b[3]) / 2)
    dims = (box_a[2] - box_a[0] + box_b[2] - box_b[0], box_a[3] - box_a[1] + box_b[3] - box_b[1])
    off = (ca[0] - cb[0], ca[1] - cb[1])
    rev = [max(abs(o) - threshold * d, 0.0) * (1 if o > 0 else -1) for o, d in zip(off, dims)]
    if all(abs(r) < 1e-3 for r in rev):
        return set()
    norm = (off[0] ** 2 + off[1] ** 2) ** 0.5
    dx, dy = rev[0] / norm, rev[1] / norm
    rels = set()
    if dx < -0.5:
        rels.add("left of")
    if dx > 0.5:
        rels.add("right of")
    if dy < -0.5:
        rels.add("above")
    if dy > 0.5:
        rels.add("below")
    return rels


def by_class(detections: Sequence[DetectionLike]) -> dict[str, list]:
    """Detections grouped by class (shape), each group best first: by a detector's ``score`` when the
    detections carry one (GenEval ranks by confidence), else largest first (the embedded parser)."""
    groups: dict[str, list] = defaultdict(list)
    for d in sorted(detections, key=lambda d: -getattr(d, "score", d.area)):
        groups[d.shape].append(d)
    return groups


def judge_detections(detections: Sequence[DetectionLike], metadata: Mapping[str, Any]) -> Verdict:
    """Judge one image's detections against one GenEval metadata record."""
    objects = by_class(detections)
    correct, terms, reasons = True, [], []
    matched_groups: list = []
    for req in metadata.get("include", []):
        cls, n = req["class"], req["count"]
        found = objects.get(cls, [])[:n]
        matched = len(found) >= n
        terms.append(min(len(found), n) / n)
        if not matched:
            reasons.append(f"expected {cls}>={n}, found {len(found)}")
        if req.get("color"):
            good = sum(d.color == req["color"] for d in found)
            terms.append(good / n)
            if matched and good < n:
                matched = False
                reasons.append(f"expected {req['color']} {cls}>={n}, found {good} {req['color']}")
        if req.get("position"):
            rel, target = req["position"]
            targets = matched_groups[target][1]
            ok = bool(found) and bool(targets) and all(
                rel in relative_position(o.bbox, t.bbox) for o in found for t in targets)
            terms.append(float(ok))
            if matched and (matched_groups[target][0] is False or not ok):
                matched = False
                reasons.append(f"expected {cls} {rel} target")
        correct &= matched
        matched_groups.append((matched, found))
    for req in metadata.get("exclude", None) or []:
        k = len(objects.get(req["class"], []))
        ok = k < req["count"]
        terms.append(float(ok))
        if not ok:
            correct = False
            reasons.append(f"expected {req['class']}<{req['count']}, found {k}")
    credit = sum(terms) / len(terms) if terms else 1.0
    return Verdict(correct, 1.0 if correct else min(credit, 0.99), reasons)
