"""World pretraining (opd_bench.world.pretrain): seeded reproducibility and continuing with --init."""
import torch

from opd_bench.backbones import load_backbone
from opd_bench.checkpoint import load_checkpoint
from opd_bench.world.pretrain import PretrainConfig, pretrain


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
