"""Orchestration behind ``opd-bench run``: builds configs, runs every (method, seed) through the one runner,
optionally retrains the teachers first, and prints the final table next to the base and the teachers."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from rich.table import Table

from .backbones import backbone_options
from .config import BudgetConfig, RunConfig, dump_config, load_config, resolve_config_path
from .distributed import Dist
from .errors import ConfigError, RunStopped, UserError
from .evalcache import cached_eval
from .evaluate import EvalProtocol
from .methods import method_class
from .plan import recipe_for
from .progress import console, human_spend, print_table, progress_bar, say
from .runlock import check_resumable, holds_run, interrupt_message, mark_active, mark_done
from .runner import FINAL, Runner
from .session import apply_config, resolve_tasks, world_of
from .tasks import parse_tasks
from .teachers import released_teacher, teacher_name

def protocol_of(cfg: RunConfig) -> EvalProtocol:
    return EvalProtocol.from_config(cfg)


def build_configs(methods, tasks_spec, seeds, config, overrides, name, first_seed: int = 0,
                  budget: Optional[BudgetConfig] = None, recipes: bool = True) -> List[RunConfig]:
    """One config per (method, seed): default.yaml < the method's recipe (``recipes``: configs/recipes/<method>.yaml
    where it exists) < ``config`` < ``overrides`` < the run's own typed options (method, tasks, seed, ``budget``)."""
    def load(m: str) -> RunConfig:
        return load_config(config, overrides, recipe=recipe_for(m) if recipes else None)

    task_list = resolve_tasks(tasks_spec, load(methods[0]))
    cfgs = []
    for m in methods:
        for seed in range(first_seed, first_seed + seeds):
            cfg = load(m)
            cfg.method, cfg.tasks, cfg.seed = m, list(task_list), seed
            if budget is not None:
                cfg.budget = replace(budget)
            cfg.name = name or f"{'-'.join(methods)}_{'-'.join(task_list) if tasks_spec != 'all' else 'all'}"
            cfgs.append(cfg)
    return cfgs


def run_dir_for(runs_dir: Path, cfg: RunConfig, several: bool) -> Path:
    return Path(runs_dir) / cfg.name / (f"{cfg.method}_s{cfg.seed}" if several else "")


def run_one(cfg: RunConfig, run_dir: Path, resume: bool = False) -> dict:
    tasks = parse_tasks(cfg.tasks, world_of(cfg))
    method = method_class(cfg.method)()
    return Runner(cfg, run_dir, method, tasks).run(resume=resume)


#: the recipe of the released teachers (configs/teacher.yaml), used by ``--train-teachers``; a task whose
#: released teacher used another budget or batch has its own ``configs/teacher_<task>.yaml``
TEACHER_CONFIG = "teacher"


def teacher_config(task: str) -> str:
    """The config of ``task``'s released teacher: ``teacher_<task>`` where that file exists, else ``teacher``."""
    try:
        resolve_config_path(f"{TEACHER_CONFIG}_{task}")
        return f"{TEACHER_CONFIG}_{task}"
    except ConfigError:
        return TEACHER_CONFIG


def train_teachers(cfg: RunConfig, tasks: List[str], runs_dir: Path, overrides: Sequence[str] = ()) -> Dict[str, str]:
    """Train one GRPO teacher per task with its released teacher's recipe (:func:`teacher_config`) from the
    run's base model, seed and device (then ``overrides``); returns {task: final checkpoint}."""
    out = {}
    for t in tasks:
        recipe = teacher_config(t)
        tcfg = load_config(recipe, ["method=grpo", f"tasks={t}", f"seed={cfg.seed}", f"device={cfg.device}",
                                    f"model.checkpoint={cfg.model.checkpoint}", *overrides])
        tcfg.name = released_teacher(t)
        d = Path(runs_dir) / cfg.name / "teachers" / t
        console.print(f"[bold]training teacher for {t}[/] ({recipe}.yaml) -> {d}")
        Runner(tcfg, d, method_class(tcfg.method)(), [t]).run(resume=holds_run(d))
        out[t] = str(d / FINAL)
    return out


