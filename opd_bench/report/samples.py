"""Samples: a grid per task of every model (base, each method's final checkpoint, teachers) on the same eval
prompts from the same initial noise."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from ..analysis import RunInfo
from ..errors import UserError
from .document import Doc


def model_grid(runs_by_label: Dict[str, RunInfo], base_ckpt, teacher_ckpts: Dict[str, str], tasks: Sequence[str],
                cfg, n_prompts: int, out_dir: Path, protocol=None) -> Optional[dict]:
    """One PNG per task, ``samples_<task>.png``: rows = models (base, each method's final checkpoint, teachers),
    columns = the task's first ``n_prompts`` eval prompts; every model is sampled from the same per-prompt noise
    (``prompt_noise``) with ``protocol`` (default: the runs' eval protocol), so the cells of a column differ only
    by the model. Split per task so that each figure fits the page with legible labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from ..backbones import load_backbone
    from ..evaluate import EvalProtocol, generate, prompt_noise, select_records
    from ..tasks import get_task

    protocol = protocol or EvalProtocol.from_config(cfg)
    models = [(lab, ck) for lab, ck in [("base", base_ckpt)]
              + [(f"{lab} (seed {r.seed})", r.final_checkpoint) for lab, r in runs_by_label.items()]
              + [(f"teacher {', '.join(ts)}", c) for c, ts in _by_value(teacher_ckpts).items()] if ck is not None]
    split = protocol.split   # the protocol's split where it names one
    cols = {t: select_records(get_task(t).prompts(split), protocol.prompts_per_task)[:n_prompts] for t in tasks}
    cols = {t: recs for t, recs in cols.items() if recs}
    if not models or not cols:
        return None
    images: Dict[str, List[torch.Tensor]] = {t: [] for t in cols}
    labels = []
    for lab, ck in models:
        try:
            model = load_backbone(ck, cfg.device)
        except UserError:
            continue
        for t, recs in cols.items():
            noise = torch.stack([prompt_noise(protocol.seed, t, i, model.latent_shape) for i in range(len(recs))])
            images[t].append(generate(model, [r["prompt"] for r in recs], noise, protocol))
        labels.append(lab)
    if not labels:
        return None
    files = {}
    for t, recs in cols.items():
        fig, axes = plt.subplots(len(labels), len(recs), figsize=(2.2 * len(recs) + 2.2, 2.2 * len(labels) + 0.8),
                                 squeeze=False)
        for r, (lab, imgs) in enumerate(zip(labels, images[t])):
            for c, rec in enumerate(recs):
                ax = axes[r][c]
                ax.imshow(imgs[c].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    pr = textwrap.shorten(f"#{c}: {rec['prompt']}", 48, placeholder="…")
                    ax.set_title("\n".join(textwrap.wrap(pr, 24)), fontsize=9)
                if c == 0:
                    ax.set_ylabel(lab.replace(" (", "\n("), fontsize=10, rotation=0, ha="right", va="center")
        fig.suptitle(f"{t}: samples at fixed seeds ({protocol.steps}-step ODE, CFG {protocol.guidance})", fontsize=11)
        fig.tight_layout()
        files[t] = f"samples_{t}.png"
        fig.savefig(Path(out_dir) / files[t], dpi=100)
        plt.close(fig)
    return {"models": labels, "files": files,
            "columns": [f"{t} #{i}: {r['prompt']}" for t, recs in cols.items() for i, r in enumerate(recs)]}


def _by_value(d: Dict[str, str]) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for k, v in d.items():
        out.setdefault(v, []).append(k)
    return out


def compute(groups: Mapping[str, Sequence[RunInfo]], teachers: Mapping[str, dict], tasks: Sequence[str],
            n: int, out: Path, protocol: str = "run") -> Optional[dict]:
    """Draw the grids (``n`` prompts per task; 0 = none); the teachers are those evaluated from checkpoints;
    prompts and sampling from the report's scoring ``protocol`` (``runs.scoring_protocol``)."""
    from .runs import scoring_protocol

    if n <= 0:
        return None
    first = {lab: r for lab, rs in groups.items()      # each method's first seed whose final weights exist
             for r in [next((r for r in rs if r.final_checkpoint is not None), None)] if r is not None}
    tck = {t: teachers[t]["source"] for t in tasks if t in teachers and teachers[t]["source"] != "given"}
    r0 = next(iter(groups.values()))[0]
    return model_grid(first, r0.cfg.model.checkpoint, tck, tasks, r0.cfg, n, out, scoring_protocol(r0, protocol))


def render(doc: Doc, grid: Optional[dict], out: Path) -> None:
    if grid:
        for t in grid["files"]:
            doc.h3(f"samples: {t}")
            doc.image(out / grid["files"][t], f"{t}: samples per model (rows) for its first eval prompts (columns), "
                                              "every model from the same initial noise per prompt")
    else:
        doc.p("No samples (no final checkpoints, or --samples 0).", note=True)
