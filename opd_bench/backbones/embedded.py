"""The embedded world's text-to-image model: a pixel-space diffusers ``SD3Transformer2DModel`` (default
32x32x3, patch 4) conditioned by a small trainable ``transformers.CLIPTextModel`` fed by open_clip's real CLIP
BPE tokenizer. Built entirely from a config dict, so no weights are ever downloaded.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from diffusers import SD3Transformer2DModel
from open_clip.tokenizer import SimpleTokenizer
from transformers import CLIPTextConfig, CLIPTextModel

from ..checkpoint import checkpoint_digest, load_checkpoint, save_checkpoint
from ..errors import CheckpointError
from .base import Backbone

KIND = "embedded_t2i"

#: the largest integer an architecture field may hold (sizes, layer counts, slots): a checkpoint asking for more
#: is refused before anything is allocated
ARCH_MAX = 4096


def arch_size_problem(arch, prefix: str = "arch") -> Optional[str]:
    """None when every integer in ``arch`` (nested) is in [0, ARCH_MAX], else what is wrong, in words."""
    if isinstance(arch, dict):
        for k, v in arch.items():
            problem = arch_size_problem(v, f"{prefix}.{k}")
            if problem:
                return problem
    elif isinstance(arch, int) and not isinstance(arch, bool) and not 0 <= arch <= ARCH_MAX:
        return f"{prefix} = {arch} is outside [0, {ARCH_MAX}]"
    return None


DEFAULT_ARCH = {
    "resolution": 32,
    "channels": 3,
    "context_length": 24,
    #: tokenise quoted text character by character ("JZP" -> "J Z P"), so every glyph has one token whatever
    #: the BPE merges (as spelling-aware text encoders do for text rendering); False in older checkpoints.
    "spell_quoted": False,
    #: character slots of the glyph encoder (0 = none, as in older checkpoints); see :class:`GlyphEncoder`.
    "glyph_slots": 0,
    #: character slots routed into the pooled (adaLN) conditioning (0 = none); see :class:`GlyphPooled`.
    "glyph_pooled": 0,
    #: character slots laid out over the image columns (0 = none); see :class:`GlyphCanvas`.
    "glyph_canvas": 0,
    "transformer": {
        "patch_size": 4,
        "num_layers": 4,
        "num_attention_heads": 4,
        "attention_head_dim": 24,
    },
    "text": {
        "hidden_size": 48,
        "intermediate_size": 192,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
    },
}


_QUOTED = re.compile(r'"([^"]*)"')


def spell_quoted(prompt: str) -> str:
    """``a sign that says "JZP"`` -> ``a sign that says "J Z P"`` (quoted text spelled out)."""
    return _QUOTED.sub(lambda m: '"' + " ".join(m.group(1).replace(" ", "")) + '"', prompt)


GLYPH_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def glyph_ids(prompts: List[str], slots: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Character and layout ids of each prompt's first quoted string, each [B, slots] long: char 0 = empty,
    1..36 = A-Z0-9 (upper-cased), 37 = any other character; layout 0 = empty, else ``1 + n(n-1)/2 + k`` for
    the ``k``-th of ``n`` characters. Text beyond ``slots`` characters is truncated."""
    chars = torch.zeros(len(prompts), slots, dtype=torch.long)
    layout = torch.zeros_like(chars)
    for b, p in enumerate(prompts):
        m = _QUOTED.search(p)
        text = (m.group(1).replace(" ", "").upper() if m else "")[:slots]
        n = len(text)
        for k, c in enumerate(text):
            i = GLYPH_CHARS.find(c)
            chars[b, k] = i + 1 if i >= 0 else len(GLYPH_CHARS) + 1
            layout[b, k] = 1 + n * (n - 1) // 2 + k
    return chars, layout


