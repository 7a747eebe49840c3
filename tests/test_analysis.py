"""Analyses (method.md section 7): the math on hand-made inputs, and the estimators on a tiny real model."""
import math

import numpy as np
import pytest
from tiny_world import make_tiny_world
import torch

from opd_bench.analysis import normalize
from opd_bench.analysis.forgetting import (backward_transfer, first_trained_rows, forgetting, forgetting_resolution,
                                          half_width_matrix, matrix_rows, normalize_matrix, score_matrix)
from opd_bench.analysis.hacking import hacking_summary, proxy_gold_series
from opd_bench.analysis.interference import (
    GradContext, affinity_from_losses, conflict_over_batches, conflict_rate, cosine_matrix, lookahead, magnitude_imbalance,
    negative_transfer, task_loss_and_grad,
)
from opd_bench.analysis.variance import GradMoments, estimator_variance, variance_ratio, variance_stats
from opd_bench.backbones import load_backbone
from opd_bench.config import build_config
from opd_bench.tasks import register_task, registry
from opd_bench.tasks.base import Task

if "ana_brightness" not in registry():

    @register_task("ana_brightness")
    class AnaBrightness(Task):
        """Test-only task: reward = mean image brightness."""

        def prompts(self, split):
            return [{"prompt": f"a bright image number {i}"} for i in range(16 if split == "train" else 4)]

        def reward(self, images, records):
            return images.mean(dim=(1, 2, 3))

        def metrics(self, images, records):
            return {"score": self.reward(images, records)}


# ------------------------------------------------------------------------------------------- forgetting


def test_forgetting_and_bwt_on_a_hand_made_matrix():
    # rows: after stage 0, 1, 2; columns: tasks in stage order
    R = np.array([[0.8, 0.1, 0.2],
                  [0.5, 0.9, 0.3],
                  [0.6, 0.4, 0.7]])
    F = forgetting(R)
    assert np.allclose(F, [0.8 - 0.6, 0.9 - 0.4, 0.3 - 0.7])
    # BWT = mean_{i<T}(R[T][i] - R[i][i]) = ((0.6 - 0.8) + (0.4 - 0.9)) / 2
    assert backward_transfer(R) == pytest.approx(-0.35)
    assert backward_transfer(R, columns=[1]) == pytest.approx(0.4 - 0.9)   # one scale only: the chosen columns
    assert math.isnan(backward_transfer(R, columns=[]))
    assert np.isnan(forgetting(R[:1])).all() and math.isnan(backward_transfer(R[:2]))
    # counting only checkpoints after each task was first trained (cascade: its own stage onwards): task 2 was
    # trained only in the last stage, so it has no earlier checkpoint to forget from
    first = first_trained_rows(["after stage 0", "after stage 1", "final"], 3, cascade=True)
    assert first == [0, 1, 2]
    F = forgetting(R, first)
    assert np.allclose(F[:2], [0.8 - 0.6, 0.9 - 0.4]) and np.isnan(F[2])
    # a joint method's "start" row is the base model, before any training: it never counts
    R2 = np.array([[0.9, 0.2], [0.5, 0.4], [0.6, 0.3]])   # start, round 1, final
    first = first_trained_rows(["start", "round 1", "final"], 2, cascade=False)
    assert first == [1, 1]
    assert np.allclose(forgetting(R2, first), [0.5 - 0.6, 0.4 - 0.3])
    assert np.allclose(forgetting(R2), [0.9 - 0.6, 0.4 - 0.3])            # the old definition blamed the base
    assert np.isnan(forgetting(R2[[0, 2]], first_trained_rows(["start", "final"], 2, False))).all()
    # on the val learning curve the start row is "start curve": it never counts either
    assert first_trained_rows(["start curve", "curve 200 images", "final curve"], 2, cascade=False) == [1, 1]


def test_normalisation_uses_teacher_where_known_else_raw():
    assert normalize(0.5, 0.2, 0.8) == pytest.approx(0.5)
    assert normalize(0.5, 0.2, None) == 0.5 and normalize(0.5, 0.2, 0.2) == 0.5
    # undefined (teacher not above the base) -> raw; WHICH tasks are normalised is the report plan's decision
    assert normalize(0.5, 0.6, 0.5) == 0.5
    assert normalize(0.5, 0.25, 0.35) == pytest.approx(2.5)
    N = normalize_matrix([[0.2, 3.0], [0.8, 4.0]], ["a", "b"], {"a": 0.2, "b": 1.0}, {"a": 0.6})
    assert np.allclose(N, [[0.0, 3.0], [1.5, 4.0]])


