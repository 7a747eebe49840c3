"""The ``opd-bench`` command line (typer + rich).

Bad input of any kind -- an unknown method or task, a bad config value, a missing or corrupted checkpoint,
an empty prompt file -- prints ONE line on stderr and exits with code 2. Never a traceback.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # the prompt files load in ms: no bars for them

import typer

try:  # typer >= 0.20 vendors click as typer._click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc

from . import validate
from .config import BudgetConfig, parse_budget  # noqa: F401  (parse_budget: the --budget option)
from .errors import RunStopped, UserError
from .ledger import UNITS
from .methods import check_method, method_names
from .validate import MAX_SEED
from .world.build.commands import world_app

app = typer.Typer(
    name="opd-bench",
    help="Multi-task RL for text-to-image diffusion: DiffusionOPD vs multi-reward and cascade RL on identical "
    "budgets, with forgetting, interference and gradient-variance reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
analyze_app = typer.Typer(help="Stand-alone analyses (gradient variance, interference).", no_args_is_help=True)
app.add_typer(world_app, name="world")
app.add_typer(analyze_app, name="analyze")


def not_available(what: str, issue: str) -> None:
    raise UserError(f"{what} is not available yet in this version of opd-bench ({issue}); nothing was run")


# ----------------------------------------------------------------------------------------------- parsing


def parse_methods(spec: str) -> List[str]:
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise UserError("--method: give one of " + ", ".join(method_names()))
    return list(dict.fromkeys(check_method(m) for m in items))


# ----------------------------------------------------------------------------------------------- run config

#: the options every command shares to work under a run config (``opd_bench.session.command_config``)
CONFIG_HELP = "YAML config (path or name under configs/): real tasks' paths, the backbone's settings"
SET_HELP = "Dotted config override, repeatable: --set train.lr=1e-4"
DEVICE_HELP = "Device (overrides the config's `device`), e.g. cuda or cpu"


def config_option(*short: str):
    return typer.Option(None, "--config", *short, help=CONFIG_HELP)


def set_option():
    return typer.Option([], "--set", help=SET_HELP)


def device_option():
    return typer.Option(None, "--device", help=DEVICE_HELP)


def _refuse_existing_runs(methods, tasks: str, seeds: int, first_seed: int, name: Optional[str], runs_dir: Path):
    """The existing-run-folder refusal of ``train.run_many``, answered before the heavy imports where the
    folder names are known without loading the task registry (``--name`` given, or ``--tasks all``)."""
    if not name and tasks != "all":
        return
    folder = Path(runs_dir) / (name or f"{'-'.join(methods)}_all")
    several = len(methods) * seeds > 1
    dirs = [folder / f"{m}_s{s}" for m in methods for s in range(first_seed, first_seed + seeds)] if several else [folder]
    from .runlock import check_new_run_folder

    for d in dirs:
        check_new_run_folder(d)


def _finite(value):
    """typer callback: a float option must be finite (no nan / inf)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number (got {value})")
    return value


# ----------------------------------------------------------------------------------------------- commands


@app.command()
def run(
    method: str = typer.Option("opd", "--method", "-m", help="Method(s), comma-separated: " + ", ".join(method_names())),
    tasks: str = typer.Option("all", "--tasks", "-t", help="'all' or a comma list of tasks, e.g. ocr,geneval"),
    budget: Optional[str] = typer.Option(None, "--budget", help="VALUE:UNIT, unit in " + ", ".join(UNITS)),
    seeds: int = typer.Option(1, "--seeds", min=1, max=1000, help="Number of seeds per method (--first-seed .. +N-1)"),
    first_seed: int = typer.Option(0, "--first-seed", min=0, max=MAX_SEED,
                                   help="First seed (e.g. to add seeds to a comparison)"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, max=256, help="Run the (method, seed) runs in N parallel processes, "
                             "each with cpu_count/N threads; each run's output goes to <run dir>.log"),
    config: Optional[str] = config_option("-c"),
    set_: List[str] = set_option(),
    device: Optional[str] = device_option(),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted run folder"),
    train_teachers: bool = typer.Option(False, "--train-teachers", help="Retrain the GRPO teachers first"),
    name: Optional[str] = typer.Option(None, "--name", help="Run name (folder under runs/)"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where run folders are created"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Resolve methods, tasks, recipes, budget and teachers, "
                                 "print the plan and the resolved config, and exit without training"),
    no_recipe: bool = typer.Option(False, "--no-recipe", help="Ignore configs/recipes/<method>.yaml (the recipe "
                                   "`opd-bench sweep` chose; otherwise layered under --config)"),
):
    """Train a method (or several) on the selected tasks with an identical budget, then print a per-task table
    next to the base model and the teachers. Runs land in runs/<name>/ (config, ledger, metrics, evals)."""
    if resume is not None:
        from .runlock import check_resumable

        check_resumable(resume)   # before the heavy imports: a refused resume answers at once
        validate.output_dir(resume, "--resume")
        from .train import resume_run

        resume_run(resume)
        return
    methods = parse_methods(method)
    b = parse_budget(budget)
    if name is not None:
        validate.run_name(name)
    validate.seed(first_seed + seeds - 1, "--first-seed + --seeds - 1")
    overrides = list(set_) + ([f"device={device}"] if device else [])
    validate.run_overrides(overrides)   # the arguments first, then the folders
    _refuse_existing_runs(methods, tasks, seeds, first_seed, name, runs_dir)
    from .train import run_many

    if dry_run:
        from .plan import describe
        from .train import build_configs, run_dir_for

        cfgs = build_configs(methods, tasks, seeds, config, overrides, name, first_seed, b, not no_recipe)
        typer.echo(describe(cfgs, [run_dir_for(runs_dir, c, len(cfgs) > 1) for c in cfgs], config, train_teachers,
                            not no_recipe))
        return
    run_many(methods, tasks, seeds, config, overrides, name, runs_dir, train_teachers, first_seed, jobs, b, not no_recipe)


