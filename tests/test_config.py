"""Config: YAML -> typed dataclasses, dotted overrides, errors naming the bad key."""
import pytest

from opd_bench.config import RunConfig, build_config, dump_config, load_config, to_flat_dict
from opd_bench.errors import ConfigError


def test_default_yaml_matches_dataclass_defaults():
    cfg = load_config("default")
    assert to_flat_dict(cfg) == to_flat_dict(build_config({"name": "default"}))


def test_every_method_md_convention_is_a_field():
    flat = to_flat_dict(RunConfig())
    for key in [
        "sampler.logprob_reduce", "grpo.kl_denominator", "grpo.adv_std", "opd.detach_advantage",
        "sampler.timestep_fraction", "sampler.noise_level", "sampler.guidance", "opd.teacher_guidance",
        "sampler.shift", "opd.sampler", "opd.objective", "multi_reward.mode", "multi_reward.normalize",
        "train.ema.decay", "budget.unit",
    ]:
        assert key in flat, key


def test_dotted_overrides_are_typed():
    cfg = load_config("default", ["train.lr=2e-5", "opd.sampler=sde", "tasks=ocr,geneval", "train.ema.enabled=true"])
    assert cfg.train.lr == 2e-5 and isinstance(cfg.train.lr, float)
    assert cfg.opd.sampler == "sde" and cfg.tasks == ["ocr", "geneval"] and cfg.train.ema.enabled is True


@pytest.mark.parametrize(
    "override, message",
    [
        ("grpo.adv_std=batch", "grpo.adv_std: must be one of group, global"),
        ("sampler.steps=0", "sampler.steps: must be > 0"),
        ("sampler.stepz=3", "sampler.stepz: unknown key"),
        ("train.lr=fast", "train.lr: expected a number"),
        ("sampler.steps=2.5", "sampler.steps: expected an integer"),
        ("sampler.timestep_fraction=1.5", "sampler.timestep_fraction: must be in (0, 1]"),
        ("opd.objective=ppo", "opd.objective: 'ppo' needs opd.sampler=sde"),
        ("train.ema.enabled=maybe", "train.ema.enabled: expected true or false"),
        ("train.prompt_sampling=stratified", "train.prompt_sampling: must be one of uniform, balanced"),
        ("novalue", "expected KEY=VALUE"),
        ("train.grad_sync=zero3", "train.grad_sync: must be one of ddp, allreduce, fsdp"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config("default", [override])
    assert message in str(e.value)


def test_dump_roundtrip(tmp_path):
    cfg = load_config("default", ["grpo.beta=0.01"])
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(cfg))
    assert to_flat_dict(load_config(str(p))) == to_flat_dict(cfg)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("no_such_config")


def test_fsdp_is_for_full_fine_tuning():
    assert load_config("default", ["train.grad_sync=fsdp"]).train.grad_sync == "fsdp"   # the embedded backbone
    with pytest.raises(ConfigError, match="train.grad_sync: fsdp shards full fine-tuning"):
        load_config("default", ["train.grad_sync=fsdp", "model.backbone=sd3"])
