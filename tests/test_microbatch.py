"""train.micro_batch (gradient accumulation): one step on a batch of B rows in one piece and in k micro-batches of
B/k rows accumulate the same gradient and take the same optimizer step, for every method, on the embedded
backbone and on a tiny real SD3 pipeline (LoRA)."""
import pytest
import torch
from tiny_world import make_tiny_sd3_world, make_tiny_world

from opd_bench.backbones import backbone_options, load_backbone
from opd_bench.backbones.sd3 import SD3Backbone
from opd_bench.config import build_config
from opd_bench.ledger import Ledger
from opd_bench.methods import METHODS
from opd_bench.microbatch import micro_batches, micro_indices
from opd_bench.runner import RunContext


def test_micro_indices_cover_the_batch_in_order():
    assert micro_indices(5, 0) == [None] and micro_indices(5, 5) == [None] and micro_indices(5, 9) == [None]
    parts = micro_indices(5, 2)
    assert [p.tolist() for p in parts] == [[0, 1], [2, 3], [4]]
    ws = [w for w, _ in micro_batches(5, 2, torch.arange(5))]
    assert ws == [0.4, 0.4, 0.2]
    (w, x, s), = micro_batches(3, 0, torch.arange(3), 0.5)
    assert w == 1.0 and x.tolist() == [0, 1, 2] and s == 0.5


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    d = make_tiny_world(tmp_path_factory.mktemp("world"))
    return [f"model.checkpoint={d / 'base'}", f"opd.teachers.brightness={d / 'teacher'}"]


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    folder, teacher = make_tiny_sd3_world(tmp_path_factory.mktemp("sd3"))
    return [f"model.checkpoint={folder}", "model.backbone=sd3", "model.lora_rank=4", "model.lora_alpha=8",
            "model.max_sequence_length=8", f"opd.teachers.brightness={teacher}"]


def one_step(model_args, method, micro, extra=()):
    """(the gradients at each optimizer step, the weights after the round) of one round with train.micro_batch."""
    cfg = build_config({}, [f"method={method}", "tasks=brightness", "sampler.steps=3", "sampler.guidance=2.0",
                            "train.prompts_per_step=4", "grpo.group_size=2", "train.lr=1e-3", "grpo.beta=0.05",
                            f"train.micro_batch={micro}", *model_args, *extra])
    torch.manual_seed(0)
    student = load_backbone(cfg.model.checkpoint, "cpu", {**backbone_options(cfg.model), "dtype": torch.get_default_dtype()})
    ctx = RunContext(cfg, ["brightness"], student, Ledger(student.flops_per_forward()))
    m = METHODS[method]()
    m.setup(ctx)
    if isinstance(student, SD3Backbone):   # LoRA adapters (student, teacher) are kept float32 on any base
        for q in student.transformer.parameters():
            q.data = q.data.to(torch.get_default_dtype())
    grads, step = [], ctx.optimizer_step

    def recording_step():
        grads.append([p.grad.detach().clone() for p in ctx.params if p.grad is not None])
        return step()

    ctx.optimizer_step = recording_step
    info = m.train_step(ctx)
    return grads, [p.detach().clone() for p in ctx.params], info, ctx.ledger.to_dict()


def assert_same_update(model_args, method, micro, extra=()):
    """In float64, so that the comparison sees the accumulation, not float32 rounding (which Adam's first steps
    amplify to ~1e-6 on near-zero gradients)."""
    if method == "opd":   # micro-batches take OPD's second student forward (opd.student_from_rollout needs whole
        extra = [*extra, "opd.student_from_rollout=false"]   # batches): the whole batch does the same work
    torch.set_default_dtype(torch.float64)
    try:
        g1, w1, i1, l1 = one_step(model_args, method, 0, extra)
        gk, wk, ik, lk = one_step(model_args, method, micro, extra)
    finally:
        torch.set_default_dtype(torch.float32)
    assert w1[0].dtype == torch.float64
    assert len(g1) == len(gk) >= 1
    for a, b in zip(g1, gk):
        scale = max(float(t.abs().max()) for t in a)
        assert scale > 0
        for x, y in zip(a, b):
            torch.testing.assert_close(y, x, rtol=0, atol=1e-6 * scale)
    for x, y in zip(w1, wk):
        torch.testing.assert_close(y, x, rtol=0, atol=1e-6)
    assert l1 == lk   # the ledger counts the same work
    for k in i1:
        assert ik[k] == pytest.approx(i1[k], rel=1e-5, abs=1e-6), k


METHOD_CASES = [("grpo", 2, []), ("grpo", 1, ["grpo.minibatches=2", "grpo.beta_per_task.brightness=0.1"]),
                ("opd", 1, []), ("opd", 3, ["opd.sampler=sde", "opd.objective=ppo"]), ("nft", 3, []),
                ("grpo-guard", 4, []), ("sft-distill", 2, []),
                ("multi-reward", 2, ["multi_reward.mode=weighted_sum"]), ("cascade", 2, [])]


