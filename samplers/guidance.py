"""Classifier-free guidance as combinations of denoiser outputs (not part of any model).

A guided model is a callable ``guided(x, sigma) -> Guided(x0, eps)``: the clean estimate the step
moves to, and the noise direction it re-noises along (``x_next = x0 + σ_next·eps`` for DDIM η = 0).

- CFG, scale s: ``x0 = x0_u + s·(x0_c − x0_u)`` (the same as combining ε, since ε = (x − x0)/σ is
  affine in x0), ``eps = (x − x0)/σ``.
- CFG++ (Chung et al. 2024), scale λ ∈ [0, 1]: the same x0, but ``eps = (x − x0_u)/σ``, the
  unconditional direction.

cond and uncond go through the network in ONE call, batched ``[uncond; cond]`` along dim 0 (the
order diffusers uses). CFG with scale 1 needs no unconditional branch and makes one un-doubled call.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch

from .vp import as_sigma

GUIDANCE_MODES = ("cfg", "cfg++")


class Guided(NamedTuple):
    x0: torch.Tensor
    eps: torch.Tensor


def concat_conds(conds: list) -> Any:
    """Concatenate conditionings along the batch dim: tensors, lists of tensors (element by element, e.g. one
    feature map per UNet level), or dicts of either (other values must agree)."""
    first = conds[0]
    if torch.is_tensor(first):
        return torch.cat(conds, dim=0)
    if isinstance(first, (list, tuple)) and all(torch.is_tensor(t) for t in first):
        return [torch.cat(parts, dim=0) for parts in zip(*conds)]
    if isinstance(first, dict):
        out = {}
        for k, v in first.items():
            if torch.is_tensor(v) or (isinstance(v, (list, tuple)) and v and all(torch.is_tensor(t) for t in v)):
                out[k] = concat_conds([c[k] for c in conds])
            else:
                if any(c[k] != v for c in conds[1:]):
                    raise ValueError(f"conditionings disagree on non-tensor entry {k!r}")
                out[k] = v
        return out
    raise TypeError(f"a conditioning must be a tensor or a dict of tensors, got {type(first).__name__}")


def _pair(v, batch: int):
    """A per-sample tensor (σ, timestep) for the ``[uncond; cond]`` batch: doubled when it has one entry per
    sample; a scalar or a batch-1 tensor broadcasts as it is."""
    return torch.cat([v, v]) if torch.is_tensor(v) and v.ndim and v.shape[0] == batch > 1 else v


def _direction(x: torch.Tensor, x0: torch.Tensor, sigma) -> torch.Tensor:
    """``(x − x0)/σ``; with σ per sample or per frame, 0 where σ = 0 (a clean frame has no noise direction)."""
    if not torch.is_tensor(sigma):
        return (x - x0) / sigma
    s = as_sigma(sigma, x).to(x.dtype)
    return torch.where(s > 0, (x - x0) / torch.where(s > 0, s, 1), 0)


def guidance(denoise: Callable, cond, uncond=None, scale: float = 1.0, mode: str = "cfg") -> Callable:
    """Build ``guided(x, sigma, **extra) -> Guided`` from a denoiser ``denoise(x, sigma, cond, **extra) -> x0``
    (``extra``: e.g. an explicit ``timestep``, passed on)."""
    if mode not in GUIDANCE_MODES:
        raise ValueError(f"guidance mode must be one of {GUIDANCE_MODES}, got {mode!r}")
    single = mode == "cfg" and float(scale) == 1.0
    if uncond is None and not single:
        raise ValueError(f"{mode} with scale {scale} needs an unconditional (negative) conditioning")
    pair = None if single else concat_conds([uncond, cond])

    def guided(x: torch.Tensor, sigma, **extra) -> Guided:
        if not torch.is_tensor(sigma):
            sigma = float(sigma)
        if single:
            x0 = denoise(x, sigma, cond, **extra)
            return Guided(x0, _direction(x, x0, sigma))
        b = x.shape[0]
        extra = {k: _pair(v, b) for k, v in extra.items()}
        x0_u, x0_c = denoise(torch.cat([x, x], dim=0), _pair(sigma, b), pair, **extra).chunk(2, dim=0)
        x0 = x0_u + scale * (x0_c - x0_u)
        return Guided(x0, _direction(x, x0 if mode == "cfg" else x0_u, sigma))

    return guided
