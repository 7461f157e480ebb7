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


def predicted_moments(mean: float, std: float, sigmas, eta: float, start_std: float):
    """Exact mean and std of the sampler's output with :class:`GaussianDenoiser` (no CFG), starting
    from ``N(0, start_std²)``: every step is affine in ``x − μ`` plus independent noise, so the offset
    ``m`` and variance ``v`` propagate as ``m' = g·m``, ``v' = g²·v + σ_up²``."""
    from consistent_video_kit.samplers.sampling import ancestral_step
    m, v = -mean, start_std**2
    sig = [float(s) for s in sigmas]
    for s, s_next in zip(sig[:-1], sig[1:]):
        a = std**2 / (std**2 + s**2)
        down, up = ancestral_step(s, s_next, eta)
        g = a + (down / s) * (1 - a) if s_next > 0 else a
        m, v = g * m, g * g * v + up * up
    return mean + m, math.sqrt(v)
