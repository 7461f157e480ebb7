"""Anchor-image scorers for I4VGen's stage-1 selection: prompt + candidate images → one score each.

The official code ranks the candidates with ImageReward-v1.0 and takes the argmax. Here a scorer is
anything with :meth:`Scorer.score`; the selector takes the argmax of what it returns. Offered:

- :class:`CLIPScorer`: CLIP score, ``100 · cos(image_embeds, text_embeds)``, with a full transformers
  ``CLIPModel`` (both towers). Loaded by :func:`load_clip_scorer` from a transformers folder or from a
  single ``.safetensors`` file in the HF transformers key layout of CLIP ViT-L/14 (config shipped in
  ``models/configs/clip_vit_l14``). Images are preprocessed in torch (no torchvision, no
  ``CLIPImageProcessor``): short side resized to the model's size with antialiased bicubic, centre crop,
  CLIP's mean/std.
- :func:`tiny_clip_scorer`: a tiny UNTRAINED CLIP built in code from fixed seeds, for demo workflows
  and tests. Its scores are deterministic and prompt-dependent but carry no meaning.
- ImageReward-v1.0, the official selector: ``models/imagereward.py`` (on :class:`NetworkScorer` and
  :func:`clip_preprocess`).
- :class:`ExternalScores`: scores from any other node as a comma-separated STRING (:func:`parse_scores`).
- :class:`PickIndex`: the user's own choice of candidate.

Scoring never builds an autograd graph (``torch.inference_mode``); results are ``(N,)`` float32 on the CPU.
"""
from __future__ import annotations

import functools
import math
import os
import re
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .. import host
from .checkpoint import (CheckpointError, empty_params, load_into, match_state_dict, read_folder_weights, read_shapes,
                         read_state_dict)
from .loaders import load_tokenizer, read_json

CONFIG_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
CLIP_L14_CONFIG = os.path.join(CONFIG_ROOT, "clip_vit_l14")
SCORER_FOLDER = "scorers"
SCORER_EXTS = (".safetensors",)
TINY_CLIP_NAME = "tiny CLIP (untrained demo)"

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Older transformers saved the position-id tables as persistent buffers; current ones compute them
# (non-persistent). Files may or may not carry them: dropped when present, not required when absent.
CLIP_POSITION_IDS = (r"^(text|vision)_model\.embeddings\.position_ids$",)

TINY_CLIP_TEXT = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                      max_position_embeddings=77)
TINY_CLIP_VISION = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                        image_size=32, patch_size=8)
TINY_CLIP_PROJECTION = 16
TINY_CLIP_SEED = 4001


# ---------------------------------------------------------------- interface

class Scorer:
    """Prompt + candidate images → one score each; higher is better (the selector takes the argmax)."""
    TYPE = "CVK_SCORER"
    name: str = "scorer"
    untrained: bool = False

    def score(self, prompt: str, images: torch.Tensor) -> torch.Tensor:
        """``images``: ComfyUI IMAGE ``(N, H, W, 3)``, float in 0..1 → ``(N,)`` float32 on the CPU."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def check_images(images) -> torch.Tensor:
    """A ComfyUI IMAGE batch ``(N, H, W, 3)`` with N ≥ 1, as float; anything else is a ValueError."""
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[-1] != 3:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"expected an IMAGE batch [N, height, width, 3], got {shape}")
    if images.shape[0] == 0:
        raise ValueError("the IMAGE batch is empty: there is nothing to score")
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(f"the images have no pixels (shape {tuple(images.shape)})")
    return images if images.is_floating_point() else images.float()


# ---------------------------------------------------------------- preprocessing (torch only)

def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(height, width)`` with the short side at ``short_side``, the long side scaled and truncated, as
    transformers' CLIP image processor computes it."""
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