@app.command()
def sweep(
    method: str = typer.Option(..., "--method", "-m", help="Method(s) to tune, comma-separated: " + ", ".join(method_names())),
    grid: Path = typer.Option(..., "--grid", help="Sweep file: trials, per-trial budget, seed, grid (opd_bench/sweep.py)"),
    tasks: str = typer.Option("all", "--tasks", "-t", help="'all' or a comma list of tasks"),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="Base YAML config the trials override"),
    set_: List[str] = typer.Option([], "--set", help="Dotted override applied to every trial, repeatable"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Trial runs land in <runs-dir>/sweep_<method>/"),
    recipes_dir: Optional[Path] = typer.Option(None, "--recipes-dir", help="Where <method>.yaml is written "
                                               "(default configs/recipes)"),
    recipe_name: Optional[str] = typer.Option(None, "--recipe-name", help="Name of the recipe (one method), e.g. "
                                              "mt-nft for --method multi-reward --set grpo.objective=nft"),
):
    """Equal tuning: run the declared grid's trials for each method (same number of trials, same per-trial
    budget), select on the val split, write the chosen recipe with the sweep table to configs/recipes/."""
    from .plan import RECIPES_DIR
    from .sweep import load_spec, run_sweep

    methods = parse_methods(method)
    if recipe_name is not None and (len(methods) != 1 or not recipe_name.replace("-", "").replace("_", "").isalnum()):
        raise UserError("--recipe-name: give one --method and a plain name such as mt-nft")
    for m in methods:
        res = run_sweep(m, tasks, load_spec(grid, recipe_name or m), config, list(set_), runs_dir,
                        recipes_dir or RECIPES_DIR, recipe_name=recipe_name)
        best = next(r for r in res["table"] if r["chosen"])
        typer.echo(f"{m}: chose trial {best['trial']} {best['params']} (mean {best['mean']:.4f} on "
                   f"{res['split']}) -> {res['recipe']}")


