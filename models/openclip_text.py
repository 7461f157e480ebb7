"""OpenCLIP text towers (VideoCrafter2's ViT-H/14 conditioning) as a transformers ``CLIPTextModel``.

VideoCrafter2 conditions its UNet with ``FrozenOpenCLIPEmbedder(layer="penultimate")``
(``lvdm/modules/encoders/condition.py``, open_clip_torch 2.22): ``open_clip.tokenize`` → token embedding +
positional embedding → the residual blocks up to, not including, the last one → ``ln_final`` → all 77 token
states. The attention is causal only: padding is attended to like any token (no padding mask).

This module maps the OpenCLIP text-tower state dict onto ``CLIPTextModel`` (the same pre-norm block: LayerNorm,
causal multi-head attention, residual, LayerNorm, Linear-GELU-Linear, residual) and wraps it in
:class:`OpenCLIPTextEncoder`, which has :class:`.text.TextEncoder`'s interface and returns VC2's conditioning.

Key map (a file key ``<prefix><key>``, usually ``cond_stage_model.model.``)::

    token_embedding.weight                    → embeddings.token_embedding.weight
    positional_embedding  (77, D)             → embeddings.position_embedding.weight
    transformer.resblocks.N.ln_1.*            → encoder.layers.N.layer_norm1.*
    transformer.resblocks.N.attn.in_proj_*    → encoder.layers.N.self_attn.{q,k,v}_proj.*  (fused (3D, D): split
                                                 in the order q, k, v, as torch's MultiheadAttention does)
    transformer.resblocks.N.attn.out_proj.*   → encoder.layers.N.self_attn.out_proj.*
    transformer.resblocks.N.ln_2.*            → encoder.layers.N.layer_norm2.*
    transformer.resblocks.N.mlp.c_fc.*        → encoder.layers.N.mlp.fc1.*
    transformer.resblocks.N.mlp.c_proj.*      → encoder.layers.N.mlp.fc2.*
    ln_final.*                                → final_layer_norm.*

Ignore-list (:data:`IGNORE_FILE`): ``text_projection`` (the pooled-embedding projection into the joint
image-text space) and ``logit_scale`` (the contrastive temperature): VC2 never uses either, it takes token
states before any projection. ``attn_mask`` (the causal mask) is a non-persistent buffer in open_clip, not in
the file; ``CLIPTextModel`` builds its own causal mask.

Numerics: ViT-H/14's text tower uses exact GELU (``nn.GELU``, transformers' ``"gelu"``; not the quick-GELU of
OpenAI's CLIP-L) and open_clip's LayerNorm default eps 1e-5.

Tokenization, as ``open_clip.tokenize`` does it: ``[SOT] + BPE(text) + [EOT]``; longer than the context: cut to
the context and the last id replaced by EOT; shorter: padded with id **0** (not with EOT, as diffusers' CLIP-L
pipelines do). The BPE is transformers' ``CLIPTokenizer`` built from CLIP's vocabulary (the pack's tokenizer
folder or ComfyUI's ``comfy/sd1_tokenizer``: the same vocabulary as open_clip's ``bpe_simple_vocab_16e6``), or
the tiny models' character-level tokenizer. Text cleaning as open_clip's: HTML entities unescaped (twice),
whitespace collapsed, lower-cased (by the tokenizer); open_clip's ``ftfy.fix_text`` runs too when ``ftfy`` is
installed (it is not a dependency of the pack); without it, text that ftfy would repair (mojibake, curly quotes,
ligatures, full-width characters) tokenizes as typed.
"""
from __future__ import annotations

import html
import re
from typing import Iterable, Optional

import torch

from .. import host
from .checkpoint import match_state_dict
from .text import TextEncoder

CONTEXT_LENGTH = 77
PAD_ID = 0   # open_clip.tokenize pads with 0 (which is also the id of "!" in CLIP's vocabulary)

# OpenCLIP ViT-H-14 text tower (open_clip's model_configs/ViT-H-14.json "text_cfg"; mlp_ratio 4; exact GELU)
VIT_H_14_TEXT = dict(width=1024, layers=24, heads=16, mlp_ratio=4.0, vocab_size=49408, context_length=77)
# a tower of ~57k parameters for tests and demos; vocab sized for models.text.char_clip_tokenizer (514 ids)
TINY_OPENCLIP_TEXT = dict(width=32, layers=3, heads=4, mlp_ratio=4.0, vocab_size=514, context_length=77)

# file keys (after the prefix) that are deliberately not loaded: unused by VC2 (see the module docstring)
IGNORE_FILE = (r"^text_projection$", r"^logit_scale$")
LAYERS = ("penultimate", "last")


