"""The runner and the methods on a tiny real embedded model: faithfulness checks, budgets, resume."""
import json
import re
import os
import signal
import subprocess
import sys
import time

import pytest
from tiny_world import make_tiny_world
import torch
from safetensors.torch import load_file

from opd_bench.backbones import load_backbone
from opd_bench.config import build_config
from opd_bench.errors import ConfigError
from opd_bench.methods import METHODS
from opd_bench.runner import Runner, RunContext
from opd_bench.ledger import Ledger


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("world")
    return make_tiny_world(d)


def cfg_for(world, method, tasks, **over):
    overrides = [
        f"method={method}", f"tasks={','.join(tasks)}", f"model.checkpoint={world / 'base'}",
        "sampler.steps=4", "sampler.guidance=2.0", "train.prompts_per_step=2", "grpo.group_size=4",
        "eval.steps=4", "eval.prompts_per_task=4", "eval.bootstrap=50", "eval.guidance=2.0", "budget.value=16",
        "train.checkpoint_every=1",
    ] + [f"opd.teachers.{t}={world / 'teacher'}" for t in tasks]
    overrides += [f"{k}={v}" for k, v in over.items()]
    return build_config({}, overrides)


def make_ctx(cfg, tasks):
    student = load_backbone(cfg.model.checkpoint)
    return RunContext(cfg, tasks, student, Ledger(student.flops_per_forward()))


def test_opd_loss_and_gradient_zero_when_student_is_teacher(world):
    cfg = cfg_for(world, "opd", ["brightness"], **{"opd.teachers.brightness": world / "base"})
    ctx = make_ctx(cfg, ["brightness"])
    m = METHODS["opd"]()
    m.setup(ctx)
    info = m.train_step(ctx)
    assert info["loss"] == 0.0 and info["grad_norm"] == 0.0


@pytest.mark.parametrize("sampler", ["ode", "sde"])
def test_opd_drives_student_velocity_to_teacher_on_visited_states(world, sampler):
    cfg = cfg_for(world, "opd", ["brightness"], **{"opd.sampler": sampler, "train.lr": 3e-3})
    ctx = make_ctx(cfg, ["brightness"])
    m = METHODS["opd"]()
    m.setup(ctx)
    losses = []
    for r in range(40):
        ctx.round = r
        losses.append(m.train_step(ctx)["loss"])
    assert sum(losses[-5:]) / 5 < 0.2 * sum(losses[:5]) / 5, losses
    # direct check on fresh visited states: the student's velocity is now close to the teacher's
    ctx.round = 1000
    batch = ctx.rollout("brightness", ctx.sample_prompts("brightness", 4), 1, 0.0)
    teacher = ctx.teacher("brightness")
    base = load_backbone(world / "base")
    with torch.no_grad():
        for j in ctx.trained_steps():
            x, t = batch.rollout.states[:, j], batch.rollout.timesteps[j]
            vt = teacher.velocity(x, t, batch.cond, 2.0)
            gap_now = (ctx.student.velocity(x, t, batch.cond, 2.0) - vt).pow(2).mean()
            gap_before = (base.velocity(x, t, batch.cond, 2.0) - vt).pow(2).mean()
            assert gap_now < 0.5 * gap_before


def test_grpo_first_inner_step_is_on_policy(world):
    cfg = cfg_for(world, "grpo", ["brightness"])
    ctx = make_ctx(cfg, ["brightness"])
    info = METHODS["grpo"]().train_step(ctx)
    assert info["ratio_first"] == 1.0 and info["clipfrac"] == 0.0


def test_balanced_prompt_sampling_spreads_each_step_over_the_categories(world):
    """train.prompt_sampling=balanced draws each step's GenEval prompts evenly over its six categories (the train
    set is 44% colour attribution, 2% single object), reproducibly per round; uniform follows the set's mix."""
    from collections import Counter

    from opd_bench.tasks import get_task

    tags = Counter(r["tag"] for r in get_task("geneval").prompts("train"))
    seen = {}
    for mode in ("uniform", "balanced"):
        ctx = make_ctx(cfg_for(world, "grpo", ["geneval"], **{"train.prompt_sampling": mode}), ["geneval"])
        seen[mode] = Counter()
        for r in range(30):
            ctx.round = r
            recs = ctx.sample_prompts("geneval", 12)
            assert recs == ctx.sample_prompts("geneval", 12)               # the same draw for the same round
            if mode == "balanced":
                assert Counter(x["tag"] for x in recs) == {t: 2 for t in tags}
                assert len({x["prompt"] for x in recs}) == 12              # no prompt twice within a category
            seen[mode].update(x["tag"] for x in recs)
    assert seen["uniform"]["color_attr"] > 8 * seen["uniform"]["single_object"]
    assert seen["balanced"]["color_attr"] == seen["balanced"]["single_object"] == 60