@app.command()
def claims(
    spec: Path = typer.Option(Path("configs/claims.yaml"), "--spec", help="Campaign file: the runs behind the claims"),
    runs_dir: Path = typer.Option(Path("runs/claims"), "--runs-dir", help="Where the campaign's runs live"),
    out: Path = typer.Option(Path("runs/claims/report"), "--out", help="Where claims.json, report.md/html go"),
    train: bool = typer.Option(False, "--run", help="Train the missing runs first (finished ones are read back, "
                               "interrupted ones resumed: rerun the same command to continue)"),
    analyses: bool = typer.Option(True, "--analyses/--no-analyses", help="Measure interference and gradient "
                                  "variance at the finished runs' final checkpoints (cached in each run folder)"),
    variance_batches: int = typer.Option(16, "--variance-batches", min=2, max=1024,
                                         help="Mini-batches K of the gradient-variance measurement"),
    variance_batch_size: int = typer.Option(8, "--variance-batch-size", min=1, max=1024,
                                            help="Samples per mini-batch of the gradient-variance measurement"),
    protocol_name: str = typer.Option("full", "--protocol", help="Final scores of every model: full (every test "
                                      "prompt at several seeds, docs/evaluation.md) or run (each run's own final "
                                      "evaluation, the base and teachers under the same protocol)"),
    status_only: bool = typer.Option(False, "--status", help="Only print which runs are done, partial, missing"),
    sweeps_dir: Path = typer.Option(Path("runs/sweeps"), "--sweeps-dir", help="Where the equal-tuning sweeps of the "
                                    "groups' recipes ran (their trials' CPU hours count in the report's total)"),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: with --run, train and score only every N-th "
                                        "run and reference from the I-th (N processes side by side, e.g. 0/2 and "
                                        "1/2 with OMP_NUM_THREADS=1 each); no report. Then run without --shard"),
    superseded_dir: Path = typer.Option(Path("experiments/claims_campaign/superseded"), "--superseded-dir",
                                        help="Where runs superseded by a recipe change are kept "
                                        "(<reason>/<group>/s<seed>/): their CPU hours count in the total"),
    start_before: Optional[str] = typer.Option(None, "--start-before", help="HH:MM (today) or an ISO "
                                               "date-time: with --run, start no run, scoring or report from then "
                                               "on; the run in progress finishes (rerun to continue)"),
):
    """The DiffusionOPD paper's claims re-tested: each confirmed, refuted or below resolution (opd_bench/claims.py)."""
    from . import claims as cl
    from .evaluate import EvalProtocol
    from .progress import console
    from .teachers import teacher_name

    if protocol_name not in ("full", "run"):
        raise UserError(f"--protocol: {protocol_name!r} is not one of full, run")
    part = cl.parse_shard(shard)
    deadline = cl.parse_start_before(start_before)
    if start_before is not None and not train:
        raise UserError("--start-before limits the training and scoring of --run: add --run")
    if shard is not None and not train:
        raise UserError("--shard splits the training and scoring of --run: add --run (the report is written by an "
                        "invocation without --shard)")
    camp = cl.load_campaign(spec)
    validate.output_dir(out, "--out")
    st = cl.status(camp, runs_dir)
    console.print(f"{len(st['done'])} runs done, {len(st['partial'])} partial, {len(st['missing'])} missing "
                  f"(of {len(camp.runs())})", markup=False, highlight=False)
    if status_only:
        return
    opd_group = next((g for g in camp.groups if g.label == "opd"), camp.groups[0])   # the subject of the claims
    cfg = cl.run_config(camp, opd_group, camp.first_seed)
    tasks = list(cfg.tasks)
    protocol = EvalProtocol.from_config(cfg)
    if protocol_name == "full":
        from .protocol import named

        protocol = named("full", protocol)
    if train:   # each run scored and analysed as soon as it is trained, while its weights exist
        analysis = (variance_batches, variance_batch_size) if analyses else None
        cl.run_campaign(camp, runs_dir, shard=part,
                        after=lambda g, d: cl.complete_run(g, d, tasks, protocol, analysis), start_before=deadline)
        st = cl.status(camp, runs_dir)
        if deadline is not None and time.time() >= deadline:
            mine = [cl.run_dir(runs_dir, g, s) for k, (g, s) in enumerate(camp.runs()) if cl.in_shard(k, part)]
            left = sum(not (d / cl.COMPLETE).is_file() for d in mine)
            console.print(f"--start-before {start_before} reached: {left} run(s){f' of shard {shard}' if shard else ''} "
                          "not complete, nothing more started; rerun the same command to continue", markup=False,
                          highlight=False)
            return
    teachers = {t: teacher_name(cfg, t) for t in tasks}
    base_ck = {t: cfg.model.checkpoint for t in tasks}
    if shard is not None:   # this process's share of the final scores, into the eval cache; no report
        n = cl.warm_evaluations(camp, runs_dir, {"base": base_ck, "teachers": teachers}, tasks, protocol, part,
                                (variance_batches, variance_batch_size) if analyses else None)
        console.print(f"shard {shard}: its runs trained, {n} evaluations under the {protocol_name} protocol in the "
                      "eval cache; write the report with the same command without --shard", markup=False,
                      highlight=False)
        return
    base = cl.reference_scores(base_ck, protocol)
    teacher = cl.reference_scores(teachers, protocol)
    extra = cl.analyses(camp, runs_dir, variance_batches, variance_batch_size) if analyses else {}
    ev = cl.collect(camp, runs_dir, teachers, base, teacher, extra, protocol if protocol_name == "full" else None)
    # the eval-seed split check: every verdict again on two halves of the cached evaluations' noise seeds
    halves = cl.seed_halves(camp, runs_dir, base_ck, teachers, protocol, extra) if protocol_name == "full" else None
    command = f"opd-bench claims --spec {spec} --runs-dir {runs_dir} --out {out} --run --protocol {protocol_name}"
    recipes = sorted({r.stem for r in map(cl.recipe_of, camp.groups) if r is not None})
    doc = cl.write_claims(ev, out, st, cl.cpu_hours(runs_dir, sweeps_dir, recipes, superseded_dir), command, halves)
    for row in cl.summary_table(doc):
        console.print(f"{row[1]:<18} {row[0]}", markup=False, highlight=False)
    console.print(f"wrote {out / 'report.html'}, {out / 'report.md'} and {out / 'claims.json'}", markup=False,
                  highlight=False)