def openclip_text_config(width: int = 1024, layers: int = 24, heads: int = 16, mlp_ratio: float = 4.0,
                         vocab_size: int = 49408, context_length: int = CONTEXT_LENGTH, layer_norm_eps: float = 1e-5,
                         bos_token_id: Optional[int] = None, eos_token_id: Optional[int] = None):
    """The ``CLIPTextConfig`` of an OpenCLIP text tower (defaults: ViT-H/14). ``bos/eos_token_id`` default to the
    two highest ids (``<start_of_text>``, ``<end_of_text>``), as in CLIP's vocabulary and the char tokenizer;
    they only matter for transformers' pooled output, which VC2 does not use."""
    from transformers import CLIPTextConfig
    return CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=width, intermediate_size=int(width * mlp_ratio),
        num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=context_length,
        hidden_act="gelu", layer_norm_eps=layer_norm_eps, attention_dropout=0.0, projection_dim=width,
        bos_token_id=vocab_size - 2 if bos_token_id is None else bos_token_id,
        eos_token_id=vocab_size - 1 if eos_token_id is None else eos_token_id, pad_token_id=PAD_ID)


def build_openclip_text_model(config=None, **overrides) -> torch.nn.Module:
    """A ``CLIPTextModel`` for an OpenCLIP text tower (``config``: a ``CLIPTextConfig``, else
    :func:`openclip_text_config` with ``overrides``). Build it under :func:`.checkpoint.empty_params` to load a
    file into it without initialising the weights."""
    from transformers import CLIPTextModel
    return CLIPTextModel(config if config is not None else openclip_text_config(**overrides))


# ---------------------------------------------------------------- state dict

_FUSED = re.compile(r"^(.*\.attn\.in_proj_(?:weight|bias))$")
_BLOCK = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")
_BLOCK_MAP = {
    "ln_1.weight": "layer_norm1.weight", "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight", "ln_2.bias": "layer_norm2.bias",
    "attn.in_proj_weight.q": "self_attn.q_proj.weight", "attn.in_proj_bias.q": "self_attn.q_proj.bias",
    "attn.in_proj_weight.k": "self_attn.k_proj.weight", "attn.in_proj_bias.k": "self_attn.k_proj.bias",
    "attn.in_proj_weight.v": "self_attn.v_proj.weight", "attn.in_proj_bias.v": "self_attn.v_proj.bias",
    "attn.out_proj.weight": "self_attn.out_proj.weight", "attn.out_proj.bias": "self_attn.out_proj.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight", "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight", "mlp.c_proj.bias": "mlp.fc2.bias",
}
_TOP_MAP = {
    "token_embedding.weight": "embeddings.token_embedding.weight",
    "positional_embedding": "embeddings.position_embedding.weight",
    "ln_final.weight": "final_layer_norm.weight", "ln_final.bias": "final_layer_norm.bias",
}


