"""I4VGen (arXiv 2406.02230): text → anchor image → static video → NI-VSDS animation → regeneration.

1. **Anchor candidates**: ``N`` single-frame images from the video model itself (the network on 1-frame
   clips), sampled as one batch — ``steps`` network calls in all.
2. **NI-VSDS** ("noise-invariant video score distillation"): the static video ``z`` (the chosen anchor
   latent repeated over F frames) is relaxed toward the model's CFG one-step prediction with ONE fixed
   noise sample ε* for all iterations, walking the sampler's own descending grid for
   ``int(steps·p) + 1`` iterations. The official ε form, ``z ← z − η·(1 − ᾱ_t)·(ε̂ − ε*)`` with
   ``z_t = √ᾱ_t z + √(1−ᾱ_t) ε*``, is exactly the relaxation ``z ← z + η·σ/(1 + σ²)·(x̂0 − z)`` with
   ``x_t = z + σ·ε*`` in σ-space, since ``√(ᾱ(1−ᾱ)) = σ/(1+σ²)``; the code uses the second form.
3. **Regeneration**: fresh noise to the level of ``p_re`` on the grid (explicitly: ``x = z + σ_t0·ε′``),
   then the normal sampler from there.

No autograd anywhere (the "gradient" is the model's own prediction); run under ``torch.inference_mode``.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .guidance import guidance
from .noise import generator, randn
from .sampling import sample, sample_ddim
from .vp import to_vp

STEP_SIZES = ("animatediff", "constant")


def step_sizes(kind: str, iterations: int) -> list[float]:
    """NI-VSDS step sizes η for ``iterations`` iterations. ``animatediff``: 10 for the first three, then 1
    (the official 25-entry list, extended so any step count works); ``constant``: 1 (LaVie's)."""
    if kind not in STEP_SIZES:
        raise ValueError(f"step sizes must be one of {STEP_SIZES}, got {kind!r}")
    return [10.0 if (kind == "animatediff" and i < 3) else 1.0 for i in range(iterations)]


def ni_vsds_iterations(steps: int, p: float) -> int:
    """``int(steps · p) + 1`` (16 for 25 steps at p = 0.6), at most ``steps``."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p_ni_vsds must be in [0, 1], got {p}")
    return min(int(steps * p) + 1, steps)


def repeat_cond(cond: dict, n: int) -> dict:
    """A conditioning repeated ``n`` times along the batch (one prompt for a batch of candidates)."""
    return {k: v.repeat_interleave(n, dim=0) if torch.is_tensor(v) else v for k, v in cond.items()}


def anchor_candidates(denoise: Callable, shape, sigmas: torch.Tensor, cond: dict, uncond: dict, scale: float = 7.5,
                      seed: int = 0, device=None, callback: Optional[Callable] = None) -> torch.Tensor:
    """``shape = (N, C, 1, h, w)``: N single-frame candidates in ONE batch (CFG batched as
    [uncond × N; cond × N]), ``len(sigmas) − 1`` network calls. Returns their VP latents at the final level."""
    n = shape[0]
    return sample(denoise, shape, sigmas, repeat_cond(cond, n), repeat_cond(uncond, n), scale, "cfg", 0.0, seed, device,
                  callback)


def ni_vsds(denoise: Callable, z: torch.Tensor, sigmas: torch.Tensor, cond: dict, uncond: dict, scale: float,
            etas: list[float], eps_star: torch.Tensor, callback: Optional[Callable] = None) -> torch.Tensor:
    """NI-VSDS on a clean latent ``z`` ``(B, C, F, h, w)``: for i < len(etas), at σ = sigmas[i],
    ``x̂0 = CFG-denoise(z + σ·ε*)`` and ``z ← z + η_i·σ/(1 + σ²)·(x̂0 − z)``. ``eps_star`` is the one
    noise sample every iteration uses."""
    if len(etas) > len(sigmas) - 1:
        raise ValueError(f"{len(etas)} NI-VSDS iterations need that many grid levels; the grid has {len(sigmas) - 1}")
    guided = guidance(denoise, cond, uncond, scale, "cfg")
    for i, eta in enumerate(etas):
        s = float(sigmas[i])
        x0, _ = guided(z + s * eps_star, s)
        if callback is not None:
            callback(i, z, x0, s)
        z = z + (eta * s / (1.0 + s * s)) * (x0 - z)
    return z


def animate(denoise: Callable, anchor: torch.Tensor, frames: int, sigmas: torch.Tensor, cond: dict, uncond: dict,
            scale: float = 7.5, p: float = 0.6, schedule: str = "animatediff", seed: int = 0,
            callback: Optional[Callable] = None) -> torch.Tensor:
    """Stage 2 from an anchor latent ``(1, C, 1, h, w)``: repeat it over ``frames``, draw ε* once (purpose
    ``"ni-vsds"``), run NI-VSDS for ``int(steps·p) + 1`` iterations on ``sigmas`` (``steps + 1`` levels)."""
    z = anchor.expand(anchor.shape[0], anchor.shape[1], frames, *anchor.shape[3:]).clone()
    eps_star = randn(z.shape, generator(seed, "ni-vsds"), z.device, z.dtype)
    etas = step_sizes(schedule, ni_vsds_iterations(len(sigmas) - 1, p))
    return ni_vsds(denoise, z, sigmas, cond, uncond, scale, etas, eps_star, callback)


def regeneration_start(steps: int, p_re: float) -> int:
    """Index of the grid level the regeneration starts from, as diffusers' ``get_timesteps``:
    ``steps − int(steps · p_re)`` (0 for p_re = 1: the first grid step)."""
    if not 0.0 < p_re <= 1.0:
        raise ValueError(f"p_re must be in (0, 1], got {p_re}")
    n = int(steps * p_re)
    if n < 1:
        raise ValueError(f"p_re = {p_re} leaves no step of {steps}; raise p_re or steps")
    return steps - n


def regenerate(denoise: Callable, z: torch.Tensor, sigmas: torch.Tensor, cond: dict, uncond: dict, scale: float = 7.5,
               p_re: float = 1.0, eta: float = 0.0, seed: int = 0, callback: Optional[Callable] = None) -> torch.Tensor:
    """Stage 3: noise the clean latent ``z`` explicitly to ``σ_t0`` (fresh noise, purpose ``"regenerate"``),
    ``x = z + σ_t0·ε′`` (= √ᾱ z + √(1−ᾱ) ε′ in the VP latent), then DDIM(η) over the rest of the grid.
    Returns the VP latent at the final level."""
    start = regeneration_start(len(sigmas) - 1, p_re)
    rest = sigmas[start:]
    x = z + float(rest[0]) * randn(z.shape, generator(seed, "regenerate"), z.device, z.dtype)
    anc = generator(seed, "ancestral") if eta > 0 else None
    x = sample_ddim(guidance(denoise, cond, uncond, scale, "cfg"), x, rest, eta, anc, callback)
    return to_vp(x, float(rest[-1]))
