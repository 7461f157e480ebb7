"""LGC-VD (arXiv 2306.02562; exisas/LGC-VD ``model/Unet.py::{Unet, Unet_ecnoder}``, ``model/utils.py::{
ResnetBlockDDPMpp, AttnBlockpp, AttnBlock_cross, NIN}``) as a ``CVK_LGCVD_MODEL``, and its loading.

A **pixel-space** 2-D UNet: the 8 frames of a window are stacked on channels, frame-major (``b c f h w -> b (f c) h
w``: channels ``[f0.R, f0.G, f0.B, f1.R, …]``, as the official ``reshape4D`` / ``reshape5D`` stack and unstack
them). Pixels are in [−1, 1].

- **Denoiser** :class:`LGCVDUNet` (official ``Unet``): input = ``cat(context, x_t)`` — the local context FIRST, 8
  channels ``[y1, m1, y2, m2]`` (two RGB frames, each followed by its constant position map, all in the normalised
  [−1, 1] space the official test loop feeds: ``normalize_img(cond)``), then the 24 noisy channels; output: v for the
  24 channels (v-prediction). A sinusoidal(dim) → Linear → GELU → Linear timestep embedding of the original timestep
  index. Down path per level: Res, [Attn], Res, [Attn], strided 3×3 conv (none at the last level); middle: Res,
  Attn, Res, **cross-attention** to the global feature (``midblock4``); up path per level: skip concat, Res, [Attn],
  Res, [Attn], Res, transposed conv ×2 (none at the last level); SiLU, 3×3 conv.
- **Context encoder** :class:`LGCVDEncoder` (official ``Unet_ecnoder`` [sic]): the same down path and middle
  (Res, Attn, Res) without a timestep, on a 24-channel clip; its output is the bottleneck map ``(B, dim·mults[-1],
  H/2^(L−1), W/2^(L−1))`` that the UNet's cross-attention reads as keys/values. The official
  ``get_cond_feature`` calls it on the clip as it is (already in [−1, 1]): no other normalisation or reshape.

Official quirks reproduced on purpose (the released weights were trained with them):

- **attention placement**: a down level ``i`` carries self-attention when ``img_size / 2^i`` is in
  ``attn_resolutions``; the up path tests the same list with its OWN index ``i`` (counted from the bottleneck), so
  up-attention runs at ``img_size / 2^(L−1−i)``: for Cityscapes (128 px, [32]) down-attention at 32², up-attention
  at 64²; for BAIR (64 px, [16]) 16² and 32². The placement is fixed at construction from ``img_size``.
- **ResBlock GroupNorm_1 groups**: ``min(out_ch // 4, 32)`` lowered until it divides ``in_ch`` (not ``out_ch``);
  the released widths (multiples of 128) never see it, smaller ones do.
- **cross-attention**: ONE GroupNorm (``GroupNorm_0``) normalises both the UNet's map and the encoder feature; the
  official code reshapes the keys with the query's ``(H, W)``, so the feature must have the UNet bottleneck's shape.
- attention: ``heads = channels // n_head_channels`` (1 when narrower), each head a contiguous channel block,
  scale ``(C/heads)^(-1/2)``, output NIN, residual divided by √2 (``skip_rescale``); ResBlocks likewise ``(x + h)/√2``.
- **NIN** layers store a raw ``W (in, out)`` matrix used through an einsum (not an ``nn.Linear`` ``(out, in)``).

Differences from the official code, none of which changes a float32 result: the network runs in its parameters'
dtype (the official code calls ``.float()`` inside and relies on AMP autocast), GroupNorm computes in float32 for
half-precision inputs (:class:`GroupNorm32`), the sinusoid is computed in float32 (or the network's dtype when wider),
attention goes through SDPA, dropout (0.0 in the official config) is left out.

**Files** (``cityscapes.pt``, ``bair.pt``, from the README's Google Drive folder): the training container ``{step,
model, ema, scaler}``; ``model`` and ``ema`` are state dicts of the official ``SpacedDiffusion`` wrapper: ``denoise_fn.*``
(the UNet), ``encoder_fn.*`` (the context encoder) and 12 schedule buffers (:data:`SCHEDULE_BUFFERS`, ignored as the
official ``Trainer.pth_transfer`` ignores them: the noise table is rebuilt, :func:`..samplers.lgcvd.cosine_alphas_cumprod`).
The two files share one layout (the attention sits at the same level index); the native size comes from the
``dataset`` (cityscapes 128 px, bair 64 px), by default read from the file name.
"""
from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import host
from ..samplers.lgcvd import cosine_alphas_cumprod
from ..samplers.vp import VPDenoiser
from .checkpoint import CheckpointError, empty_params, load_into, match_state_dict, read_metadata, read_state_dict
from .loaders import CONFIG_ROOT, LoadOptionError, _precision, read_json
from .lvdm.unet3d import GroupNorm32

