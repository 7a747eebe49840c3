"""Memory options of issue 23: the bounded prompt-encoding cache (model.prompt_cache_size / _cpu_size) and the
reward models' device (rewards.device)."""
import pytest
import torch

from opd_bench.config import build_config
from opd_bench.prompt_cache import PromptCache


def entry(v):
    return (torch.full((2,), float(v)), torch.full((1,), float(v)))


def test_lru_evicts_to_the_cpu_tier_then_drops():
    c = PromptCache(device_entries=2, cpu_entries=1)
    c[""] = entry(0)                        # pinned: not counted, never evicted
    c["a"], c["b"] = entry(1), entry(2)
    assert list(c.device) == ["", "a", "b"] and not c.cpu
    c["a"]                                  # a is now the most recent: b is evicted next
    c["c"] = entry(3)
    assert list(c.device) == ["", "a", "c"] and list(c.cpu) == ["b"]
    c["d"] = entry(4)                       # a goes to the CPU tier, which drops b (its LRU)
    assert list(c.device) == ["", "c", "d"] and list(c.cpu) == ["a"] and "b" not in c
    assert torch.equal(c["a"][0], entry(1)[0])   # a CPU hit comes back to the device tier, unchanged
    assert list(c.device) == ["", "d", "a"] and list(c.cpu) == ["c"]   # and c took its place there
    assert c.stats["cpu_hits"] == 1 and c.stats["dropped"] == 1
    assert "" in c.device


def test_unbounded_by_default():
    c = PromptCache()
    for i in range(50):
        c[str(i)] = entry(i)
    assert len(c.device) == 50 and not c.cpu and c.stats["evictions"] == 0


@pytest.mark.parametrize("device_entries, cpu_entries", [(2, 0), (2, 3), (1, 100)])
def test_bounded_cache_gives_the_same_encodings(tiny_model, device_entries, cpu_entries):
    prompts = [f"a photo of {w}" for w in ("a cat", "a dog", "two cats", "a red cup", "a dog")]
    batches = [prompts[:3], prompts[2:], prompts, prompts[::-1], prompts[1:2] * 4]
    free = [tiny_model.encode_prompts(b) for b in batches]
    tiny_model.configure_prompt_cache(device_entries, cpu_entries)
    bounded = [tiny_model.encode_prompts(b) for b in batches]
    for f, b in zip(free, bounded):
        for name in ("states", "pooled", "uncond_states", "uncond_pooled"):
            assert torch.equal(getattr(f, name), getattr(b, name)), name
    cache = tiny_model._prompt_cache
    assert len(cache.device) <= device_entries + 1 and len(cache.cpu) <= cpu_entries
    assert cache.stats["evictions"] > 0
    assert (cache.stats["cpu_hits"] > 0) == (cpu_entries > 2)


def test_run_context_applies_the_cache_size(tiny_model):
    from opd_bench.ledger import Ledger
    from opd_bench.runner import RunContext

    cfg = build_config({}, ["model.prompt_cache_size=3", "model.prompt_cache_cpu_size=5"])
    RunContext(cfg, ["brightness"], tiny_model, Ledger(tiny_model.flops_per_forward()))
    assert (tiny_model._prompt_cache.device_entries, tiny_model._prompt_cache.cpu_entries) == (3, 5)


def test_rewards_device_reaches_the_real_reward_models(hf_clip_folder):
    from opd_bench.tasks import configure_run_tasks, get_task

    cfg = build_config({}, ["rewards.device=cpu", f"real_tasks.pickscore.weights={hf_clip_folder}"])
    configure_run_tasks(cfg)
    task = get_task("pickscore")
    assert task.device == "cpu"
    model = task.model
    assert model.device == torch.device("cpu")
    assert all(p.device == torch.device("cpu") for p in model.clip.model.parameters())
    cfg = build_config({}, ["rewards.device=meta", f"real_tasks.pickscore.weights={hf_clip_folder}"])
    configure_run_tasks(cfg)   # a new device rebuilds the task's model there
    assert get_task("pickscore").model.device == torch.device("meta")
    configure_run_tasks(build_config({}, [f"real_tasks.pickscore.weights={hf_clip_folder}"]))


def test_unavailable_rewards_device_is_one_line(tmp_path):
    import subprocess
    import sys

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    r = subprocess.run([sys.executable, "-m", "opd_bench.cli", "run", "--method", "grpo", "--tasks", "aesthetic",
                        "--runs-dir", str(tmp_path), "--set", "rewards.device=cuda"], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr[-500:]
    assert "rewards.device" in r.stderr and "Traceback" not in r.stderr
