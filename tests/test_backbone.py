"""The embedded backbone: a real diffusers SD3Transformer2DModel + transformers CLIPTextModel + open_clip BPE."""
import pytest
import torch

from opd_bench.backbones import EmbeddedBackbone, load_backbone
from opd_bench.checkpoint import load_checkpoint
from opd_bench.errors import CheckpointError
from opd_bench.rollout import rollout
from opd_bench.sampler import cfg_combine


def test_default_architecture_size():
    m = EmbeddedBackbone()
    n = sum(p.numel() for p in m.transformer.parameters())
    assert 1e6 <= n <= 3e6
    assert m.latent_shape == (3, 32, 32)
    assert m.flops_per_forward() > 2 * n  # at least 2 FLOPs per parameter per token


def test_tokenizer_is_real_clip_bpe(tiny_model):
    ids = tiny_model.tokenizer(["a red circle"])[0]
    # CLIP BPE ids: <start_of_text>=49406, 'a</w>'=320, 'red</w>'=736, 'circle</w>'=7117, <end_of_text>=49407
    assert ids[:5].tolist() == [49406, 320, 736, 7117, 49407]


def test_prompt_encoding_is_cached_and_matches_uncached(tiny_model):
    c1 = tiny_model.encode_prompts(["a", "b"])
    assert set(tiny_model._prompt_cache) == {"a", "b", ""}
    c2 = tiny_model.encode_prompts(["a", "b"], cache=False)
    assert torch.allclose(c1.states, c2.states, atol=1e-6) and torch.allclose(c1.pooled, c2.pooled, atol=1e-6)


def test_guided_velocity_is_cfg_of_two_forwards(tiny_model):
    cond = tiny_model.encode_prompts(["a red circle", "K7"])
    x = torch.randn(2, *tiny_model.latent_shape)
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        v = tiny_model.velocity(x, t, cond, 4.5)
        vc = tiny_model.denoise(x, t, cond.states, cond.pooled)
        vu = tiny_model.denoise(x, t, cond.uncond_states.expand(2, -1, -1), cond.uncond_pooled.expand(2, -1))
        assert torch.allclose(v, cfg_combine(vu, vc, 4.5), atol=1e-5)
        assert torch.allclose(tiny_model.velocity(x, t, cond, 1.0), vc)