def clip_preprocess(images: torch.Tensor, image_size: int, mean: Sequence[float] = CLIP_MEAN,
                    std: Sequence[float] = CLIP_STD, crop: str = "floor") -> torch.Tensor:
    """IMAGE ``(N, H, W, 3)`` in 0..1 → pixel values ``(N, 3, image_size, image_size)`` float32: short side
    resized to ``image_size`` (bicubic, antialiased; clamped to 0..1 as an 8-bit resize would be), centre
    crop, then ``(x - mean) / std`` per channel. The crop offsets are ``(H - S) // 2``, ``(W - S) // 2`` with
    ``crop="floor"`` (transformers' CLIP image processor) or ``int(round((H - S) / 2))`` with ``crop="round"``
    (torchvision's ``CenterCrop``, which ImageReward's official preprocessing uses; Python rounds halves to
    even, so the two differ by one pixel when ``H - S`` is 3 mod 4)."""
    if crop not in ("floor", "round"):
        raise ValueError(f"crop must be 'floor' or 'round', got {crop!r}")
    x = images.float().permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    nh, nw = resized_size(h, w, image_size)
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False).clamp_(0.0, 1.0)
    offset = (lambda d: d // 2) if crop == "floor" else (lambda d: int(round(d / 2.0)))
    top, left = offset(nh - image_size), offset(nw - image_size)
    x = x[:, :, top:top + image_size, left:left + image_size]
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


# ---------------------------------------------------------------- CLIP score

class NetworkScorer(Scorer):
    """A scorer with a network: the model is a host ModelPart with the text encoders' devices (as ComfyUI's CLIP
    vision), loaded through the host's model management when it scores; images in batches of ``batch_size``;
    the prompt padded and truncated to ``max_length`` tokens. Subclasses write :meth:`_score` (called in
    inference mode)."""

    def __init__(self, model: torch.nn.Module, tokenizer, image_size: int, max_length: int,
                 mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD, name: str = "scorer",
                 batch_size: int = 16, untrained: bool = False):
        self.part = host.ModelPart(model.eval().requires_grad_(False), "text_encoder", f"{name} scorer")
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.max_length = int(max_length)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.name = name
        self.batch_size = int(batch_size)
        self.untrained = untrained

    @property
    def model(self) -> torch.nn.Module:
        return self.part.module

    def tokenize(self, prompt: str) -> dict:
        if not isinstance(prompt, str):
            raise ValueError(f"the prompt must be a string, got {type(prompt).__name__}")
        return self.tokenizer([prompt], padding="max_length", max_length=self.max_length, truncation=True,
                              return_tensors="pt")

    def score(self, prompt: str, images: torch.Tensor) -> torch.Tensor:
        # cloned outside inference mode: callers may index-assign into the result
        with torch.inference_mode():
            out = self._score(prompt, check_images(images))
        return out.clone()

    def _score(self, prompt: str, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class CLIPScorer(NetworkScorer):
    """CLIP score ``100 · cos(image_embeds, text_embeds)`` with a transformers ``CLIPModel``; the prompt is
    truncated to the text tower's positions (77 for CLIP)."""

    def __init__(self, model: torch.nn.Module, tokenizer, image_size: int, mean: Sequence[float] = CLIP_MEAN,
                 std: Sequence[float] = CLIP_STD, name: str = "CLIP", batch_size: int = 16, untrained: bool = False):
        super().__init__(model, tokenizer, image_size, int(model.config.text_config.max_position_embeddings),
                         mean, std, name, batch_size, untrained)

    def _score(self, prompt: str, images: torch.Tensor) -> torch.Tensor:
        tokens = self.tokenize(prompt)
        model = self.model
        host.load_models([self.part])
        device, dtype = self.part.device, self.part.dtype
        text = model.text_model(input_ids=tokens["input_ids"].to(device),
                                attention_mask=tokens["attention_mask"].to(device)).pooler_output
        text = F.normalize(model.text_projection(text).float(), dim=-1)[0]
        out = []
        for chunk in images.split(self.batch_size):
            host.check_interrupt()
            pixels = clip_preprocess(chunk.to(device), self.image_size, self.mean, self.std).to(dtype)
            image = model.vision_model(pixel_values=pixels).pooler_output
            image = F.normalize(model.visual_projection(image).float(), dim=-1)
            out.append((100.0 * image @ text).cpu())
        return torch.cat(out).float()


# ---------------------------------------------------------------- loading

def _clip_config(config: dict, where: str):
    from transformers import CLIPConfig
    kind = config.get("model_type")
    if kind != "clip":
        raise CheckpointError(f"{where}: model_type is {kind!r}, not 'clip'. The CLIP score needs a full CLIPModel "
                              f"(text and vision towers with their projections), not a text or vision tower alone")
    try:
        return CLIPConfig.from_dict(config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: not a usable CLIP config ({e})") from None


def build_clip(config: dict, where: str = "CLIP config") -> torch.nn.Module:
    """A ``CLIPModel`` from a transformers config dict, parameters on the meta device."""
    from transformers import CLIPModel
    cfg = _clip_config(config, where)
    with empty_params():
        return CLIPModel(cfg)


def _clip_dtype(dtype: Optional[torch.dtype]) -> torch.dtype:
    """fp16 where the scorer runs on CUDA (the text encoders' device: CLIP was trained in fp16; bf16's coarse
    mantissa could reorder close candidates), fp32 elsewhere, unless given."""
    if dtype is not None:
        return dtype
    return torch.float16 if host.load_device("text_encoder").type == "cuda" else torch.float32


def detect_clip_file(shapes: dict, name: str) -> None:
    """Refuse files that are not a two-tower CLIP in the HF transformers layout, saying what they look like."""
    keys = list(shapes)
    if any(k.startswith(("model.diffusion_model.", "first_stage_model.")) for k in keys):
        raise CheckpointError(f"'{name}' is a Stable Diffusion checkpoint, not a CLIP model")
    openai = ("visual.transformer.", "transformer.resblocks.", "token_embedding.")
    if any(k.startswith(openai) for k in keys):
        raise CheckpointError(f"'{name}' is in the OpenAI / open_clip layout ('visual.transformer.*'); this loader "
                              f"reads the HF transformers layout ('vision_model.*', 'text_model.*'). Use the "
                              f"transformers release of the model (e.g. openai/clip-vit-large-patch14)")
    has_text = any(k.startswith("text_model.") for k in keys)
    has_vision = any(k.startswith("vision_model.") for k in keys)
    if has_text and not has_vision:
        raise CheckpointError(f"'{name}' holds only a CLIP text encoder (like ComfyUI's clip_l or an SD text "
                              f"encoder); the CLIP score needs the full model with the vision tower and both "
                              f"projections (e.g. openai/clip-vit-large-patch14's model.safetensors)")
    if has_vision and not has_text:
        raise CheckpointError(f"'{name}' holds only a CLIP vision tower (like a clip_vision file); the CLIP score "
                              f"needs the full model with the text tower and both projections")
    if not has_text:
        raise CheckpointError(f"'{name}' is not a CLIP model: it has no 'text_model.*' / 'vision_model.*' keys")


def _tokenizer(folders: list, what: str):
    try:
        return load_tokenizer(folders, what)
    except CheckpointError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as e:   # tokenizer files present but unreadable
        raise CheckpointError(f"{what}: the tokenizer files could not be read ({e})") from None


def load_clip_scorer(path: str, config_dir: str = CLIP_L14_CONFIG, dtype: Optional[torch.dtype] = None,
                     batch_size: int = 16) -> CLIPScorer:
    """A :class:`CLIPScorer` from

    - a transformers folder: ``config.json`` (a ``CLIPModel``), ``model.safetensors`` or ``pytorch_model.bin``
      (or their sharded index), the CLIP tokenizer files beside them (or in ``tokenizer/``), and optionally
      ``preprocessor_config.json`` (its ``image_mean`` / ``image_std`` are used); or
    - one ``.safetensors`` file in the HF key layout (``text_model.*``, ``vision_model.*``,
      ``visual_projection.weight``, ``text_projection.weight``, ``logit_scale``), read with the config in
      ``config_dir`` (default: the shipped CLIP ViT-L/14 one). Its tokenizer comes from ``config_dir`` when
      that has one, else from ComfyUI's ``comfy/sd1_tokenizer`` (the same CLIP vocabulary).

    Strict: every tensor maps to a parameter (old ``*.embeddings.position_ids`` buffers are dropped), every
    parameter is covered; anything else is a :class:`CheckpointError` naming the keys."""
    name = os.path.basename(path.rstrip(os.sep))
    mean, std = CLIP_MEAN, CLIP_STD
    if os.path.isdir(path):
        config = read_json(os.path.join(path, "config.json"))
        model = build_clip(config, f"'{name}' config.json")
        tokenizer_dirs = [path, os.path.join(path, "tokenizer")]
        pre = os.path.join(path, "preprocessor_config.json")
        if os.path.isfile(pre):
            pcfg = read_json(pre)
            mean, std = tuple(pcfg.get("image_mean", mean)), tuple(pcfg.get("image_std", std))
            if len(mean) != 3 or len(std) != 3:
                raise CheckpointError(f"'{name}' preprocessor_config.json: image_mean / image_std need 3 values")
    elif os.path.isfile(path):
        if not path.lower().endswith(SCORER_EXTS):
            raise CheckpointError(f"'{name}': a single-file CLIP must be .safetensors (or give a transformers "
                                  f"folder)")
        detect_clip_file(read_shapes(path), name)
        config = read_json(os.path.join(config_dir, "config.json"))
        model = build_clip(config, f"{config_dir}/config.json")
        tokenizer_dirs = [config_dir, host.comfy_resource_dir("sd1_tokenizer")]
    else:
        raise CheckpointError(f"'{path}' is neither a file nor a folder")
    tokenizer = _tokenizer(tokenizer_dirs, f"CLIP '{name}'")   # before reading the weights: fail fast
    sd = read_folder_weights(path, "model", "pytorch_model") if os.path.isdir(path) else read_state_dict(path)
    matched = match_state_dict(model, sd, f"CLIP '{name}'", ignore_file=CLIP_POSITION_IDS,
                               optional_model=CLIP_POSITION_IDS)
    load_into(model, matched, _clip_dtype(dtype))
    return CLIPScorer(model, tokenizer, int(model.config.vision_config.image_size), mean, std,
                      name=f"CLIP {name}", batch_size=batch_size)


# ---------------------------------------------------------------- tiny demo

def tiny_clip_config():
    """The tiny CLIP's ``CLIPConfig``: the pack's character-level tokenizer as vocabulary."""
    from transformers import CLIPConfig
    from .tiny import tiny_tokenizer
    tok = tiny_tokenizer()
    text = dict(TINY_CLIP_TEXT, vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)
    return CLIPConfig(text_config=text, vision_config=dict(TINY_CLIP_VISION), projection_dim=TINY_CLIP_PROJECTION)


@functools.lru_cache(maxsize=None)
def tiny_clip_scorer() -> CLIPScorer:
    """A tiny UNTRAINED CLIP (vision 32 wide, 32 px, patch 8; text 32 wide; 2 layers each; projection 16)
    built once per process from a fixed seed. Deterministic, prompt-dependent, meaningless."""
    from transformers import CLIPModel
    from .tiny import _seeded, tiny_tokenizer
    cfg = tiny_clip_config()
    model = _seeded(TINY_CLIP_SEED, lambda: CLIPModel(cfg))
    return CLIPScorer(model, tiny_tokenizer(), TINY_CLIP_VISION["image_size"], CLIP_MEAN, CLIP_STD,
                      name=TINY_CLIP_NAME, untrained=True)


# ---------------------------------------------------------------- external scores, picking

class ScoreError(ValueError):
    """Scores or a pick that cannot select a candidate (malformed, wrong count, NaN, index out of range)."""


def parse_scores(text: str, count: Optional[int] = None) -> torch.Tensor:
    """A comma-separated STRING of numbers (``"0.1, 2, -3e-1"``; line breaks also separate) → ``(N,)``
    float32. Every entry must be a finite number; with ``count``, there must be exactly that many.
    Errors are :class:`ScoreError`\ s that name the entry at fault."""
    if not isinstance(text, str):
        raise ScoreError(f"scores must be a string of comma-separated numbers, got {type(text).__name__}")
    # a line break separates too; one right after a comma is part of the same separator
    text = re.sub(r",[ \t]*\r?\n", ",", text.strip()).replace("\r\n", "\n").replace("\n", ",")
    tokens = [t.strip() for t in text.split(",")]
    if tokens and tokens[-1] == "" and len(tokens) > 1:
        tokens = tokens[:-1]   # one trailing comma (or line break) is harmless
    if not any(tokens):
        raise ScoreError("no scores given: expected comma-separated numbers such as '0.1, 2, -3e-1'")
    values = []
    for i, tok in enumerate(tokens, 1):
        if tok == "":
            raise ScoreError(f"score {i} of {len(tokens)} is empty (two commas in a row?)")
        try:
            v = float(tok)
        except ValueError:
            raise ScoreError(f"score {i} of {len(tokens)}, {tok!r}, is not a number") from None
        if not math.isfinite(v):
            raise ScoreError(f"score {i} of {len(tokens)}, {tok!r}, is not a finite number")
        values.append(v)
    if count is not None and len(values) != count:
        raise ScoreError(f"{len(values)} scores given for {count} candidates; give one score per candidate")
    return torch.tensor(values, dtype=torch.float32)


def format_scores(scores: torch.Tensor) -> str:
    """``(N,)`` scores → ``"s0, s1, ..."`` (6 significant digits), readable back by :func:`parse_scores`."""
    return ", ".join(format(float(v), ".6g") for v in scores.flatten().tolist())


def best_index(scores: torch.Tensor) -> int:
    """Index of the highest score; the first one on ties. NaN scores are an error."""
    scores = scores.flatten()
    if scores.numel() == 0:
        raise ScoreError("no scores: there is no candidate to pick")
    if torch.isnan(scores).any():
        raise ScoreError(f"the scores contain NaN at {torch.isnan(scores).nonzero().flatten().tolist()}")
    return int(torch.argmax(scores))


def check_index(index: int, count: int) -> int:
    """A candidate index in ``0 .. count-1`` ("pick index"); anything else is a :class:`ScoreError`."""
    if isinstance(index, bool) or not isinstance(index, int):
        raise ScoreError(f"the index must be a whole number, got {index!r}")
    if count < 1:
        raise ScoreError("there are no candidates to pick from")
    if not 0 <= index < count:
        raise ScoreError(f"index {index} is out of range for {count} candidates (0 to {count - 1})")
    return index


class ExternalScores(Scorer):
    """Scores computed elsewhere, given as a comma-separated STRING; one per candidate, in order."""

    def __init__(self, text: str):
        self.scores = parse_scores(text)
        self.name = "external scores"

    def score(self, prompt: str, images: torch.Tensor) -> torch.Tensor:
        n = check_images(images).shape[0]
        if n != self.scores.numel():
            raise ScoreError(f"{self.scores.numel()} scores given for {n} candidates; give one score per candidate")
        return self.scores.clone()


class PickIndex(Scorer):
    """The user's own choice: score 1 for candidate ``index``, 0 for the others."""

    def __init__(self, index: int):
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ScoreError(f"the index must be a whole number ≥ 0, got {index!r}")
        self.index = index
        self.name = f"pick index {index}"

    def score(self, prompt: str, images: torch.Tensor) -> torch.Tensor:
        n = check_images(images).shape[0]
        out = torch.zeros(n, dtype=torch.float32)
        out[check_index(self.index, n)] = 1.0
        return out
