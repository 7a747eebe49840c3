"""opd_bench.parallel's DDP bookkeeping in 2 real gloo processes: DDP averages the gradients in the last DECLARED
backward pass of a step; a step that runs fewer backward passes than declared still gets the average (the bucketed
all-reduce at the step), and one that runs more stops with an error instead of averaging only part of them."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from tiny_world import TINY_ARCH


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loss(model, rank: int, k: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(10 * k + rank)   # other data on each rank and backward pass
    x = torch.randn(2, *model.latent_shape, generator=g)
    cond = model.encode_prompts(["a red ball", "two cats"])
    return model.velocity(x, 0.5, cond, 1.0).pow(2).mean()


def _worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    from opd_bench.backbones import EmbeddedBackbone
    from opd_bench.distributed import Dist
    from opd_bench.parallel import make_grad_sync

    torch.manual_seed(0)
    model = EmbeddedBackbone(TINY_ARCH)
    sync = make_grad_sync("ddp", Dist(), model)
    result = {}
    for name, declared, runs in (("exact", 3, 3), ("fewer", 3, 2)):
        for p in sync.params:
            p.grad = None
        sync.expect_backwards(declared)
        local = None
        for k in range(runs):
            with torch.no_grad():   # a gradient-free forward through the wrapper in between (a rollout, a reference)
                model.velocity(torch.zeros(1, *model.latent_shape), 0.3, model.encode_prompts(["x"]), 1.0)
            loss = _loss(model, rank, k)
            loss.backward()
            sync.after_backward()
        sync.reduce()
        result[name] = [p.grad.clone() for p in sync.params]
    # the expected average: each rank's own accumulated gradient, all-reduced by hand
    for name, runs in (("exact", 3), ("fewer", 2)):
        ref = EmbeddedBackbone(TINY_ARCH)
        ref.load_state_dict(model.state_dict())
        for k in range(runs):
            _loss(ref, rank, k).backward()
        grads = [p.grad for p in ref.transformer.parameters()]
        for t in grads:
            torch.distributed.all_reduce(t)
            t.div_(2)
        result[name + "_expected"] = grads
    result["counts"] = dict(sync.counts)
    sync.expect_backwards(1)
    errors = []
    for k in range(2):
        _loss(model, rank, k).backward()
        try:
            sync.after_backward()
        except RuntimeError as e:
            errors.append(str(e))
    result["errors"] = errors
    out[rank] = result


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="gloo not available")
def test_ddp_syncs_in_the_last_declared_backward_and_falls_back_or_stops_otherwise():
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(_free_port(), out), nprocs=2, join=True)
    for rank in (0, 1):
        r = out[rank]
        for name in ("exact", "fewer"):
            assert len(r[name]) == len(r[name + "_expected"])
            for a, b in zip(r[name], r[name + "_expected"]):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
        assert r["counts"] == {"in_backward": 1, "at_step": 1}   # exact: DDP in the backward; fewer: at the step
        assert len(r["errors"]) == 1 and "more backward passes" in r["errors"][0]
    for a, b in zip(out[0]["exact"], out[1]["exact"]):
        assert torch.equal(a, b)   # both ranks hold the same averaged gradient
