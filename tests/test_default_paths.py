"""Bit-identity of the default embedded-world paths (issue 20): short fixed-seed GRPO, OPD, multi-reward and
cascade steps on the tiny test world give exactly the weights they gave before the Flow-GRPO-parity,
DiffusionOPD-convention and new-method fields were added (all of which default to today's behaviour).

The digests were recorded with the code before those changes, on CPU float32, per machine (machine_key): another
torch build or CPU generation legitimately changes float rounding, so the test is skipped on a machine without a
record (re-record there from that code)."""
import hashlib
from pathlib import Path

import pytest
import torch
from machine import machine_key
from tiny_world import make_tiny_world

from opd_bench.backbones import load_backbone
from opd_bench.config import build_config
from opd_bench.ledger import Ledger
from opd_bench.methods import METHODS
from opd_bench.runner import RunContext


#: per machine key: the digests of the code before issue 20 (commit 53638fa), each run on that machine; the
#: thread count does not change them
DIGESTS = {
    "2.14.1+cu130 AVX512 no-amx": {
        'grpo': '1ae2f003cbb177dad5538110e46e1ce529f3235762376f790be0e3264125b8db',
        'opd': 'fe0887f7ca7268cc2ffcedaac49b11bebeabb996e6bad90de1cf1315142ad10b',
        'opd_sde': '38eaa91fdbfea47bf33906dc5fed28619d3aff273e0ba6acfdc739f4ccfac5d3',
        'multi-reward': 'b45e5e59da113703d01bd539c1ba400700b820c262545f89afa7572ed9cb0b61',
        'grpo_shared': '35f1644af467c185e0270152d7cacda5fc7e544180b13351af99201af243756a',
        'grpo_beta0': 'a6c87540f779156a751057047e60f3bdd0367066cbb6f83ff82c59ca4fff46f8',
    },
    "2.14.1+cu130 AVX512 amx": {
        'grpo': 'bb6d02eafb0780b273bdeb3374c8d0cc84d4e241442c6e28506d8e9301e7543a',
        'grpo_beta0': 'f5ded3f5b9f999e24bea9ab68765eba7a90a93eb2311509642e5ebbd15b14dbd',
        'grpo_shared': 'dcca1355ab8506b2511e128b99ab4d484a09454925a8a4a6a38038db667a70d8',
        'multi-reward': '49ac8cd84216e13a317797d37dd5c0e1043c832cff4b6abb619e7c78d37d9624',
        'opd': 'd04c18276ac117bae5d73a94bd3b3332852e6dc4561cf520e69382082da516e4',
        'opd_sde': '61ee37baedb18626445469eef3bc8f259b3b06179c2a1cc4de2de6a48291918d',
    },
}


def recorded() -> dict:
    """This machine's recorded digests; skipped on a machine none were recorded on (run the cases at commit
    53638fa there, e.g. with a test that prints ``weights_after`` for each case, and add them)."""
    key = machine_key()
    if key not in DIGESTS:
        pytest.skip(f"no digests recorded for this machine ({key}; have: {', '.join(DIGESTS)})")
    return DIGESTS[key]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_tiny_world(tmp_path_factory.mktemp("world"))


def weights_after(world, method, rounds=2, **over):
    h = hashlib.sha256()
    ctx = trained(world, method, rounds, **over)
    for p in list(ctx.params) + list(ctx.ema):
        h.update(p.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def trained(world, method, rounds=2, **over) -> RunContext:
    """The run context after ``rounds`` fixed-seed steps of ``method`` on the tiny world."""
    tasks = ["brightness"]
    overrides = [f"method={method}", f"tasks={','.join(tasks)}", f"model.checkpoint={world / 'base'}",
                 "sampler.steps=3", "sampler.guidance=2.0", "train.prompts_per_step=2", "grpo.group_size=2",
                 "opd.teachers.brightness=" + str(world / "teacher"), "train.ema.enabled=true", "train.ema.every=1",
                 "train.lr=1e-3"] + [f"{k}={v}" for k, v in over.items()]
    cfg = build_config({}, overrides)
    torch.manual_seed(0)
    student = load_backbone(cfg.model.checkpoint)
    ctx = RunContext(cfg, tasks, student, Ledger(student.flops_per_forward()))
    m = METHODS[method]()
    m.setup(ctx)
    for r in range(rounds):
        ctx.round = r
        m.train_step(ctx)
    return ctx


CASES = {"grpo": {}, "opd": {}, "opd_sde": {"opd.sampler": "sde"}, "multi-reward": {"multi_reward.mode": "weighted_sum", "multi_reward.normalize": "per_reward"},
         "grpo_shared": {"grpo.group_noise": "shared", "grpo.inner_epochs": 2}, "grpo_beta0": {"grpo.beta": 0.0}}


@pytest.mark.parametrize("case", sorted(CASES))
def test_default_paths_are_bit_identical(world, case):
    method = case.split("_")[0]
    assert weights_after(world, method, **CASES[case]) == recorded()[case]


#: options that must give the recorded weights bit for bit (issue 26): case -> (recorded case, overrides). The
#: digests were recorded with a second student forward per trained step; opd.student_from_rollout (the default
#: since) must reproduce them, and so must the second-forward path it replaced (the SD3.5 recipe's).
SAME_WEIGHTS = {"opd_second_forward": ("opd", {"opd.student_from_rollout": "false"}),
                "opd_sde_second_forward": ("opd_sde", {"opd.sampler": "sde", "opd.student_from_rollout": "false"})}


@pytest.mark.parametrize("case", sorted(SAME_WEIGHTS))
def test_speed_options_give_the_default_weights(world, case):
    case_, over = SAME_WEIGHTS[case]
    assert weights_after(world, "opd", **over) == recorded()[case_]


def test_student_from_rollout_runs_one_student_forward_fewer_per_trained_step(world):
    """The default really takes the fused path: no separate student training forwards in the ledger, the same
    backward passes and rollout forwards."""
    plain, fused = trained(world, "opd", **{"opd.student_from_rollout": "false"}).ledger.phases["train"], \
        trained(world, "opd").ledger.phases["train"]
    assert plain["nfe/student/training"] > 0 and fused["nfe/student/training"] == 0
    for key in ("backward", "nfe/student/rollout", "nfe/teacher/training", "images"):
        assert fused[key] == plain[key] > 0, key
