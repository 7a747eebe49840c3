"""World pretraining (opd_bench.world.build.pretrain): seeded reproducibility and continuing with --init."""
import torch

from opd_bench.backbones import load_backbone
from opd_bench.checkpoint import load_checkpoint
from opd_bench.world.build.pretrain import PretrainConfig, pretrain


def _cfg(tiny_arch, **kw):
    return PretrainConfig(**{"steps": 4, "batch_size": 8, "n_pairs": 48, "resolution": 16, "warmup": 2,
                             "text_fraction": 0.5, "arch": dict(tiny_arch), **kw})


def test_pretrain_is_seeded_and_records_its_training(tiny_arch, tmp_path):
    m1 = pretrain(tmp_path / "a", _cfg(tiny_arch), command="test", show_progress=False)
    m2 = pretrain(tmp_path / "b", _cfg(tiny_arch), command="test", show_progress=False)
    m3 = pretrain(tmp_path / "c", _cfg(tiny_arch, seed=1), command="test", show_progress=False)
    ta, cfg = load_checkpoint(tmp_path / "a")
    tb, _ = load_checkpoint(tmp_path / "b")
    tc, _ = load_checkpoint(tmp_path / "c")
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not all(torch.equal(ta[k], tc[k]) for k in ta)
    assert m1["data_sha256"] == m2["data_sha256"] != m3["data_sha256"]
    assert cfg["training"]["config"]["seed"] == 0 and cfg["text_encoder"] == "included"
    assert cfg["training"]["metrics"]["final_loss_mean_last_200"] == m1["final_loss_mean_last_200"]


def test_pretrain_init_continues_and_can_add_a_glyph_encoder(tiny_arch, tmp_path):
    pretrain(tmp_path / "a", _cfg(tiny_arch), command="first", show_progress=False)
    pretrain(tmp_path / "g", _cfg(tiny_arch, init=str(tmp_path / "a"), seed=2, arch={"glyph_slots": 3}),
             command="second", show_progress=False)
    model = load_backbone(tmp_path / "g")
    assert model.arch["glyph_slots"] == 3 and model.glyph_encoder is not None
    _, cfg = load_checkpoint(tmp_path / "g")
    assert [h["command"] for h in cfg["training_history"]] == ["first"] and cfg["training"]["command"] == "second"
    # the glyph encoder trained along with the rest: its LayerNorm moved off the fresh init (weight 1, bias 0)
    assert not torch.equal(model.glyph_encoder.norm.weight, torch.ones_like(model.glyph_encoder.norm.weight))
    assert model.encode_prompts(['a sign "AB"']).states.shape[1] == tiny_arch["context_length"] + 3
    # pooled glyph conditioning can be added on --init as well; its zero-initialised output layer trains
    pretrain(tmp_path / "p", _cfg(tiny_arch, init=str(tmp_path / "g"), seed=3, arch={"glyph_pooled": 2}),
             command="third", show_progress=False)
    pooled = load_backbone(tmp_path / "p")
    assert pooled.arch["glyph_pooled"] == 2 and pooled.arch["glyph_slots"] == 3
    assert pooled.glyph_pooled.out.weight.abs().sum() > 0
    # and a glyph canvas, whose zero-initialised output layer trains too
    pretrain(tmp_path / "c", _cfg(tiny_arch, init=str(tmp_path / "a"), seed=4, arch={"glyph_canvas": 2}),
             command="fourth", show_progress=False)
    canvas = load_backbone(tmp_path / "c")
    assert canvas.arch["glyph_canvas"] == 2 and canvas.glyph_canvas.out.weight.abs().sum() > 0


def test_pretrain_step_hook_sees_the_ema_and_can_stop_early(tiny_arch, tmp_path):
    from opd_bench.world.build.pretrain import _lr_at

    seen = []

    def hook(step, model, ema):
        seen.append((step, {k: v.clone() for k, v in ema.items()}))
        return step == 2

    pretrain(tmp_path / "s", _cfg(tiny_arch), command="t", show_progress=False, on_step=hook)
    assert [s for s, _ in seen] == [1, 2]
    saved, _ = load_checkpoint(tmp_path / "s")   # the EMA at the stop is what was saved
    ema2 = seen[-1][1]
    assert all(torch.equal(saved[f"transformer.{k}"], ema2[f"transformer.{k}"])
               for k in ("proj_out.weight", "pos_embed.proj.weight"))
    cfg = _cfg(tiny_arch, steps=10, lr=1.0, schedule="constant")
    assert [_lr_at(s, cfg) for s in (0, 1, 5, 9)] == [0.5, 1.0, 1.0, 1.0]
    assert _lr_at(9, _cfg(tiny_arch, steps=10, lr=1.0)) < 0.2   # cosine decays towards 0.1 lr