def preflight_run(cfgs, dirs, runs_dir, check_teachers: bool = True) -> None:
    """Everything ``opd-bench run`` can check before it creates anything or prints a progress line: the run
    folders (writable, not taken), the device, the model and (unless they are to be trained first) teacher
    checkpoints, the tasks' prompt sets."""
    from . import validate
    from .backbones import resolve_checkpoint
    from .runlock import check_new_run_folder
    from .tasks import configure_run_tasks, get_task

    validate.output_dir(runs_dir, "--runs-dir")
    for d in dirs:
        if Path(d).exists() and not Path(d).is_dir():
            raise UserError(f"run folder {d} exists and is not a folder; pick another --name")
        check_new_run_folder(d)
        validate.output_dir(d, "run folder")
    from .methods import method_class
    from .teachers import resolve_teacher

    from .checkpoint import MANIFEST, verify_checkpoint

    def checkpoint_ok(name) -> None:  # found, and its files match its manifest (raw diffusers folders have none)
        path = resolve_checkpoint(name)
        if (path / MANIFEST).is_file():
            verify_checkpoint(path)

    cfg = cfgs[0]
    for c in cfgs:
        method_class(c.method).check(c, list(c.tasks))
    validate.device_available(cfg.device)
    validate.device_available(cfg.rewards.device, "rewards.device")
    checkpoint_ok(cfg.model.checkpoint)
    configure_run_tasks(cfg)
    for c in cfgs:
        for t in c.tasks:
            for split in dict.fromkeys(("train", c.eval.split, "val")):   # training, final eval, curves
                if not get_task(t).prompts(split):
                    raise UserError(f"task {t}: the {split} prompt set is empty")
            if method_class(c.method).uses_teachers and check_teachers:
                checkpoint_ok(resolve_teacher(c, t))


def run_many(methods, tasks_spec, seeds, config, overrides, name, runs_dir, retrain_teachers=False,
             first_seed: int = 0, jobs: int = 1, budget: Optional[BudgetConfig] = None, recipes: bool = True) -> List[Path]:
    cfgs = build_configs(methods, tasks_spec, seeds, config, overrides, name, first_seed, budget, recipes)
    several = len(cfgs) > 1
    dirs = [run_dir_for(runs_dir, c, several) for c in cfgs]
    preflight_run(cfgs, dirs, runs_dir, check_teachers=not retrain_teachers)  # before anything is created or printed
    dist = Dist()
    dist.barrier()  # every process has checked before the main one creates anything
    if retrain_teachers and any(method_class(m).uses_teachers for m in methods):
        teachers = train_teachers(cfgs[0], parse_tasks(cfgs[0].tasks), runs_dir)
        for c in cfgs:
            c.opd.teachers = dict(teachers, **c.opd.teachers)
    if jobs > 1 and len(cfgs) > 1 and dist.world_size == 1:
        results = run_parallel(cfgs, dirs, jobs)
    else:
        results = {}
        for c, d in zip(cfgs, dirs):
            console.print(f"[bold]{c.method}[/] seed {c.seed} on {', '.join(c.tasks)} -> {d}")
            results[(c.method, c.seed)] = run_one(c, d)
    if dist.is_main:
        print_final_table(cfgs, results)
    return dirs


