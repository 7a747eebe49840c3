"""Summarise a py-spy speedscope profile: the share of samples per function, self and inclusive.

    py-spy record --rate 25 --format speedscope -o main.json -- python -m opd_bench.cli run --method opd --tasks all
    python benchmarks/profile_summary.py main.json [--top 25] [--match opd_bench,torch]
"""
from __future__ import annotations

import argparse
import json
from collections import Counter


def summarise(doc: dict, top: int = 25):
    frames = doc["shared"]["frames"]
    label = [f"{f['name']} ({f.get('file', '?').split('site-packages/')[-1].split('/work/main/')[-1]}:"
             f"{f.get('line', '?')})" for f in frames]
    self_t, incl_t, total = Counter(), Counter(), 0.0
    for prof in doc["profiles"]:
        for stack, w in zip(prof["samples"], prof.get("weights") or [1] * len(prof["samples"])):
            total += w
            if stack:
                self_t[label[stack[-1]]] += w
            for name in {label[i] for i in stack}:
                incl_t[name] += w
    return total, self_t.most_common(top), incl_t.most_common(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    total, self_top, incl_top = summarise(json.load(open(args.profile)), args.top)
    print(f"{total:.0f} samples")
    for title, rows in (("self", self_top), ("inclusive", incl_top)):
        print(f"\n| {title} share | function |\n|---|---|")
        for name, w in rows:
            print(f"| {100 * w / total:.1f}% | `{name}` |")


if __name__ == "__main__":
    main()
