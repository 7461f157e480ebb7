"""VP (DDPM-family) models seen from σ-space.

A noisy latent in σ-space is ``x = x0 + σ·ε`` (variance exploding). A VP model with cumulative
alphas ``ᾱ_t`` works on ``z_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε``; the two are the same point up
to scale: ``σ_t = sqrt((1 − ᾱ_t) / ᾱ_t)`` and ``z_t = x / sqrt(1 + σ²)``. So the VP start
``z_T = ε`` is ``x_T = ε·sqrt(1 + σ_max²)``.

Everything here is pure torch: no diffusers, no ComfyUI.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_MODES = ("nearest", "interpolated")


def sigmas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """σ table of a VP model: ``sqrt((1 − ᾱ) / ᾱ)``, ascending in t.  ``(T,) -> (T,)``, float64."""
    ac = alphas_cumprod.to(torch.float64)
    return ((1.0 - ac) / ac).sqrt()


def as_sigma(sigma, like: torch.Tensor) -> torch.Tensor:
    """σ as a float64 tensor for exact arithmetic (float32 on MPS, which has no float64): a float becomes a 0-d
    CPU tensor (it combines with tensors on any device); a tensor moves to ``like``'s device, and a 1-D tensor
    of one level per sample ``(B,)`` is shaped ``(B, 1, …, 1)`` to broadcast over ``like``."""
    if not torch.is_tensor(sigma):
        return torch.tensor(float(sigma), dtype=torch.float64)
    s = sigma.to(device=like.device, dtype=torch.float32 if like.device.type == "mps" else torch.float64)
    return s.reshape(-1, *(1,) * (like.ndim - 1)) if s.ndim == 1 else s


def to_vp(x: torch.Tensor, sigma) -> torch.Tensor:
    """σ-space latent → the VP model's input ``z = x / sqrt(1 + σ²)``."""
    return x / (1.0 + as_sigma(sigma, x) ** 2).sqrt().to(x.dtype)


def from_vp(z: torch.Tensor, sigma) -> torch.Tensor:
    """VP latent → σ-space ``x = z·sqrt(1 + σ²)``; the inverse of :func:`to_vp`."""
    return z * (1.0 + as_sigma(sigma, z) ** 2).sqrt().to(z.dtype)


def sigma_to_t(sigma, sigmas: torch.Tensor, mode: str = "nearest") -> torch.Tensor:
    """Timestep(s) for noise level(s) σ on a model's σ table ``(T,)`` (ascending).

    ``nearest``: the integer index whose σ is closest in log σ (an int64 tensor).
    ``interpolated``: a float timestep, linear in log σ between the two neighbouring entries
    (clamped to ``[0, T−1]``), as k-diffusion's discrete schedules do.
    """
    if mode not in TIMESTEP_MODES:
        raise ValueError(f"timestep mode must be one of {TIMESTEP_MODES}, got {mode!r}")
    s = torch.as_tensor(sigma, dtype=torch.float64)
    if (s <= 0).any():
        raise ValueError(f"sigma_to_t needs σ > 0, got {s.min().item()}")
    log_table = sigmas.to(torch.float64).log()
    log_s = s.log().reshape(-1, 1)
    if mode == "nearest":
        return (log_s - log_table).abs().argmin(dim=-1).reshape(s.shape)
    hi = torch.searchsorted(log_table, log_s.reshape(-1)).clamp(1, len(log_table) - 1)
    lo = hi - 1
    w = (log_s.reshape(-1) - log_table[lo]) / (log_table[hi] - log_table[lo])
    t = (lo.to(torch.float64) + w.clamp(0.0, 1.0))
    return t.reshape(s.shape)