@pytest.mark.parametrize("noise_level", [0.0, 0.7])
def test_rollout_records_trajectory_and_is_seeded(tiny_model, noise_level):
    cond = tiny_model.encode_prompts(["a", "b", "c"])
    r1 = rollout(tiny_model, cond, steps=5, guidance=2.0, noise_level=noise_level, generator=torch.Generator().manual_seed(3))
    r2 = rollout(tiny_model, cond, steps=5, guidance=2.0, noise_level=noise_level, generator=torch.Generator().manual_seed(3))
    assert r1.states.shape == (3, 6, *tiny_model.latent_shape)
    assert r1.images.shape == (3, 3, 16, 16) and r1.images.min() >= 0 and r1.images.max() <= 1
    assert torch.equal(r1.states, r2.states)
    assert r1.timesteps[0] == 1 and r1.timesteps[-1] == 0
    if noise_level:
        assert r1.log_probs.shape == (3, 5) and torch.isfinite(r1.log_probs).all()
    else:
        assert r1.log_probs is None
    r3 = rollout(tiny_model, cond, steps=5, guidance=2.0, noise_level=noise_level, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(r1.states[:, 0], r3.states[:, 0])


def test_save_load_roundtrip_and_transformer_only_checkpoint(tiny_model, tmp_path):
    cond = tiny_model.encode_prompts(["a blue square"])
    x = torch.randn(1, *tiny_model.latent_shape)
    base = tiny_model.save(tmp_path / "base")
    loaded = load_backbone(base)
    with torch.no_grad():
        assert torch.equal(loaded.velocity(x, 0.5, loaded.encode_prompts(["a blue square"]), 3.0),
                           tiny_model.velocity(x, 0.5, cond, 3.0))
    # a fine-tuned copy stores only its transformer and points at the base's text encoder by digest
    with torch.no_grad():
        for p in loaded.transformer.parameters():
            p.add_(0.01)
    child = loaded.save(tmp_path / "child")
    t, cfg = load_checkpoint(child)
    assert not any(k.startswith("text_encoder.") for k in t) and cfg["text_encoder"]["from"] == str(base)
    again = load_backbone(child)
    with torch.no_grad():
        assert torch.equal(again.velocity(x, 0.5, again.encode_prompts(["a blue square"]), 3.0),
                           loaded.velocity(x, 0.5, loaded.encode_prompts(["a blue square"]), 3.0))
    # if the base changes under it, the child refuses to load
    tiny_model.save(tmp_path / "base", extra_config={"note": "retrained"})
    with pytest.raises(CheckpointError, match="digest"):
        load_backbone(child)


def test_trainable_parameters_exclude_frozen_text_encoder(tiny_model):
    ids = {id(p) for p in tiny_model.trainable_parameters()}
    assert all(id(p) not in ids for p in tiny_model.text_encoder.parameters())
    tiny_model.set_train_text_encoder(True)
    assert any(id(p) in {id(q) for q in tiny_model.trainable_parameters()} for p in tiny_model.text_encoder.parameters())


def test_spell_quoted_tokenises_quoted_text_per_character():
    from opd_bench.backbones.embedded import EmbeddedBackbone, spell_quoted

    assert spell_quoted('a sign that says "JZP" and "7"') == 'a sign that says "J Z P" and "7"'
    assert spell_quoted("no quotes here") == "no quotes here"
    torch.manual_seed(0)
    plain = EmbeddedBackbone({"resolution": 16, "spell_quoted": False})
    spelled = EmbeddedBackbone({"resolution": 16, "spell_quoted": True})
    spelled.load_state_dict(plain.state_dict())
    # BPE merges "jzp" into sub-word pieces; spelled out, every character is its own token (as for "J Z P")
    a = plain._encode_text(['the text "JZP"'])[0]
    b = spelled._encode_text(['the text "JZP"'])[0]
    c = plain._encode_text(['the text "J Z P"'])[0]
    assert not torch.allclose(a, b) and torch.allclose(b, c)


def test_glyph_encoder_slots_layout_and_persistence(tiny_model, tmp_path):
    from opd_bench.backbones.embedded import GlyphEncoder

    enc = GlyphEncoder(slots=4, dim=8)
    chars, layout = enc.ids(['a sign that says "J4"', "no text", '"abcdef"', '"Q?"'])
    # J=10, 4=31 (A-Z then 0-9, 1-based); lower case is upper-cased; "?" is the unknown id 37; truncated at 4
    assert chars.tolist() == [[10, 31, 0, 0], [0, 0, 0, 0], [1, 2, 3, 4], [17, 37, 0, 0]]
    # layout id of slot k of an n-character text: 1 + n(n-1)/2 + k, so "J4" and "Q?" (n=2) share slots 2, 3
    assert layout.tolist() == [[2, 3, 0, 0], [0, 0, 0, 0], [7, 8, 9, 10], [2, 3, 0, 0]]

    base = tiny_model.save(tmp_path / "base")
    model = load_backbone(base)
    before = model.encode_prompts(['a sign "AB"']).states
    model.add_glyph_module("glyph_slots", 4)
    states = model._encode_text(['a sign "AB"', 'a sign "BA"'])[0]
    assert states.shape[1] == before.shape[1] + 4
    assert torch.equal(states[:1, : before.shape[1]], before)   # the text encoder's states are unchanged
    assert not torch.allclose(states[0, -4:-2], states[1, -4:-2])                 # the glyph slots differ
    x = torch.randn(1, *model.latent_shape)
    with torch.no_grad():
        v = model.velocity(x, 0.5, model.encode_prompts(['a sign "AB"']), 3.0)
    saved = model.save(tmp_path / "glyph", include_text_encoder=True)
    again = load_backbone(saved)
    assert again.arch["glyph_slots"] == 4
    with torch.no_grad():
        assert torch.equal(again.velocity(x, 0.5, again.encode_prompts(['a sign "AB"']), 3.0), v)
    # a transformer-only child takes the glyph encoder from its text source too
    child = load_backbone(again.save(tmp_path / "child"))
    with torch.no_grad():
        assert torch.equal(child.velocity(x, 0.5, child.encode_prompts(['a sign "AB"']), 3.0), v)
    # glyph weights in a checkpoint whose architecture has no glyph encoder are refused
    tensors, cfg = load_checkpoint(saved)
    cfg["arch"]["glyph_slots"] = 0
    from opd_bench.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "bad", tensors, cfg, kind="embedded_t2i")
    with pytest.raises(CheckpointError, match="glyph_encoder"):
        load_backbone(tmp_path / "bad")