@pytest.mark.parametrize("method, micro, extra", METHOD_CASES)
def test_micro_batches_give_the_same_update_embedded(embedded, method, micro, extra):
    assert_same_update(embedded, method, micro, extra)


@pytest.mark.parametrize("method, micro, extra", [("grpo", 2, []), ("opd", 1, []), ("nft", 4, [])])
def test_micro_batches_give_the_same_update_sd3(sd3, method, micro, extra):
    assert_same_update(sd3, method, micro, extra)


@pytest.mark.parametrize("backbone, method", [("embedded", "grpo"), ("embedded", "opd"), ("sd3", "grpo"), ("sd3", "opd")])
def test_gradient_checkpointing_gives_the_same_gradients(request, monkeypatch, backbone, method):
    """model.gradient_checkpointing recomputes the blocks in the backward (diffusers' checkpointing is called)
    and yields the same gradients and update."""
    model_args = request.getfixturevalue(backbone)
    plain = one_step(model_args, method, 0)
    calls = []
    checkpoint = torch.utils.checkpoint.checkpoint

    def counting(*a, **k):
        calls.append(1)
        return checkpoint(*a, **k)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting)
    ckpt = one_step(model_args, method, 0, ["model.gradient_checkpointing=true"])
    assert calls, "the transformer blocks were not checkpointed"
    for a, b in zip(plain[0], ckpt[0]):
        for x, y in zip(a, b):
            torch.testing.assert_close(y, x, rtol=1e-6, atol=1e-7)
    for x, y in zip(plain[1], ckpt[1]):
        torch.testing.assert_close(y, x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("backbone, extra", [("embedded", []), ("embedded", ["opd.sampler=sde", "train.micro_batch=3"]),
                                             ("sd3", [])])
def test_batched_teacher_gives_the_same_update_in_one_forward(request, backbone, extra):
    """opd.batched_teacher: the teacher means of all trained steps from one batched forward give the per-step
    update (float64, to 1e-6) and the same ledger."""
    model_args = request.getfixturevalue(backbone)
    torch.set_default_dtype(torch.float64)
    try:
        g1, w1, _, l1 = one_step(model_args, "opd", 0, extra)
        gb, wb, _, lb = one_step(model_args, "opd", 0, extra + ["opd.batched_teacher=true"])
    finally:
        torch.set_default_dtype(torch.float32)
    for a, b in zip(g1, gb):
        scale = max(float(t.abs().max()) for t in a)
        for x, y in zip(a, b):
            torch.testing.assert_close(y, x, rtol=0, atol=1e-6 * scale)
    for x, y in zip(w1, wb):
        torch.testing.assert_close(y, x, rtol=0, atol=1e-6)
    assert l1 == lb


def test_batched_teacher_is_one_forward_per_task(embedded):
    cfg = build_config({}, ["method=opd", "tasks=brightness", "sampler.steps=4", "train.prompts_per_step=2",
                            "opd.batched_teacher=true", *embedded])
    student = load_backbone(cfg.model.checkpoint)
    ctx = RunContext(cfg, ["brightness"], student, Ledger(student.flops_per_forward()))
    m = METHODS["opd"]()
    m.setup(ctx)
    teacher, rows = ctx.teacher("brightness"), []
    real = teacher.denoise
    teacher.denoise = lambda x, *a, **k: (rows.append(x.shape[0]), real(x, *a, **k))[1]
    m.train_step(ctx)
    assert rows == [2 * 3 * 2]   # one forward: 3 trained steps x 2 prompts x 2 CFG halves


@pytest.mark.parametrize("method, extra", [("grpo", ["grpo.group_noise=shared"]), ("nft", [])])
def test_rewards_overlapped_with_the_rollout_give_the_same_update(embedded, monkeypatch, method, extra):
    """rewards.overlap_parts=2: the step's rollout in 2 parts, the first scored in the background thread while the
    second is sampled: the same rewards, gradients and weights as one rollout scored after it."""
    import threading

    from opd_bench.tasks import get_task

    spec = get_task("brightness")
    reward, threads = spec.reward, []

    def recording(images, records):
        threads.append(threading.current_thread().name)
        return reward(images, records)

    monkeypatch.setattr(spec, "reward", recording)
    g1, w1, i1, l1 = one_step(embedded, method, 0, extra)
    assert threads == ["MainThread"]
    gk, wk, ik, lk = one_step(embedded, method, 0, ["rewards.overlap_parts=2", *extra])
    assert len(threads) == 3 and all(t.startswith("reward") for t in threads[1:])   # 2 parts, in the background
    assert ik["reward"] == pytest.approx(i1["reward"], abs=1e-6)
    # float32: the two half-size rollouts round differently from one (1.7e-6 measured on AMX, 0 on AVX-512)
    for a, b in zip(g1 + [w1], gk + [wk]):
        for x, y in zip(a, b):
            torch.testing.assert_close(y, x, rtol=0, atol=1e-5)
    assert l1 == lk