def test_score_matrix_rows_for_cascade_and_other_methods():
    def row(label, rnd, a, b):
        return {"label": label, "round": rnd, "budget": {"images": rnd * 8.0}, "scores": {"a": a, "b": b}}

    hist = [row("start", 0, 0.1, 0.1), row("round 1", 1, 0.5, 0.2), row("end of stage 0", 1, 0.5, 0.2),
            row("round 2", 2, 0.3, 0.6), row("final", 2, 0.3, 0.6)]
    labels, R = score_matrix(hist, ["a", "b"], cascade=True)
    assert labels == ["after stage 0", "final"] and np.allclose(R, [[0.5, 0.2], [0.3, 0.6]])
    labels, R = score_matrix(hist, ["a", "b"], cascade=False)
    assert labels == ["start", "end of stage 0", "final"] and R.shape == (3, 2)


def test_forgetting_resolution_by_hand_and_unknown_where_the_intervals_are_degenerate():
    """The smallest |F| a run resolves: sqrt(2) x the median 95% half-width of the rows F reads; a zero-width
    interval (a stratified bootstrap with one prompt per category) is unknown, not perfect resolution."""
    def row(label, k, a, ci_a, ci_b):
        return {"label": label, "round": k, "budget": {"images": 8.0 * k}, "scores": {"a": a, "b": 0.25},
                "ci": {"a": ci_a, "b": ci_b}}

    hist = [row("start", 0, 0.1, [0.0, 0.2], [0.25, 0.25]), row("round 1", 1, 0.5, [0.3, 0.5], [0.25, 0.25]),
            row("round 2", 2, 0.4, [0.3, 0.7], [0.25, 0.25]), row("final", 3, 0.3, [0.2, 0.6], [0.25, 0.25])]
    H = half_width_matrix(matrix_rows(hist)[1], ["a", "b"])
    assert np.allclose(H[:, 0], [0.1, 0.1, 0.2, 0.2]) and np.isnan(H[:, 1]).all()
    first = first_trained_rows(score_matrix(hist, ["a", "b"])[0], 2, False)    # the start row is not read
    res = forgetting_resolution(H, first)
    assert res[0] == pytest.approx(math.sqrt(2) * 0.2) and np.isnan(res[1])
    assert forgetting_resolution(H)[0] == pytest.approx(math.sqrt(2) * 0.15)


# ------------------------------------------------------------------------------------------- interference


def test_variance_ratio_falls_back_to_the_plug_in_estimate_when_a_signal_is_unresolved():
    pair = ("opd_sde", "opd_ppo")
    both = {"opd_sde": {"V": 1.5, "V_debiased": 2.0}, "opd_ppo": {"V": 3.0, "V_debiased": 8.0}}
    assert variance_ratio(both, pair) == pytest.approx(0.25)
    assert variance_ratio(both, pair[::-1]) == pytest.approx(4.0)
    unresolved = {"opd_sde": {"V": 1.5, "V_debiased": 2.0}, "opd_ppo": {"V": 3.0, "V_debiased": "inf"}}
    assert variance_ratio(unresolved, pair) == pytest.approx(0.5)   # plug-in of both: 1.5 / 3.0
    assert variance_ratio({"opd_sde": {"V": 0.0, "V_debiased": "inf"}, "opd_ppo": {"V": 3.0, "V_debiased": 1.0}},
                          pair) is None


def test_conflict_rate_and_imbalance_on_hand_made_gradients():
    g = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), torch.tensor([-3.0, 0.1])]
    C = cosine_matrix(g)
    assert np.allclose(np.diag(C), 1) and C[0, 1] == pytest.approx(0.0)
    assert C[0, 2] < 0 and C[1, 2] > 0
    assert conflict_rate(C) == pytest.approx(1 / 3)  # pairs (0,1) 0, (0,2) < 0, (1,2) > 0
    norms = [float(x.norm()) for x in g]
    assert magnitude_imbalance(norms) == pytest.approx(math.hypot(3, 0.1) / 1.0)
    assert magnitude_imbalance([1.0, 0.0]) == float("inf")
    assert negative_transfer({"a": 0.4, "b": 0.9}, {"a": 0.5}) == {"a": pytest.approx(-0.1), "b": None}


