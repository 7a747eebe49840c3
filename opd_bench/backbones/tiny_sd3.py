"""A tiny, randomly initialised ``StableDiffusion3Pipeline`` built from configs, for tests and CPU benchmarks.

Real classes, real code paths, no downloads: a small ``SD3Transformer2DModel``, an ``AutoencoderKL`` with 16
latent channels (as SD3's), two ``CLIPTextModelWithProjection`` text encoders with real CLIP BPE tokenizers
(a truncated vocabulary built from open_clip's bundled BPE merges, so ids agree with OpenAI CLIP's for the
merges kept), optionally a tiny ``T5EncoderModel`` (fed by a CLIP tokenizer: no sentencepiece file is needed)
and SD3's ``FlowMatchEulerDiscreteScheduler``. :func:`build_tiny_sd3_pipeline` saves it in the standard
diffusers folder layout, exactly as a real SD3/SD3.5 checkpoint folder.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Dict, List, Tuple

import torch

#: number of BPE merges kept from open_clip's vocabulary (the full CLIP vocabulary has 48,894).
N_MERGES = 2000
#: CLIP hidden size / projection size of each tiny text encoder; their concatenation is the pooled size.
CLIP_HIDDEN = 32
CLIP_PROJ = 32
#: T5 width = the transformer's joint attention dim (CLIP states are zero-padded to it, as in SD3).
JOINT_DIM = 64


def clip_bpe_vocab(n_merges: int = N_MERGES) -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    """(vocab, merges) of CLIP's byte-level BPE truncated to the first ``n_merges`` merges, built as CLIP does:
    256 byte symbols, the same with ``</w>``, one token per merge, then the two special tokens."""
    import open_clip
    from open_clip.tokenizer import bytes_to_unicode

    bpe = Path(os.path.dirname(open_clip.__file__)) / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe).read().decode("utf-8").split("\n")[1 : n_merges + 1]
    merges = [tuple(line.split()) for line in lines]
    tokens = list(bytes_to_unicode().values())
    tokens += [t + "</w>" for t in tokens]
    tokens += ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def tiny_clip_tokenizer(max_length: int = 77):
    """A CLIP tokenizer on the truncated vocabulary (vocab/merges passed as objects, not keyword file paths)."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_bpe_vocab()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def _tiny_clip_text_encoder(vocab_size: int, bos: int, eos: int):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    return CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=CLIP_HIDDEN, intermediate_size=2 * CLIP_HIDDEN, projection_dim=CLIP_PROJ,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
        bos_token_id=bos, eos_token_id=eos, pad_token_id=eos,
    ))


def _tiny_t5(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=JOINT_DIM, d_kv=16, d_ff=64, num_layers=1,
                                   num_heads=2, decoder_start_token_id=0))


def tiny_transformer_config(latent_size: int = 16) -> dict:
    """Config of the tiny SD3 transformer (16 latent channels, patch 2, SD3.5-style qk RMS norm)."""
    return dict(sample_size=latent_size, patch_size=2, in_channels=16, out_channels=16, num_layers=2,
                attention_head_dim=8, num_attention_heads=2, joint_attention_dim=JOINT_DIM,
                caption_projection_dim=16, pooled_projection_dim=2 * CLIP_PROJ, pos_embed_max_size=latent_size,
                qk_norm="rms_norm", dual_attention_layers=(0,))


def tiny_vae():
    """A tiny AutoencoderKL with SD3's 16 latent channels and scaling/shift factors; downsamples by 2."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=16, norm_num_groups=8, sample_size=32, scaling_factor=1.5305, shift_factor=0.0609,
        use_quant_conv=False, use_post_quant_conv=False,
    )


def build_tiny_sd3_pipeline(folder, seed: int = 0, resolution: int = 32, with_t5: bool = False) -> Path:
    """Build a tiny random SD3 pipeline (images of ``resolution`` px) and ``save_pretrained`` it to ``folder``."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    tok = tiny_clip_tokenizer()
    vocab_size = len(tok)
    bos, eos = tok.bos_token_id, tok.eos_token_id
    pipe = StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(**tiny_transformer_config(resolution // 2)),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae(),
        text_encoder=_tiny_clip_text_encoder(vocab_size, bos, eos),
        tokenizer=tok,
        text_encoder_2=_tiny_clip_text_encoder(vocab_size, bos, eos),
        tokenizer_2=tiny_clip_tokenizer(),
        text_encoder_3=_tiny_t5(vocab_size) if with_t5 else None,
        tokenizer_3=tiny_clip_tokenizer() if with_t5 else None,
    )
    folder = Path(folder)
    pipe.save_pretrained(str(folder))
    return folder
