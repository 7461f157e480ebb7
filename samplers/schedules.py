"""Timestep and σ grids.

A grid is a descending σ tensor ``(N+1,)``: the N levels at which the model is evaluated, then the
final level. The final level is explicit: ``"zero"`` (σ = 0, the clean sample; diffusers DDIM with
``set_alpha_to_one=True``) or ``"sigma_min"`` (σ of timestep 0, i.e. ᾱ₀; diffusers DDIM with
``set_alpha_to_one=False``, the AnimateDiff default). Grids are strictly descending except that a grid
ending at timestep 0 with final ``"sigma_min"`` repeats that level once (see :func:`sigma_grid`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .vp import sigmas_from_alphas_cumprod

SPACINGS = ("leading", "trailing", "linspace")
FINALS = ("zero", "sigma_min")


class ScheduleError(ValueError):
    """A grid that the model's noise table cannot provide."""


def spaced_timesteps(spacing: str, steps: int, num_train_timesteps: int, steps_offset: int = 0) -> torch.Tensor:
    """Descending int64 timesteps ``(steps,)`` as diffusers' ``DDIMScheduler.set_timesteps`` spaces them.

    - ``leading``: ``arange(steps)·(T // steps)`` reversed, plus ``steps_offset``
    - ``trailing``: ``round(arange(T, 0, −T/steps)) − 1``
    - ``linspace``: ``round(linspace(0, T − 1, steps))`` reversed
    """
    if spacing not in SPACINGS:
        raise ScheduleError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ScheduleError(f"steps must be an integer ≥ 1, got {steps!r}")
    T = num_train_timesteps
    if steps > T:
        raise ScheduleError(f"steps={steps} is more than the model's noise table allows ({T} timesteps)")
    # numpy, as diffusers computes them: torch's arange/linspace differ in the last bit and so round
    # some .5 ties the other way
    if spacing == "leading":
        ts = (np.arange(0, steps) * (T // steps)).round()[::-1].astype(np.int64) + steps_offset
    elif spacing == "trailing":
        # float error can give one entry too many (-1, e.g. steps=61): diffusers keeps it, we drop it
        ts = (np.round(np.arange(T, 0, -T / steps)).astype(np.int64) - 1)[:steps]
    else:
        ts = np.linspace(0, T - 1, steps).round()[::-1].astype(np.int64)
    return check_timesteps(torch.from_numpy(ts.copy()), T)


def check_timesteps(timesteps: Sequence[int] | torch.Tensor, num_train_timesteps: int) -> torch.Tensor:
    """Validate an explicit timestep list: integers in ``[0, T−1]``, strictly descending. Returns int64 ``(N,)``."""
    ts = torch.as_tensor(timesteps)
    if ts.ndim != 1 or ts.numel() < 1:
        raise ScheduleError(f"timesteps must be a non-empty 1-D list, got shape {tuple(ts.shape)}")
    if ts.is_floating_point():
        if not torch.equal(ts, ts.round()):
            raise ScheduleError(f"timesteps must be integers, got {ts.tolist()}")
        ts = ts.long()
    if ts.min() < 0 or ts.max() > num_train_timesteps - 1:
        raise ScheduleError(
            f"timesteps must lie in [0, {num_train_timesteps - 1}] (the model's noise table), "
            f"got min {int(ts.min())}, max {int(ts.max())}")
    if ts.numel() > 1 and not (ts[1:] < ts[:-1]).all():
        raise ScheduleError(
            "timesteps must be strictly descending; repeated entries mean more steps than the "
            f"noise table allows ({num_train_timesteps} timesteps): {ts.tolist()}")
    return ts


def sigma_grid(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, final: str = "zero") -> torch.Tensor:
    """σ levels ``(N+1,)`` float64 for descending timesteps ``(N,)`` on the table ``alphas_cumprod`` ``(T,)``,
    ending at the explicit ``final`` level (``"zero"`` or ``"sigma_min"``)."""
    if final not in FINALS:
        raise ScheduleError(f"final must be one of {FINALS}, got {final!r}")
    table = sigmas_from_alphas_cumprod(alphas_cumprod)
    ts = check_timesteps(timesteps, len(table))
    # a grid that already ends at timestep 0 with final "sigma_min" repeats that level, as diffusers'
    # DDIM does (its last step goes from t=0 to ᾱ₀): the model is still called, the step changes nothing
    last = torch.zeros(1, dtype=torch.float64) if final == "zero" else table[:1]
    return torch.cat([table[ts], last])


def inclusive_linspace_timesteps(steps: int, t_max: int) -> torch.Tensor:
    """``round(linspace(0, t_max, steps + 1))[1:]`` reversed: descending ``(steps,)``, int64.

    The grid the VideoGuide code uses (``t_max = 999``) and, from a level t, its guide sub-grid."""
    if not isinstance(steps, int) or steps < 1:
        raise ScheduleError(f"steps must be an integer ≥ 1, got {steps!r}")
    ts = torch.linspace(0, t_max, steps + 1, dtype=torch.float64).round()[1:].flip(0).long()
    if steps > t_max:
        raise ScheduleError(f"steps={steps} is more than the {t_max} timesteps between {t_max} and 0 allow")
    return ts
