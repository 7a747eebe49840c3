"""Every method's training step through the one runner on a tiny real SD3 pipeline (LoRA student, the
adapter-disabled base as reference, a LoRA teacher on the same transformer)."""
import pytest
import torch
from tiny_world import make_tiny_sd3_world

from opd_bench.backbones import load_backbone
from opd_bench.backbones.sd3 import SD3Backbone
from opd_bench.backbones.base import PolicyView
from opd_bench.config import build_config
from opd_bench.ledger import Ledger
from opd_bench.methods import METHODS
from opd_bench.runner import RunContext


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    return make_tiny_sd3_world(tmp_path_factory.mktemp("sd3"))


#: Flow-GRPO's update schedule and conventions (issue 20), all at once
FLOW_GRPO = ["sampler.grid=sd3", "sampler.shift=3.0", "grpo.minibatches=2", "grpo.clip_range=1e-4",
             "grpo.drop_zero_advantage=true", "grpo.detach_uncond=true", "grpo.beta=0.04",
             "train.ema.enabled=true", "train.ema.warmup=optimizer_steps", "train.ema.every=1"]


@pytest.mark.parametrize("method, extra", [
    ("opd", []), ("opd", ["opd.sampler=sde", "opd.objective=ppo"]), ("grpo", []),
    ("multi-reward", ["multi_reward.mode=weighted_sum"]), ("cascade", []),
    # the DiffusionOPD paper's baselines and ablation (NFT's old policy and the KL reference live on the same
    # network), and Flow-GRPO parity settings
    ("grpo", FLOW_GRPO), ("nft", []), ("grpo-guard", ["grpo.minibatches=2"]), ("sft-distill", []),
    ("multi-reward", ["grpo.objective=nft", "multi_reward.mode=weighted_sum"]),
    ("cascade", ["grpo.objective=grpo-guard"]),
    ("opd", ["opd.sampler=sde", "opd.sde_denominator=2sigma2", "opd.task_reduction=mean", "sampler.grid=sd3"]),
])
def test_one_step_of_each_method_trains_only_the_lora(sd3, method, extra):
    folder, teacher = sd3
    cfg = build_config({}, [
        f"method={method}", "tasks=brightness", f"model.checkpoint={folder}", "model.backbone=sd3",
        "model.lora_rank=4", "model.lora_alpha=8", "model.max_sequence_length=8", "sampler.steps=3",
        "sampler.guidance=2.0", "train.prompts_per_step=2", "grpo.group_size=2", "train.lr=1e-2",
        f"opd.teachers.brightness={teacher}",
    ] + extra)
    from opd_bench.backbones import backbone_options

    student = load_backbone(folder, "cpu", backbone_options(cfg.model))
    assert isinstance(student, SD3Backbone)
    ctx = RunContext(cfg, ["brightness"], student, Ledger(student.flops_per_forward()))
    m = METHODS[method]()
    m.setup(ctx)
    base = {k: v.detach().clone() for k, v in student.transformer.state_dict().items()}
    info = m.train_step(ctx)
    assert all(torch.isfinite(torch.tensor(float(v))) for v in info.values())
    changed = {k for k, v in student.transformer.state_dict().items() if not torch.equal(v, base[k])}
    assert changed and all("lora" in k for k in changed), sorted(changed)[:3]
    if method == "opd":
        assert isinstance(ctx.teacher("brightness"), PolicyView)  # an adapter on the same network
        assert ctx.ledger.phases["train"]["nfe/teacher/training"] > 0
    if method != "opd" and cfg.grpo.beta > 0:
        assert isinstance(ctx.get_reference(), PolicyView)  # the adapter-disabled base: no copy


def test_real_task_through_the_runner(sd3, hf_clip_folder, tmp_path):
    """A real-world task (PickScore with a tiny local CLIPModel, prompts from a local file) trains the SD3 LoRA
    student through the same runner and GRPO code as the embedded world."""
    from opd_bench.tasks import get_task, parse_tasks

    folder, _ = sd3
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of a cat\na red car\n\na blue bird\n")
    cfg = build_config({}, [
        "method=grpo", "tasks=pickscore", f"model.checkpoint={folder}", "model.backbone=sd3", "model.lora_rank=4",
        "model.lora_alpha=8", "model.max_sequence_length=8", "sampler.steps=3", "sampler.guidance=2.0",
        "train.prompts_per_step=2", "grpo.group_size=2", f"real_tasks.pickscore.weights={hf_clip_folder}",
        f"real_tasks.pickscore.train_prompts={prompts}", f"real_tasks.pickscore.eval_prompts={prompts}",
    ])
    from dataclasses import asdict

    from opd_bench.backbones import backbone_options
    from opd_bench.tasks import configure_tasks

    configure_tasks({k: asdict(v) for k, v in cfg.real_tasks.items()})
    assert "pickscore" in parse_tasks("all", "real") and "pickscore" not in parse_tasks("all")
    assert [r["prompt"] for r in get_task("pickscore").prompts("test")] == ["a photo of a cat", "a red car", "a blue bird"]
    student = load_backbone(folder, "cpu", backbone_options(cfg.model))
    ctx = RunContext(cfg, ["pickscore"], student, Ledger(student.flops_per_forward()))
    info = METHODS["grpo"]().train_step(ctx)
    assert torch.isfinite(torch.tensor(info["reward"])) and ctx.ledger.phases["train"]["reward_calls/pickscore"] == 4