LGCVD_FOLDER = "lgcvd"
DATASETS = ("cityscapes", "bair")
WEIGHTS = ("ema", "model")
UNET_PREFIX = "denoise_fn."
ENCODER_PREFIX = "encoder_fn."
# GaussianDiffusion's registered buffers, saved in both 'model' and 'ema' and dropped by the official loader
# (Trainer.pth_transfer): [1000] from training, [100] in a model built with the test config's respacing
SCHEDULE_BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                    "posterior_mean_coef1", "posterior_mean_coef2")
IGNORED = tuple(f"^{b}$" for b in SCHEDULE_BUFFERS)
# the official training container (Trainer.save): GradScaler state and the step count carry no tensors
CONTAINER = ("step", "model", "ema", "scaler")
#: safetensors metadata of the pack's trainer (training/lgcvd.py): the networks' config (JSON, as read_config gives)
META_CONFIG = "cvk_lgcvd_config"
SKIP_RESCALE = 1.0 / math.sqrt(2.0)


# ---------------------------------------------------------------------------------------------------- layers

def _groups(channels: int, divides: Optional[int] = None) -> int:
    """The official group count: ``min(channels // 4, 32)``, lowered until it divides ``divides`` (``channels``
    itself, except in the ResBlock's second norm, which tests its INPUT width — a quirk kept for the weights)."""
    g = min(channels // 4, 32)
    while (divides or channels) % g:
        g -= 1
    return g


def _norm(channels: int, groups: Optional[int] = None) -> GroupNorm32:
    return GroupNorm32(groups or _groups(channels), channels, eps=1e-6)


class NIN(nn.Module):
    """A per-pixel linear map with the official parameter layout: ``W (in, out)``, ``b (out,)``; ``y[b, o, h, w] =
    Σ_c x[b, c, h, w]·W[c, o] + b[o]``. ``(B, in, H, W) -> (B, out, H, W)``."""

    def __init__(self, in_dim: int, num_units: int):
        super().__init__()
        self.W = nn.Parameter(torch.empty(in_dim, num_units))
        self.b = nn.Parameter(torch.zeros(num_units))
        nn.init.xavier_uniform_(self.W)       # DDPM's fan_avg uniform; only the tiny demo models use an init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,co->bohw", x, self.W) + self.b[:, None, None]


class ResBlock(nn.Module):
    """The official ``ResnetBlockDDPMpp`` (conv shortcut, skip rescale, no dropout): ``(x' + h)/√2`` with ``h = Conv_1(
    SiLU(GroupNorm_1(Conv_0(SiLU(GroupNorm_0(x))) + Dense_0(SiLU(temb)))))`` and ``x' = Conv_2(x)`` when the width
    changes. ``(B, in_ch, H, W), (B, temb_dim) -> (B, out_ch, H, W)``; without ``temb_dim`` no ``Dense_0``."""

    def __init__(self, in_ch: int, out_ch: Optional[int] = None, temb_dim: Optional[int] = None):
        super().__init__()
        out_ch = out_ch or in_ch
        self.GroupNorm_0 = _norm(in_ch)
        self.Conv_0 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        if temb_dim is not None:
            self.Dense_0 = nn.Linear(temb_dim, out_ch)
        self.GroupNorm_1 = _norm(out_ch, _groups(out_ch, divides=in_ch))      # the in_ch quirk (module docstring)
        self.Conv_1 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        if in_ch != out_ch:
            self.Conv_2 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.out_ch = out_ch

    def forward(self, x: torch.Tensor, temb: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.Conv_0(F.silu(self.GroupNorm_0(x)))
        if temb is not None:
            h = h + self.Dense_0(F.silu(temb))[:, :, None, None]
        h = self.Conv_1(F.silu(self.GroupNorm_1(h)))
        if x.shape[1] != self.out_ch:
            x = self.Conv_2(x)
        return (x + h) * SKIP_RESCALE


def _heads(channels: int, n_head_channels: int) -> int:
    if n_head_channels == -1 or channels < n_head_channels:
        return 1
    if channels % n_head_channels:
        raise ValueError(f"{channels} channels do not split into heads of {n_head_channels}")
    return channels // n_head_channels


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head attention over pixels, each head a contiguous block of ``C/heads`` channels, scale ``(C/heads)^(-1/2)``
    (the official einsums, through SDPA). ``(B, C, H, W)`` queries, ``(B, C, H', W')`` keys/values → ``(B, C, H, W)``."""
    B, C, H, W = q.shape
    split = lambda t: t.reshape(B, heads, C // heads, -1).transpose(-1, -2)   # noqa: E731  (B, heads, tokens, C/heads)
    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(-1, -2).reshape(B, C, H, W)


class AttnBlock(nn.Module):
    """The official ``AttnBlockpp``: GroupNorm, q/k/v NINs, multi-head self-attention over the ``H·W`` pixels, output
    NIN, ``(x + h)/√2``. ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int, n_head_channels: int = -1):
        super().__init__()
        self.GroupNorm_0 = _norm(channels)
        self.NIN_0, self.NIN_1, self.NIN_2, self.NIN_3 = (NIN(channels, channels) for _ in range(4))
        self.n_heads = _heads(channels, n_head_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.GroupNorm_0(x)
        h = _attend(self.NIN_0(h), self.NIN_1(h), self.NIN_2(h), self.n_heads)
        return (x + self.NIN_3(h)) * SKIP_RESCALE


class CrossAttnBlock(AttnBlock):
    """The official ``AttnBlock_cross``: queries from ``GroupNorm_0(x)``, keys/values from ``GroupNorm_0(feature)``
    (the SAME norm), ``(x + h)/√2``. ``(B, C, H, W), (B, C, H, W) -> (B, C, H, W)``: the official code reshapes the keys
    with the query's ``(H, W)``, so a feature of another shape is refused."""

    def forward(self, x: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        if feature.shape != x.shape:
            raise ValueError(f"the global-context feature must have the UNet bottleneck's shape {tuple(x.shape)} "
                             f"(batch, channels, h, w); got {tuple(feature.shape)}")
        f = self.GroupNorm_0(feature)
        h = _attend(self.NIN_0(self.GroupNorm_0(x)), self.NIN_1(f), self.NIN_2(f), self.n_heads)
        return (x + self.NIN_3(h)) * SKIP_RESCALE


class SinusoidalEmbedding(nn.Module):
    """The official ``SinusoidalPosEmb``: ``[sin(t·f_i), cos(t·f_i)]``, ``f_i = exp(−i·ln(10000)/(half − 1))``,
    ``half = dim // 2``; float32 as the official code computes it (float64 for a float64 network). ``(B,) -> (B, dim)``."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        dtype = torch.float64 if dtype == torch.float64 else torch.float32
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device, dtype=dtype) * -(math.log(10000) / (half - 1)))
        args = t.to(dtype)[:, None] * freqs[None]
        return torch.cat([args.sin(), args.cos()], dim=-1)


# ---------------------------------------------------------------------------------------------------- networks

def _level_widths(dim: int, dim_mults: Sequence[int]) -> list[tuple[int, int]]:
    dims = [dim, *(dim * m for m in dim_mults)]
    return list(zip(dims[:-1], dims[1:]))


def _down_path(dim: int, dim_mults: Sequence[int], img_size: int, attn_resolutions: Sequence[int],
               n_head_channels: int, temb_dim: Optional[int]) -> nn.ModuleList:
    """The official down path: per level ``[Res, Attn|Identity, Res, Attn|Identity, Conv stride 2|Identity]``,
    attention where ``img_size / 2^level`` is in ``attn_resolutions``."""
    levels = _level_widths(dim, dim_mults)
    downs = nn.ModuleList()
    for i, (c_in, c_out) in enumerate(levels):
        attn = (img_size // 2 ** i) in attn_resolutions
        downs.append(nn.ModuleList([
            ResBlock(c_in, c_out, temb_dim),
            AttnBlock(c_out, n_head_channels) if attn else nn.Identity(),
            ResBlock(c_out, c_out, temb_dim),
            AttnBlock(c_out, n_head_channels) if attn else nn.Identity(),
            nn.Conv2d(c_out, c_out, 3, stride=2, padding=1) if i != len(levels) - 1 else nn.Identity()]))
    return downs


def _config(cls, config: dict) -> dict:
    keys = set(cls.CONFIG_KEYS)
    given = {k: v for k, v in config.items() if not k.startswith("_")}
    odd = set(given) - keys
    if odd:
        raise ValueError(f"{cls.__name__} config: unknown keys {sorted(odd)}; expected {sorted(keys)}")
    return given


class LGCVDUNet(nn.Module):
    """The official ``Unet`` (denoiser). ``forward(x, t, context, feature)``: ``x`` ``(B, channels·F, H, W)`` the noisy
    frames stacked frame-major, ``t`` ``(B,)`` timestep indices, ``context`` ``(B, (channels+1)·cond_frames, H, W)``,
    ``feature`` ``(B, dim·mults[-1], H/2^(L−1), W/2^(L−1))`` → v ``(B, channels·F, H, W)``. Keys are the file's
    ``denoise_fn.*`` keys without the prefix."""

    CONFIG_KEYS = ("dim", "dim_mults", "channels", "cond_frames", "new_frames", "img_size", "attn_resolutions",
                   "n_head_channels")

    def __init__(self, dim: int, dim_mults: Sequence[int] = (1, 2, 2, 2), channels: int = 3, cond_frames: int = 2,
                 new_frames: int = 6, img_size: int = 256, attn_resolutions: Sequence[int] = (8, 16, 32),
                 n_head_channels: int = 64):
        super().__init__()
        self.channels, self.cond_frames, self.num_frames = channels, cond_frames, cond_frames + new_frames
        self.img_size, self.attn_resolutions = img_size, tuple(attn_resolutions)
        time_dim = dim * 4
        self.time_mlp = nn.Sequential(SinusoidalEmbedding(dim), nn.Linear(dim, time_dim), nn.GELU(),
                                      nn.Linear(time_dim, time_dim))
        self.init_conv = nn.Conv2d(channels * self.num_frames + (channels + 1) * cond_frames, dim, 3, padding=1)
        self.downs = _down_path(dim, dim_mults, img_size, self.attn_resolutions, n_head_channels, time_dim)
        levels = _level_widths(dim, dim_mults)
        mid = levels[-1][1]
        self.midblock1 = ResBlock(mid, temb_dim=time_dim)
        self.midblock2 = AttnBlock(mid, n_head_channels)
        self.midblock3 = ResBlock(mid, temb_dim=time_dim)
        self.midblock4 = CrossAttnBlock(mid, n_head_channels)
        self.ups = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(reversed(levels)):
            # faithful quirk: the up index i (from the bottleneck) is looked up as if it were the down level i
            attn = (img_size // 2 ** i) in self.attn_resolutions
            self.ups.append(nn.ModuleList([
                ResBlock(c_out * 2, c_in, time_dim),
                AttnBlock(c_in, n_head_channels) if attn else nn.Identity(),
                ResBlock(c_in, c_in, time_dim),
                AttnBlock(c_in, n_head_channels) if attn else nn.Identity(),
                ResBlock(c_in, c_in, time_dim),
                nn.ConvTranspose2d(c_in, c_in, 3, stride=2, padding=1, output_padding=1)
                if i != len(levels) - 1 else nn.Identity()]))
        self.finial_conv = nn.Conv2d(dim, channels * self.num_frames, 3, padding=1)   # [sic], the file's key

    @classmethod
    def from_config(cls, config: dict) -> "LGCVDUNet":
        return cls(**_config(cls, config))

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        dtype = self.init_conv.weight.dtype
        temb = self.time_mlp[0](t, dtype).to(dtype)
        for layer in self.time_mlp[1:]:
            temb = layer(temb)
        h = self.init_conv(torch.cat([context, x], dim=1))          # the context FIRST, as the official concat
        skips = []
        for res1, attn1, res2, attn2, down in self.downs:
            h = attn2(res2(attn1(res1(h, temb)), temb))
            skips.append(h)
            h = down(h)
        h = self.midblock3(self.midblock2(self.midblock1(h, temb)), temb)
        h = self.midblock4(h, feature)
        for res1, attn1, res2, attn2, res3, up in self.ups:
            h = torch.cat([h, skips.pop()], dim=1)
            h = up(res3(attn2(res2(attn1(res1(h, temb)), temb)), temb))
        return self.finial_conv(F.silu(h))


class LGCVDEncoder(nn.Module):
    """The official ``Unet_ecnoder`` [sic] (global-context encoder): ``(B, channels·num_frames, H, W)`` in [−1, 1] →
    the bottleneck map ``(B, dim·mults[-1], H/2^(L−1), W/2^(L−1))``. Keys are the file's ``encoder_fn.*`` keys without
    the prefix."""

    CONFIG_KEYS = ("dim", "dim_mults", "channels", "num_frames", "img_size", "attn_resolutions", "n_head_channels")

    def __init__(self, dim: int, dim_mults: Sequence[int] = (1, 2, 2, 2), channels: int = 3, num_frames: int = 8,
                 img_size: int = 256, attn_resolutions: Sequence[int] = (8, 16, 32), n_head_channels: int = 64):
        super().__init__()
        self.channels, self.num_frames, self.img_size = channels, num_frames, img_size
        self.init_conv = nn.Conv2d(channels * num_frames, dim, 3, padding=1)
        self.downs = _down_path(dim, dim_mults, img_size, tuple(attn_resolutions), n_head_channels, None)
        mid = dim * dim_mults[-1]
        self.midblock1 = ResBlock(mid)
        self.midblock2 = AttnBlock(mid, n_head_channels)
        self.midblock3 = ResBlock(mid)

    @classmethod
    def from_config(cls, config: dict) -> "LGCVDEncoder":
        return cls(**_config(cls, config))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.init_conv(x)
        for res1, attn1, res2, attn2, down in self.downs:
            h = down(attn2(res2(attn1(res1(h)))))
        return self.midblock3(self.midblock2(self.midblock1(h)))


class LGCVDNetworks(nn.Module):
    """The two networks under the official wrapper's attribute names, so its state dict has the file's keys
    (``denoise_fn.*``, ``encoder_fn.*``); used to match a file in one strict pass."""

    def __init__(self, denoise_fn: LGCVDUNet, encoder_fn: LGCVDEncoder):
        super().__init__()
        self.denoise_fn, self.encoder_fn = denoise_fn, encoder_fn


def build_networks(config: dict) -> LGCVDNetworks:
    """Both networks from a config (``{"unet": {...}, "encoder": {...}, ...}``, :func:`read_config`)."""
    return LGCVDNetworks(LGCVDUNet.from_config(config["unet"]), LGCVDEncoder.from_config(config["encoder"]))


def read_config(dataset: str, config_root: str = CONFIG_ROOT) -> dict:
    """The shipped config of ``dataset`` (``models/configs/lgcvd/<dataset>.json``)."""
    if dataset not in DATASETS:
        raise LoadOptionError("dataset", f"dataset must be one of {DATASETS}, got {dataset!r}")
    return read_json(os.path.join(config_root, "lgcvd", dataset + ".json"))


# ---------------------------------------------------------------------------------------------------- the model

def stack_frames(video: torch.Tensor) -> torch.Tensor:
    """``(B, C, F, H, W) -> (B, F·C, H, W)``, frame-major (``b c f h w -> b (f c) h w``), the official layout."""
    B, C, Fr, H, W = video.shape
    return video.transpose(1, 2).reshape(B, Fr * C, H, W)


def unstack_frames(stacked: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """``(B, F·C, H, W) -> (B, C, F, H, W)``, the inverse of :func:`stack_frames`."""
    B, FC, H, W = stacked.shape
    return stacked.reshape(B, FC // channels, channels, H, W).transpose(1, 2)


# a rough activation budget: about 48 maps of `dim` channels at full resolution per image (skips kept for the up
# path, ResBlock temporaries, the coarser levels' share); SDPA keeps the attention itself small
_MAPS_PER_PIXEL = 48


class LGCVDModel:
    """``CVK_LGCVD_MODEL``: the LGC-VD denoiser and context encoder (host ModelParts), the cosine ᾱ table, v-prediction.

    ``network(x, t, cond) -> v``: ``x`` ``(B, 3, F, H, W)`` the VP-normalised noisy window in [−1, 1] pixel space,
    ``t`` ``(B,)`` or 0-d timestep indices of the 1000-step table, ``cond = {"context": (B, 8, H, W) [y1, m1, y2, m2]
    in the normalised space, "feature": as encode returns it}``; ``encode(clip)`` the global-context feature of a
    window ``(B, 3, F, H, W)`` in [−1, 1]."""

    TYPE = "CVK_LGCVD_MODEL"
    prediction_type = "v_prediction"
    CONDITIONS = frozenset({"context", "feature"})

    def __init__(self, name: str, dataset: str, unet, encoder, size: int, frames: int = 8, cond_frames: int = 2,
                 untrained: bool = False):
        self.name, self.dataset, self.size = name, dataset, int(size)
        self.frames, self.cond_frames, self.untrained = int(frames), int(cond_frames), untrained
        wrap = lambda m, what: m if isinstance(m, host.ModelPart) else host.ModelPart(m, "diffusion", f"{name} {what}")  # noqa: E731
        self.unet_part = wrap(unet, "UNet")
        self.encoder_part = wrap(encoder, "context encoder")
        self.alphas_cumprod = cosine_alphas_cumprod()
        un = self.unet
        self.channels = un.channels
        if (un.num_frames, un.cond_frames) != (self.frames, self.cond_frames) or \
                self.encoder.num_frames != self.frames:
            raise ValueError(f"{name}: the networks are built for {un.num_frames} frames ({un.cond_frames} given) and "
                             f"an encoder of {self.encoder.num_frames}; the model says {frames} ({cond_frames})")

    def __repr__(self) -> str:
        tag = " (untrained demo)" if self.untrained else ""
        return f"<{self.TYPE} {self.name}{tag}: {self.dataset}, {self.size} px, {self.frames} frames>"

    @property
    def unet(self) -> LGCVDUNet:
        return self.unet_part.module

    @property
    def encoder(self) -> LGCVDEncoder:
        return self.encoder_part.module

    @property
    def context_channels(self) -> int:
        return (self.channels + 1) * self.cond_frames

    def _check_window(self, x: torch.Tensor, what: str) -> None:
        if x.ndim != 5 or x.shape[1] != self.channels or x.shape[2] != self.frames:
            raise ValueError(f"{self.name}: {what} must be (B, {self.channels}, {self.frames}, H, W), got "
                             f"{tuple(x.shape)}")

    def network(self, x: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        """v ``(B, 3, F, H, W)`` float32 on ``x``'s device (see the class docstring)."""
        if set(cond) != self.CONDITIONS:
            odd = set(cond) ^ self.CONDITIONS
            raise ValueError(f"{self.name} is conditioned on 'context' and 'feature'; "
                             + ", ".join(f"{'missing' if k in self.CONDITIONS else 'it cannot take'} {k!r}"
                                         for k in sorted(odd)))
        self._check_window(x, "x")
        B, _, _, H, W = x.shape
        context = cond["context"]
        if tuple(context.shape) != (B, self.context_channels, H, W):
            raise ValueError(f"{self.name}: cond['context'] must be (B, {self.context_channels}, H, W) = "
                             f"{(B, self.context_channels, H, W)} ([y1, m1, y2, m2]), got {tuple(context.shape)}")
        device, dtype = self.unet_part.device, self.unet_part.dtype
        t = t.to(device=device, dtype=torch.float32 if t.is_floating_point() else t.dtype)
        t = t.reshape(-1).expand(B) if t.numel() == 1 else t.reshape(B)
        to = lambda v: v.to(device=device, dtype=dtype)  # noqa: E731
        out = self.unet(to(stack_frames(x)), t, to(context), to(cond["feature"]))
        return unstack_frames(out, self.channels).to(device=x.device, dtype=torch.float32)

    def encode(self, clip: torch.Tensor) -> torch.Tensor:
        """The global-context feature ``(B, dim·mults[-1], H/8, W/8)`` float32 of a window ``(B, 3, F, H, W)`` in
        [−1, 1] (the official ``get_cond_feature``: the encoder on the stacked clip, nothing else)."""
        self._check_window(clip, "the clip to encode")
        device, dtype = self.encoder_part.device, self.encoder_part.dtype
        out = self.encoder(stack_frames(clip).to(device=device, dtype=dtype))
        return out.to(device=clip.device, dtype=torch.float32)

    def denoiser(self) -> VPDenoiser:
        """The σ-space denoiser (x̂0 clipping is the sampler's, as in the official ``p_mean_variance``)."""
        return VPDenoiser(self.network, self.alphas_cumprod, self.prediction_type)

    def memory_required(self, shape: Optional[Sequence[int]]) -> int:
        """Rough bytes of activations for one network call on a window ``shape`` ``(B, 3, F, H, W)``."""
        if shape is None:
            return 0
        B, H, W = shape[0], shape[-2], shape[-1]
        dim = self.unet.init_conv.out_channels
        itemsize = self.unet_part.dtype.itemsize
        return int(B * H * W * dim * itemsize * _MAPS_PER_PIXEL)

    @contextmanager
    def loaded(self, shape: Optional[Sequence[int]] = None):
        """Inference mode with both networks ready on their device (room made for a window of ``shape``); yields the
        UNet's device. Nothing is unloaded after the block (the host's manager does that when it needs memory)."""
        with torch.inference_mode():
            host.load_models([self.unet_part, self.encoder_part], self.memory_required(shape))
            yield self.unet_part.device


# ---------------------------------------------------------------------------------------------------- loading

def dataset_from_name(name: str) -> str:
    """``bair`` / ``cityscapes`` from a file name (``bair.pt``, ``cityscapes.pt``); otherwise a LoadOptionError asking
    for the ``dataset`` input."""
    lower = os.path.basename(name).lower()
    found = [d for d, tag in (("bair", "bair"), ("cityscapes", "city")) if tag in lower]
    if len(found) != 1:
        raise LoadOptionError("dataset", f"cannot tell from the file name '{name}' whether it is the Cityscapes "
                                         f"(128 px) or the BAIR (64 px) model; choose the dataset")
    return found[0]


def _describe(keys: Sequence[str]) -> str:
    """What a file that is not an LGC-VD training container looks like."""
    flat = [k.split("/", 1)[-1] for k in keys]
    if any(k.startswith((UNET_PREFIX, ENCODER_PREFIX)) for k in flat):
        return ("a bare LGC-VD state dict; expected the training container the official code saves ({step, model, "
                "ema, scaler})")
    if any(k.startswith(("model.diffusion_model.", "model_ema.")) for k in flat):
        return "an LDM-family checkpoint (LVDM, VideoCrafter, Stable Diffusion), not LGC-VD"
    if any(k.startswith(("down_blocks.", "up_blocks.", "mid_block.")) for k in flat):
        return "a diffusers model, not LGC-VD"
    shown = ", ".join(sorted(keys)[:6]) or "(no tensors)"
    return f"not an LGC-VD checkpoint (its tensors: {shown})"


def container_tensors(sd: dict[str, torch.Tensor], weights: str, name: str) -> dict[str, torch.Tensor]:
    """The chosen copy (``ema`` or ``model``) of a container read with ``read_state_dict(nested=True)``, keyed as
    the SpacedDiffusion wrapper's state dict. A file of another kind, a missing copy or stray top-level tensors are
    CheckpointErrors."""
    if weights not in WEIGHTS:
        raise LoadOptionError("weights", f"weights must be one of {WEIGHTS}, got {weights!r}")
    tops = {k.split("/", 1)[0] for k in sd if "/" in k}
    if not any(k.startswith(f"{w}/{p}") for k in sd for w in WEIGHTS for p in (UNET_PREFIX, ENCODER_PREFIX)):
        raise CheckpointError(f"'{name}' is {_describe(list(sd))}")
    if weights not in tops:
        raise CheckpointError(f"'{name}' holds no '{weights}' weights (its state dicts: {', '.join(sorted(tops))}); "
                              f"choose weights {' or '.join(repr(w) for w in WEIGHTS if w in tops)}")
    stray = sorted(k for k in sd if not k.startswith(tuple(f"{w}/" for w in WEIGHTS)))
    if stray:
        raise CheckpointError(f"'{name}': {len(stray)} tensors outside the 'model' and 'ema' state dicts: "
                              f"{', '.join(stray[:12])}")
    return {k[len(weights) + 1:]: v for k, v in sd.items() if k.startswith(weights + "/")}


def match_file(nets: LGCVDNetworks, tensors: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """Strict match of one copy's tensors onto both networks: every parameter covered, only the schedule buffers
    (:data:`SCHEDULE_BUFFERS`) left over."""
    return match_state_dict(nets, tensors, what, ignore_file=IGNORED)


def load_lgcvd(path: str, dataset: Optional[str] = None, weights: str = "ema", precision: str = "auto",
               device: Optional[torch.device] = None, config_root: str = CONFIG_ROOT) -> LGCVDModel:
    """``cityscapes.pt`` / ``bair.pt`` (the official training container) → :class:`LGCVDModel`, strictly: ``weights``
    ``ema`` (default, what the official test loop samples with) or ``model``; the other copy stays on disk, the
    schedule buffers are ignored, ``step`` and ``scaler`` carry no tensors. ``dataset`` (``cityscapes`` / ``bair``) sets
    the attention placement and native size; None reads it from the file name."""
    name = os.path.basename(path)
    if weights not in WEIGHTS:
        raise LoadOptionError("weights", f"weights must be one of {WEIGHTS}, got {weights!r}")
    device, prec = _precision(precision, device)
    sd = read_state_dict(path, nested=True)     # memory-mapped: the copy not chosen is never read from disk
    tensors = container_tensors(sd, weights, name)  # first: a file that is no LGC-VD model says so, whatever its name
    meta = read_metadata(path)
    if dataset is None and META_CONFIG in meta:     # trained with training/lgcvd.py: its own config
        config = json.loads(meta[META_CONFIG])
        dataset = config["dataset"]
    else:
        dataset = dataset_from_name(name) if dataset is None else dataset
        config = read_config(dataset, config_root)
    with empty_params():
        nets = build_networks(config)
    load_into(nets, match_file(nets, tensors, f"'{name}' ({weights} weights, {dataset} config)"), prec.unet)
    return LGCVDModel(f"LGC-VD {name}", dataset, nets.denoise_fn, nets.encoder_fn, config["size"], config["frames"],
                      config["cond_frames"])
