"""Text encoders: a tokenizer + a CLIP-style text model → per-token embeddings ``(B, L, D)``."""
from __future__ import annotations

import torch

from .. import host


def _bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 / CLIP byte → printable-character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def char_clip_tokenizer(max_length: int = 77):
    """A character-level CLIP tokenizer built in code (no vocab files): 514 tokens, no merges;
    ``<|startoftext|>`` and ``<|endoftext|>`` are the two highest ids, as in real CLIP."""
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=[], model_max_length=max_length)


class TextEncoder:
    """A tokenizer and a transformers text model (``CLIPTextModel``-like: ``last_hidden_state``)."""

    def __init__(self, tokenizer, model: torch.nn.Module, max_length: int = 77):
        self.tokenizer = tokenizer
        self.part = host.ModelPart(model, "text_encoder", f"{type(model).__name__} text encoder")
        self.max_length = max_length

    @property
    def model(self) -> torch.nn.Module:
        return self.part.module

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Prompts → ``(len(prompts), max_length, dim)`` float32 on the intermediate device; padded to
        ``max_length`` and truncated there, as diffusers' pipelines do."""
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.max_length, truncation=True,
                             return_tensors="pt").input_ids
        host.load_models([self.part])
        out = self.model(ids.to(self.part.device)).last_hidden_state
        return out.float().to(host.intermediate_device())
