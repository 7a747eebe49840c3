"""The bucketed gradient all-reduce (opd_bench.distributed.bucketed_mean_): two gloo processes average a list
of tensors of mixed sizes and dtypes exactly as the per-tensor mean, with fewer collectives."""
import os

import torch
import torch.distributed as td
import torch.multiprocessing as mp

from opd_bench.distributed import bucketed_mean_, buckets


def tensors(rank):
    g = torch.Generator().manual_seed(rank)
    return [torch.randn(s, generator=g, dtype=d) for s, d in
            [((3, 4), torch.float32), ((1000,), torch.float32), ((7,), torch.float64), ((2, 2), torch.float32)]]


def test_buckets_respect_the_cap_and_dtype():
    ts = tensors(0)
    assert [len(g) for g in buckets(ts, cap_bytes=4000)] == [1, 1, 1, 1]   # 48 B + 4000 B > 4000 B
    assert [len(g) for g in buckets(ts, cap_bytes=4048)] == [2, 1, 1]
    assert [[t.dtype for t in g] for g in buckets(ts)] == [[torch.float32] * 2, [torch.float64], [torch.float32]]
    assert [len(g) for g in buckets(ts, cap_bytes=100)] == [1, 1, 1, 1]


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    td.init_process_group("gloo", rank=rank, world_size=world)
    calls = []
    real = td.all_reduce
    td.all_reduce = lambda t, **k: (calls.append(t.numel()), real(t, **k))[1]
    ts = tensors(rank)
    bucketed_mean_(ts, world)
    td.all_reduce = real
    torch.save({"t": ts, "calls": calls}, f"{out}/{rank}.pt")
    td.destroy_process_group()


def test_two_gloo_processes_average_like_the_per_tensor_mean(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    want = [(a + b) / 2 for a, b in zip(tensors(0), tensors(1))]
    for rank in (0, 1):
        got = torch.load(tmp_path / f"{rank}.pt")
        for x, y in zip(got["t"], want):
            torch.testing.assert_close(x, y, rtol=0, atol=1e-7)
        assert len(got["calls"]) == 3 < len(want)   # float32 | float64 | float32: 3 buckets for 4 tensors