def _gram(G):  # [B, T, D] -> Gram of the batch-major rows
    flat = G.reshape(-1, G.shape[-1])
    return flat @ flat.T


def test_conflict_over_batches_intervals_and_noise_floor():
    """Planted mean gradients: tasks 0/1 at cosine -0.5 (conflict), 0/2 orthogonal; per-batch noise. The
    mean-gradient cosine, its jackknife (checked against direct leave-one-out cosines), verdicts and coverage."""
    rng = np.random.default_rng(6)
    B, D = 8, 300
    e1, e2, e3 = np.eye(D)[0], np.eye(D)[1], np.eye(D)[2]
    mus = np.stack([e1, -0.5 * e1 + np.sqrt(0.75) * e2, e3]) * 3.0
    covered, trials = 0, 100
    for trial in range(trials):
        G = mus[None] + rng.normal(0, 0.1, (B, 3, D))
        r = conflict_over_batches(_gram(G), B, 3)
        covered += r["cosine_low"][0][1] <= -0.5 <= r["cosine_high"][0][1]
        if trial == 0:
            m = G.mean(0)
            assert r["cosine"][0][1] == pytest.approx(m[0] @ m[1] / np.linalg.norm(m[0]) / np.linalg.norm(m[1]))
            assert r["pair_verdicts"][0][1] == "conflict" and r["resolved_conflict_rate"] == pytest.approx(1 / 3)
            assert r["pair_verdicts"][0][2] == "indistinguishable from 0"
            # two batches of one task: ||mu||^2 / (||mu||^2 + D sd^2) = 9 / (9 + 3)
            assert r["same_task_cosine"] == pytest.approx(0.75, abs=0.05)
            # the jackknife's leave-one-out cosines equal direct recomputation
            loo = [np.delete(G, b, 0).mean(0) for b in range(B)]
            direct = [x[0] @ x[1] / np.linalg.norm(x[0]) / np.linalg.norm(x[1]) for x in loo]
            se = np.sqrt((B - 1) / B * np.sum((np.array(direct) - np.mean(direct)) ** 2))
            from scipy import stats as st
            assert r["cosine_high"][0][1] - r["cosine_debiased"][0][1] == pytest.approx(st.t.ppf(0.975, B - 1) * se)
            assert r["cosine_debiased"][0][1] == pytest.approx(B * r["cosine"][0][1] - (B - 1) * np.mean(direct))
    assert covered / trials >= 0.9
    # pure noise: nothing is resolved, and the same-task noise floor is ~0 as well
    r = conflict_over_batches(_gram(rng.normal(0, 1, (B, 3, D))), B, 3)
    assert abs(r["same_task_cosine"]) < 0.05
    assert sum(v != "indistinguishable from 0" for i, row in enumerate(r["pair_verdicts"]) for v in row[i + 1:]) <= 1


def test_lookahead_affinity_sign_on_a_toy_case():
    """Quadratic tasks L_i(w) = ||w - c_i||^2: a step on a task whose optimum lies the same way helps (Z > 0),
    one whose optimum lies the opposite way hurts (Z < 0)."""
    w = torch.zeros(2, requires_grad=True)
    centres = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([2.0, 0.5]), "c": torch.tensor([-1.0, 0.0])}

    def loss(t):
        return float(((w.detach() - centres[t]) ** 2).sum())

    grads = {}
    for t, c in centres.items():
        w.grad = None
        ((w - c) ** 2).sum().backward()
        grads[t] = w.grad.detach().clone()
    L0, L1 = lookahead([w], list(centres), loss, {t: -0.1 * g for t, g in grads.items()})
    assert torch.equal(w.detach(), torch.zeros(2))  # restored
    Z = affinity_from_losses(L0, L1)
    idx = {t: i for i, t in enumerate(centres)}
    assert Z[idx["a"], idx["b"]] > 0 and Z[idx["b"], idx["a"]] > 0      # aligned tasks help each other
    assert Z[idx["c"], idx["a"]] < 0 and Z[idx["a"], idx["c"]] < 0      # opposed tasks hurt each other
    assert all(Z[i, i] > 0 for i in range(3))
    S = affinity_from_losses(L0, L1, self_normalized=True)
    assert np.allclose(np.diag(S), 1) and S[idx["c"], idx["a"]] < 0


