"""VideoGuide (arXiv 2410.04364): a guide model lends its temporal consistency to a sampler, no training.

For each of the first ``guided_steps`` (I) sampler steps, at level σ:

1. the sampler's guided prediction gives ``x0_s`` and its step direction ``eps`` (CFG or CFG++);
2. ``x0_s`` is re-noised to the guide's first level with fresh noise (the guide's own generator);
3. the guide runs ``guide_steps`` (τ) deterministic DDIM steps on a sub-grid of ``guide_grid`` (24)
   timesteps, ``round(linspace(0, t, guide_grid + 1))[1:]`` reversed, from the timestep t nearest σ on
   the guide-side table; its x0 is the estimate of the τ-th evaluation (the update after it is discarded);
4. ``x̄0 = x0_s + w·(x0_g − x0_s)`` (interpolation in x0 space);
5. ``x' = x̄0 + σ'·eps`` — the sampler's own direction;
6. the VP-normalised ``x'`` keeps its low frequencies and takes fresh noise's high ones
   (:func:`.filters.frequency_mix`, noise from its own generator).

After step I the sampler runs alone. The cost is N + I·τ NFE. The loop is the plain DDIM loop of
:mod:`.sampling`, composed k-diffusion style: steps 2–4 are a guided-model wrapper (:func:`guided_x0_blend`),
step 6 a post-step hook (:func:`lowpass_renoise`), so a change to the sampler loop reaches VideoGuide too.

The "guide-side table" decides how the two models meet: ``match_by="sigma"`` uses the guide's own noise
table (the guide sees the levels it was trained on); ``match_by="timestep"`` (the official code) uses the
sampler's table and feeds the guide the sampler's integer timesteps with inputs built from the sampler's ᾱ
— see :func:`guide_denoiser`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .filters import FILTER_KINDS, frequency_mix, lowpass_mask
from .guidance import Guided, guidance
from .noise import generator, randn
from .sampling import initial_latent, sample_ddim
from .schedules import ScheduleError, inclusive_linspace_timesteps
from .vp import VPDenoiser, from_vp, sigma_to_t, to_vp

MATCH_BY = ("sigma", "timestep")


class GuideGridError(ValueError):
    """A guided step too close to t = 0 for the guide's sub-grid (a matter of guided_steps / guide_grid)."""


@dataclass(frozen=True)
class VideoGuideSettings:
    guided_steps: int = 5        # I
    guide_steps: int = 10        # τ
    guide_grid: int = 24
    weight: float = 0.2          # w = 1 − β
    filter: str = "butterworth"
    filter_n: int = 4
    filter_d_s: float = 0.125
    filter_d_t: float = 0.125

    def check(self, steps: int) -> None:
        if self.guided_steps < 0 or self.guided_steps > steps:
            raise ValueError(f"guided_steps must be in [0, steps={steps}], got {self.guided_steps}")
        if not 1 <= self.guide_steps <= self.guide_grid:
            raise ValueError(f"guide_steps must be in [1, guide_grid={self.guide_grid}], got {self.guide_steps}")
        if self.filter not in FILTER_KINDS:
            raise ValueError(f"filter must be one of {FILTER_KINDS}, got {self.filter!r}")


def default_timesteps(steps: int, num_train_timesteps: int = 1000) -> torch.Tensor:
    """The official grid: ``round(linspace(0, T−1, steps + 1))`` reversed, 0 dropped (999, 979, …, 20 for 50)."""
    return inclusive_linspace_timesteps(steps, num_train_timesteps - 1)


def guide_denoiser(match_by: str, guide_network: Callable, guide_alphas_cumprod: torch.Tensor, guide_prediction: str,
                   sampler_alphas_cumprod: torch.Tensor, guide_signal_scale: Optional[torch.Tensor] = None
                   ) -> VPDenoiser:
    """The guide as a σ-space denoiser. ``sigma``: through its own noise table (and its signal scale, e.g.
    VideoCrafter2's ``scale_arr``). ``timestep``: through the sampler's table, so a level σ reaches the guide's
    network as the sampler's integer timestep with the input ``z = x/sqrt(1 + σ²)`` built from the sampler's ᾱ,
    uncorrected by any signal scale of the guide, as the official code does. Its ``.sigmas`` is the table the
    guide's sub-grids are drawn from."""
    if match_by not in MATCH_BY:
        raise ValueError(f"match_by must be one of {MATCH_BY}, got {match_by!r}")
    if match_by == "timestep":
        return VPDenoiser(guide_network, sampler_alphas_cumprod, guide_prediction, "nearest")
    return VPDenoiser(guide_network, guide_alphas_cumprod, guide_prediction, "nearest", guide_signal_scale)


def guide_levels(table: torch.Tensor, sigma: float, guide_grid: int) -> torch.Tensor:
    """σ levels ``(guide_grid,)`` of the guide's sub-grid from level σ: timesteps
    ``round(linspace(0, t, guide_grid + 1))[1:]`` reversed, t the timestep nearest σ on ``table`` ``(T,)``."""
    t = int(sigma_to_t(sigma, table, "nearest"))
    try:
        ts = inclusive_linspace_timesteps(guide_grid, t)
    except ScheduleError:
        raise GuideGridError(f"a guided step reaches timestep {t}, too low for a guide sub-grid of {guide_grid} "
                         f"points; use fewer guided steps or a smaller guide grid") from None
    return table.to(torch.float64)[ts]