def test_balanced_indices_with_a_step_smaller_than_the_categories():
    from collections import Counter

    import numpy as np

    from opd_bench.runner import balanced_indices

    labels = ["a"] * 50 + ["b"] * 3 + ["c"] * 1
    draws = [balanced_indices(labels, 2, np.random.default_rng(s)) for s in range(300)]
    cats = [{labels[i] for i in d} for d in draws]
    assert all(len(c) == 2 for c in cats)                                # two slots, two different categories
    assert sum("c" in c for c in cats) > 150                              # every category about 2/3 of the steps
    big = balanced_indices(labels, 7, np.random.default_rng(0))
    assert sorted(Counter(labels[i] for i in big).values()) == [2, 2, 3]          # counts differ by at most one
    assert list(big) == list(balanced_indices(labels, 7, np.random.default_rng(0)))


@pytest.mark.parametrize("mode", ["independent", "shared"])
def test_grpo_group_noise_independent_or_shared(world, mode):
    """grpo.group_noise: each sample its own initial noise (Flow-GRPO), or one per group (DanceGRPO); the SDE
    steps differ within a group either way, and the first inner step stays on-policy."""
    cfg = cfg_for(world, "grpo", ["brightness"], **{"grpo.group_noise": mode, "train.prompts_per_step": 2})
    ctx = make_ctx(cfg, ["brightness"])
    records = ctx.sample_prompts("brightness", 2)
    batch = ctx.rollout("brightness", records, cfg.grpo.group_size, cfg.sampler.noise_level)
    x0, final = batch.rollout.states[:, 0], batch.rollout.final
    g = cfg.grpo.group_size
    same_start = torch.equal(x0[0], x0[1])
    assert same_start == (mode == "shared")
    assert not torch.equal(x0[0], x0[g])                          # groups never share their start
    assert not torch.allclose(final[0], final[1])                  # the SDE steps still differ within a group
    again = ctx.rollout("brightness", records, g, cfg.sampler.noise_level)
    assert torch.equal(again.rollout.states, batch.rollout.states)   # reproducible given the seed and round
    assert METHODS["grpo"]().train_step(ctx)["ratio_first"] == 1.0


def test_sde_window_makes_only_its_steps_stochastic_and_trained(world):
    """sampler.sde_window [1, 3): steps 0 and 3.. take the ODE step (no noise, NaN log-prob); with shared group
    noise a group's samples agree up to the window and differ after it; GRPO trains exactly the window's steps,
    on-policy on the first; a window outside the rollout is one clear config error."""
    cfg = cfg_for(world, "grpo", ["brightness"], **{"grpo.group_noise": "shared", "train.prompts_per_step": 2,
                                                     "sampler.sde_window": [1, 3]})
    ctx = make_ctx(cfg, ["brightness"])
    assert ctx.trained_steps() == [1, 2]
    batch = ctx.rollout("brightness", ctx.sample_prompts("brightness", 2), cfg.grpo.group_size, cfg.sampler.noise_level)
    s, lp = batch.rollout.states, batch.rollout.log_probs
    assert torch.equal(s[0, 1], s[1, 1])                 # step 0 is the ODE from the shared start
    assert not torch.allclose(s[0, 2], s[1, 2])          # step 1 is stochastic
    assert torch.isfinite(lp[:, 1:3]).all() and torch.isnan(lp[:, 0]).all() and torch.isnan(lp[:, 3:]).all()
    seen = []
    orig = ctx.student_transition
    ctx.student_transition = lambda b, j, *a: (seen.append(j), orig(b, j, *a))[1]
    assert METHODS["grpo"]().train_step(ctx)["ratio_first"] == 1.0
    assert seen == [1, 2]
    for bad in ([2, 2], [0, cfg.sampler.steps + 1], [1]):
        with pytest.raises(ConfigError, match="sampler.sde_window"):
            cfg_for(world, "grpo", ["brightness"], **{"sampler.sde_window": bad})


def test_short_grpo_run_improves_the_reward(world):
    cfg = cfg_for(world, "grpo", ["brightness"], **{"train.lr": 3e-3, "train.prompts_per_step": 4, "grpo.beta": 0.0})
    ctx = make_ctx(cfg, ["brightness"])
    m = METHODS["grpo"]()
    rewards = []
    for r in range(25):
        ctx.round = r
        rewards.append(m.train_step(ctx)["reward"])
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.05, rewards