def test_lookahead_step_is_the_runs_adamw_update_from_its_saved_state():
    """optimizer_update = one AdamW step (the runner's optimizer: lr, betas, weight decay, grad clip) from the saved
    state, checked against a hand-computed AdamW step; parameters and the saved state are left untouched."""
    from opd_bench.analysis.interference import optimizer_update

    torch.manual_seed(0)
    w = [torch.randn(3, requires_grad=True), torch.randn(2, 2, requires_grad=True)]
    lr, wd, betas, eps, clip = 0.01, 0.1, (0.9, 0.99), 1e-8, 0.5
    make = lambda: torch.optim.AdamW(w, lr=lr, weight_decay=wd, betas=betas, eps=eps)  # noqa: E731
    opt = make()                                        # a "run": three steps, then its state is saved
    for _ in range(3):
        for p in w:
            p.grad = torch.randn_like(p)
        opt.step()
    state = opt.state_dict()
    theta = torch.cat([p.detach().reshape(-1) for p in w]).double()
    g = torch.randn(7, dtype=torch.float64) * 3
    delta = optimizer_update(w, g, make, state, grad_clip=clip)
    assert torch.equal(torch.cat([p.detach().reshape(-1) for p in w]).double(), theta)   # restored
    assert all(p.grad is None for p in w) and int(state["state"][0]["step"]) == 3            # state untouched
    # by hand: clip, decoupled weight decay, bias-corrected moments at step 4
    gc = g * min(1.0, clip / (float(g.norm()) + 1e-6))
    m = torch.cat([state["state"][i]["exp_avg"].reshape(-1) for i in (0, 1)]).double()
    v = torch.cat([state["state"][i]["exp_avg_sq"].reshape(-1) for i in (0, 1)]).double()
    m, v, t = betas[0] * m + (1 - betas[0]) * gc, betas[1] * v + (1 - betas[1]) * gc ** 2, 4
    new = theta * (1 - lr * wd) - lr * (m / (1 - betas[0] ** t)) / ((v / (1 - betas[1] ** t)).sqrt() + eps)
    assert torch.allclose(delta, new - theta, atol=1e-6)
    # no saved state: a fresh optimizer's first step, about lr * sign(g) per weight
    first = optimizer_update(w, g, make, None)
    assert torch.allclose(first, -lr * torch.sign(g) - lr * wd * theta, atol=1e-5)
    # the lookahead moves the parameters by exactly that update
    seen = []
    lookahead(w, ["j"], lambda t: seen.append(torch.cat([p.detach().reshape(-1) for p in w]).double()) or 0.0,
              {"j": delta})
    assert torch.allclose(seen[1] - seen[0], delta, atol=1e-6)


# ------------------------------------------------------------------------------------------- variance


def test_variance_and_snr_on_synthetic_gradients_with_known_variance():
    rng = np.random.default_rng(0)
    K, D, s = 4000, 50, 0.5
    mu = np.ones(D)
    G = mu + s * rng.standard_normal((K, D))
    st = variance_stats(G)
    # E||g - mu||^2 = D s^2, ||mu||^2 = D: V -> s^2 = 0.25
    assert st["V"] == pytest.approx(s**2, rel=0.05) and st["SNR"] == pytest.approx(1 / s**2, rel=0.05)
    # the streaming moments equal the direct formula
    gb = G.mean(0)
    direct = np.mean(((G - gb) ** 2).sum(1)) / (gb @ gb)
    assert st["V"] == pytest.approx(direct, rel=1e-9)
    m = GradMoments()
    for g in [torch.tensor([1.0, 1.0]), torch.tensor([3.0, 1.0])]:
        m.add(g)
    assert m.stats()["V"] == pytest.approx(1.0 / 5.0)  # mean (2, 1); deviations (-1, 0), (1, 0)


