"""Samplers in σ-space, k-diffusion style: each a short loop over a guided model.

``model(x, sigma) -> Guided(x0, eps)`` (see :mod:`.guidance`); ``sigmas`` a descending grid ``(N+1,)``
whose last entry is the final level (0 or > 0, see :mod:`.schedules`).

DDIM with η is, in σ-space, an ancestral Euler step: with ``σ_up = η·σ'·sqrt(σ² − σ'²)/σ`` and
``σ_down = sqrt(σ'² − σ_up²)``, ``x' = x0 + σ_down·eps + σ_up·n``. η = 0 is the plain Euler step
``x' = x0 + σ'·eps`` (deterministic DDIM); η = 1 gives DDPM's posterior variance (ancestral sampling).
Divide by ``sqrt(1 + σ'²)`` and this is diffusers' DDIM update in the VP latent, term by term,
with ``n`` its ``variance_noise``.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from .guidance import guidance
from .noise import generator, randn
from .vp import to_vp

SAMPLERS = ("ddim", "ddpm")


def ancestral_step(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """(σ_down, σ_up) of one DDIM(η) step from σ to σ_next (σ_next may be 0)."""
    if sigma_next == 0 or eta == 0 or sigma_next >= sigma:
        return sigma_next, 0.0
    up = min(sigma_next, eta * sigma_next * math.sqrt(max(sigma**2 - sigma_next**2, 0.0)) / sigma)
    return math.sqrt(sigma_next**2 - up**2), up


def sample_ddim(model: Callable, x: torch.Tensor, sigmas: torch.Tensor, eta: float = 0.0,
                generator: Optional[torch.Generator] = None, callback: Optional[Callable] = None,
                post_step: Optional[Callable] = None) -> torch.Tensor:
    """DDIM(η) over the grid. ``x`` ``(B, C, F, h, w)`` at ``sigmas[0]`` (σ-space); returns x at ``sigmas[-1]``.

    η > 0 draws ``N(0, I)`` from ``generator`` (CPU) once per step whose next level is > 0.
    ``callback(i, x, x0, sigma)`` runs after each model evaluation (progress, previews, interrupt).
    ``post_step(i, x, sigma_next) -> x`` may change the latent after each step (a method's hook, e.g.
    VideoGuide's low-pass re-noise); methods compose a guided-model wrapper and such a hook with this loop.
    """
    if eta < 0:
        raise ValueError(f"eta must be ≥ 0, got {eta}")
    if eta > 0 and generator is None:
        raise ValueError("DDIM with eta > 0 needs a generator for its ancestral noise")
    sig = [float(s) for s in sigmas]
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        x0, eps = model(x, s)
        if callback is not None:
            callback(i, x, x0, s)
        down, up = ancestral_step(s, s_next, eta)
        x = x0 if s_next == 0 else x0 + down * eps
        if up > 0:
            x = x + up * randn(x.shape, generator, x.device, x.dtype)
        if post_step is not None:
            x = post_step(i, x, s_next)
    return x


def eta_for(sampler: str, eta: float) -> float:
    """η of a named sampler: ``ddim`` uses ``eta``; ``ddpm`` is η = 1 (its posterior variance)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    return float(eta) if sampler == "ddim" else 1.0


def sample(denoise: Callable, shape, sigmas: torch.Tensor, cond, uncond=None, scale: float = 7.5,
           mode: str = "cfg", eta: float = 0.0, seed: int = 0, device=None,
           callback: Optional[Callable] = None) -> torch.Tensor:
    """The baseline sampler: seeded start ``z_T = ε`` (purpose ``"initial"``), guidance, DDIM(η)
    (ancestral noise from purpose ``"ancestral"``). Returns the VP latent at the final level,
    ``x / sqrt(1 + σ_final²)``: what diffusers' loop returns for the same grid.
    """
    guided = guidance(denoise, cond, uncond, scale, mode)
    anc = generator(seed, "ancestral") if eta > 0 else None
    x = sample_ddim(guided, initial_latent(shape, sigmas, seed, device, denoise), sigmas, eta, anc, callback)
    return to_vp(x, float(sigmas[-1]))


def initial_latent(shape, sigmas: torch.Tensor, seed: int, device=None, denoise: Optional[Callable] = None,
                   gen: Optional[torch.Generator] = None) -> torch.Tensor:
    """The seeded start of every sampler: the network's input ``z_T = ε`` (purpose ``"initial"``) in σ-space, as the
    denoiser's ``start(ε, σ₀)`` says when it has one (VideoCrafter2's signal scale, a native flow model's
    ``ε·(1 + σ₀)``), else the VP start ``ε·sqrt(1 + σ₀²)``. ``gen``: draw ε from this generator instead (a run of
    several windows continues one ``"initial"`` generator, so its first window starts as the plain sampler does)."""
    eps = randn(shape, gen if gen is not None else generator(seed, "initial"), device)
    start = getattr(denoise, "start", None)
    return start(eps, float(sigmas[0])) if start is not None else eps * math.sqrt(1.0 + float(sigmas[0]) ** 2)
