"""Score the sweep's sampled arrays with the tasks' real metrics on the CPU (rapidocr, the GenEval parser, the
learned reward models):  python experiments/ocr_sweep/score.py A.npz B.npz ... > scores.txt"""
import json
import sys

import numpy as np
import torch

from opd_bench.evaluate import summarize_task
from opd_bench.tasks import get_task


def score(task_name, arr):
    task = get_task(task_name)
    recs = task.prompts("val")  # selection experiments read val (the former eval set)
    imgs = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0
    per = {}
    for s in range(0, len(recs), 64):
        m = task.metrics(imgs[s : s + 64], recs[s : s + 64])
        for k, v in m.items():
            per.setdefault(k, []).append(torch.as_tensor(v).float())
    per = {k: torch.cat(v).numpy() for k, v in per.items()}
    summ = summarize_task(task, recs, per, 1000, 1234)
    return summ


if __name__ == "__main__":
    for path in sys.argv[1:]:
        d = np.load(path)
        for key in sorted(d.keys(), key=lambda k: (k.split("_")[0], int(k.split("_")[1]))):
            task, step = key.split("_")
            tname = "ocr" if task.startswith("ocr") else task
            s = score(tname, d[key])
            extra = ""
            if "categories" in s:
                extra = " ".join(f"{c[:6]}={v['mean']:.2f}" for c, v in s["categories"].items())
            if tname == "ocr":
                extra = f"exact={s['metrics'].get('exact', float('nan')):.3f}"
            print(f"{path.split('/')[-1]:12s} {key:18s} {s['mean']:.3f} [{s['ci_low']:.3f},{s['ci_high']:.3f}] {extra}",
                  flush=True)