def run_parallel(cfgs: Sequence[RunConfig], dirs: Sequence[Path], jobs: int) -> Dict:
    """Run each (method, seed) in its own child process, ``jobs`` at a time, each with
    cpu_count // jobs intra-op threads (CPU runs stay deterministic given the seed and thread count).
    A child's output goes to ``<run dir>.log``; returns {(method, seed): summary} like the serial path."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OPD_BENCH_THREADS=str(threads))
    pending = list(zip(cfgs, dirs))
    running: List[tuple] = []
    failed: List[str] = []
    results: Dict = {}
    with tempfile.TemporaryDirectory(prefix="opd-bench-jobs-") as tmp, progress_bar(True) as bar, \
            _interrupt_children_on_exit(running):
        job = bar.add_task(f"{len(cfgs)} runs, {jobs} at a time ({threads} thread(s) each)", total=len(cfgs), unit="runs")
        while pending or running:
            while pending and len(running) < jobs:
                c, d = pending.pop(0)
                cfg_file = Path(tmp) / f"{c.method}_s{c.seed}.yaml"
                cfg_file.write_text(dump_config(c))
                log = d.parent / f"{d.name}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                fh = open(log, "w")
                proc = subprocess.Popen([sys.executable, "-m", "opd_bench.train", str(cfg_file), str(d)],
                                        stdout=fh, stderr=subprocess.STDOUT, env=env)
                console.print(f"[bold]{c.method}[/] seed {c.seed} -> {d} (log: {log})")
                running.append((proc, fh, c, d, log))
                mark_active(d)  # for the Ctrl-C message
            time.sleep(0.5)
            for item in list(running):
                proc, fh, c, d, log = item
                if proc.poll() is None:
                    continue
                fh.close()
                running.remove(item)
                mark_done(d)
                bar.update(job, advance=1)
                if proc.returncode == 0 and (d / "summary.json").is_file():
                    results[(c.method, c.seed)] = json.loads((d / "summary.json").read_text())
                else:
                    failed.append(f"{c.method} seed {c.seed} (exit {proc.returncode}, see {log})")
    if failed:
        if any("exit 3" in f for f in failed):
            raise RunStopped("run(s) stopped: " + "; ".join(failed) + " -- continue each with --resume <run dir>")
        raise UserError("run(s) failed: " + "; ".join(failed) + " -- continue each with --resume <run dir>")
    return results


@contextlib.contextmanager
def _interrupt_children_on_exit(running: List[tuple]):
    """If this process is interrupted (Ctrl-C, SIGTERM), pass the interruption on to the still-running
    children and wait for them: each stops with its last saved state resumable, and none is left orphaned."""
    try:
        yield
    except BaseException:
        for proc, *_ in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc, fh, *_ in running:
            proc.wait()
            fh.close()
        raise


def _child_main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m opd_bench.train CONFIG.yaml RUN_DIR``: one run of run_parallel (internal)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m opd_bench.train CONFIG.yaml RUN_DIR", file=sys.stderr)
        return 2
    try:
        run_one(load_config(args[0]), Path(args[1]))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunStopped as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"error: {interrupt_message()}", file=sys.stderr)
        return 130
    return 0


def resume_run(path: Path) -> dict:
    """Continue a run folder from its saved state, or restart it when it was killed before its first save."""
    check_resumable(path)
    cfg = load_config(str(path / "config.yaml"))
    summary = run_one(cfg, path, resume=True)
    if Dist().is_main:
        print_final_table([cfg], {(cfg.method, cfg.seed): summary})
    return summary


def print_final_table(cfgs: List[RunConfig], results: Dict) -> None:
    """Per task: base, teacher, and each method (mean over seeds), same eval protocol."""
    cfg0 = apply_config(cfgs[0])   # real tasks' paths even when the runs ran in child processes (--jobs)
    tasks = parse_tasks(cfg0.tasks)
    protocol = protocol_of(cfg0)
    refs: Dict[str, Dict[str, dict]] = {}
    try:
        refs["base"] = cached_eval(cfg0.model.checkpoint, tasks, protocol, cfg0.device, backbone_options(cfg0.model))
    except UserError as e:
        say(f"(base not evaluated: {e})")
    teacher_row = {}
    for t in tasks:
        try:
            teacher_row[t] = cached_eval(teacher_name(cfg0, t), [t], protocol, cfg0.device)[t]
        except UserError:
            pass
    from .protocol import label as protocol_label

    name = protocol_label(protocol)
    table = Table(title=f"final eval, {name} protocol ({protocol.split} split, {protocol.steps}-step ODE, CFG "
                        f"{protocol.guidance}, {protocol.prompts_per_task or 'all'} prompts/task), mean [95% CI]"
                        + (": QUICK, below the resolution of a comparison (opd-bench eval/report use full)"
                           if name == "quick" else ""))
    table.add_column("task")
    table.add_column("base", justify="right")
    table.add_column("teacher", justify="right")
    methods = list(dict.fromkeys(c.method for c in cfgs))
    for m in methods:
        table.add_column(m, justify="right")

    def cell(d):
        return "-" if d is None else f"{d['mean']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"

    for t in tasks:
        row = [t, cell(refs.get("base", {}).get(t)), cell(teacher_row.get(t))]
        for m in methods:
            scores = [results[k]["final"]["scores"][t] for k in results if k[0] == m]
            cis = [results[k]["final"]["ci"][t] for k in results if k[0] == m]
            if len(scores) == 1:
                row.append(f"{scores[0]:.3f} [{cis[0][0]:.3f}, {cis[0][1]:.3f}]")
            else:
                import numpy as np

                row.append(f"{np.mean(scores):.3f} ± {np.std(scores):.3f} (n={len(scores)})")
        table.add_row(*row)
    print_table(table)
    for k, r in results.items():
        say(f"{k[0]} seed {k[1]}: spent {human_spend(r['ledger']['spent']['train'])} in training")
        tc = r["ledger"].get("opd_teacher_cost")
        if tc:
            for view in ("included_sequential", "included_parallel"):
                say(f"  with teacher training {view.split('_')[1]}: {human_spend(tc[view])}"
                    + (f" (teacher cost unknown for {', '.join(tc['unknown'])})" if tc["unknown"] else ""))


if __name__ == "__main__":
    sys.exit(_child_main())