def t_to_sigma(t, sigmas: torch.Tensor) -> torch.Tensor:
    """σ at (possibly fractional) timestep(s) t: log-linear interpolation in the table ``(T,)``."""
    t = torch.as_tensor(t, dtype=torch.float64)
    if (t < 0).any() or (t > len(sigmas) - 1).any():
        raise ValueError(f"timestep out of range [0, {len(sigmas) - 1}]: {t}")
    lo = t.floor().long().clamp(max=len(sigmas) - 2)
    w = t - lo
    log_table = sigmas.to(torch.float64).log()
    return (log_table[lo] * (1 - w) + log_table[lo + 1] * w).exp()


def prediction_to_x0(output: torch.Tensor, x: torch.Tensor, sigma, prediction_type: str) -> torch.Tensor:
    """A VP network's raw output at σ-space point ``x`` (noise level σ) → the clean estimate x0.

    - ``epsilon``: ``x0 = x − σ·ε``
    - ``v_prediction`` (v = sqrt(ᾱ)·ε − sqrt(1−ᾱ)·x0): ``x0 = (z − σ·v) / sqrt(1 + σ²)`` with z the VP input
    - ``sample``: the output is x0
    """
    s = as_sigma(sigma, x)
    if prediction_type == "epsilon":
        return x - s.to(x.dtype) * output
    if prediction_type == "v_prediction":
        scale = (1.0 + s**2).sqrt()
        return (x / scale.to(x.dtype) - s.to(x.dtype) * output) / scale.to(x.dtype)
    if prediction_type == "sample":
        return output
    raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")


