"""DiffusionOPD conventions (issue 20): opd.sde_denominator (2 sigma^2 |dt| paper | 2 sigma^2 official code) and
opd.task_reduction (sum | mean of the task losses), on the tiny test world."""
import pytest
import torch
from tiny_world import make_tiny_world

from opd_bench.backbones import load_backbone
from opd_bench.config import build_config
from opd_bench.ledger import Ledger
from opd_bench.methods import METHODS
from opd_bench.runner import RunContext

# the test-only tasks brightness and darkness (opposite rewards) are registered by conftest.py


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_tiny_world(tmp_path_factory.mktemp("world"))


def opd_round(world, tasks, **over):
    overrides = ["method=opd", f"tasks={','.join(tasks)}", f"model.checkpoint={world / 'base'}", "sampler.steps=4",
                 "sampler.guidance=2.0", "train.prompts_per_step=2", "train.grad_clip=0"]
    overrides += [f"opd.teachers.{t}={world / 'teacher'}" for t in tasks] + [f"{k}={v}" for k, v in over.items()]
    cfg = build_config({}, overrides)
    student = load_backbone(cfg.model.checkpoint)
    ctx = RunContext(cfg, tasks, student, Ledger(student.flops_per_forward()))
    grads = []
    step = ctx.optimizer_step
    ctx.optimizer_step = lambda: (grads.append(torch.cat([p.grad.flatten() for p in ctx.params])), step())[1]
    m = METHODS["opd"]()
    m.setup(ctx)
    info = m.train_step(ctx)
    return info, grads[0], ctx


def test_sde_denominator_2sigma2_is_the_paper_loss_times_dt(world):
    over = {"opd.sampler": "sde", "sampler.timestep_fraction": 0.25}        # one trained step, j = 0
    paper, g_paper, ctx = opd_round(world, ["brightness"], **over)
    code, g_code, _ = opd_round(world, ["brightness"], **over, **{"opd.sde_denominator": "2sigma2"})
    dt = abs(float(ctx.timesteps[1] - ctx.timesteps[0]))
    assert code["loss"] == pytest.approx(paper["loss"] * dt, rel=1e-5)
    assert torch.allclose(g_code, g_paper * dt, rtol=1e-4, atol=1e-6 * g_paper.abs().max().item())


def test_task_reduction_mean_halves_two_tasks_sum(world):
    s, g_sum, _ = opd_round(world, ["brightness", "darkness"])
    m, g_mean, _ = opd_round(world, ["brightness", "darkness"], **{"opd.task_reduction": "mean"})
    assert m["loss/brightness"] == pytest.approx(s["loss/brightness"]) and s["loss"] > 0
    assert m["loss"] == pytest.approx(s["loss"] / 2)
    assert torch.allclose(g_mean, g_sum / 2, rtol=1e-4, atol=1e-7)
