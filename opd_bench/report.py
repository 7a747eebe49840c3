"""``opd-bench report``: one self-contained HTML page (images as base64 data URIs, inline CSS, no external
requests) and a Markdown twin with its PNG files beside it, under ``reports/<name>/``, plus ``report.json``
with every number shown.

Sections: final comparison table (base, teachers, methods; per task and normalised average, 95% CIs, budget
spent), learning curves and forgetting, interference (gradient cosines, lookahead affinity, negative transfer),
gradient variance (from a ``variance.json`` of ``opd-bench analyze variance``), reward hacking (proxy vs
gold), statistics (IQM, probability of improvement) and a grid of samples per model x task at fixed seeds.
"""
from __future__ import annotations

import base64
import html
import math
import textwrap
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .analysis import MIN_TEACHER_GAP, RunInfo, is_normalized, label_runs, load_run, normalize
from .analysis import forgetting as fg
from .analysis import hacking as hk
from .analysis import interference as itf
from .analysis import variance as var
from .checkpoint import atomic_write_json, atomic_write_text
from .config import to_dict
from .errors import UserError
from .runner import is_run_dir
from .stats import bootstrap_ci, iqm, probability_of_improvement, stratified_bootstrap_ci

SECTIONS = ("Final comparison", "Learning curves and forgetting", "Interference", "Gradient variance",
            "Reward hacking", "Statistics", "Samples")

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #bbb;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}figure{margin:1em 0}
figure.wide{overflow-x:auto}figure.wide img{max-width:none}
.sign{background:#f7f7ee;border-left:3px solid #bb9;padding:.2em .6em}
.note{color:#555;font-size:.9em}code{background:#f4f4f4;padding:0 .2em}
"""


# ----------------------------------------------------------------------------------------------- documents

#: the page's content width in CSS pixels (max-width 1200px less padding); wider figures scroll
PAGE_WIDTH_PX = 1150


def png_width(data: bytes) -> int:
    """The pixel width of a PNG (its IHDR chunk)."""
    return int.from_bytes(data[16:20], "big") if data[:8] == b"\x89PNG\r\n\x1a\n" else 0



class Doc:
    """Builds the HTML page and its Markdown twin side by side."""

    def __init__(self, out_dir: Path, title: str):
        self.out = Path(out_dir)
        self.title = title
        self.html: List[str] = []
        self.md: List[str] = [f"# {title}\n"]

    def h2(self, text: str) -> None:
        anchor = text.lower().replace(" ", "-")
        self.html.append(f'<h2 id="{anchor}">{html.escape(text)}</h2>')
        self.md.append(f"\n## {text}\n")

    def h3(self, text: str) -> None:
        self.html.append(f"<h3>{html.escape(text)}</h3>")
        self.md.append(f"\n### {text}\n")

    def p(self, text: str, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self.html.append(f"<p{cls}>{html.escape(text)}</p>")
        self.md.append(f"\n{'*' if note else ''}{text}{'*' if note else ''}\n")

    def sign(self, text: str) -> None:
        """The sign convention of the table that follows, set apart so that it is read with the table."""
        self.html.append(f'<p class="note sign"><b>Reading the signs:</b> {html.escape(text)}</p>')
        self.md.append(f"\n> **Reading the signs:** {text}\n")

    def code(self, text: str) -> None:
        self.html.append(f"<pre><code>{html.escape(text)}</code></pre>")
        self.md.append(f"\n```\n{text}\n```\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        h = "".join(f"<th>{html.escape(str(x))}</th>" for x in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        self.html.append(f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>")
        esc = lambda c: str(c).replace("|", "\\|")
        self.md.append("\n| " + " | ".join(esc(x) for x in headers) + " |\n|" + "---|" * len(headers) + "\n"
                       + "".join("| " + " | ".join(esc(c) for c in r) + " |\n" for r in rows))

    def image(self, path: Path, caption: str) -> None:
        raw = Path(path).read_bytes()
        data = base64.b64encode(raw).decode()
        # a figure wider than the page is shown at its own size in a scrolling box, so its text stays legible
        cls = ' class="wide"' if png_width(raw) > PAGE_WIDTH_PX else ""
        self.html.append(f'<figure{cls}><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                         f'<figcaption class="note">{html.escape(caption)}</figcaption></figure>')
        self.md.append(f"\n![{caption}]({Path(path).name})\n")

    def render_html(self) -> str:
        toc = "".join(f'<li><a href="#{s.lower().replace(" ", "-")}">{html.escape(s)}</a></li>' for s in SECTIONS)
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1><ul>{toc}</ul>" + "\n".join(self.html) + "</body></html>\n")

    def render_md(self) -> str:
        return "".join(self.md)


# ----------------------------------------------------------------------------------------------- runs


def find_run_dirs(root: Path) -> List[Path]:
    """Run folders at or under ``root`` (not descending into runs, hidden folders or teachers/)."""
    root = Path(root)
    if is_run_dir(root):
        return [root]
    out = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if child.name.startswith(".") or child.name == "teachers":
            continue
        out.extend(find_run_dirs(child))
    return out


def expand_runs(paths: Optional[Sequence[Path]], runs_root: Path = Path("runs")) -> List[Path]:
    """Arguments -> run folders: a run folder as is, a folder of runs expanded; anything else is an error."""
    if not paths:
        found = find_run_dirs(runs_root) if Path(runs_root).is_dir() else []
        if not found:
            raise UserError(f"no run folders under {runs_root}/ (train one with `opd-bench run`, or pass run folders)")
        return found
    out: List[Path] = []
    for p in paths:
        p = Path(p)
        if not p.is_dir():
            raise UserError(f"not a run folder: {p} (no such folder)")
        found = find_run_dirs(p)
        if not found:
            raise UserError(f"not a run folder: {p} (no config.yaml and ledger.json, and no run folders inside)")
        out.extend(found)
    return list(dict.fromkeys(out))


def default_name(run_paths: Sequence[Path]) -> str:
    parents = {Path(p).resolve().parent for p in run_paths}
    if len(run_paths) == 1:
        return Path(run_paths[0]).resolve().name
    if len(parents) == 1:
        return next(iter(parents)).name
    return "report"


def default_out(name: str, runs_root: Path = Path("runs")) -> Path:
    """Where a report goes without ``--out``: ``runs/<name>/report`` (never the tracked ``reports/``; the
    committed reports there are written with ``--out reports/<name>``)."""
    return Path(runs_root) / name / "report"


# ----------------------------------------------------------------------------------------------- references


def reference_scores(runs: Sequence[RunInfo], teacher_scores: Optional[Dict[str, float]] = None,
                     evaluate_teachers: bool = True) -> Tuple[Dict[str, dict], Dict[str, dict]]:
    """(base, teachers): {task: {"mean", "ci", "source"}}. The base is each run's ``start`` eval (the base model
    under the run's own eval protocol); teachers are given, or evaluated with the run's protocol through the
    eval cache (``opd_bench.evalcache.cached_eval``) when the checkpoints exist (``opd.teachers`` or the released
    ``teacher_<task>``)."""
    from .evalcache import cached_eval
    from .evaluate import EvalProtocol

    base: Dict[str, dict] = {}
    teachers: Dict[str, dict] = {}
    for r in runs:
        s = r.start_row
        if s is None:
            continue
        for t in r.tasks:
            if t not in base and t in s["scores"]:
                base[t] = {"mean": float(s["scores"][t]), "ci": list(s["ci"].get(t, [math.nan, math.nan])),
                           "source": str(r.path / "eval_history.jsonl")}
    for t, v in (teacher_scores or {}).items():
        teachers[t] = {"mean": float(v), "ci": [math.nan, math.nan], "source": "given"}
    if evaluate_teachers:
        for r in runs:
            by_ckpt: Dict[str, List[str]] = {}  # one load per teacher checkpoint, whatever its number of tasks
            for t in r.tasks:
                if t not in teachers:
                    by_ckpt.setdefault(str(r.cfg.opd.teachers.get(t, f"teacher_{t}")), []).append(t)
            for name, ts in by_ckpt.items():
                try:
                    res = cached_eval(name, ts, EvalProtocol.from_config(r.cfg), r.cfg.device)
                except UserError:
                    continue
                for t in ts:
                    teachers[t] = {"mean": float(res[t]["mean"]), "ci": [res[t]["ci_low"], res[t]["ci_high"]],
                                   "source": name}
    return base, teachers


def _means(d: Dict[str, dict]) -> Dict[str, float]:
    return {k: v["mean"] for k, v in d.items()}


# ----------------------------------------------------------------------------------------------- statistics


def ci_ranks(cis: Dict[str, Tuple[float, float]]) -> Dict[str, int]:
    """Rank 1 + the number of entries whose CI lies entirely above this one's: entries whose CIs overlap tie."""
    return {k: 1 + sum(1 for j, (lo, _) in cis.items() if j != k and lo > hi) for k, (_, hi) in cis.items()}


def group_runs(runs: Sequence[RunInfo]) -> Dict[str, List[RunInfo]]:
    out: Dict[str, List[RunInfo]] = {}
    for r in runs:
        out.setdefault(r.label, []).append(r)
    for v in out.values():
        v.sort(key=lambda r: r.seed)
    return out


def final_scores(runs: Sequence[RunInfo], task: str) -> List[float]:
    return [float(r.final_row["scores"][task]) for r in runs if r.final_row and task in r.final_row["scores"]]


def final_table(groups: Dict[str, List[RunInfo]], base: Dict[str, dict], teachers: Dict[str, dict],
                n_boot: int = 2000) -> dict:
    """Per method: per-task mean final score with a 95% CI (over seeds with >= 2 seeds, else the eval's CI
    over prompts), the normalised average (stratified bootstrap over seeds within tasks; with one seed a normal
    approximation from the per-task eval CIs), IQM over seeds x tasks, budget spent, and CI-separated ranks."""
    bm, tm = _means(base), _means(teachers)
    rows = {}
    for lab, runs in groups.items():
        tasks = list(dict.fromkeys(t for r in runs for t in r.tasks))
        per_task, norm = {}, {}
        for t in tasks:
            vals = final_scores(runs, t)
            if not vals:
                continue
            if len(vals) >= 2:
                lo, hi = bootstrap_ci(vals, n_boot)
                src = "seeds"
            else:
                lo, hi = runs[0].final_row["ci"].get(t, [math.nan, math.nan])
                src = "prompts"
            per_task[t] = {"mean": float(np.mean(vals)), "ci": [float(lo), float(hi)], "n": len(vals), "ci_over": src,
                           "values": vals}
            norm[t] = [normalize(v, bm.get(t), tm.get(t)) for v in vals]
        avg = float(np.mean([np.mean(v) for v in norm.values()])) if norm else math.nan
        n_seeds = min((len(v) for v in norm.values()), default=0)
        if n_seeds >= 2:
            lo, hi = stratified_bootstrap_ci(norm, n_boot)
        else:
            ses = []
            for t, d in per_task.items():
                scale = abs(tm[t] - bm[t]) if is_normalized(bm.get(t), tm.get(t)) else 1.0
                ses.append(((d["ci"][1] - d["ci"][0]) / (2 * 1.96)) / scale)
            se = math.sqrt(sum(s * s for s in ses)) / max(1, len(ses))
            lo, hi = avg - 1.96 * se, avg + 1.96 * se
        unit = runs[0].unit
        spent = [r.spent("train").get(unit, math.nan) for r in runs]
        images = [r.spent("train").get("images", math.nan) for r in runs]
        rows[lab] = {
            "method": runs[0].method, "seeds": [r.seed for r in runs], "runs": [str(r.path) for r in runs],
            "tasks": per_task, "normalized": {t: v for t, v in norm.items()},
            "normalized_avg": {"mean": avg, "ci": [float(lo), float(hi)]},
            "iqm": iqm([x for v in norm.values() for x in v]),
            "budget": {"unit": unit, "value": runs[0].ledger.get("budget", {}).get("value"),
                       "spent": float(np.mean(spent)), "images": float(np.mean(images)),
                       "teacher_phase": runs[0].spent("teacher")},
            "finished": all(r.finished for r in runs),
        }
    ranks = ci_ranks({k: tuple(v["normalized_avg"]["ci"]) for k, v in rows.items()})
    for k in rows:
        rows[k]["rank"] = ranks[k]
    return rows


def improvement_matrix(rows: Dict[str, dict]) -> Dict[str, Dict[str, Optional[float]]]:
    """P(X > Y) between methods: per task over seeds (Mann-Whitney), averaged over the common tasks."""
    out = {}
    for a, ra in rows.items():
        out[a] = {}
        for b, rb in rows.items():
            common = [t for t in ra["normalized"] if t in rb["normalized"]]
            if a == b or not common:
                out[a][b] = None
                continue
            out[a][b] = float(np.mean([probability_of_improvement(ra["normalized"][t], rb["normalized"][t]) for t in common]))
    return out


# ----------------------------------------------------------------------------------------------- samples


def sample_grid(runs_by_label: Dict[str, RunInfo], base_ckpt, teacher_ckpts: Dict[str, str], tasks: Sequence[str],
                cfg, n_prompts: int, out_dir: Path) -> Optional[dict]:
    """One PNG per task, ``samples_<task>.png``: rows = models (base, each method's final checkpoint, teachers),
    columns = the task's first ``n_prompts`` eval prompts; every model is sampled from the same per-prompt noise
    (``prompt_noise``) with the runs' eval protocol, so the cells of a column differ only by the model. Split per
    task so that each figure fits the page with legible labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from .backbones import load_backbone
    from .evaluate import generate, prompt_noise, select_records
    from .tasks import get_task
    from .train import protocol_of

    protocol = protocol_of(cfg)
    models = [(lab, ck) for lab, ck in [("base", base_ckpt)]
              + [(f"{lab} (seed {r.seed})", r.final_checkpoint) for lab, r in runs_by_label.items()]
              + [(f"teacher {', '.join(ts)}", c) for c, ts in _by_value(teacher_ckpts).items()] if ck is not None]
    cols = {t: select_records(get_task(t).prompts(protocol.split), protocol.prompts_per_task)[:n_prompts] for t in tasks}
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


def _flatten(d: dict, prefix: str = "") -> Dict[str, object]:
    out: Dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(runs: Sequence[RunInfo], ignore: Sequence[str] = ("name", "seed")) -> Dict[str, Dict[str, object]]:
    """The resolved-config settings (dotted keys) whose values differ between runs, {key: {run path: value}};
    ``ignore``d keys (the run's name and seed) are left out."""
    flat = {str(r.path): _flatten(to_dict(r.cfg)) for r in runs}
    keys = sorted({k for f in flat.values() for k in f} - set(ignore))
    return {k: {p: f.get(k) for p, f in flat.items()} for k in keys
            if len({repr(f.get(k)) for f in flat.values()}) > 1}


def _by_value(d: Dict[str, str]) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for k, v in d.items():
        out.setdefault(v, []).append(k)
    return out


# ----------------------------------------------------------------------------------------------- the report


def _conflict_cells(c: Optional[dict]) -> List[str]:
    """Report cells of :func:`~opd_bench.analysis.interference.conflict_over_batches` (absent in old results)."""
    if not c:
        return ["–", "–", "–"]
    v = c["pair_verdicts"]
    pairs = [v[i][j] for i in range(len(v)) for j in range(i + 1, len(v))]
    counts = " / ".join(str(pairs.count(k)) for k in ("conflict", "aligned", "indistinguishable from 0"))
    return [_fmt(c["resolved_conflict_rate"]), counts, _fmt(c["same_task_cosine"])]


def _vdeb_cell(r: dict) -> str:
    if "V_debiased" not in r:
        return "–"
    v, lo, hi = (var._f(r.get(k)) for k in ("V_debiased", "V_debiased_low", "V_debiased_high"))
    return f"{_fmt(v, 4)} [{_fmt(lo, 4)}, {_fmt(hi, 4)}]"


def _fmt(x, nd=3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"
    s = f"{x:.{nd}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s  # no "-0.000"


def seeds_cell(seeds: Sequence[int]) -> str:
    """The number of seeds, then which: '1 (seed 0)', '3 (seeds 0, 1, 2)' -- the same cell in every table."""
    seeds = list(seeds)
    return f"{len(seeds)} (seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))})"


def _ci(d) -> str:
    return f"{_fmt(d['mean'])} [{_fmt(d['ci'][0])}, {_fmt(d['ci'][1])}]"


def find_variance_files(runs: Sequence[RunInfo]) -> List[Path]:
    out = []
    for r in runs:
        for cand in (r.path / "variance" / "variance.json", r.path / "variance.json"):
            if cand.is_file():
                out.append(cand)
                break
    return out


def build_report(paths: Optional[Sequence[Path]] = None, out: Optional[Path] = None, name: Optional[str] = None,
                 variance: Sequence[Path] = (), interference: bool = True, samples: int = 3,
                 teacher_scores: Optional[Dict[str, float]] = None, runs_root: Path = Path("runs"),
                 progress=None) -> Path:
    """Render the report; returns the HTML path. ``progress(msg)`` is called before each slow step."""
    say = progress or (lambda msg: None)
    run_paths = expand_runs(paths, runs_root)
    runs = [load_run(p) for p in run_paths]
    label_runs(runs)
    name = name or default_name(run_paths)
    out = Path(out) if out is not None else default_out(name, runs_root)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    doc = Doc(out, f"opd-bench report: {name}")
    data: dict = {"name": name, "runs": [str(r.path) for r in runs],
                  "run_configs": {str(r.path): to_dict(r.cfg) for r in runs}}
    groups = group_runs(runs)
    tasks = list(dict.fromkeys(t for r in runs for t in r.tasks))
    doc.p(f"{len(runs)} run(s): " + ", ".join(f"{r.label} seed {r.seed} ({r.path})" for r in runs)
          + ". Scores are normalised per task as n = (score − base) / (teacher − base) where the teacher's score is"
            f" known and beats the base by at least {MIN_TEACHER_GAP}, else raw (method.md §7).", note=True)
    diffs = config_differences(runs)
    data["config_differences"] = diffs
    if len(runs) > 1:
        if diffs:
            cols = [str(r.path) for r in runs]
            doc.table(["setting"] + [f"{r.label} s{r.seed}" for r in runs],
                      [[k] + [str(diffs[k][c]) for c in cols] for k in diffs])
        doc.p("Every run's full resolved config is in report.json (run_configs) and its own config.yaml; "
              + ("the table lists the settings that differ between runs (besides name and seed)." if diffs else
                 "the runs differ only in name and seed."), note=True)

    say("reference scores (base, teachers)")
    base, teachers = reference_scores(runs, teacher_scores)
    bm, tm = _means(base), _means(teachers)
    data["base"], data["teachers"] = base, teachers

    # ---- final comparison -------------------------------------------------------------------------------
    doc.h2(SECTIONS[0])
    rows = final_table(groups, base, teachers)
    data["final_table"] = rows
    headers = ["model", "rank"] + tasks + ["normalised avg", "IQM", "budget spent (train)", "seeds"]
    doc.sign("every score is higher = better. Normalised average: 0 = the base, 1 = the single-task teachers; "
             "above 1 beats the teachers, below 0 is worse than the base. Rank 1 is best.")
    trows = [["base", "", *[_ci(base[t]) if t in base else "–" for t in tasks],
              "0 (by definition)" if teachers else "–", "", "", ""],
             ["teachers (single-task)", "", *[_ci(teachers[t]) if t in teachers else "–" for t in tasks],
              "1 (by definition)" if teachers else "–", "", "", ""]]
    for lab, r in sorted(rows.items(), key=lambda kv: (kv[1]["rank"], -kv[1]["normalized_avg"]["mean"])):
        b = r["budget"]
        spent = f"{b['spent']:.4g} {b['unit']}" + (f" ({b['images']:.4g} images)" if b["unit"] != "images" else "")
        trows.append([lab + ("" if r["finished"] else " (in progress)"), str(r["rank"]),
                      *[_ci(r["tasks"][t]) if t in r["tasks"] else "–" for t in tasks],
                      _ci(r["normalized_avg"]), _fmt(r["iqm"]), spent, seeds_cell(r["seeds"])])
    doc.table(headers, trows)
    doc.p("Cells: mean [95% CI]. Per task the CI is over seeds when there are at least two, else the eval's "
          "bootstrap over prompts. The normalised average's CI is a stratified bootstrap over seeds within tasks "
          "(one seed: a normal approximation from the per-task CIs). Ranks separate two methods only where their "
          "CIs of the normalised average do not overlap (else they tie). Teachers: "
          + (", ".join(f"{t} = {v['source']}" for t, v in teachers.items()) or
             "none found (scores are raw; train teachers or release teacher_<task>)") + ".", note=True)

    # ---- curves and forgetting ----------------------------------------------------------------------------
    doc.h2(SECTIONS[1])
    curves = {f"{r.label} s{r.seed}": fg.curves(r) for r in runs}
    fg.plot_curves(curves, bm, tm, out / "curves.png")
    n_evals = min((len(c["x"]) for c in curves.values()), default=0)
    doc.image(out / "curves.png", "Top: eval score per task over the training budget spent (one point per eval; "
                                  "grey dashed = base, black solid = single-task teacher; dotted verticals = cascade "
                                  "stage ends). Bottom: the training signal logged every round (faint: raw; bold: "
                                  "moving average)")
    if n_evals <= 2:
        doc.p(f"Some runs have only {n_evals} eval points (the start and final evals): for a denser eval curve "
              "run with --set eval.every=N (an eval every N rounds; evals do not change the training).", note=True)
    forg = [fg.run_forgetting(r, bm, tm) for r in runs]
    data["forgetting"] = forg
    doc.sign("F > 0 is forgetting: the final score is below the run's best earlier checkpoint by F (normalised "
             "units). F < 0 means the final checkpoint is the run's best on that task: it improved by |F| over "
             "every earlier one. BWT < 0 is forgetting of the earlier cascade stages' tasks, BWT > 0 improvement.")
    doc.table(["run", "checkpoints"] + [f"F {t}" for t in tasks] + ["BWT"],
              [[f"{f['label']} s{f['seed']}", str(len(f["rows"])),
                *[_fmt(f["forgetting"].get(t)) for t in tasks], _fmt(f["bwt"])] for f in forg])
    doc.p(fg.FORGETTING_DEFINITION + " Normalised scores; checkpoints: every eval of the run (cascade: the end of "
          "each stage, tasks in stage order; BWT for cascade only).", note=True)
    for f in forg:
        if f["label"].startswith("cascade"):
            doc.h3(f"score matrix R (normalised): {f['label']} seed {f['seed']}")
            doc.table(["checkpoint"] + f["tasks"], [[lab] + [_fmt(v) for v in row] for lab, row in
                                                    zip(f["rows"], f["R_normalized"])])

    # ---- interference -------------------------------------------------------------------------------------
    doc.h2(SECTIONS[2])
    inter: Dict[str, dict] = {}
    notes = []
    if interference:
        for lab, rs in groups.items():
            r = rs[0]
            if r.method == "grpo" or len(r.tasks) < 2:
                continue
            if r.final_checkpoint is None and r.state_checkpoint is None:
                notes.append(f"{lab}: no checkpoint yet")
                continue
            say(f"interference of {lab} (seed {r.seed})")
            try:
                inter[lab] = itf.run_interference(r.path, r.cfg.device,
                                                  which="final" if r.final_checkpoint is not None else "state")
            except UserError as e:
                notes.append(f"{lab}: {e}")
    data["interference"] = inter
    if inter:
        itf.plot_matrices(inter, out / "interference.png")
        doc.image(out / "interference.png", "Per-task gradient cosines C_ij and one-step lookahead affinity "
                                            "Z_{j→i} at each method's final checkpoint (seed shown in the table)")
        doc.sign("C_ij < 0: the gradients of tasks i and j conflict (a step for one hurts the other), C_ij > 0: "
                 "they agree. Z_{j→i} > 0: a step on task j raises task i's objective, < 0 lowers it. Conflict "
                 "rate: lower is better; magnitude imbalance = largest / smallest gradient norm (1 = balanced).")
        doc.table(["method", "objective", "conflict rate (1 batch)", "resolved conflicts (8 batches)",
                   "pairs: conflict / aligned / indistinguishable", "same-task cosine (noise floor)",
                   "magnitude imbalance", "‖g‖ per task"],
                  [[lab, v["objective"], _fmt(v["conflict_rate"]), *_conflict_cells(v.get("conflict_over_batches")),
                    _fmt(v["magnitude_imbalance"], 2),
                    ", ".join(f"{t}: {n:.3g}" for t, n in v["grad_norms"].items())] for lab, v in inter.items()])
        doc.p("Gradients of each method's own loss per task (DiffusionOPD's closed-form loss; GRPO's loss for "
              "multi-reward and cascade RL) on fixed fresh batches. Conflict rate = share of task pairs with C_ij < 0 "
              "on one batch. Resolved conflicts: pairs whose cosine between the tasks' mean gradients over 8 fresh "
              "batches has a 95% interval (bias-corrected jackknife over batches) below 0; a pair whose interval "
              "covers 0 is indistinguishable from 0. The same-task cosine between two batches of one task is what "
              "gradient noise alone gives. "
              "Affinity: " + "; ".join(sorted({v['affinity_definition'] for v in inter.values()})) + ".", note=True)
    else:
        doc.p("No multi-task run with a checkpoint" + (" (interference disabled by --no-interference)"
                                                       if not interference else "") + ".", note=True)
    for n in notes:
        doc.p(n, note=True)
    doc.h3("negative transfer vs the single-task teachers")
    neg = {lab: itf.negative_transfer({t: d["mean"] for t, d in r["tasks"].items()}, tm) for lab, r in rows.items()}
    data["negative_transfer"] = neg
    if tm:
        doc.sign("method score − teacher score: negative = worse than the single-task teacher (negative "
                 "transfer), positive = better than it.")
        doc.table(["method"] + tasks, [[lab] + [_fmt(v.get(t)) for t in tasks] for lab, v in neg.items()])
        doc.p("Per task: method final score − teacher score (same eval protocol); negative = worse than the "
              "single-task teacher.", note=True)
    else:
        doc.p("No teacher scores: negative transfer needs the single-task teachers.", note=True)

    # ---- variance -----------------------------------------------------------------------------------------
    doc.h2(SECTIONS[3])
    vfiles = list(variance) + [p for p in find_variance_files(runs) if p not in list(variance)]
    data["variance"] = {}
    if vfiles:
        for i, vf in enumerate(vfiles):
            v = var.load_variance(vf)
            data["variance"][str(vf)] = v
            prefix = f"variance{i}"
            var.plot_variance(v, out, prefix=prefix)
            doc.h3(f"{vf} (K = {v['k']} mini-batches)")
            n = v["batch_sizes"][-1]
            doc.sign(f"V = mean_k ‖g_k − ḡ‖² / ‖ḡ‖² over K = {v['k']} mini-batch gradients: lower is a less noisy "
                     f"gradient estimate; V near K − 1 = {v['k'] - 1} means the mean gradient is noise. SNR = 1 / V: "
                     "higher is better.")
            doc.p("V_debiased = S / (‖ḡ‖² − S/K) with S the unbiased per-batch variance: it removes the noise in "
                  "‖ḡ‖² that caps V at K − 1, with a 95% leave-one-block-out jackknife interval; ∞ = the mean "
                  "gradient is not distinguishable from 0 at this K.", note=True)
            doc.table(["task", "estimator", f"V ({n} samples)", "V_debiased [95% CI]", "SNR", "V by batch size"],
                      [[t, e, _fmt(var._f(r[e]["V"]), 4), _vdeb_cell(r[e]), _fmt(var._f(r[e]["SNR"]), 4),
                        ", ".join(f"{b}: {var._f(x['V']):.3g}" for b, x in r[e]["by_batch_size"].items())]
                       for t, r in v["results"].items() for e in v["estimators"] if e in r])
            for kind, cap in (("overall", "relative variance per estimator"), ("per_step", "per trained timestep"),
                              ("batch", "against the batch size")):
                doc.image(out / f"{prefix}_{kind}.png", f"Gradient variance: {cap}")
    else:
        doc.p("No variance results found (variance/variance.json in the run folders, or --variance). Produce them "
              "with: opd-bench analyze variance --checkpoint <run folder> [--tasks ...] [--k 16]; they are written "
              "to <run folder>/variance/ and picked up by the next report.", note=True)

    # ---- reward hacking -----------------------------------------------------------------------------------
    doc.h2(SECTIONS[4])
    series = {}
    for r in runs:
        s = hk.run_series(r)
        if s:
            series[f"{r.label} s{r.seed}"] = s
    data["hacking"] = {k: {"series": s, "summary": hk.hacking_summary(s)} for k, s in series.items()}
    if series:
        hk.plot_hacking(series, runs[0].unit, out / "hacking.png")
        doc.image(out / "hacking.png", "Learned proxy reward (left) vs hidden gold score (right) over training "
                                       "(Gao et al. 2022)")
        doc.sign("gains are final − start (positive = rose). Reward hacking shows as a proxy gain with a smaller or "
                 "negative gold gain, or a positive gold drop from peak (the gold score fell after its best).")
        doc.table(["run", "task", "proxy gain", "gold gain", "gold drop from peak"],
                  [[k, t, _fmt(v["proxy_gain"]), _fmt(v["gold_gain"]), _fmt(v["gold_drop_from_peak"])]
                   for k, d in data["hacking"].items() for t, v in d["summary"].items()])
    else:
        doc.p("No task with a learned proxy reward and a gold score (aesthetic, preference) in these runs.", note=True)

    # ---- statistics ---------------------------------------------------------------------------------------
    doc.h2(SECTIONS[5])
    poi = improvement_matrix(rows)
    data["probability_of_improvement"] = poi
    labs = list(rows)
    doc.sign("normalised scores: 0 = base, 1 = teacher, higher = better. P(row > column) above 0.5 means the row's "
             "method tends to beat the column's.")
    doc.table(["method", "seeds", "normalised avg [95% CI]", "IQM (seeds × tasks)"],
              [[lab, seeds_cell(rows[lab]["seeds"]), _ci(rows[lab]["normalized_avg"]), _fmt(rows[lab]["iqm"])]
               for lab in labs])
    if len(labs) > 1:
        doc.h3("probability of improvement P(row > column)")
        doc.table(["method"] + labs, [[a] + [_fmt(poi[a][b]) for b in labs] for a in labs])
    doc.p("IQM = mean of the middle 50% of the normalised scores over seeds × tasks; probability of improvement "
          "= P(X > Y) + ½ P(X = Y) over seed pairs, averaged over the common tasks (Agarwal et al. 2021). "
          "method.md asks for ≥ 3 seeds.", note=True)

    # ---- samples ------------------------------------------------------------------------------------------
    doc.h2(SECTIONS[6])
    grid = None
    if samples > 0:
        say("sample grid")
        first = {lab: rs[0] for lab, rs in groups.items() if rs[0].final_checkpoint is not None}
        tck = {}
        for t in tasks:
            if t in teachers and teachers[t]["source"] != "given":
                tck[t] = teachers[t]["source"]
        grid = sample_grid(first, runs[0].cfg.model.checkpoint, tck, tasks, runs[0].cfg, samples, out)
    data["samples"] = grid
    if grid:
        for t in grid["files"]:
            doc.h3(f"samples: {t}")
            doc.image(out / grid["files"][t], f"{t}: samples per model (rows) for its first eval prompts (columns), "
                                              "every model from the same initial noise per prompt")
    else:
        doc.p("No samples (no final checkpoints, or --samples 0).", note=True)

    atomic_write_json(out / "report.json", _jsonable(data))
    atomic_write_text(out / "report.md", doc.render_md())
    page = out / "report.html"
    atomic_write_text(page, doc.render_html())
    return page


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return _jsonable(x.item())
    return x