def guide_x0(guide: Callable, x0_s: torch.Tensor, levels: torch.Tensor, guide_steps: int,
             gen: torch.Generator) -> torch.Tensor:
    """Re-noise ``x0_s`` to ``levels[0]``, run ``guide_steps`` DDIM (η = 0) evaluations down ``levels``;
    return the x0 of the last evaluation (the update after it is not computed)."""
    y = x0_s + float(levels[0]) * randn(x0_s.shape, gen, x0_s.device, x0_s.dtype)
    for k in range(guide_steps):
        x0_g, eps_g = guide(y, float(levels[k]))
        if k == guide_steps - 1:
            return x0_g
        y = x0_g + float(levels[k + 1]) * eps_g


def guided_x0_blend(model: Callable, guide: Callable, levels: dict, guide_steps: int, weight: float,
                    renoise: torch.Generator) -> Callable:
    """The sampler's guided model with VideoGuide's x0 blend: at a level σ that ``levels`` maps to the guide's
    sub-grid, ``x̄0 = x0_s + w·(x0_g − x0_s)`` with ``x0_g`` from :func:`guide_x0`; the step direction stays
    the sampler's own. Other levels pass through."""
    def blended(x: torch.Tensor, sigma, **extra) -> Guided:
        x0, eps = model(x, sigma, **extra)
        sub_grid = levels.get(float(sigma))
        if sub_grid is not None:
            x0 = x0 + weight * (guide_x0(guide, x0, sub_grid, guide_steps, renoise) - x0)
        return Guided(x0, eps)
    return blended


def lowpass_renoise(mask: Optional[torch.Tensor], guided_steps: int, noise: torch.Generator) -> Callable:
    """The post-step hook: after each of the first ``guided_steps`` steps (to a level σ' > 0) the VP latent
    ``x/sqrt(1 + σ'²)`` keeps its low frequencies and takes fresh noise's high ones (``mask`` None: no
    filter)."""
    def post_step(i: int, x: torch.Tensor, s_next: float) -> torch.Tensor:
        if i < guided_steps and mask is not None and s_next > 0:
            z = to_vp(x, s_next)
            x = from_vp(frequency_mix(z, randn(z.shape, noise, z.device, z.dtype), mask), s_next)
        return x
    return post_step


def sample_videoguide(model: Callable, guide: Callable, x: torch.Tensor, sigmas: torch.Tensor,
                      guide_table: torch.Tensor, settings: VideoGuideSettings = VideoGuideSettings(), seed: int = 0,
                      callback: Optional[Callable] = None) -> torch.Tensor:
    """The VideoGuide loop: the plain DDIM loop (η = 0) over :func:`guided_x0_blend` with the
    :func:`lowpass_renoise` hook. ``model``/``guide``: guided models ``(x, σ) -> Guided`` (see
    :mod:`.guidance`); ``x`` ``(B, C, F, h, w)`` at ``sigmas[0]``; ``guide_table`` ``(T,)`` the σ table of the
    guide's sub-grids (``guide_denoiser(...).sigmas``). Returns x at ``sigmas[-1]``. Draws: re-noise from purpose
    ``"videoguide-renoise"``, filter noise from ``"videoguide-filter"``; the sampler's own draws are untouched.
    """
    st = settings
    st.check(len(sigmas) - 1)
    mask = None if st.filter == "none" else lowpass_mask(st.filter, *x.shape[-3:], st.filter_n, st.filter_d_s,
                                                          st.filter_d_t)
    sig = [float(s) for s in sigmas]
    levels = {sig[i]: guide_levels(guide_table, sig[i], st.guide_grid) for i in range(st.guided_steps)}  # errors first
    blended = guided_x0_blend(model, guide, levels, st.guide_steps, st.weight, generator(seed, "videoguide-renoise"))
    hook = lowpass_renoise(mask, st.guided_steps, generator(seed, "videoguide-filter"))
    return sample_ddim(blended, x, sigmas, 0.0, None, callback, hook)


def videoguide(denoise: Callable, guide_denoise: VPDenoiser, shape, sigmas: torch.Tensor, cond, uncond, guide_cond,
               guide_uncond, scale: float = 0.8, mode: str = "cfg++", guide_scale: float = 0.8,
               guide_mode: str = "cfg++", settings: VideoGuideSettings = VideoGuideSettings(), seed: int = 0,
               device=None, callback: Optional[Callable] = None) -> torch.Tensor:
    """VideoGuide from seeded noise, as :func:`.sampling.sample` is the baseline: the same start (purpose
    ``"initial"``), so guide weight 0 with filter ``none`` reproduces the baseline bit for bit. Each model
    has its own conditioning (its own text encoder). Returns the VP latent at the final level."""
    x = initial_latent(shape, sigmas, seed, device, denoise)
    x = sample_videoguide(guidance(denoise, cond, uncond, scale, mode),
                          guidance(guide_denoise, guide_cond, guide_uncond, guide_scale, guide_mode),
                          x, sigmas, guide_denoise.sigmas, settings, seed, callback)
    return to_vp(x, float(sigmas[-1]))