@app.command("eval")
def eval_(
    checkpoint: str = typer.Option(..., "--checkpoint", help="Checkpoint folder or released name (e.g. base)"),
    tasks: str = typer.Option("all", "--tasks", "-t", help="'all' or a comma list of tasks"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder for eval.json and sample grids "
                                       "(default: evals/<checkpoint name>)"),
    protocol_name: str = typer.Option("full", "--protocol", help="Named protocol: full (every test prompt, several "
                                      "noise seeds per prompt: docs/evaluation.md) or quick (64 prompts x 1 seed)"),
    split: Optional[str] = typer.Option(None, "--split", help="Prompt split: test (final evaluations, the default) "
                                        "or val (selection)"),
    prompts: Optional[int] = typer.Option(None, "--prompts", min=0, max=1_000_000,
                                          help="Prompts per task (0 = every prompt of the split; default: the protocol's)"),
    seeds_per_prompt: Optional[int] = typer.Option(None, "--seeds-per-prompt", min=1, max=1000,
                                                   help="Noise seeds per prompt for every task (default: the protocol's)"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, max=1000, help="ODE sampling steps (default: the "
                                        "config's eval.steps, 40)"),
    guidance: Optional[float] = typer.Option(None, "--guidance", min=0.0, callback=_finite, help="CFG scale "
                                             "(default: the config's eval.guidance, 4.5)"),
    seed: int = typer.Option(1234, "--seed", min=0, max=MAX_SEED, help="Base seed of the per-prompt noises"),
    config: Optional[str] = config_option("-c"),
    set_: List[str] = set_option(),
    device: Optional[str] = device_option(),
):
    """Evaluate a checkpoint under a protocol (default full: the test split, several noise seeds per prompt; fixed
    per-prompt noises, ODE) and print a per-task table with 95% bootstrap CIs (GenEval per category, its held-out
    compositions on their own row); writes eval.json and a PNG grid per task."""
    from dataclasses import replace

    from .backbones import backbone_options, load_backbone, model_digest, resolve_checkpoint
    from .evaluate import EvalProtocol, evaluate, results_table
    from .progress import human_duration, print_table, say
    from .protocol import label as protocol_label, named
    from .session import command_config, resolve_tasks

    cfg = command_config(config, set_, device)
    task_list = resolve_tasks(tasks, cfg)
    path = resolve_checkpoint(checkpoint)
    steps = steps or cfg.eval.steps
    guidance = cfg.eval.guidance if guidance is None else guidance
    if split not in (None, "val", "test"):
        raise UserError(f"--split: must be val or test (got {split!r})")
    if protocol_name not in ("full", "quick"):
        raise UserError(f"--protocol: must be full or quick (got {protocol_name!r})")
    protocol = replace(named(protocol_name, EvalProtocol.from_config(cfg)), steps=steps, guidance=guidance, seed=seed)
    protocol = replace(protocol, split=split or protocol.split,
                       prompts_per_task=protocol.prompts_per_task if prompts is None else prompts,
                       seeds_per_prompt=protocol.seeds_per_prompt if seeds_per_prompt is None
                       else {t: seeds_per_prompt for t in task_list})
    out = validate.output_dir(out or Path("evals") / path.name, "--out")
    model = load_backbone(path)
    res = evaluate(model, task_list, protocol, out_dir=out, label=path.name,
                   checkpoint={"name": path.name, "sha256": model_digest(path, backbone_options(cfg.model))})
    print_table(results_table({path.name: res}, title=f"eval of {path.name} ({protocol_label(protocol)} protocol, "
                                                     f"{protocol.split} split, {steps}-step ODE, CFG {guidance})"))
    for name, t in res["timing"].items():
        say(f"eval {path.name} · {name}: sampling {human_duration(t['sample_s'])}, scoring "
            f"{human_duration(t['score_s'])} ({t['score_ms_per_image']} ms/image)")
    say("wrote " + ", ".join(str(f) for f in [out / "eval.json"] + [out / f"samples_{t}.png" for t in task_list]))


