"""ImageReward-v1.0, I4VGen's own anchor selector (THUDM/ImageReward), on transformers' BLIP building blocks.

The official model (``ImageReward/ImageReward.py``) is BLIP_Pretrain(vit='large', image_size=224) plus a
reward head:

- ``blip.visual_encoder``: BLIP's ViT-L/16 at 224 px (width 1024, 24 blocks, 16 heads, LayerNorm eps 1e-6,
  a final norm over every token) → here transformers' ``BlipVisionModel`` (its ``post_layernorm`` is that final
  norm; the same pre-norm blocks, fused ``qkv`` and exact GELU). The file's timm-style names are mapped by
  :data:`VISION_RENAME`.
- ``blip.text_encoder``: BLIP's ``med.py`` BERT with cross-attention in every layer, no token-type
  embeddings, no pooler, run bidirectionally ("multimodal" mode) → transformers' ``BlipTextModel``
  (``add_pooling_layer=False``, built with cross-attention layers, called with ``is_decoder=False``). Its keys
  are the file's own; the file's ``embeddings.position_ids`` (``arange(512)``, a persistent buffer in med.py,
  a computed one here) is checked and dropped.
- ``blip.vision_proj`` / ``blip.text_proj``: BLIP's contrastive projections, in the file, unused for scoring;
  built here all the same so the file loads strictly both ways.
- ``mlp.layers``: Linear(768, 1024), Dropout, Linear(1024, 128), Dropout, Linear(128, 64), Dropout,
  Linear(64, 16), Linear(16, 1): the ReLUs are commented out in the official code, so the head is purely
  linear; the layers are kept as they are (parameter indices 0, 2, 4, 6, 7) so the keys load as saved.

Score of one image (``ImageReward.score``): the prompt tokenized with bert-base-uncased to exactly 35 tokens
(``padding='max_length'``, truncated), the image resized to 224 (bicubic, short side), centre-cropped
(torchvision rounding) and normalised with CLIP's mean/std; the text encoder runs over the prompt with all 197
image tokens as cross-attention; the state of token 0 (``[CLS]``) goes through the head, then
``(r - 0.16717362830052426) / 1.0333394966054072``.

Tokenizer: BERT WordPiece (transformers' ``BertTokenizer``, lower-casing) from the user's ``vocab.txt``
(bert-base-uncased, 30522 tokens) plus BLIP's added ``[DEC]`` (bos, id 30522) and ``[ENC]`` (id 30523), as
BLIP's ``init_tokenizer`` does: 30524 rows in the word embeddings. ImageReward feeds the plain
``[CLS] … [SEP] [PAD]…`` ids; the added tokens only size the vocabulary.

Files: ``models/scorers/<folder>/ImageReward.pt`` (the released state dict, read with ``weights_only=True``,
memory-mapped; an optional DDP ``module.`` prefix is stripped) with bert-base-uncased's ``vocab.txt`` beside
it. An optional ``med_config.json`` there must agree with the built-in text-encoder sizes.
"""
from __future__ import annotations

import functools
import os
import re
from typing import Optional

import torch
from torch import nn

from .checkpoint import (CheckpointError, MODEL_EXTS, empty_params, load_into, match_state_dict, read_shapes,
                         read_state_dict)
from .loaders import read_json
from .scorers import CLIP_MEAN, CLIP_STD, NetworkScorer, clip_preprocess

WEIGHTS_NAME = "ImageReward.pt"
VOCAB_NAME = "vocab.txt"
MED_CONFIG_NAME = "med_config.json"
TINY_IMAGEREWARD_NAME = "tiny ImageReward (untrained demo)"
PROMPT_TOKENS = 35                     # tokenizer(..., padding='max_length', truncation=True, max_length=35)
REWARD_MEAN = 0.16717362830052426      # ImageReward.__init__: self.mean, self.std
REWARD_STD = 1.0333394966054072
ADDED_TOKENS = ("[DEC]", "[ENC]")      # init_tokenizer: bos_token '[DEC]', additional_special_tokens ['[ENC]']
BERT_BASE_UNCASED_TOKENS = 30522

# ImageReward-v1.0: BLIP_Pretrain(image_size=224, vit='large', med_config) + MLP(768)
IMAGEREWARD_V1 = dict(
    vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                image_size=224, patch_size=16, hidden_act="gelu", layer_norm_eps=1e-6),
    text=dict(vocab_size=BERT_BASE_UNCASED_TOKENS + len(ADDED_TOKENS), hidden_size=768, intermediate_size=3072,
              num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=512, hidden_act="gelu",
              layer_norm_eps=1e-12, pad_token_id=0),
    embed_dim=256,
    head=(1024, 128, 64, 16),
)
# med_config.json fields that must agree with IMAGEREWARD_V1["text"] when a user's folder has one
MED_CONFIG_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "max_position_embeddings", "hidden_act", "layer_norm_eps")