@pytest.mark.parametrize("method, extra", [
    ("opd", {}), ("opd", {"opd.sampler": "sde", "opd.objective": "ppo"}), ("multi-reward", {}),
    ("multi-reward", {"multi_reward.mode": "weighted_sum", "multi_reward.normalize": "per_reward"}),
    ("cascade", {}),
])
def test_every_method_runs_to_the_same_budget(world, tmp_path, method, extra):
    tasks = ["brightness", "geneval"]
    cfg = cfg_for(world, method, tasks, **extra)
    summary = Runner(cfg, tmp_path / "run", METHODS[method](), tasks, show_progress=False, log_tensorboard=False).run()
    spent = summary["ledger"]["spent"]["train"]
    assert 16 <= spent["images"] < 16 + 2 * 4 * 2  # stops at the budget (at most one step over)
    hist = [json.loads(l) for l in (tmp_path / "run" / "eval_history.jsonl").read_text().splitlines()]
    assert hist[0]["label"] == "start" and hist[-1]["label"] == "final"
    if method == "cascade":
        assert any(h["label"].startswith("end of stage") for h in hist)
    assert (tmp_path / "run" / "final" / "manifest.json").is_file()
    counters = summary["ledger"]["counters"]["phases"]["train"]
    assert counters["backward"] > 0 and counters["optimizer_steps"] >= 1
    # every differentiated student forward is a CFG pair (guidance 2): backward counts both halves, and the
    # FLOPs are forward + 2 x backward (issue 19: the CFG halves' backward was counted once)
    if method == "opd":   # opd.student_from_rollout (default): the graded forwards are the rollout's own
        assert "nfe/student/training" not in counters
    else:
        assert counters["backward"] == counters["nfe/student/training"]
    fpf = summary["ledger"]["counters"]["flops_per_forward"]
    nfe = sum(v for k, v in counters.items() if k.startswith("nfe/"))
    assert counters["flops"] == pytest.approx(fpf * (nfe + 2 * counters["backward"]))
    if method == "opd":
        assert counters["nfe/teacher/training"] > 0
    else:
        assert "nfe/teacher/training" not in counters


def _final_tensors(run):
    return load_file(str(run / "final" / "model.safetensors"))