class VPDenoiser:
    """Wraps a VP network as a σ-space denoiser ``x0 = denoiser(x, sigma, cond, timestep=None)`` (the
    contract in :mod:`samplers`).

    ``network(z, t, cond) -> raw`` is called with the VP-normalised input ``z`` and the timestep ``t``: one per
    sample (a 0-d tensor, or ``(B,)``; int64 for ``nearest``, float64 for ``interpolated``). By default ``t``
    is the timestep of σ; a caller that gives σ per frame passes ``timestep`` itself (which level the network
    is told is its choice). ``alphas_cumprod`` ``(T,)`` is the model's own noise table.

    ``signal_scale`` ``(≥T,)``: a model trained on ``z_t = a_t·x0 + b_t·ε`` with ``a_t = √ᾱ_t·s_t``,
    ``b_t = √(1 − ᾱ_t)`` (VideoCrafter2's ``scale_arr``). Then σ_t = b_t/a_t and the network's input is
    ``z = a·x`` with ``a = s/√(1 + σ²s²)`` (``s`` at the timestep the network is told), which is ``a_t`` on the
    table; ε-prediction gives ``x0 = x − σ·ε`` as before. Without it ``s ≡ 1``: the plain VP model.
    """

    def __init__(self, network: Callable, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon",
                 timestep_mode: str = "nearest", signal_scale: Optional[torch.Tensor] = None):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        if timestep_mode not in TIMESTEP_MODES:
            raise ValueError(f"timestep_mode must be one of {TIMESTEP_MODES}, got {timestep_mode!r}")
        self.network = network
        self.alphas_cumprod = alphas_cumprod.to(torch.float64)
        self.signal_scale = None
        self.sigmas = sigmas_from_alphas_cumprod(self.alphas_cumprod)
        if signal_scale is not None:
            if prediction_type != "epsilon":
                raise ValueError(f"a signal scale is supported for epsilon prediction only, got {prediction_type!r}")
            if signal_scale.ndim != 1 or len(signal_scale) < len(self.alphas_cumprod):
                raise ValueError(f"signal_scale must be 1-D with at least {len(self.alphas_cumprod)} entries, got "
                                 f"shape {tuple(signal_scale.shape)}")
            self.signal_scale = signal_scale[:len(self.alphas_cumprod)].to(torch.float64)
            self.sigmas = self.sigmas / self.signal_scale
        self.prediction_type = prediction_type
        self.timestep_mode = timestep_mode

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def timestep(self, sigma) -> torch.Tensor:
        return sigma_to_t(sigma, self.sigmas, self.timestep_mode)

    def input_scale(self, sigma, timestep=None):
        """``a`` with ``z = a·x``: ``1/√(1 + σ²)``, or ``s/√(1 + σ²s²)`` with a signal scale (``s`` at
        ``timestep``, else at the timestep of σ); σ a float or a tensor, as in :meth:`__call__`."""
        if self.signal_scale is None:
            return 1.0 / (1.0 + sigma ** 2) ** 0.5
        t = torch.as_tensor(self.timestep(sigma) if timestep is None else timestep, dtype=torch.float64)
        lo = t.floor().long().clamp(0, len(self.signal_scale) - 1)
        hi = (lo + 1).clamp(max=len(self.signal_scale) - 1)
        s = self.signal_scale[lo] + (t - lo) * (self.signal_scale[hi] - self.signal_scale[lo])
        if torch.is_tensor(sigma) and sigma.ndim > 0:
            s = s.reshape(s.shape + (1,) * (sigma.ndim - s.ndim)).to(sigma.device)
        elif not torch.is_tensor(sigma):
            s = float(s)
        return s / (1.0 + sigma ** 2 * s ** 2) ** 0.5

    def start(self, eps: torch.Tensor, sigma: float) -> torch.Tensor:
        """The σ-space point whose network input at level σ is ``eps``: ``ε·sqrt(1 + σ²)``, or ``ε/a`` with a signal
        scale (:meth:`input_scale`)."""
        if self.signal_scale is None:
            return eps * math.sqrt(1.0 + sigma ** 2)
        return eps / float(self.input_scale(sigma))

    def __call__(self, x: torch.Tensor, sigma, cond, timestep=None) -> torch.Tensor:
        """``x`` ``(B, C, F, h, w)`` at noise level σ → x0 estimate, same shape and dtype. σ is a float, one
        level per sample ``(B,)``, or a tensor broadcastable to ``x`` such as ``(B, 1, F, 1, 1)`` (then
        ``timestep``, ``(B,)`` or a scalar, is required)."""
        if torch.is_tensor(sigma):
            sigma = as_sigma(sigma, x)
            if timestep is None:
                per_sample = sigma.reshape(sigma.shape[0] if sigma.ndim else 1, -1)
                if (per_sample != per_sample[:, :1]).any():
                    raise ValueError(f"σ of shape {tuple(sigma.shape)} varies within a sample; the network takes one "
                                     f"timestep per sample: pass timestep explicitly")
                timestep = self.timestep(per_sample[:, 0].cpu())
        else:
            sigma = float(sigma)
            if timestep is None:
                timestep = self.timestep(sigma)
        timestep = torch.as_tensor(timestep)
        if timestep.ndim > 1 or (timestep.ndim == 1 and timestep.shape[0] not in (1, x.shape[0])):
            raise ValueError(f"timestep must be a scalar or one per sample ({x.shape[0]},), got shape "
                             f"{tuple(timestep.shape)}")
        if self.signal_scale is None:
            z = to_vp(x, sigma)
        else:
            a = self.input_scale(sigma, timestep)
            z = x * (a.to(x.dtype) if torch.is_tensor(a) else a)
        out = self.network(z, timestep, cond)
        return prediction_to_x0(out.to(x.dtype), x, sigma, self.prediction_type)


BETA_SCHEDULES = ("linear", "scaled_linear")


def vp_alphas_cumprod(beta_schedule: str, beta_start: float, beta_end: float,
                      num_train_timesteps: int = 1000) -> torch.Tensor:
    """ᾱ table ``(T,)`` as diffusers' DDPM-family schedulers build it (in float32, so tables match
    theirs bit for bit), returned as float64.

    ``linear``: β = linspace(β₀, β₁, T); ``scaled_linear``: β = linspace(√β₀, √β₁, T)².
    """
    if beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
    elif beta_schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
    else:
        raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}")
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float64)