def test_real_task_missing_paths_fail_clearly(tmp_path):
    from opd_bench.errors import ConfigError, UserError
    from opd_bench.tasks import configure_tasks, get_task

    with pytest.raises(ConfigError, match="real_tasks.pickscore.weights: path not found"):
        build_config({}, ["real_tasks.pickscore.weights=/no/such/model"])
    configure_tasks({"hpsv2": {"weights": "", "train_prompts": str(tmp_path / "nope.txt")}})
    with pytest.raises(UserError, match="prompt file not found"):
        get_task("hpsv2").prompts("train")
    (tmp_path / "empty.txt").write_text("\n")
    configure_tasks({"hpsv2": {"weights": "", "eval_prompts": str(tmp_path / "empty.txt")}})
    with pytest.raises(UserError, match="empty"):
        get_task("hpsv2").prompts("test")


def test_cascade_reference_on_lora_is_the_previous_stage(sd3, tmp_path):
    """After a stage change the KL reference equals the student at the stage end (not the base), stays frozen
    while the next stage trains, and survives a save/load of the run state (resume)."""
    from opd_bench.runner import Runner

    folder, _ = sd3
    cfg = build_config({}, [
        "method=cascade", "tasks=brightness", f"model.checkpoint={folder}", "model.backbone=sd3",
        "model.lora_rank=4", "model.lora_alpha=8", "model.max_sequence_length=8", "sampler.steps=3",
        "sampler.guidance=2.0", "train.prompts_per_step=2", "grpo.group_size=2", "train.lr=5e-2",
    ])
    from opd_bench.backbones import backbone_options

    student = load_backbone(folder, "cpu", backbone_options(cfg.model))
    ctx = RunContext(cfg, ["brightness"], student, Ledger(student.flops_per_forward()))
    m = METHODS["cascade"]()
    m.setup(ctx)
    m.train_step(ctx)
    x = torch.randn((2, *student.latent_shape), generator=torch.Generator().manual_seed(0))
    cond = student.encode_prompts(["a photo", "a car"])

    def v(policy):
        with torch.no_grad():
            return policy.velocity(x, 0.7, cond, 2.0)

    base_before = v(ctx.get_reference())
    m.start_stage(ctx, 1)                                   # stage 0 -> 1
    stage_end = v(student)
    assert torch.equal(v(ctx.get_reference()), stage_end)
    assert (stage_end - base_before).abs().max() > 1e-4     # the reference is no longer the base
    m.train_step(ctx)
    assert (v(student) - stage_end).abs().max() > 1e-6      # the student moves on ...
    assert torch.equal(v(ctx.get_reference()), stage_end)  # ... the reference stays the previous stage
    runner = Runner(cfg, tmp_path / "run", m, ["brightness"], show_progress=False, log_tensorboard=False)
    (tmp_path / "run").mkdir()
    runner.save_state(ctx)
    fresh = load_backbone(folder, "cpu", backbone_options(cfg.model))
    ctx2 = RunContext(cfg, ["brightness"], fresh, Ledger(fresh.flops_per_forward()))
    runner.load_state(ctx2)
    with torch.no_grad():
        assert torch.equal(ctx2.get_reference().velocity(x, 0.7, fresh.encode_prompts(["a photo", "a car"]), 2.0),
                           stage_end)


@pytest.mark.parametrize("name", ["sd35m_opd", "sd35m_grpo"])
def test_sd35m_configs_use_real_task_names(name):
    """Per-task keys name the config's (real) tasks, so the GenEval teacher really samples at CFG 1.0, and
    `--tasks all` means the config's own list, not every real task."""
    from opd_bench.backbones.sd3 import DEFAULT_TARGETS
    from opd_bench.config import load_config
    from opd_bench.session import resolve_tasks
    from opd_bench.tasks import registry, task_names

    cfg = load_config(name)
    assert all(t in task_names() and registry()[t].world == "real" for t in cfg.tasks)
    for section in (cfg.opd.teacher_guidance, cfg.opd.teachers):
        assert set(section) <= set(cfg.tasks)
    if name == "sd35m_opd":
        assert cfg.opd.teacher_guidance["real_geneval"] == 1.0 and set(cfg.opd.teachers) == set(cfg.tasks)
    assert resolve_tasks("all", cfg) == cfg.tasks
    assert tuple(cfg.model.lora_target_modules) == DEFAULT_TARGETS