def test_resume_after_sigkill_equals_uninterrupted(world, tmp_path):
    """SIGKILL a CLI run mid-way, resume it, and get bit-identical final weights and metrics."""
    common = ["--method", "opd", "--tasks", "geneval", "--budget", "24:images"]
    sets = []
    for kv in ["sampler.steps=4", "sampler.guidance=2.0", "train.prompts_per_step=2", "eval.steps=4",
               "eval.prompts_per_task=4", "eval.bootstrap=50", "eval.guidance=2.0", "train.checkpoint_every=1",
               f"model.checkpoint={world / 'base'}", f"opd.teachers.geneval={world / 'teacher'}"]:
        sets += ["--set", kv]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "opd_bench.cli", "run", *common, *sets, "--runs-dir", str(tmp_path)]
    subprocess.run(cmd + ["--name", "full"], check=True, env=env, capture_output=True)
    p = subprocess.Popen(cmd + ["--name", "killed"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 4):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (tmp_path / "killed" / "final").exists(), "killed too late to test anything"
    r = subprocess.run([sys.executable, "-m", "opd_bench.cli", "run", "--resume", str(tmp_path / "killed")],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    said = re.search(r"resuming \S+killed from its state at round (\d+): spent (\d+) images of the 24 images budget", r.stderr)
    assert said and int(said.group(1)) >= 1, r.stderr      # --resume says what it resumes from
    a, b = _final_tensors(tmp_path / "full"), _final_tensors(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma = [json.loads(l) for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(l) for l in metrics.read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "budget"} | {"images": r["budget"]["images"]} for r in rows]
    assert strip(ma) == strip(mb)
    ea = [json.loads(l)["scores"] for l in (tmp_path / "full" / "eval_history.jsonl").read_text().splitlines()]
    eb = [json.loads(l)["scores"] for l in (tmp_path / "killed" / "eval_history.jsonl").read_text().splitlines()]
    assert ea == eb


def test_existing_run_folder_is_not_overwritten(world, tmp_path, capsys):
    from opd_bench.cli import main

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "precious.txt").write_text("keep me")
    code = main(["run", "--method", "opd", "--tasks", "geneval", "--name", "x", "--runs-dir", str(tmp_path)])
    assert code == 2 and "already exists" in capsys.readouterr().err
    assert (tmp_path / "x" / "precious.txt").read_text() == "keep me"


def test_opd_budget_with_and_without_teacher_cost(world, tmp_path):
    from opd_bench.ledger import with_teacher_cost

    student = {"images": 100.0, "seconds": 10.0, "flops": 5.0}
    teachers = {"a": {"images": 50.0, "seconds": 30.0, "flops": 2.0}, "b": {"images": 70.0, "seconds": 20.0, "flops": 1.0}}
    v = with_teacher_cost(student, teachers)
    assert v["excluded"] == student
    assert v["included_sequential"] == {"images": 220.0, "seconds": 60.0, "flops": 8.0}
    assert v["included_parallel"] == {"images": 220.0, "seconds": 40.0, "flops": 8.0}
    # a run whose teacher is another run's final/ picks that run's ledger up
    tcfg = cfg_for(world, "grpo", ["brightness"])
    Runner(tcfg, tmp_path / "teacher_run", METHODS["grpo"](), ["brightness"], show_progress=False,
           log_tensorboard=False).run()
    cfg = cfg_for(world, "opd", ["brightness"], **{"opd.teachers.brightness": tmp_path / "teacher_run" / "final"})
    summary = Runner(cfg, tmp_path / "opd_run", METHODS["opd"](), ["brightness"], show_progress=False,
                     log_tensorboard=False).run()
    tc = summary["ledger"]["opd_teacher_cost"]
    teacher_images = json.loads((tmp_path / "teacher_run" / "ledger.json").read_text())["spent"]["train"]["images"]
    assert tc["unknown"] == [] and tc["teachers"]["brightness"]["images"] == teacher_images
    assert tc["included_sequential"]["images"] == summary["ledger"]["spent"]["train"]["images"] + teacher_images


def test_parallel_jobs_match_serial_runs(world, tmp_path):
    """--jobs runs each (method, seed) in a child process; a child's result equals the same run made alone
    with the same thread count, and --first-seed picks the seed."""
    sets = []
    for kv in ["sampler.steps=4", "sampler.guidance=2.0", "train.prompts_per_step=2", "eval.steps=4",
               "eval.prompts_per_task=4", "eval.bootstrap=50", "eval.guidance=2.0",
               f"model.checkpoint={world / 'base'}", f"opd.teachers.geneval={world / 'teacher'}"]:
        sets += ["--set", kv]
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=threads)
    cmd = [sys.executable, "-m", "opd_bench.cli", "run", "--method", "opd", "--tasks", "geneval",
           "--budget", "8:images", *sets, "--runs-dir", str(tmp_path)]
    r = subprocess.run(cmd + ["--seeds", "2", "--jobs", "2", "--name", "par"], env=env, capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "final eval" in r.stdout
    for s in (0, 1):
        assert (tmp_path / "par" / f"opd_s{s}" / "summary.json").is_file()
        assert (tmp_path / "par" / f"opd_s{s}.log").is_file()
    r = subprocess.run(cmd + ["--first-seed", "1", "--name", "serial"], env=env, capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "seed: 1" in (tmp_path / "serial" / "config.yaml").read_text()
    a, b = _final_tensors(tmp_path / "par" / "opd_s1"), _final_tensors(tmp_path / "serial")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = _final_tensors(tmp_path / "par" / "opd_s0")
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the seeds differ


def test_train_teachers_uses_the_released_teachers_recipe(world, tmp_path):
    """`--train-teachers` trains each teacher with configs/teacher.yaml (not the library defaults), from the
    run's base, seed and device; the run's own overrides stay out of the teachers' recipe."""
    import yaml

    from opd_bench.config import load_config
    from opd_bench.train import train_teachers

    cfg = cfg_for(world, "opd", ["brightness"], seed=3, **{"train.lr": 5e-3})
    tiny = ["budget.value=16", "train.prompts_per_step=2", "grpo.group_size=4", "sampler.steps=3",
            "eval.steps=3", "eval.prompts_per_task=2", "eval.bootstrap=20"]
    out = train_teachers(cfg, ["brightness"], tmp_path, overrides=tiny)
    run = tmp_path / cfg.name / "teachers" / "brightness"
    assert out == {"brightness": str(run / "final")} and (run / "final" / "manifest.json").is_file()
    used = yaml.safe_load((run / "config.yaml").read_text())
    recipe = load_config("teacher")
    assert used["method"] == "grpo" and used["seed"] == 3 and used["model"]["checkpoint"] == str(world / "base")
    assert used["train"]["lr"] == recipe.train.lr != 5e-3
    assert used["sampler"]["noise_level"] == recipe.sampler.noise_level
    assert used["grpo"]["beta"] == recipe.grpo.beta and used["grpo"]["adv_std"] == recipe.grpo.adv_std
    assert used["eval"]["prompts_per_task"] == 2 and used["budget"]["value"] == 16
    # a field only configs/teacher.yaml sets: the library default differs, so this tells the two apart
    default = build_config({}, []).train.checkpoint_every
    assert used["train"]["checkpoint_every"] == recipe.train.checkpoint_every != default