def test_glyph_pooled_starts_neutral_is_slot_aware_and_persists(tiny_model, tmp_path):
    model = load_backbone(tiny_model.save(tmp_path / "base"))
    prompts = ['a sign "AB"', 'a sign "BA"', 'a sign "A"', "a red circle"]
    before = model._encode_text(prompts)
    model.add_glyph_module("glyph_pooled", 3)
    after = model._encode_text(prompts)
    # its output layer starts at zero: adding it to a trained model changes nothing
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    with pytest.raises(ValueError, match="already"):
        model.add_glyph_module("glyph_pooled", 3)
    torch.manual_seed(0)
    torch.nn.init.normal_(model.glyph_pooled.out.weight)
    extra = model._encode_text(prompts)[1] - before[1]
    # same characters in other slots ("AB" vs "BA") and another length ("A") give other vectors; no text, zero
    assert not torch.allclose(extra[0], extra[1]) and not torch.allclose(extra[0], extra[2])
    assert not torch.allclose(extra[3], torch.zeros_like(extra[3]))   # the "empty text" code is learned too
    assert torch.equal(model._encode_text(prompts[:1])[0], before[0][:1])  # the token states stay untouched
    x = torch.randn(1, *model.latent_shape)
    with torch.no_grad():
        v = model.velocity(x, 0.5, model.encode_prompts(prompts[:1], cache=False), 3.0)
    again = load_backbone(model.save(tmp_path / "pooled", include_text_encoder=True))
    assert again.arch["glyph_pooled"] == 3
    with torch.no_grad():
        assert torch.equal(again.velocity(x, 0.5, again.encode_prompts(prompts[:1]), 3.0), v)
        child = load_backbone(again.save(tmp_path / "child"))   # transformer-only: takes it from its source
        assert torch.equal(child.velocity(x, 0.5, child.encode_prompts(prompts[:1]), 3.0), v)


def test_glyph_canvas_lays_characters_over_columns_starts_neutral_and_persists(tiny_model, tmp_path):
    model = load_backbone(tiny_model.save(tmp_path / "base"))
    prompts = ['a sign "AB"', 'a sign "BA"', 'a sign "A"', "a red circle"]
    x = torch.randn(len(prompts), *model.latent_shape)
    t = torch.full((len(prompts),), 0.5)
    with torch.no_grad():
        v0 = model.denoise(x, t, *model._encode_text(prompts))
    model.add_glyph_module("glyph_canvas", 3)
    canvas = model.glyph_canvas
    grid = model.arch["resolution"] // model.arch["transformer"]["patch_size"]
    assert canvas.grid == grid
    # the starting layout: each column over at most one character, left to right, a centred line of n
    for n in (1, 2, 3):
        gate = canvas.gate[n - 1]
        assert torch.all(gate.sum(-1) <= 1) and torch.all(gate[:, n:] == 0)
        slots = [int(g.argmax()) for g in gate if g.sum() > 0]
        assert slots == sorted(slots) and set(slots) == set(range(n))
    states, pooled = model._encode_text(prompts)
    assert states.shape[1] == model.arch["context_length"] + grid
    assert torch.all(states[3, -grid:] == 0)                       # no quoted text: an empty canvas
    with torch.no_grad():                                          # zero output layer: nothing changes yet
        assert torch.allclose(model.denoise(x, t, states, pooled), v0)
    torch.manual_seed(0)
    torch.nn.init.normal_(canvas.out.weight)
    bias = canvas.image_bias(states[:, -grid:])
    assert torch.all(bias[3] == 0)
    assert not torch.allclose(bias[0], bias[1]) and not torch.allclose(bias[0], bias[2])   # order and length
    # the bias reaches every row of image tokens: patch-embed output = plain embedding + bias per column
    seen = []
    h = model.transformer.pos_embed.register_forward_hook(lambda m, i, o: seen.append(o.clone()) and None)
    with torch.no_grad():
        v = model.denoise(x, t, states, pooled)
        plain = model.transformer.pos_embed(x)                      # outside denoise: no canvas
    h.remove()
    rows = seen[0].shape[1] // grid
    assert torch.allclose(seen[0] - plain, bias.repeat(1, rows, 1), atol=1e-5)
    assert torch.allclose(v[3], v0[3], atol=1e-6) and not torch.allclose(v[0], v0[0])
    with torch.no_grad():
        v1 = model.velocity(x[:1], 0.5, model.encode_prompts(prompts[:1], cache=False), 3.0)
    again = load_backbone(model.save(tmp_path / "canvas", include_text_encoder=True))
    assert again.arch["glyph_canvas"] == 3
    with torch.no_grad():
        assert torch.equal(again.velocity(x[:1], 0.5, again.encode_prompts(prompts[:1]), 3.0), v1)
        child = load_backbone(again.save(tmp_path / "child"))   # transformer-only: takes it from its source
        assert torch.equal(child.velocity(x[:1], 0.5, child.encode_prompts(prompts[:1]), 3.0), v1)