# BLIP's timm-style ViT names (after 'blip.visual_encoder.') → BlipVisionModel's
VISION_RENAME = (
    (r"^cls_token$", "embeddings.class_embedding"),
    (r"^pos_embed$", "embeddings.position_embedding"),
    (r"^patch_embed\.proj\.", "embeddings.patch_embedding."),
    (r"^blocks\.(\d+)\.norm1\.", r"encoder.layers.\1.layer_norm1."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"encoder.layers.\1.self_attn.qkv."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.projection."),
    (r"^blocks\.(\d+)\.norm2\.", r"encoder.layers.\1.layer_norm2."),
    (r"^blocks\.(\d+)\.mlp\.(fc[12])\.", r"encoder.layers.\1.mlp.\2."),
    (r"^norm\.", "post_layernorm."),
)
VISION_PREFIX = "blip.visual_encoder."
POSITION_IDS = "blip.text_encoder.embeddings.position_ids"
# the one tensor in the file with no counterpart here: med.py's persistent position-id buffer (checked: arange)
IGNORED = (rf"^{re.escape(POSITION_IDS)}$",)

TINY_IMAGEREWARD = dict(
    vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                patch_size=8, hidden_act="gelu", layer_norm_eps=1e-6),
    text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=64, hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=0),
    embed_dim=16,
    head=(24, 16, 8, 4),
)
TINY_IMAGEREWARD_SEED = 4003
# the tiny WordPiece vocabulary: BERT's five special tokens, then letters, word pieces, digits, punctuation and a
# few whole words, so that any lower-case ASCII prompt tokenizes without [UNK]
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
TINY_VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(_LETTERS) + ["##" + c for c in _LETTERS]
              + list("0123456789") + ["##" + d for d in "0123456789"] + list(".,!?'\"-:;()&/")
              + ["a", "the", "cat", "dog", "on", "in", "of", "red", "moon", "panda", "walking", "forest", "##s", "##ing"])
TINY_VOCAB = list(dict.fromkeys(TINY_VOCAB))   # 'a' is a letter and a word: once


# ---------------------------------------------------------------- the network

class _Node(nn.Module):
    """A plain container, so parameter names follow the official module tree (``blip.*``, ``mlp.layers.*``)."""


def reward_head(width: int, dims=(1024, 128, 64, 16)) -> nn.Sequential:
    """The official MLP's ``layers``: purely linear (its ReLUs are commented out), dropouts kept in place so the
    parameter indices stay 0, 2, 4, 6, 7 (the last two Linears have no dropout between them)."""
    d1, d2, d3, d4 = dims
    return nn.Sequential(nn.Linear(width, d1), nn.Dropout(0.2), nn.Linear(d1, d2), nn.Dropout(0.2),
                         nn.Linear(d2, d3), nn.Dropout(0.1), nn.Linear(d3, d4), nn.Linear(d4, 1))


