"""Peak GPU memory of one GRPO step and one OPD round of the shipped SD3.5-Medium recipes, through the real runner.

The recipes ``configs/sd35m_grpo.yaml`` and ``configs/sd35m_opd.yaml`` as shipped (batch sizes, groups, CFG,
minibatches, EMA, LoRA r 32, bf16, 512 px), run by the suite's own ``RunContext`` and methods on a randomly
initialised SD3.5-Medium transformer and SD3 VAE (``benchmarks/gpu_step.build_backbone``; no weights are
downloaded). What is not the model is synthetic: prompt encodings are fixed random tensors of the real shapes
per prompt (no text encoders in memory), the tasks' rewards are the images' mean brightness (no reward model in
memory), and the OPD teachers are random LoRA adapters on the same transformer (as in a real run). Each recipe is
measured as shipped and with the memory options of issue 23 (``train.micro_batch``,
``model.gradient_checkpointing``); the table reports rows per forward, the peak bytes of activations autograd
holds for the backward (counted by storage through saved-tensor hooks: device-independent, so the CPU smoke run
shows what the options save), peak allocated GiB (``torch.cuda.max_memory_allocated``, GPU only) and seconds
per step.

    python benchmarks/gpu_memory.py [--micro 8] [--set key=value ...] [--json out.json]   # a CUDA GPU
    python benchmarks/gpu_memory.py --tiny     # CPU smoke run of the same code (tiny model; memory not measured)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Dict, List

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from gpu_step import build_backbone  # noqa: E402
from opd_bench.config import load_config  # noqa: E402
from opd_bench.ledger import Ledger  # noqa: E402
from opd_bench.methods import METHODS  # noqa: E402
from opd_bench.runner import RunContext  # noqa: E402
from opd_bench.tasks.base import Task, register_task, registry  # noqa: E402

RECIPES = {"grpo": "sd35m_grpo", "opd": "sd35m_opd"}


class BenchTask(Task):
    """Synthetic prompts, and the images' mean brightness as the reward (varies within a group)."""

    world = "bench"

    def prompts(self, split: str) -> List[dict]:
        return [{"prompt": f"{self.name} prompt {i}"} for i in range(256)]

    def reward(self, images, records):
        return images.float().mean(dim=(1, 2, 3))

    def metrics(self, images, records):
        return {"score": self.reward(images, records)}


def bench_tasks(n: int) -> List[str]:
    names = [f"bench{k}" for k in range(n)]
    for name in set(names) - set(registry()):
        register_task(name)(type(f"Bench{name}", (BenchTask,), {"name": name}))
    return names


def random_text(model):
    """``_encode_text`` for a model without text encoders: fixed random encodings per prompt, real shapes."""
    cfg, length = model.transformer.config, model.text_tokens()

    def encode(prompts):
        out = []
        for p in prompts:
            g = torch.Generator().manual_seed(zlib.crc32(p.encode()))
            out.append((torch.randn(length, cfg.joint_attention_dim, generator=g),
                        torch.randn(cfg.pooled_projection_dim, generator=g)))
        states = torch.stack([s for s, _ in out]).to(model.device, model.dtype)
        return states, torch.stack([q for _, q in out]).to(model.device, model.dtype)
    return encode


class SavedActivations:
    """Context manager: the peak bytes of tensors autograd keeps for the backward (activations), counted by
    storage (a tensor saved by several ops counts once) and leaving out parameters: a device-independent
    measure of what micro-batching and checkpointing save, available on the CPU too."""

    def __init__(self):
        self.live: Dict[int, list] = {}   # storage pointer -> [bytes, references]
        self.now = self.peak = 0

    def _pack(self, t):
        if isinstance(t, torch.nn.Parameter) or t.device.type == "meta":
            return t
        key = t.untyped_storage().data_ptr()
        entry = self.live.setdefault(key, [t.untyped_storage().nbytes(), 0])
        if entry[1] == 0:
            self.now += entry[0]
            self.peak = max(self.peak, self.now)
        entry[1] += 1
        return _Saved(t, key, self)

    def _release(self, key):
        entry = self.live[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.now -= entry[0]
            del self.live[key]

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda s: s.t if isinstance(s, _Saved) else s)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