@app.command()
def compare(
    base: List[Path] = typer.Option(..., "--base", "-b", help="eval.json (or its folder) of the reference model; "
                                    "repeat with evaluations at other --seed values to average them"),
    candidate: List[Path] = typer.Option(..., "--candidate", "-c", help="eval.json (or folder) of the model "
                                         "compared with it (repeatable, as --base)"),
    tasks: Optional[str] = typer.Option(None, "--tasks", "-t", help="Comma list (default: every shared task)"),
    margin: float = typer.Option(0.05, "--margin", min=0.0, callback=_finite, help="Smallest difference called 'better'"),
    bootstrap: int = typer.Option(2000, "--bootstrap", min=100, max=1_000_000, help="Bootstrap resamples"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write compare.json and compare.md into this folder"),
    config: Optional[str] = config_option(),
    set_: List[str] = set_option(),
    device: Optional[str] = device_option(),
):
    """Paired, per-prompt comparison of two models' evaluations (same prompts and noises): the mean difference
    with a 95% bootstrap CI (stratified by GenEval category) and a verdict: better, worse, no clear difference."""
    from rich.console import Console

    from .checkpoint import atomic_write_json, atomic_write_text
    from .compare import compare as run_compare
    from .compare import comparison_markdown, comparison_table
    from .session import command_config, resolve_tasks

    cfg = command_config(config, set_, device)
    task_list = resolve_tasks(tasks, cfg) if tasks else None
    if out is not None:
        validate.output_dir(out, "--out")
    res = run_compare(base, candidate, task_list, margin=margin, n_boot=bootstrap)
    from .progress import print_table

    con = Console()
    print_table(comparison_table(res))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "compare.json", res)
        atomic_write_text(out / "compare.md", comparison_markdown(res))
        con.print(f"wrote {out / 'compare.json'} and {out / 'compare.md'}")


@app.command()
def report(
    runs: List[Path] = typer.Argument(None, help="Run folders, or folders of runs (default: every run under runs/)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default runs/<name>/report)"),
    name: Optional[str] = typer.Option(None, "--name", help="Report name (default: the runs' folder name)"),
    variance: List[Path] = typer.Option([], "--variance", help="variance.json from `opd-bench analyze variance` "
                                        "(repeatable; run folders' variance/variance.json are found automatically)"),
    interference: bool = typer.Option(True, "--interference/--no-interference",
                                      help="Compute gradient conflict and lookahead affinity at the final checkpoints"),
    samples: int = typer.Option(3, "--samples", min=0, max=64, help="Eval prompts per task in the sample grid (0 = none)"),
    protocol_name: str = typer.Option("full", "--protocol", help="Final scores: full (every run's final checkpoint, "
                                      "the base and the teachers re-scored on every test prompt at several seeds, "
                                      "through the eval cache) or run (the runs' own final evaluations)"),
    config: Optional[str] = config_option("-c"),
    set_: List[str] = set_option(),
    device: Optional[str] = device_option(),
):
    """Render the forgetting / interference / gradient-variance report (HTML + Markdown) for runs."""
    from .progress import console, progress_bar, step_reporter
    from .report import build_report
    from .session import command_config

    if protocol_name not in ("full", "run"):
        raise UserError(f"--protocol: {protocol_name!r} is not one of full, run")
    if config or set_ or device:   # each run folder's own config applies otherwise (real tasks, base model)
        command_config(config, set_, device)
    for v in variance:
        validate.input_file(v, "--variance")
    if name is not None:
        validate.run_name(name, "--name")
    if out is None:
        from .report import default_name, default_out, expand_runs

        out = default_out(name or default_name(expand_runs(runs or None)))
    validate.output_dir(out, "--out")
    with progress_bar(True) as bar:
        page = build_report(runs or None, out=out, name=name, variance=variance, interference=interference,
                            samples=samples, progress=step_reporter(bar, "report", unit="steps"),
                            protocol=protocol_name)
    console.print(f"wrote {page}, {page.with_suffix('.md')} and {page.with_name('report.json')} (PNG files beside "
                  "them)", markup=False, highlight=False)


