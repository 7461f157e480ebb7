"""LGC-VD (arXiv 2306.02562): its noise schedule and respacing, and (to come) its window loop and tasks, as pure
functions over a σ-space denoiser. No ComfyUI, no model code.

Schedule: Nichol–Dhariwal's cosine ᾱ over 1000 steps with β clipped at 0.9999, built as the official
``cosine_beta_schedule`` (float64) and stored in float32 as its ``GaussianDiffusion`` buffers are. Sampling is
respaced guided-diffusion style (``space_timesteps``): the network is told the original timestep indices.
"""
from __future__ import annotations

import math

import torch

NUM_TIMESTEPS = 1000


def cosine_alphas_cumprod(timesteps: int = NUM_TIMESTEPS, s: float = 0.008) -> torch.Tensor:
    """ᾱ ``(T,)`` as the official code computes it: ``ᾱ(x) = cos(((x/T) + s)/(1 + s)·π/2)²`` on ``x = 0..T`` normalised
    by ``ᾱ(0)``, β = clip(1 − ᾱ(x+1)/ᾱ(x), 0, 0.9999) in float64, then β in float32 and the cumulative product of
    1 − β in float32 (the official buffers). Returned as float64."""
    x = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
    ac = torch.cos(((x / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    ac = ac / ac[0]
    betas = torch.clip(1 - (ac[1:] / ac[:-1]), 0, 0.9999).to(torch.float32)
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float64)


def space_timesteps(num_timesteps: int, section_counts) -> list[int]:
    """The original timesteps a respaced sampler keeps, ascending (guided-diffusion's ``space_timesteps``): the
    process cut into ``len(section_counts)`` equal portions, each strided to its count (``"100"``: 100 steps
    ``round(i·999/99)``); ``"ddimN"``: the integer stride giving exactly N steps."""
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            want = int(section_counts[len("ddim"):])
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == want:
                    return list(range(0, num_timesteps, stride))
            raise ValueError(f"cannot make exactly {want} steps of {num_timesteps} with an integer stride")
        section_counts = [int(c) for c in section_counts.split(",")]
    size_per, extra = divmod(num_timesteps, len(section_counts))
    start, steps = 0, []
    for i, count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if not 1 <= count <= size:
            raise ValueError(f"cannot divide a section of {size} steps into {count}")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        at = 0.0
        for _ in range(count):      # accumulated, as the official loop does (k·stride rounds some ties otherwise)
            steps.append(start + round(at))
            at += stride
        start += size
    return sorted(set(steps))
