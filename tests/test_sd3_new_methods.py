"""Issue 20's methods and Flow-GRPO parity settings on a tiny real SD3 pipeline (LoRA student; NFT's old policy
and the KL reference live on the same network): one step each trains only the LoRA."""
import pytest
import torch
from test_sd3_methods import sd3  # noqa: F401  (the tiny pipeline and its LoRA teacher)

from opd_bench.backbones import backbone_options, load_backbone
from opd_bench.config import build_config
from opd_bench.ledger import Ledger
from opd_bench.methods import METHODS
from opd_bench.runner import RunContext

FLOW_GRPO = ["sampler.grid=sd3", "sampler.shift=3.0", "grpo.minibatches=2", "grpo.clip_range=1e-4",
             "grpo.drop_zero_advantage=true", "grpo.detach_uncond=true", "grpo.beta=0.04",
             "train.ema.enabled=true", "train.ema.warmup=optimizer_steps", "train.ema.every=1"]


@pytest.mark.parametrize("method, extra", [
    ("grpo", FLOW_GRPO), ("nft", []), ("grpo-guard", ["grpo.minibatches=2"]), ("sft-distill", []),
    ("multi-reward", ["grpo.objective=nft", "multi_reward.mode=weighted_sum"]),
    ("opd", ["opd.sampler=sde", "opd.sde_denominator=2sigma2", "opd.task_reduction=mean", "sampler.grid=sd3"]),
])
def test_one_step_on_the_tiny_sd3_trains_only_the_lora(sd3, method, extra):  # noqa: F811
    folder, teacher = sd3
    cfg = build_config({}, [
        f"method={method}", "tasks=brightness", f"model.checkpoint={folder}", "model.backbone=sd3",
        "model.lora_rank=4", "model.lora_alpha=8", "model.max_sequence_length=8", "sampler.steps=3",
        "sampler.guidance=2.0", "train.prompts_per_step=2", "grpo.group_size=2", "train.lr=1e-2",
        f"opd.teachers.brightness={teacher}",
    ] + extra)
    student = load_backbone(folder, "cpu", backbone_options(cfg.model))
    ctx = RunContext(cfg, ["brightness"], student, Ledger(student.flops_per_forward()))
    m = METHODS[method]()
    m.setup(ctx)
    base = {k: v.detach().clone() for k, v in student.transformer.state_dict().items()}
    info = m.train_step(ctx)
    assert all(torch.isfinite(torch.tensor(float(v))) for v in info.values())
    changed = {k for k, v in student.transformer.state_dict().items() if not torch.equal(v, base[k])}
    assert changed and all("lora" in k for k in changed), sorted(changed)[:3]
