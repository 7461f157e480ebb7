"""Analytic denoisers for Gaussian data, where the optimal denoiser has a closed form.

Data ``x0 ~ N(μ, s²)`` element-wise. At noise level σ, ``x = x0 + σ·ε ~ N(μ, s² + σ²)`` and the
optimal (posterior-mean) denoiser is ``E[x0 | x] = μ + s²/(s² + σ²)·(x − μ)``.
"""
from __future__ import annotations

import math


class GaussianDenoiser:
    """``denoise(x, sigma, cond) -> x0``; ``cond`` may carry its own ``mean`` (a float or tensor)
    so a conditional and an unconditional branch can differ. Counts its calls and batch sizes."""

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        self.mean, self.std = mean, std
        self.calls = 0
        self.batch_sizes: list[int] = []

    def __call__(self, x, sigma, cond=None):
        self.calls += 1
        self.batch_sizes.append(x.shape[0])
        mean = self.mean
        if isinstance(cond, dict) and "mean" in cond:
            mean = cond["mean"].reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        a = self.std**2 / (self.std**2 + float(sigma) ** 2)
        return mean + a * (x - mean)


def ddim_eta_sigmas(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """(σ_down, σ_up) of one DDIM(η) step from σ to σ', by hand: DDIM's noise ``std = η·sqrt(var)`` with
    ``var = (1 − ᾱ')/(1 − ᾱ)·(1 − ᾱ/ᾱ')`` becomes, with ``ᾱ = 1/(1 + σ²)`` and the VP → σ-space scale
    ``sqrt(1 + σ'²)``, ``σ_up = η·σ'·sqrt(σ² − σ'²)/σ`` (clipped to σ'; 0 when σ' ≥ σ, a repeated level), and
    the direction keeps the rest of the level: ``σ_down = sqrt(σ'² − σ_up²)``. σ' = 0 ends the chain: (0, 0)."""
    if sigma_next == 0:
        return 0.0, 0.0
    up = eta * sigma_next * math.sqrt(max(sigma * sigma - sigma_next * sigma_next, 0.0)) / sigma
    up = min(up, sigma_next)
    return math.sqrt(sigma_next * sigma_next - up * up), up


def predicted_moments(mean: float, std: float, sigmas, eta: float, start_std: float):
    """Exact mean and std of the sampler's output with :class:`GaussianDenoiser` (no CFG), starting
    from ``N(0, start_std²)``: every step is affine in ``x − μ`` plus independent noise, so the offset
    ``m`` and variance ``v`` propagate as ``m' = g·m``, ``v' = g²·v + σ_up²`` with
    ``g = a + (σ_down/σ)(1 − a)``, ``a = s²/(s² + σ²)`` (``g = a`` at σ' = 0)."""
    m, v = -mean, start_std**2
    sig = [float(s) for s in sigmas]
    for s, s_next in zip(sig[:-1], sig[1:]):
        a = std**2 / (std**2 + s**2)
        down, up = ddim_eta_sigmas(s, s_next, eta)
        g = a + (down / s) * (1 - a) if s_next > 0 else a
        m, v = g * m, g * g * v + up * up
    return mean + m, math.sqrt(v)