@app.command()
def check(
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="Checkpoint folder or released name"),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="Baseline JSON under baselines/"),
    record: bool = typer.Option(False, "--record", help="Write the baseline file from the checkpoint instead"),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Restrict to these tasks (default: every task of "
                                        "the baseline; with --record: all)"),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write a JUnit XML report here"),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write a Markdown summary here "
                                            "(append it to $GITHUB_STEP_SUMMARY in CI)"),
    prompts: Optional[int] = typer.Option(None, "--prompts", min=1, max=1_000_000, help="With --record: prompts per task "
                                          "(default 48)"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, max=1000, help="With --record: ODE steps (default 12)"),
    margin: Optional[float] = typer.Option(None, "--margin", min=0.0, callback=_finite, help="With --record: per-task margin "
                                           "written to the baseline (default 0.02)"),
    config: Optional[str] = config_option("-c"),
    set_: List[str] = set_option(),
    device: Optional[str] = device_option(),
    allow_other_checkpoint: bool = typer.Option(False, "--allow-other-checkpoint",
                                                help="Check against a baseline recorded from a different checkpoint "
                                                     "(its sha256 differs); refused (exit 2) otherwise"),
):
    """CI regression gate: exit 0 = pass, 1 = regression beyond noise, 2 = bad input.

    Re-evaluates the checkpoint with the baseline's recorded protocol (same prompts, per-prompt seeds, steps,
    CFG, shift) and fails when the paired bootstrap 95% CI of a metric's mean difference (new - old) lies
    entirely below -margin. With --record, writes the baseline file instead."""
    from rich.console import Console
    from rich.markup import escape

    from . import check as gate
    from .session import command_config, resolve_tasks

    out = Console(width=max(150, Console().width))
    cfg = command_config(config, set_, device)

    if baseline is None:
        raise UserError("--baseline is required (e.g. --baseline baselines/base.json)")
    if not record and not baseline.is_file():
        raise UserError(f"--baseline: file not found: {baseline}")
    if checkpoint is None:
        raise UserError("--checkpoint is required (a checkpoint folder or a released name such as base)")
    if record:
        if junit is not None or markdown is not None:
            raise UserError("--junit and --markdown apply to a check, not to --record")
        if allow_other_checkpoint:
            raise UserError("--allow-other-checkpoint applies to a check, not to --record")
        validate.output_file(baseline, "--baseline")
        doc = gate.record_baseline(
            checkpoint, baseline, ",".join(resolve_tasks(tasks, cfg)) if config else (tasks or "all"),
            prompts=prompts or gate.DEFAULT_PROMPTS, steps=steps or gate.DEFAULT_STEPS,
            margin=gate.DEFAULT_MARGIN if margin is None else margin,
            config_args=([f"--config={config}"] if config else []) + [f"--set={x}" for x in set_]
            + ([f"--device={device}"] if device else []),
        )
        for name, t in doc["tasks"].items():
            s = t["summary"]
            out.print(f"{name}: {s['mean']:.4f} [{s['ci_low']:.4f}, {s['ci_high']:.4f}] over {s['n']} prompts")
        out.print(f"wrote {baseline} ({doc['command']})")
        return
    given = [f for f, v in (("--prompts", prompts), ("--steps", steps), ("--margin", margin)) if v is not None]
    if given:
        raise UserError(f"{given[0]} only applies with --record (a check uses the baseline's recorded protocol)")
    for opt, f in (("--junit", junit), ("--markdown", markdown)):
        if f is not None:
            validate.output_file(f, opt)
    report = gate.run_check(checkpoint, baseline, tasks, allow_other_checkpoint=allow_other_checkpoint)
    out.print(gate.comparison_table(report))
    for note in report.notes:
        out.print(f"note: {note}")
    same = [t for t, ok in report.per_prompt_identical.items() if ok]
    if same:
        out.print(f"per-prompt scores identical to the baseline: {', '.join(same)}")
    if junit is not None:
        gate.write_junit(report, junit)
    if markdown is not None:
        gate.write_markdown(report, markdown)
    for row in report.failures:
        out.print("[bold red]REGRESSION[/] " + escape(row.describe()))
    if not report.passed:
        raise typer.Exit(1)
    out.print(f"[green]check passed[/]: {report.checkpoint} against {baseline}")


