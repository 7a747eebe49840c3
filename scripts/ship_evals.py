"""Ship the evaluations of the released checkpoints under the default protocol (configs/default.yaml's eval
section) or a named one (``--protocol full``: what `report` and `claims` score every model with) in
checkpoints/evals/, so no run re-scores them (opd_bench/evalcache.py). Entries already shipped or in the local eval
cache are copied, the rest computed, one task at a time (each shipped as soon as it is scored, so an interrupted
run keeps what it finished). Re-run after re-releasing a checkpoint (tests/test_evalcache.py fails while an entry
no longer matches its checkpoint).

    python scripts/ship_evals.py [--checkpoints base,teacher_ocr,...] [--protocol full]
"""
from __future__ import annotations

import argparse
import json

from opd_bench.checkpoint import atomic_write_json
from opd_bench.config import load_config
from opd_bench.evalcache import SHIPPED_EVALS, cache_key, evaluate_cached
from opd_bench.evaluate import EvalProtocol
from opd_bench.protocol import named
from opd_bench.tasks import parse_tasks

#: each released checkpoint and the tasks the default run evaluates it on
DEFAULT = {"base": "all", "teacher_aesthetic": "aesthetic", "teacher_geneval": "geneval", "teacher_ocr": "ocr",
           "teacher_preference": "preference"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default=",".join(DEFAULT))
    ap.add_argument("--protocol", default="default", choices=["default", "quick", "full"],
                    help="default: configs/default.yaml's eval section (a run's start and final evaluations); "
                         "quick or full: the named protocols (docs/evaluation.md)")
    args = ap.parse_args()
    protocol = EvalProtocol.from_config(load_config(None))
    if args.protocol != "default":
        protocol = named(args.protocol, protocol)
    index_file = SHIPPED_EVALS / "index.json"
    SHIPPED_EVALS.mkdir(parents=True, exist_ok=True)
    for name in args.checkpoints.split(","):
        key = cache_key(name, protocol)
        for t in parse_tasks(DEFAULT.get(name, "all")):
            res, computed = evaluate_cached(name, [t], protocol)
            atomic_write_json(SHIPPED_EVALS / f"{key}_{t}.json", res[t])
            index = json.loads(index_file.read_text()) if index_file.is_file() else {}
            index[f"{key}_{t}"] = {"checkpoint": name, "task": t, "protocol": protocol.to_dict()}
            atomic_write_json(index_file, dict(sorted(index.items())))
            print(f"{name}: {t} ({'computed' if computed else 'from the cache'})", flush=True)


if __name__ == "__main__":
    main()