class GlyphEncoder(torch.nn.Module):
    """Character-level encoder of a prompt's quoted text, appended to the text encoder's states.

    BPE text encoders cannot tell a denoiser which glyph goes where (Liu et al. 2022, "Character-Aware Models
    Improve Visual Text Rendering"; Glyph-ByT5), and spelling the text out still leaves the slot of each
    character implicit in its distance to the opening quote. Here slot ``k`` holds one token,
    ``LayerNorm(char_embedding(c_k) + layout_embedding(k, n))`` for the ``k``-th of ``n`` characters of the
    first quoted string (upper-cased; characters outside A-Z0-9 share an "unknown" id; beyond ``slots``
    truncated); unused slots hold the "empty" token. The denoiser still has to learn every glyph's shape.
    """

    def __init__(self, slots: int, dim: int):
        super().__init__()
        self.slots = int(slots)
        self.char = torch.nn.Embedding(len(GLYPH_CHARS) + 2, dim)   # 0 empty, 1..36 A-Z0-9, 37 unknown
        self.layout = torch.nn.Embedding(self.slots * (self.slots + 1) // 2 + 1, dim)   # 0 empty, then (k, n)
        self.norm = torch.nn.LayerNorm(dim)

    def ids(self, prompts: List[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """(char ids, layout ids), each [B, slots] long."""
        return glyph_ids(prompts, self.slots)

    def forward(self, prompts: List[str]) -> torch.Tensor:
        chars, layout = self.ids(prompts)
        dev = self.char.weight.device
        return self.norm(self.char(chars.to(dev)) + self.layout(layout.to(dev)))


class _ZeroStartHead(torch.nn.Module):
    """The output head of the optional glyph modules that feed a trained model: ``Linear(SiLU(LayerNorm(h)))``
    with the Linear at zero, so adding the module (``--init``) changes nothing until it trains. Its weights are
    the module's ``norm.*`` and ``out.*``."""

    def _add_head(self, dim: int, width: int) -> None:
        self.norm = torch.nn.LayerNorm(dim)
        self.out = torch.nn.Linear(dim, width)
        torch.nn.init.zeros_(self.out.weight)
        torch.nn.init.zeros_(self.out.bias)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(torch.nn.functional.silu(self.norm(h)))


class GlyphPooled(_ZeroStartHead):
    """The quoted text as a vector added to the pooled text embedding, which drives every block's adaptive
    norm (as a class label does in DiT), instead of reaching the denoiser only through joint attention.

    ``Linear(SiLU(LayerNorm(sum_k E[k, c_k] + L[n])))``: one embedding per (slot, character) pair, so the sum
    says which character sits in which slot, plus one per length ``n``. The output layer starts at zero, so
    adding it to a trained model (``--init``) changes nothing until it trains."""

    def __init__(self, slots: int, dim: int):
        super().__init__()
        self.slots = int(slots)
        self.vocab = len(GLYPH_CHARS) + 2
        self.char = torch.nn.Embedding(self.slots * self.vocab, dim)
        self.length = torch.nn.Embedding(self.slots + 1, dim)
        self._add_head(dim, dim)

    def forward(self, prompts: List[str]) -> torch.Tensor:
        chars, _ = glyph_ids(prompts, self.slots)
        dev = self.char.weight.device
        slot = torch.arange(self.slots).view(1, -1) * self.vocab
        h = self.char((chars + slot).to(dev)).sum(1) + self.length((chars > 0).sum(1).to(dev))
        return self.head(h)


#: the canvas's starting layout: a centred line of characters, each in a cell this wide (fraction of the side),
#: as the world sets text (a monospace font, one cell of 1/4 of the side per character)
CANVAS_CELL = 0.25


class GlyphCanvas(_ZeroStartHead):
    """Which character of a centred line of quoted text falls in each column of the image, added to the image
    tokens (a layout prior, as layout-conditioned text renderers use one: TextDiffuser's character-level
    segmentation mask, GlyphControl's glyph image; here only the character *ids* per column, so the denoiser
    still has to learn every glyph's shape).

    Column ``j`` of ``grid`` gets ``h_j = sum_k G[n, j, k] E[c_k] + L[n, j]`` for the ``n`` characters
    ``c_k`` of the first quoted string; the gates ``G`` start at a centred line of :data:`CANVAS_CELL`-wide
    cells (1 where column ``j`` lies over character ``k``) and are learned, like the embeddings.
    ``tokens(prompts)`` gives ``h`` [B, grid, dim] (zero without quoted text); it travels with the text
    encoder's states, so prompt caching and CFG's empty prompt need nothing new. ``image_bias(h)`` =
    ``Linear(SiLU(LayerNorm(h)))`` [B, grid, width] is added to every row of image tokens after the patch
    embedding; the output layer starts at zero, so adding it to a trained model (``--init``) changes nothing
    until it trains."""

    def __init__(self, slots: int, dim: int, grid: int, width: int):
        super().__init__()
        self.slots, self.grid = int(slots), int(grid)
        self.char = torch.nn.Embedding(len(GLYPH_CHARS) + 2, dim)
        self.layout = torch.nn.Embedding(self.slots * self.grid, dim)
        gate = torch.zeros(self.slots, self.grid, self.slots)
        for n in range(1, self.slots + 1):
            for j in range(self.grid):
                k = int(((j + 0.5) / self.grid - (0.5 - n * CANVAS_CELL / 2)) // CANVAS_CELL)
                if 0 <= k < n:
                    gate[n - 1, j, k] = 1.0
        self.gate = torch.nn.Parameter(gate)
        self._add_head(dim, width)

    def tokens(self, prompts: List[str]) -> torch.Tensor:
        chars, _ = glyph_ids(prompts, self.slots)
        dev = self.char.weight.device
        chars = chars.to(dev)
        n = (chars > 0).sum(1)                                                   # [B]
        nk = (n - 1).clamp(min=0)
        h = torch.bmm(self.gate[nk], self.char(chars))                           # [B, grid, dim]
        h = h + self.layout(nk.view(-1, 1) * self.grid + torch.arange(self.grid, device=dev).view(1, -1))
        return h * (n > 0).view(-1, 1, 1).to(h.dtype)

    def image_bias(self, h: torch.Tensor) -> torch.Tensor:
        present = (h.abs().sum(-1, keepdim=True) > 0).to(h.dtype)               # no quoted text: no bias
        return self.head(h) * present


#: optional character-level text modules: arch key (its value = slots, 0 = absent) -> (attribute and weight
#: prefix, constructor (slots, arch) -> module, what it is called in messages)
GLYPH_MODULES = {
    "glyph_slots": ("glyph_encoder", lambda slots, a: GlyphEncoder(slots, a["text"]["hidden_size"]),
                    "a glyph encoder"),
    "glyph_pooled": ("glyph_pooled", lambda slots, a: GlyphPooled(slots, a["text"]["hidden_size"]),
                     "pooled glyph conditioning"),
    "glyph_canvas": ("glyph_canvas", lambda slots, a: GlyphCanvas(
        slots, a["text"]["hidden_size"], a["resolution"] // a["transformer"]["patch_size"],
        a["transformer"]["num_attention_heads"] * a["transformer"]["attention_head_dim"]), "a glyph canvas"),
}


def _add_canvas_bias(module, inputs, out):
    """Forward hook on the patch embedding: adds the glyph canvas's column bias that ``denoise`` left on the
    module (``canvas_bias`` [B, grid, width]) to every row of tokens (row-major: token ``h * grid + w``)."""
    bias = getattr(module, "canvas_bias", None)
    if bias is None:
        return out
    return out + bias.repeat(1, out.shape[1] // bias.shape[1], 1)


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class EmbeddedBackbone(Backbone):
    """Pixel-space flow-matching T2I model; states live in [-1, 1] pixel space, shape [3, R, R]."""

    def __init__(self, arch: Optional[dict] = None, train_text_encoder: bool = False):
        super().__init__()
        self.arch = _merge(DEFAULT_ARCH, arch or {})
        a = self.arch
        res, ch, tcfg, xcfg = a["resolution"], a["channels"], a["transformer"], a["text"]
        self.tokenizer = SimpleTokenizer(context_length=a["context_length"])
        self.text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=self.tokenizer.vocab_size,
                hidden_size=xcfg["hidden_size"],
                intermediate_size=xcfg["intermediate_size"],
                num_hidden_layers=xcfg["num_hidden_layers"],
                num_attention_heads=xcfg["num_attention_heads"],
                max_position_embeddings=a["context_length"],
                bos_token_id=self.tokenizer.sot_token_id,
                eos_token_id=self.tokenizer.eot_token_id,
                pad_token_id=0,
            )
        )
        inner = tcfg["num_attention_heads"] * tcfg["attention_head_dim"]
        self.transformer = SD3Transformer2DModel(
            sample_size=res,
            patch_size=tcfg["patch_size"],
            in_channels=ch,
            out_channels=ch,
            num_layers=tcfg["num_layers"],
            attention_head_dim=tcfg["attention_head_dim"],
            num_attention_heads=tcfg["num_attention_heads"],
            joint_attention_dim=xcfg["hidden_size"],
            caption_projection_dim=inner,
            pooled_projection_dim=xcfg["hidden_size"],
            pos_embed_max_size=res // tcfg["patch_size"],
        )
        self.latent_shape = (ch, res, res)
        self.glyph_encoder: Optional[GlyphEncoder] = None
        self.glyph_pooled: Optional[GlyphPooled] = None
        self.glyph_canvas: Optional[GlyphCanvas] = None
        for key, (attr, make, _) in GLYPH_MODULES.items():
            if a.get(key, 0):
                setattr(self, attr, make(a[key], a))
        self.transformer.pos_embed.register_forward_hook(_add_canvas_bias)
        self._train_text = train_text_encoder
        for m in self._text_modules().values():
            m.requires_grad_(train_text_encoder)
        #: where a transformer-only checkpoint takes its (frozen) text encoder from.
        self.text_source: Optional[dict] = None

    # ---- text ---------------------------------------------------------------------------------------------
    def text_encoder_trainable(self) -> bool:
        return self._train_text

    def _encode_text(self, prompts: List[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        spelled = [spell_quoted(p) for p in prompts] if self.arch.get("spell_quoted") else prompts
        ids = self.tokenizer(spelled).to(self.device)
        out = self.text_encoder(input_ids=ids, attention_mask=(ids != 0).long())
        states = out.last_hidden_state
        if self.glyph_encoder is not None:
            states = torch.cat([states, self.glyph_encoder(prompts)], dim=1)
        pooled = out.pooler_output
        if self.glyph_pooled is not None:
            pooled = pooled + self.glyph_pooled(prompts)
        if self.glyph_canvas is not None:   # last: denoise() splits these off again
            states = torch.cat([states, self.glyph_canvas.tokens(prompts)], dim=1)
        return states, pooled

    def add_glyph_module(self, key: str, slots: int) -> None:
        """Add a fresh optional module of :data:`GLYPH_MODULES` (``"glyph_slots"``: :class:`GlyphEncoder`;
        ``"glyph_pooled"``: :class:`GlyphPooled`; ``"glyph_canvas"``: :class:`GlyphCanvas`; the last two start
        with a zero output) with ``slots`` slots, e.g. when continuing pretraining of a model that had none; it
        trains along with the text encoder."""
        attr, make, what = GLYPH_MODULES[key]
        if getattr(self, attr) is not None:
            raise ValueError(f"this model already has {what}")
        self.arch[key] = int(slots)
        module = make(int(slots), self.arch).to(self.device)
        module.requires_grad_(self._train_text)
        setattr(self, attr, module)
        self.clear_prompt_cache()

    def _text_modules(self) -> dict:
        mods = {"text_encoder": self.text_encoder}
        for attr, _, _ in GLYPH_MODULES.values():
            if getattr(self, attr) is not None:
                mods[attr] = getattr(self, attr)
        return mods

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    # ---- denoiser -----------------------------------------------------------------------------------------
    def denoise(self, x, t, states, pooled):
        if self.glyph_canvas is not None:
            g = self.glyph_canvas.grid
            states, canvas = states[:, :-g], states[:, -g:]
            self.transformer.pos_embed.canvas_bias = self.glyph_canvas.image_bias(canvas)
        try:
            # diffusers' SD3 convention: timestep = t * 1000 (sigmas * num_train_timesteps).
            return self.net(
                hidden_states=x, encoder_hidden_states=states, pooled_projections=pooled, timestep=t * 1000.0,
                return_dict=False,
            )[0]
        finally:
            self.transformer.pos_embed.canvas_bias = None

    def flops_per_forward(self) -> float:
        """2 * (matmul params) * tokens + attention (QK^T and AV: 4 * T^2 * width per layer)."""
        a = self.arch
        tc = a["transformer"]
        tokens = (a["resolution"] // tc["patch_size"]) ** 2 + a["context_length"] + a.get("glyph_slots", 0)
        width = tc["num_attention_heads"] * tc["attention_head_dim"]
        block_params = sum(p.numel() for p in self.transformer.transformer_blocks.parameters())
        return float(2 * block_params * tokens + tc["num_layers"] * 4 * tokens**2 * width)

    # ---- pixels -------------------------------------------------------------------------------------------
    def to_images(self, x):
        return ((x.clamp(-1, 1) + 1) / 2).float()

    def from_images(self, images):
        return images.to(self.device, torch.float32) * 2 - 1

    # ---- parameters / persistence -------------------------------------------------------------------------
    def trainable_parameters(self):
        params = list(self.transformer.parameters())
        if self._train_text:
            for m in self._text_modules().values():
                params += list(m.parameters())
        return params

    def set_train_text_encoder(self, flag: bool) -> None:
        self._train_text = flag
        for m in self._text_modules().values():
            m.requires_grad_(flag)
        self.clear_prompt_cache()

    def save(self, path, extra_config: Optional[dict] = None, include_text_encoder: Optional[bool] = None) -> Path:
        """Save the model. The frozen text encoder is stored only when it has no released source to point to
        (teachers and students store the transformer alone and reference the base's text encoder by digest)."""
        include = (self.text_source is None or self._train_text) if include_text_encoder is None else include_text_encoder
        tensors = {f"transformer.{k}": v for k, v in self.transformer.state_dict().items()}
        config = {"backbone": "embedded", "arch": self.arch}
        if include:
            for prefix, m in self._text_modules().items():
                tensors.update({f"{prefix}.{k}": v for k, v in m.state_dict().items()})
            config["text_encoder"] = "included"
        else:
            if self.text_source is None:
                raise CheckpointError("cannot save without the text encoder: this model has no text-encoder source")
            config["text_encoder"] = dict(self.text_source)
        config.update(extra_config or {})
        return save_checkpoint(path, tensors, config, kind=KIND)

    @classmethod
    def load(cls, path, resolve=None) -> "EmbeddedBackbone":
        """Load a checkpoint folder. ``resolve(name) -> Path`` maps a text-encoder source name to a folder."""
        path = Path(path)
        tensors, config = load_checkpoint(path, kind=KIND)
        problem = arch_size_problem(config.get("arch"))
        if problem:
            raise CheckpointError(f"checkpoint {path}: malformed 'arch' in config.json ({problem})")
        try:
            model = cls(config.get("arch"))
        except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint {path}: malformed 'arch' in config.json ({type(e).__name__}: {e})") from None
        tr = {k[len("transformer."):]: v for k, v in tensors.items() if k.startswith("transformer.")}
        _load_strict(model.transformer, tr, path, "transformer")
        te = config.get("text_encoder")
        if te == "included":
            model._load_text_modules(tensors, path)
            model.text_source = {"from": str(path), "digest": checkpoint_digest(path)}
        elif isinstance(te, dict) and "from" in te:
            src = resolve(te["from"]) if resolve else Path(te["from"])
            digest = checkpoint_digest(src)
            if te.get("digest") and digest != te["digest"]:
                raise CheckpointError(
                    f"checkpoint {path} needs the text encoder of {te['from']} with digest {te['digest'][:12]}, "
                    f"found {digest[:12]}"
                )
            src_t, _ = load_checkpoint(src, kind=KIND)
            model._load_text_modules(src_t, src)
            model.text_source = dict(te)
        else:
            raise CheckpointError(f"checkpoint {path}: config.json has no valid 'text_encoder' entry")
        model.config = config
        return model

    def _load_text_modules(self, tensors: dict, path) -> None:
        for prefix, m in self._text_modules().items():
            sub = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
            _load_strict(m, sub, path, prefix.replace("_", " "))
        extra = sorted({k.split(".")[0] for k in tensors} - {"transformer", *self._text_modules()})
        if extra:
            raise CheckpointError(f"checkpoint {path}: unexpected weights {extra[0]}.* for this architecture")


def _load_strict(module, state, path, what):
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path}: {what} weights do not fit the architecture: {str(e)[:200]}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path}: {what} weights do not match the architecture "
            f"({len(missing)} missing, {len(unexpected)} unexpected, e.g. {(missing or unexpected)[0]})"
        )