def split_fused_qkv(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with every fused ``….attn.in_proj_weight`` ``(3D, D)`` / ``in_proj_bias`` ``(3D,)`` replaced
    by three keys ``….in_proj_weight.q`` / ``.k`` / ``.v`` (rows ``[0, D)``, ``[D, 2D)``, ``[2D, 3D)``: torch's
    ``MultiheadAttention`` order); other keys unchanged. Works on meta tensors. A first dimension not divisible
    by 3 is left fused (the strict match then reports the key as unexpected)."""
    out = {}
    for k, v in sd.items():
        if _FUSED.match(k) and v.ndim >= 1 and v.shape[0] % 3 == 0:
            for name, part in zip("qkv", v.chunk(3, dim=0)):
                out[f"{k}.{name}"] = part
        else:
            out[k] = v
    return out


def openclip_text_key(key: str, prefix: str = "") -> Optional[str]:
    """A (q/k/v-split, see :func:`split_fused_qkv`) OpenCLIP text-tower file key → the ``CLIPTextModel`` key,
    or None for a key that is not part of the mapping (ignored or unexpected: :func:`match_openclip_text`
    tells which). ``prefix`` (e.g. ``"cond_stage_model.model."``) must lead the key."""
    if not key.startswith(prefix):
        return None
    key = key[len(prefix):]
    if key in _TOP_MAP:
        return _TOP_MAP[key]
    m = _BLOCK.match(key)
    if m and m.group(2) in _BLOCK_MAP:
        return f"encoder.layers.{m.group(1)}.{_BLOCK_MAP[m.group(2)]}"
    return None


def match_openclip_text(model: torch.nn.Module, file_sd: dict[str, torch.Tensor], what: str,
                        prefix: str = "") -> dict[str, torch.Tensor]:
    """Strictly map an OpenCLIP text tower's tensors (keys ``<prefix>…``) onto ``model`` (a ``CLIPTextModel``
    from :func:`build_openclip_text_model`) with :func:`.checkpoint.match_state_dict`: every file tensor is
    mapped or on :data:`IGNORE_FILE`, every model parameter is covered. Returns ``{model_key: tensor}`` for
    :func:`.checkpoint.load_into`; raises ``CheckpointError`` naming missing / unexpected / misshapen keys."""
    ignore = ["^" + re.escape(prefix) + p.lstrip("^") for p in IGNORE_FILE]
    return match_state_dict(model, split_fused_qkv(file_sd), what,
                            rename=lambda k: openclip_text_key(k, prefix), ignore_file=ignore)


# ---------------------------------------------------------------- tokenizer and encoder

def _fix_text():
    try:
        import ftfy
        return ftfy.fix_text
    except ImportError:
        return lambda s: s


def clean_text(text: str) -> str:
    """open_clip's ``whitespace_clean(basic_clean(text))`` (lower-casing is the tokenizer's):
    ``ftfy.fix_text`` when installed, HTML entities unescaped twice, whitespace runs → one space, stripped."""
    text = html.unescape(html.unescape(_fix_text()(text))).strip()
    return re.sub(r"\s+", " ", text).strip()


def openclip_token_ids(tokenizer, prompts: Iterable[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """``open_clip.tokenize`` with a transformers CLIP tokenizer: ``(B, context_length)`` int64 of
    ``[SOT] + BPE + [EOT]``, cut to ``context_length`` with EOT kept as the last id, padded with 0."""
    texts = [clean_text(p) for p in prompts]
    sot, eot = tokenizer.bos_token_id, tokenizer.eos_token_id
    rows = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    out = torch.full((len(texts), context_length), PAD_ID, dtype=torch.long)
    for i, bpe in enumerate(rows):
        ids = [sot] + list(bpe) + [eot]
        if len(ids) > context_length:
            ids = ids[:context_length]
            ids[-1] = eot
        out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


class OpenCLIPTextEncoder(TextEncoder):
    """VideoCrafter2's text conditioning (``FrozenOpenCLIPEmbedder``): a CLIP tokenizer and a ``CLIPTextModel``
    holding an OpenCLIP text tower. ``layer``: ``"penultimate"`` (VC2's setting: the states after all blocks but
    the last, then ``final_layer_norm``) or ``"last"`` (after all blocks, then ``final_layer_norm``)."""

    def __init__(self, tokenizer, model: torch.nn.Module, max_length: int = CONTEXT_LENGTH,
                 layer: str = "penultimate"):
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
        positions = int(model.config.max_position_embeddings)
        if max_length != positions:
            raise ValueError(f"max_length {max_length} must equal the model's {positions} positions (open_clip "
                             f"always fills the whole context)")
        super().__init__(tokenizer, model, max_length)
        self.layer = layer

    def token_ids(self, prompts: list[str]) -> torch.Tensor:
        """``(B, max_length)`` int64 ids, as ``open_clip.tokenize`` makes them (see :func:`openclip_token_ids`)."""
        return openclip_token_ids(self.tokenizer, prompts, self.max_length)

    def forward_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, L)`` on the model's device → ``(B, L, D)`` in the model's dtype. No padding mask: the
        attention is causal only, as in open_clip."""
        out = self.model(ids, output_hidden_states=True)
        # hidden_states: (embeddings, after block 1, …, after block N), before final_layer_norm; [-2] is the
        # input of the last block, i.e. open_clip's loop stopped at index N - 1
        h = out.hidden_states[-2] if self.layer == "penultimate" else out.hidden_states[-1]
        return self.model.final_layer_norm(h)

    @torch.inference_mode()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Prompts → ``(len(prompts), 77, dim)`` float32 on the intermediate device: VC2's conditioning."""
        ids = self.token_ids(list(prompts))
        host.load_models([self.part])
        return self.forward_ids(ids.to(self.part.device)).float().to(host.intermediate_device())


def tiny_openclip_text_encoder(seed: int = 0, tokenizer=None, **overrides) -> OpenCLIPTextEncoder:
    """A randomly initialised tiny OpenCLIP text tower (:data:`TINY_OPENCLIP_TEXT`) with the character-level
    tokenizer (:func:`.text.char_clip_tokenizer`) unless one is given; for tests and demos."""
    from .text import char_clip_tokenizer
    tok = tokenizer if tokenizer is not None else char_clip_tokenizer(CONTEXT_LENGTH)
    cfg = dict(TINY_OPENCLIP_TEXT, vocab_size=len(tok), **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_openclip_text_model(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **cfg)
    return OpenCLIPTextEncoder(tok, model.eval().requires_grad_(False), CONTEXT_LENGTH)
