"""Seeded noise: one CPU ``torch.Generator`` per purpose.

Each purpose (initial noise, ancestral noise, a method's re-noise, a filter's noise, ...) gets its own
generator derived from the node's seed, so a method that adds draws never shifts the draws of the
sampler underneath it. Noise is drawn on the CPU in float32 and then moved, so a seed gives the same
video on any device. The ``"initial"`` purpose uses the seed itself, as ComfyUI's own latent noise does.
"""
from __future__ import annotations

import hashlib

import torch

SEED_MAX = 0xFFFF_FFFF_FFFF_FFFF


def purpose_seed(seed: int, purpose: str) -> int:
    """The seed of one purpose's generator: the seed itself for ``"initial"``, else a hash of both."""
    if not 0 <= int(seed) <= SEED_MAX:
        raise ValueError(f"seed must be in [0, {SEED_MAX}], got {seed}")
    if purpose == "initial":
        return int(seed)
    digest = hashlib.blake2b(f"{int(seed)}/{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def generator(seed: int, purpose: str = "initial") -> torch.Generator:
    """A CPU generator for one purpose of one seed."""
    return torch.Generator(device="cpu").manual_seed(purpose_seed(seed, purpose))


def randn(shape, gen: torch.Generator, device=None, dtype=None) -> torch.Tensor:
    """Standard normal noise drawn on the CPU in float32 from ``gen``, then moved to ``device``/``dtype``."""
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float32, device="cpu").to(device=device, dtype=dtype)