class ImageRewardModel(nn.Module):
    """BLIP's ViT, BLIP's text encoder with cross-attention, the two unused BLIP projections and the linear head.
    :meth:`forward` returns the normalised reward ``(B,)`` float32 for ``(B, 3, S, S)`` pixels and one prompt's
    ``(1, L)`` ids and mask."""

    def __init__(self, config: dict):
        super().__init__()
        from transformers import BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel
        vcfg = BlipVisionConfig(**config["vision"])
        # is_decoder=True only makes transformers build the cross-attention layers; forward runs bidirectionally
        tcfg = BlipTextConfig(**config["text"], encoder_hidden_size=vcfg.hidden_size, is_decoder=True)
        self.config = config
        self.blip = _Node()
        self.blip.visual_encoder = BlipVisionModel(vcfg)
        self.blip.text_encoder = BlipTextModel(tcfg, add_pooling_layer=False)
        self.blip.vision_proj = nn.Linear(vcfg.hidden_size, config["embed_dim"])    # unused for scoring
        self.blip.text_proj = nn.Linear(tcfg.hidden_size, config["embed_dim"])      # unused for scoring
        self.mlp = _Node()
        self.mlp.layers = reward_head(tcfg.hidden_size, config["head"])
        self.reward_mean, self.reward_std = REWARD_MEAN, REWARD_STD

    @property
    def image_size(self) -> int:
        return int(self.config["vision"]["image_size"])

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """The text encoder's state at token 0 ``(B, width)``: the prompt ``(1, L)`` attending to each image's
        tokens ``(B, 1 + patches, vision width)`` (all of them: the image mask is all ones)."""
        image_embeds = self.blip.visual_encoder(pixel_values=pixels).last_hidden_state
        b = image_embeds.shape[0]
        image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        out = self.blip.text_encoder(input_ids=input_ids.expand(b, -1), attention_mask=attention_mask.expand(b, -1),
                                     encoder_hidden_states=image_embeds, encoder_attention_mask=image_atts,
                                     is_decoder=False)
        return out.last_hidden_state[:, 0, :]

    def reward(self, features: torch.Tensor) -> torch.Tensor:
        """Head then normalisation: ``(mlp(features) − mean) / std`` as ``(B,)``, at least float32 (the official
        casts the features to float32 before the head; float64 stays float64)."""
        head = self.mlp.layers
        r = head(features.to(head[0].weight.dtype)).squeeze(-1)
        r = r.to(torch.promote_types(r.dtype, torch.float32))
        return (r - self.reward_mean) / self.reward_std

    def forward(self, input_ids, attention_mask, pixels):
        return self.reward(self.features(input_ids, attention_mask, pixels))


# ---------------------------------------------------------------- tokenizer

def bert_tokenizer(vocab: dict):
    """BERT's lower-casing WordPiece tokenizer over ``vocab`` (token → id) with BLIP's ``[DEC]`` (bos) and
    ``[ENC]`` added after it, as BLIP's ``init_tokenizer``."""
    from transformers import BertTokenizer
    tok = BertTokenizer(vocab=dict(vocab), do_lower_case=True)
    tok.add_special_tokens({"bos_token": ADDED_TOKENS[0]})
    tok.add_special_tokens({"additional_special_tokens": [ADDED_TOKENS[1]]})
    return tok


def read_vocab(path: str) -> dict:
    """A BERT ``vocab.txt`` (one token a line, the line number its id) → token → id."""
    with open(path, encoding="utf-8") as f:
        tokens = [line.rstrip("\n") for line in f]
    return {t: i for i, t in enumerate(tokens)}


def check_tokenizer(tok, rows: int, where: str) -> None:
    """The tokenizer must fill the word embeddings exactly, with [DEC] and [ENC] at the last two ids."""
    ids = [tok.convert_tokens_to_ids(t) for t in ADDED_TOKENS]
    if len(tok) != rows or ids != [rows - 2, rows - 1]:
        raise CheckpointError(
            f"{where}: {len(tok) - len(ADDED_TOKENS)} tokens, but ImageReward's text encoder has {rows} rows: "
            f"{rows - len(ADDED_TOKENS)} of bert-base-uncased's vocabulary + {', '.join(ADDED_TOKENS)}. Use "
            f"bert-base-uncased's vocab.txt (30522 lines; a cased or multilingual BERT vocabulary does not fit)")


def imagereward_tokenizer(vocab_path: str, rows: int):
    if not os.path.isfile(vocab_path):
        folder = os.path.dirname(vocab_path)
        raise CheckpointError(
            f"ImageReward needs the bert-base-uncased vocabulary: '{VOCAB_NAME}' is missing from the folder "
            f"'{folder}' (expected the file '{vocab_path}'). Download vocab.txt from the Hugging Face repository "
            f"google-bert/bert-base-uncased (or take it from any BERT-base-uncased download) and put it there, "
            f"beside {WEIGHTS_NAME}")
    try:
        tok = bert_tokenizer(read_vocab(vocab_path))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"'{vocab_path}' could not be read as a BERT vocabulary ({e})") from None
    check_tokenizer(tok, rows, f"'{vocab_path}'")
    return tok


@functools.lru_cache(maxsize=None)
def tiny_bert_tokenizer():
    """The tiny ImageReward's tokenizer: :data:`TINY_VOCAB` + [DEC], [ENC]; no file needed."""
    return bert_tokenizer({t: i for i, t in enumerate(TINY_VOCAB)})


# ---------------------------------------------------------------- the scorer

