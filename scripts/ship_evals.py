"""Ship the evaluations of the released checkpoints under the default protocol (configs/default.yaml's eval
section) in checkpoints/evals/, so no run re-scores them (opd_bench/evalcache.py). Entries already in the local
eval cache are copied, the rest computed. Re-run after re-releasing a checkpoint (tests/test_evalcache.py fails
while an entry no longer matches its checkpoint).

    python scripts/ship_evals.py [--checkpoints base,teacher_ocr,...]
"""
from __future__ import annotations

import argparse
import json

from opd_bench.checkpoint import atomic_write_json
from opd_bench.config import load_config
from opd_bench.evalcache import SHIPPED_EVALS, cache_key, evaluate_cached
from opd_bench.evaluate import EvalProtocol
from opd_bench.tasks import parse_tasks

#: each released checkpoint and the tasks the default run evaluates it on
DEFAULT = {"base": "all", "teacher_aesthetic": "aesthetic", "teacher_geneval": "geneval", "teacher_ocr": "ocr",
           "teacher_preference": "preference"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default=",".join(DEFAULT))
    args = ap.parse_args()
    protocol = EvalProtocol.from_config(load_config(None))
    index_file = SHIPPED_EVALS / "index.json"
    index = json.loads(index_file.read_text()) if index_file.is_file() else {}
    SHIPPED_EVALS.mkdir(parents=True, exist_ok=True)
    for name in args.checkpoints.split(","):
        tasks = parse_tasks(DEFAULT.get(name, "all"))
        key = cache_key(name, protocol)
        res, computed = evaluate_cached(name, tasks, protocol)
        for t in tasks:
            atomic_write_json(SHIPPED_EVALS / f"{key}_{t}.json", res[t])
            index[f"{key}_{t}"] = {"checkpoint": name, "task": t, "protocol": protocol.to_dict()}
        print(f"{name}: {', '.join(tasks)} ({'computed ' + ', '.join(computed) if computed else 'from the cache'})")
    atomic_write_json(index_file, dict(sorted(index.items())))


if __name__ == "__main__":
    main()