def test_debiased_variance_does_not_saturate_at_k_minus_1_and_its_interval_covers_the_truth():
    """Small signal, K = 16: the plug-in V sits near K - 1 = 15 whatever the true V, the debiased V recovers the
    planted V = tr(Sigma) / ||mu||^2 on average and its jackknife interval covers it in most trials."""
    rng = np.random.default_rng(5)
    K, D, trials = 16, 400, 120
    mu = np.full(D, 0.5)                      # ||mu||^2 = 100
    for s, true_v in ((2.0, 16.0), (4.0, 64.0)):   # tr(Sigma) = D s^2 -> V = 1600 / 100, 6400 / 100
        plug, deb, covered = [], [], 0
        for _ in range(trials):
            st = variance_stats(mu + s * rng.standard_normal((K, D)))
            plug.append(st["V"])
            deb.append(st["V_debiased"])
            covered += st["V_debiased_low"] <= true_v <= st["V_debiased_high"]
        assert np.median(plug) < K - 1                    # the plug-in is capped below K - 1 ...
        assert np.median(plug) < 0.8 * true_v or true_v < K  # ... so it cannot show V = 64
        assert np.median(deb) == pytest.approx(true_v, rel=0.25)
        assert covered / trials >= 0.8
    # pure noise: the plug-in says ~K - 1 (as if the estimator had a signal); the debiased estimate is far above
    # it (or inf: signal not resolved)
    st = variance_stats(rng.standard_normal((K, 4000)))
    assert st["V"] == pytest.approx(K - 1, rel=0.1) and st["V_debiased"] > 10 * K


# ------------------------------------------------------------------------------------------- tiny model


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory, ):
    arch = {"resolution": 16, "context_length": 16,
            "transformer": {"patch_size": 4, "num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 16},
            "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}}
    d = tmp_path_factory.mktemp("ana_world")
    make_tiny_world(d, arch)
    return d


def _ctx(world, **over):
    cfg = build_config({}, [f"model.checkpoint={world / 'base'}", "tasks=ana_brightness", "sampler.steps=4",
                            "sampler.guidance=1.0", "opd.noise_level=0.7", "grpo.group_size=2", "grpo.beta=0",
                            f"opd.teachers.ana_brightness={world / 'teacher'}"] + [f"{k}={v}" for k, v in over.items()])
    return GradContext(cfg, ["ana_brightness"], load_backbone(world / "base").train())


def test_grad_context_reproduces_the_methods_gradient_without_stepping(tiny_world):
    ctx = _ctx(tiny_world)
    before = [p.detach().clone() for p in ctx.params]
    l1, g1 = task_loss_and_grad(ctx, "grpo", "ana_brightness", 5)
    l2, g2 = task_loss_and_grad(ctx, "grpo", "ana_brightness", 5)
    assert torch.equal(g1, g2) and l1 == l2 and float(g1.norm()) > 0
    assert all(torch.equal(a, p) for a, p in zip(before, ctx.params))  # optimizer_step never stepped
    _, g_opd = task_loss_and_grad(ctx, "opd", "ana_brightness", 5)
    assert float(g_opd.norm()) > 0


def test_closed_form_opd_has_lower_relative_variance_than_ppo_style_opd(tiny_world):
    """The paper's claim on a tiny model: same objective, same samples, the closed form is far less noisy."""
    ctx = _ctx(tiny_world)
    sde = estimator_variance(ctx, "opd_sde", "ana_brightness", n=4, k=8)
    ppo = estimator_variance(ctx, "opd_ppo", "ana_brightness", n=4, k=8)
    assert len(sde["per_step"]) == len(ctx.trained_steps())
    assert sde["V"] < ppo["V"], (sde["V"], ppo["V"])


def test_hacking_series_and_summary():
    hist = [{"round": r, "label": "x", "budget": {"images": 8.0 * r},
             "metrics": {"aesthetic": {"score": 0.1 * r, "gold": [0.5, 0.6, 0.4][r]}, "geneval": {"score": 0.0}}}
            for r in range(3)]
    s = proxy_gold_series(hist, "images")
    assert list(s) == ["aesthetic"] and s["aesthetic"]["x"] == [0.0, 8.0, 16.0]
    summ = hacking_summary(s)["aesthetic"]
    assert summ["proxy_gain"] == pytest.approx(0.2) and summ["gold_drop_from_peak"] == pytest.approx(0.2)