class ImageRewardScorer(NetworkScorer):
    """ImageReward score per candidate (normalised reward, higher is better); 35-token prompts; torchvision-style
    centre crop. Runs in float32 unless loaded with another dtype (the official code runs float32)."""

    def __init__(self, model: ImageRewardModel, tokenizer, name: str = "ImageReward", batch_size: int = 8,
                 untrained: bool = False):
        check_tokenizer(tokenizer, model.blip.text_encoder.config.vocab_size, f"{name}'s tokenizer")
        super().__init__(model, tokenizer, model.image_size, PROMPT_TOKENS, CLIP_MEAN, CLIP_STD, name, batch_size,
                         untrained)

    def _score(self, prompt: str, images: torch.Tensor) -> torch.Tensor:
        from .. import host
        tokens = self.tokenize(prompt)
        model = self.model
        host.load_models([self.part])
        device, dtype = self.part.device, self.part.dtype
        ids, mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
        out = []
        for chunk in images.split(self.batch_size):
            host.check_interrupt()
            pixels = clip_preprocess(chunk.to(device), self.image_size, self.mean, self.std, crop="round").to(dtype)
            out.append(model(ids, mask, pixels).cpu())
        return torch.cat(out).float()


# ---------------------------------------------------------------- loading

def build_imagereward(config: dict = IMAGEREWARD_V1) -> ImageRewardModel:
    """The model with its parameters on the meta device (buffers real)."""
    with empty_params():
        return ImageRewardModel(config)


def strip_module(sd: dict) -> dict:
    """Drop a DistributedDataParallel ``module.`` prefix when every key carries it."""
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def rename_key(key: str) -> str:
    """A file key → the model's key (:data:`VISION_RENAME` under ``blip.visual_encoder.``; others unchanged)."""
    if key.startswith(VISION_PREFIX):
        rest = key[len(VISION_PREFIX):]
        for pattern, repl in VISION_RENAME:
            new, n = re.subn(pattern, repl, rest)
            if n:
                return VISION_PREFIX + new
    return key


def is_imagereward(keys) -> bool:
    keys = list(keys)
    return any(k.startswith(("blip.visual_encoder.", "module.blip.visual_encoder.")) for k in keys) and \
        any(k.startswith(("mlp.layers.", "module.mlp.layers.")) for k in keys)


def detect_imagereward_file(keys, name: str) -> None:
    """Refuse files that are not ImageReward, saying what they look like."""
    keys = list(strip_module(dict.fromkeys(keys)))
    if is_imagereward(keys):
        return
    if any(k.startswith(("text_model.", "vision_model.")) for k in keys):
        raise CheckpointError(f"'{name}' is a CLIP model (transformers layout), not ImageReward: put it in "
                              f"models/scorers/ on its own to use it as a CLIP scorer")
    if any(k.startswith("visual_encoder.") for k in keys) or any(k.startswith("blip.") for k in keys):
        raise CheckpointError(f"'{name}' is a BLIP checkpoint without ImageReward's reward head ('mlp.layers.*'): "
                              f"use the released ImageReward.pt")
    if any(k.startswith(("model.diffusion_model.", "first_stage_model.")) for k in keys):
        raise CheckpointError(f"'{name}' is a Stable Diffusion checkpoint, not ImageReward")
    raise CheckpointError(f"'{name}' is not an ImageReward checkpoint: it has no 'blip.visual_encoder.*' and "
                          f"'mlp.layers.*' keys")


def match_imagereward(model: ImageRewardModel, sd: dict, name: str) -> dict:
    """Strict match of a state dict (file keys) onto :class:`ImageRewardModel`: the ViT renamed, the text encoder
    and head as they are, the position ids checked (``arange``) and dropped; an optional ``module.`` stripped."""
    sd = strip_module(sd)
    detect_imagereward_file(sd, name)
    pos = sd.get(POSITION_IDS)
    if pos is not None and not pos.is_meta:
        want = torch.arange(pos.shape[-1])[None]
        if tuple(pos.shape) != tuple(want.shape) or not torch.equal(pos.long(), want):
            raise CheckpointError(f"ImageReward '{name}': {POSITION_IDS} is not arange({pos.shape[-1]}) "
                                  f"(shape {tuple(pos.shape)}): the file is damaged or not ImageReward")
    return match_state_dict(model, sd, f"ImageReward '{name}'", rename=rename_key, ignore_file=IGNORED)


def _weights_in(folder: str) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(MODEL_EXTS)
                  and os.path.isfile(os.path.join(folder, f)))


@functools.lru_cache(maxsize=64)
def _file_is_imagereward(path: str, size: int, mtime: float) -> bool:
    try:
        return is_imagereward(read_shapes(path))
    except CheckpointError:
        return False