@world_app.command("release")
def world_release(
    run_dir: Path = typer.Argument(..., help="A finished run folder (its final/ checkpoint is released)"),
    name: str = typer.Argument(..., help="Released name, e.g. teacher_ocr (folder under checkpoints/)"),
):
    """Release a run's final model under checkpoints/<name>, recording its config, ledger and final eval."""
    import json

    from .backbones import load_backbone
    from .paths import RELEASED_DIR
    from .progress import console
    from .runner import FINAL, is_run_dir

    validate.run_name(name, "NAME")
    if not is_run_dir(run_dir) or not (run_dir / FINAL).is_dir():
        raise UserError(f"not a finished run folder (needs config.yaml, ledger.json and final/): {run_dir}")
    validate.output_dir(RELEASED_DIR / name, "NAME")
    model = load_backbone(run_dir / FINAL)
    summary = json.loads((run_dir / "summary.json").read_text())
    out = model.save(RELEASED_DIR / name, extra_config={
        "release": {"name": name, "run_config": (run_dir / "config.yaml").read_text(),
                    "final_eval": summary["final"]["scores"], "final_ci": summary["final"]["ci"],
                    "ledger": summary["ledger"]["spent"]},
    })
    console.print(f"released {out}")


@analyze_app.command("variance")
def analyze_variance(
    checkpoint: str = typer.Option(..., "--checkpoint", help="Run folder (its final/ or state/), a checkpoint "
                                   "folder or a released name"),
    tasks: Optional[str] = typer.Option(None, "--tasks", "-t", help="Comma list of tasks (default: the run's tasks)"),
    teacher_for_task: List[str] = typer.Option([], "--teacher-for-task", help="TASK=CHECKPOINT, repeatable "
                                               "(default: the run's opd.teachers, else the released teacher_<task>)"),
    set_: List[str] = typer.Option([], "--set", help="Dotted config override, repeatable: --set opd.noise_level=0.7"),
    k: int = typer.Option(16, "--k", min=2, max=10000, help="Independent mini-batches per estimator"),
    batch_sizes: str = typer.Option("2,4,8", "--batch-sizes", help="Samples per mini-batch, comma list "
                                    "(headline numbers at the largest)"),
    estimators: str = typer.Option("all", "--estimators", help="Comma list of estimators (closed-form OPD "
                                   "on the ODE / SDE, PPO-style OPD, GRPO; an unknown name lists them), or all"),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: <run>/variance, or "
                                       "runs/variance_<checkpoint name>)"),
    config: Optional[str] = config_option("-c"),
    device: Optional[str] = device_option(),
):
    """Gradient variance of closed-form OPD (ODE/SDE), PPO-style OPD and GRPO at fixed parameters."""
    from .analysis import interference as itf
    from .analysis import variance as var
    from .config import load_config
    from .progress import console
    from .session import apply_config, resolve_tasks
    from .teachers import teacher_name

    ests = list(var.ESTIMATORS) if estimators == "all" else [e.strip() for e in estimators.split(",") if e.strip()]
    for e in ests:
        if e not in var.ESTIMATORS:
            raise UserError(f"--estimators: unknown estimator {e!r} (choose from {', '.join(var.ESTIMATORS)})")
    try:
        sizes = [int(x) for x in batch_sizes.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--batch-sizes: expected a comma list of integers (got {batch_sizes!r})") from None
    if not sizes or any(n < 1 for n in sizes):
        raise UserError("--batch-sizes: give positive integers, e.g. 2,4,8")
    overrides = list(set_)
    for item in teacher_for_task:
        task, sep, path = item.partition("=")
        if not sep or not task.strip() or not path.strip():
            raise UserError(f"--teacher-for-task: expected TASK=CHECKPOINT (got {item!r})")
        overrides.append(f"opd.teachers.{task.strip()}={path.strip()}")
    if any(n > 4096 for n in sizes):
        raise UserError("--batch-sizes: at most 4096 samples per mini-batch")
    if out is not None:
        validate.output_dir(out, "--out")
    run_dir, ckpt = itf.resolve_analysis_checkpoint(checkpoint)
    base_cfg = load_config(str(run_dir / "config.yaml")) if run_dir else load_config(config)
    cfg = apply_config(itf.analysis_config(base_cfg, overrides + ([f"device={device}"] if device else [])))
    validate.device_available(cfg.device)
    task_list = resolve_tasks(tasks, cfg)
    if teacher_for_task:   # an unknown task in --teacher-for-task is one clear line
        resolve_tasks(",".join(item.partition("=")[0].strip() for item in teacher_for_task), cfg)
    student, reference = itf.load_analysis_model(run_dir, ckpt, cfg, cfg.device)
    ctx = itf.make_context(cfg, task_list, student, reference, cfg.device)
    if any(e.startswith("opd_") for e in ests):
        for t in task_list:
            ctx.teacher(t)  # one clear line if a teacher is missing
    from .progress import progress_bar, step_reporter

    with progress_bar(True) as bar:
        result = var.variance_study(ctx, task_list, ests, k, sizes, progress=step_reporter(
            bar, "variance", total=len(task_list) * len(ests) * len(sizes), unit="estimates"))
    result.update({"checkpoint": str(ckpt), "run": str(run_dir) if run_dir else None,
                   "teachers": {t: teacher_name(cfg, t) for t in task_list}})
    out = out or ((run_dir / "variance") if run_dir else Path("runs") / f"variance_{Path(str(ckpt)).name}")
    path = var.write_variance(result, out)
    for t, r in result["results"].items():
        console.print(f"{t}: " + ", ".join(f"{e} V={var._f(r[e]['V']):.3g}" for e in ests if e in r))
    console.print(f"wrote {path} and variance_*.png")


@app.command()
def version():
    """Print the package version."""
    from . import __version__

    typer.echo(__version__)


# ----------------------------------------------------------------------------------------------- entry


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


def _tidy_help(typer_app: typer.Typer) -> None:
    """--help reads as prose at any width: docstrings' hard line breaks inside a paragraph are joined (rich
    markup mode keeps them, breaking sentences mid-line), and flags show no ``<bool>`` value type."""
    import inspect
    import re

    for info in typer_app.registered_commands:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            info.help = re.sub(r"(?<!\n)\n(?!\n)", " ", inspect.cleandoc(info.callback.__doc__))
    for group in typer_app.registered_groups:
        _tidy_help(group.typer_instance)
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover
        return
    if not getattr(TyperOption.display_type_rich, "_opd_tidy", False):
        shown = TyperOption.display_type_rich

        def display_type_rich(self, ctx):
            return None if self.is_flag else shown(self, ctx)

        display_type_rich._opd_tidy = True
        TyperOption.display_type_rich = display_type_rich


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry point: every user error is one line on stderr and exit 2; a run stopped mid-way (NaN,
    full disk) one line and exit 3; Ctrl-C says where the state is and how to resume, exit 130 (SIGTERM: 143)."""
    from .runlock import interrupt_message, reset_active

    from .invocation import ARGS

    ARGS[:] = sys.argv[1:] if argv is None else argv
    _tidy_help(app)
    reset_active()
    _STOP_SIGNAL.clear()
    if argv is None:  # the console command: a SIGTERM (scheduler, kill) stops it like Ctrl-C, with the message
        signal.signal(signal.SIGTERM, _terminate)
    try:
        rv = app(args=argv, standalone_mode=False)
    except UserError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return _exit(2, argv)
    except RunStopped as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return _exit(e.exit_code, argv)
    except click_exc.NoArgsIsHelpError:
        return _exit(0, argv)
    except click_exc.UsageError as e:
        print(f"error: {_one_line(e.format_message())}", file=sys.stderr)
        return _exit(2, argv)
    except (typer.Exit, typer.Abort, KeyboardInterrupt) as e:  # typer turns Ctrl-C into Exit(130)
        ctrl_c = isinstance(e, KeyboardInterrupt) or isinstance(e.__cause__ or e.__context__, KeyboardInterrupt)
        if isinstance(e, typer.Exit) and not ctrl_c:
            return _exit(e.exit_code, argv)
        print(f"error: {_one_line(interrupt_message() if ctrl_c else 'aborted')}", file=sys.stderr)
        return _exit(_interrupted_code() if ctrl_c else 130, argv)
    except click_exc.ClickException as e:
        print(f"error: {_one_line(e.format_message())}", file=sys.stderr)
        return _exit(2, argv)
    except OSError as e:  # an unreadable input or unwritable output met after the up-front checks
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: {_one_line(e.strerror or e)}{where}; check the path, free space and permissions",
              file=sys.stderr)
        return _exit(2, argv)
    except MemoryError:
        print("error: out of memory; use smaller batches (train.prompts_per_step, eval.batch_size) or fewer jobs",
              file=sys.stderr)
        return _exit(2, argv)
    if rv == 130:  # typer turns Ctrl-C (KeyboardInterrupt) into exit code 130, returned in this mode
        print(f"error: {_one_line(interrupt_message())}", file=sys.stderr)
        rv = _interrupted_code()
    return _exit(rv if isinstance(rv, int) else 0, argv)


#: the signal that stopped the command (SIGTERM: exit 128 + 15 = 143, the shell's convention); None = Ctrl-C
_STOP_SIGNAL: List[int] = []


def _terminate(signum, frame):
    _STOP_SIGNAL[:] = [signum]
    raise KeyboardInterrupt


def _interrupted_code() -> int:
    return 128 + _STOP_SIGNAL[0] if _STOP_SIGNAL else 130


def _exit(code: int, argv) -> int:
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    main()