class _Saved:
    __slots__ = ("t", "key", "meter")

    def __init__(self, t, key, meter):
        self.t, self.key, self.meter = t, key, meter

    def __del__(self):
        self.meter._release(self.key)


def measure(method: str, overrides: List[str], tiny: bool, device, dtype, resolution: int, tmp: Path) -> Dict:
    cfg = load_config(RECIPES[method], overrides)
    tasks = bench_tasks(len(cfg.tasks))
    model = build_backbone(tiny, device, dtype, resolution, cfg.model.lora_rank)
    model._encode_text = random_text(model)
    if method == "opd":   # random non-zero teacher adapters, saved and loaded as a run loads them
        with torch.no_grad():
            student = [q.detach().clone() for q in model.trainable_parameters()]
            for q in model.trainable_parameters():
                q.normal_(0, 1e-3)
            path = model.save(tmp / f"teacher_{len(list(tmp.iterdir()))}")
            for q, v in zip(model.trainable_parameters(), student):
                q.copy_(v)
        cfg.opd.teachers = {t: str(path) for t in tasks}
        cfg.opd.teacher_guidance = {}
    cfg.tasks = tasks
    model.train()
    ctx = RunContext(cfg, tasks, model, Ledger(model.flops_per_forward()), str(device))
    m = METHODS[method]()
    m.setup(ctx)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    with SavedActivations() as saved:
        m.train_step(ctx)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    rows = cfg.train.prompts_per_step * (cfg.grpo.group_size if method == "grpo" else 1)
    if method == "grpo":
        rows //= cfg.grpo.minibatches
    per_forward = min(rows, cfg.train.micro_batch or rows) * model.forwards_per_velocity(cfg.sampler.guidance)
    del ctx, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"rows_per_forward": per_forward, "peak_gib": peak, "seconds": seconds,
            "peak_saved_activations_mib": saved.peak / 2**20,
            "images": cfg.train.prompts_per_step * (cfg.grpo.group_size if method == "grpo" else len(tasks))}


def main(argv=None) -> Dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny model on the CPU (smoke test)")
    ap.add_argument("--micro", type=int, default=None, help="train.micro_batch of the variants (default 4; tiny 2)")
    ap.add_argument("--method", choices=sorted(RECIPES), action="append", help="default: both")
    ap.add_argument("--set", action="append", default=[], help="extra config override for every variant")
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    resolution = 32 if args.tiny else 512
    micro = args.micro or (2 if args.tiny else 4)
    base = [f"device={device.type}", f"model.dtype={str(dtype).replace('torch.', '')}", f"model.resolution={resolution}"]
    if args.tiny:
        base += ["sampler.steps=3", "model.lora_rank=4", "model.lora_alpha=8"]
    variants = {"as shipped": [], f"micro_batch={micro}": [f"train.micro_batch={micro}"],
                f"micro_batch={micro} + checkpointing": [f"train.micro_batch={micro}", "model.gradient_checkpointing=true"]}
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "dtype": str(dtype), "resolution": resolution, "tiny": args.tiny, "rows": []}
    print("| recipe | variant | rows per forward (CFG x2) | peak saved activations MiB | peak GiB | s / step |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.method or sorted(RECIPES):
            extra = {f"micro_batch={micro} + batched teacher": [f"train.micro_batch={micro}", "opd.batched_teacher=true"]}
            for name, over in {**variants, **(extra if method == "opd" else {})}.items():
                r = measure(method, base + over + args.set, args.tiny, device, dtype, resolution, Path(tmp))
                results["rows"].append({"recipe": RECIPES[method], "variant": name, **r})
                peak = "n/a (CPU)" if r["peak_gib"] != r["peak_gib"] else f"{r['peak_gib']:.1f}"
                print(f"| {RECIPES[method]} | {name} | {r['rows_per_forward']} | {r['peak_saved_activations_mib']:.1f} | {peak} | {r['seconds']:.2f} |",
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