def imagereward_weights(folder: str) -> Optional[str]:
    """The ImageReward weight file in ``folder`` (``ImageReward.pt`` first, else the one file with ImageReward's
    ``blip.*`` / ``mlp.layers.*`` keys), or None. Keys are read once per file version (memory-mapped)."""
    if not os.path.isdir(folder) or os.path.isfile(os.path.join(folder, "config.json")):
        return None
    names = _weights_in(folder)
    names = ([WEIGHTS_NAME] if WEIGHTS_NAME in names else []) + [n for n in names if n != WEIGHTS_NAME]
    for n in names:
        path = os.path.join(folder, n)
        st = os.stat(path)
        if _file_is_imagereward(path, st.st_size, st.st_mtime):
            return path
    return None


def _check_med_config(folder: str, name: str, text: dict) -> None:
    path = os.path.join(folder, MED_CONFIG_NAME)
    if not os.path.isfile(path):
        return
    cfg = read_json(path)
    wrong = [f"{k} {cfg[k]!r} (ImageReward-v1.0: {text[k]!r})" for k in MED_CONFIG_FIELDS
             if k in cfg and cfg[k] != text[k]]
    if wrong:
        raise CheckpointError(f"ImageReward '{name}': {MED_CONFIG_NAME} does not describe ImageReward-v1.0's text "
                              f"encoder: {', '.join(wrong)}")


def load_imagereward(path: str, dtype: Optional[torch.dtype] = None, batch_size: int = 8,
                     config: Optional[dict] = None) -> ImageRewardScorer:
    """An :class:`ImageRewardScorer` from a folder holding the released ``ImageReward.pt`` (or that file itself)
    and bert-base-uncased's ``vocab.txt`` beside it. Strict: every tensor maps to a parameter (the position-id
    buffer, checked, is the one tensor dropped), every parameter is covered; the vocabulary must give 30524 ids.
    float32 unless ``dtype`` is given. ``config``: the network's sizes (ImageReward-v1.0's; other sizes for tests)."""
    if os.path.isdir(path):
        folder, weights = path, imagereward_weights(path)
        if weights is None:
            found = ", ".join(_weights_in(path)) or "none"
            raise CheckpointError(f"'{path}' holds no ImageReward checkpoint (expected {WEIGHTS_NAME} with "
                                  f"'blip.*' and 'mlp.layers.*' keys; weight files there: {found})")
    elif os.path.isfile(path):
        folder, weights = os.path.dirname(os.path.abspath(path)), path
    else:
        raise CheckpointError(f"'{path}' is neither a file nor a folder")
    name = os.path.basename(folder.rstrip(os.sep))
    config = config or IMAGEREWARD_V1
    tokenizer = imagereward_tokenizer(os.path.join(folder, VOCAB_NAME), config["text"]["vocab_size"])  # fail fast
    _check_med_config(folder, name, config["text"])
    model = build_imagereward(config)
    matched = match_imagereward(model, read_state_dict(weights), os.path.basename(weights))
    load_into(model, matched, dtype or torch.float32)
    return ImageRewardScorer(model, tokenizer, name=f"ImageReward {name}", batch_size=batch_size)


# ---------------------------------------------------------------- tiny demo

def tiny_config() -> dict:
    tok = tiny_bert_tokenizer()
    ids = dict(bos_token_id=tok.bos_token_id, sep_token_id=tok.sep_token_id, eos_token_id=tok.sep_token_id)
    return dict(TINY_IMAGEREWARD, text=dict(TINY_IMAGEREWARD["text"], vocab_size=len(tok), **ids))


def _tiny_model() -> ImageRewardModel:
    model = ImageRewardModel(tiny_config())
    # transformers' BLIP init is near zero (the vision tower's initializer_range is 1e-10): every weight matrix and
    # embedding redrawn here with std 1/sqrt(fan-in), so images and prompts change the score
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, p[0].numel() ** -0.5)
            elif n.endswith("bias"):
                p.normal_(0.0, 0.02)
    return model


@functools.lru_cache(maxsize=None)
def tiny_imagereward_scorer() -> ImageRewardScorer:
    """A tiny UNTRAINED ImageReward (ViT 32 wide, 32 px, patch 8; text 32 wide with cross-attention; 2 layers
    each) with its own tiny WordPiece vocabulary, built once per process from a fixed seed. Deterministic,
    prompt-dependent, meaningless."""
    from .tiny import _seeded
    model = _seeded(TINY_IMAGEREWARD_SEED, _tiny_model)
    return ImageRewardScorer(model, tiny_bert_tokenizer(), name=TINY_IMAGEREWARD_NAME, untrained=True)
