"""Evaluation sharded over processes (``evaluate(..., dist=...)``): each rank samples and scores only its
contiguous part of the prompts, computing exactly the single-process per-sample values for them, and the
gathered result is the single-process one."""
import numpy as np
import pytest
import torch
from tiny_world import make_tiny_world

from opd_bench.backbones import load_backbone
from opd_bench.distributed import Dist
from opd_bench.evaluate import EvalProtocol, evaluate


class StubDist:
    """Rank ``rank`` of ``world``: records the rows it gathers and returns the single-process ones."""

    enabled = True

    def __init__(self, rank, world, full):
        self.rank, self.world_size, self.full, self.local = rank, world, full, []

    split = Dist.split

    def gather_rows(self, t):
        self.local.append(t.clone())
        return torch.as_tensor(self.full[len(self.local) - 1])


def test_split_is_contiguous_and_even():
    parts = [StubDist(r, 3, None).split(8) for r in range(3)]
    assert [(p.start, p.stop) for p in parts] == [(0, 3), (3, 6), (6, 8)]


def test_each_rank_computes_its_part_of_the_single_process_eval(tmp_path):
    model = load_backbone(make_tiny_world(tmp_path) / "base")
    protocol = EvalProtocol(steps=2, guidance=2.0, prompts_per_task=5, batch_size=2, bootstrap=10)
    one = evaluate(model, ["aesthetic"], protocol, show_progress=False)["tasks"]["aesthetic"]
    keys = [k for k in one["per_prompt"][0] if k != "prompt"]
    full = [np.array([row[k] for row in one["per_prompt"]], dtype=np.float32) for k in keys]
    for rank, want in ((0, slice(0, 3)), (1, slice(3, 5))):
        d = StubDist(rank, 2, full)
        res = evaluate(model, ["aesthetic"], protocol, show_progress=False, dist=d)["tasks"]["aesthetic"]
        assert [len(t) for t in d.local] == [want.stop - want.start] * len(keys)
        for t, f in zip(d.local, full):
            np.testing.assert_allclose(t.numpy(), f[want], rtol=0, atol=1e-6)
        assert res["mean"] == pytest.approx(one["mean"]) and res["n"] == 5
