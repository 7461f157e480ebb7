"""LVDM's 3-D video autoencoder (from TATS): a KL-regularised 3-D conv autoencoder, ×4 in time, ×8 in space,
4 latent channels, as ``lvdm/models/autoencoder3d.py::AutoencoderKL`` and ``lvdm/models/modules/aemodules3d.py``
compute it (YingqingHe/LVDM d251dcc), inference only (no loss modules).

Layout, with the released config (``models/configs/lvdm/videoae.json``: n_hiddens 32, down/upsample [4, 8, 8]):

- encoder: ``conv_first`` 3→32 (k3), then 3 blocks {``down`` k4 strided conv, ``res`` ResBlock}: 32→64 stride
  (2,2,2), 64→128 (2,2,2), 128→256 (1,2,2); ``final_block`` = GroupNorm(32) → SiLU → conv 256→8 (k3);
  ``quant_conv`` 8→8 (k1) gives the posterior moments (4 mean + 4 log-variance);
- decoder: ``post_quant_conv`` 4→4 (k1); 3 blocks {``up`` k4 transposed conv, ``res1``, ``res2``}: 4→256 stride
  (2,2,2), 256→128 (2,2,2), 128→64 (1,2,2); ``conv_out`` 64→3 (k3);
- "same" padding by an explicit ``F.pad(..., mode='replicate')`` before every conv (the convs pad nothing);
- GroupNorm(32 groups, eps 1e-6) on 5-D tensors: its statistics pool over channels-in-group × time × height ×
  width, so every decoded frame depends (weakly) on every latent of the clip. :func:`decode_overlapped` handles
  that for long latents.

Keys: the released files store every same-padding conv twice, as ``<m>.weight`` and ``<m>.conv.weight`` (one
tensor; the official module sets ``self.weight = self.conv.weight``). Here only ``<m>.conv.*`` (and ``<m>.convt.*``
for the transposed convs) are registered; :meth:`VideoAutoencoderKL.released_aliases` lists the alias keys a loader
drops (and may check equal). ``loss.*`` (LPIPS + discriminator, training only) is not part of this module.

Latents: :meth:`~VideoAutoencoderKL.encode` returns the raw posterior moments and
:meth:`~VideoAutoencoderKL.decode` takes raw latents; LVDM's diffusion models work on
``scale_factor · (z_raw + shift_factor)`` (per UNet config), which is the caller's business.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

GROUPS = 32          # GroupNorm groups, fixed in the official Normalize()
NORM_EPS = 1e-6
LOGVAR_CLAMP = (-30.0, 20.0)   # DiagonalGaussianDistribution
PAD_MODES = ("replicate", "constant", "reflect", "circular")
CONFIG_NAME = "videoae.json"   # in models/configs/lvdm/

NormFn = Callable[[nn.GroupNorm, torch.Tensor], torch.Tensor]


def _same_pad(kernel_size: Tuple[int, int, int], stride: Tuple[int, int, int]) -> Tuple[int, ...]:
    """F.pad amounts (last dim first) for TATS "same" padding: k − s in total, the odd one on the left."""
    pad: List[int] = []
    for k, s in zip(kernel_size[::-1], stride[::-1]):
        p = k - s
        pad += [p // 2 + p % 2, p // 2]
    return tuple(pad)


def _triple(v) -> Tuple[int, int, int]:
    return (v,) * 3 if isinstance(v, int) else tuple(v)


class _SamePadded(nn.Module):
    """What both same-padding convolutions share: the replicate (or given) padding that keeps sizes ÷ stride."""

    def __init__(self, kernel_size, stride, padding_type: str):
        super().__init__()
        self.kernel_size, self.stride = _triple(kernel_size), _triple(stride)
        self.pad_input = _same_pad(self.kernel_size, self.stride)
        self.padding_type = padding_type

    def padded(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pad_input, mode=self.padding_type)


class SamePadConv3d(_SamePadded):
    """``F.pad(x, pad, mode=padding_type)`` then a padding-0 ``nn.Conv3d`` (TATS "same" padding; assumes every
    padded input size is divisible by the stride). Only ``conv`` is registered: keys ``conv.weight``,
    ``conv.bias`` (the released ``weight`` alias is not)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, bias: bool = True,
                 padding_type: str = "replicate"):
        super().__init__(kernel_size, stride, padding_type)
        self.conv = nn.Conv3d(in_channels, out_channels, self.kernel_size, stride=self.stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, T, H, W) -> (B, C_out, T/s_t, H/s_h, W/s_w)``."""
        return self.conv(self.padded(x))


class SamePadConvTranspose3d(_SamePadded):
    """Replicate-pad the input as :class:`SamePadConv3d` does, then ``nn.ConvTranspose3d`` with padding k − 1:
    ``(B, C_in, T, H, W) -> (B, C_out, s_t·T, s_h·H, s_w·W)``. Keys ``convt.weight``, ``convt.bias``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, bias: bool = True,
                 padding_type: str = "replicate"):
        super().__init__(kernel_size, stride, padding_type)
        self.convt = nn.ConvTranspose3d(in_channels, out_channels, self.kernel_size, stride=self.stride, bias=bias,
                                        padding=tuple(k - 1 for k in self.kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convt(self.padded(x))


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=GROUPS, num_channels=channels, eps=NORM_EPS, affine=True)


def _apply_norm(layer: nn.GroupNorm, h: torch.Tensor, norm: Optional[NormFn]) -> torch.Tensor:
    return layer(h) if norm is None else norm(layer, h)


class ResBlock(nn.Module):
    """``x + conv2(silu(norm2(conv1(silu(norm1(x))))))``, k3 replicate-padded convs, same channels in and out
    (every ResBlock of this autoencoder; the official ``conv_shortcut``/dropout are never built or active)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = _norm(channels)
        self.conv1 = SamePadConv3d(channels, channels, 3)
        self.norm2 = _norm(channels)
        self.conv2 = SamePadConv3d(channels, channels, 3)

    def forward(self, x: torch.Tensor, norm: Optional[NormFn] = None) -> torch.Tensor:
        """``(B, C, T, H, W) -> (B, C, T, H, W)``; ``norm(layer, h)`` replaces each GroupNorm call when given."""
        h = self.conv1(F.silu(_apply_norm(self.norm1, x, norm)))
        h = self.conv2(F.silu(_apply_norm(self.norm2, h, norm)))
        return x + h


def _levels(factors: Sequence[int], what: str) -> List[int]:
    out = []
    for f in factors:
        if not isinstance(f, int) or f < 1 or f & (f - 1):
            raise ValueError(f"LVDM video autoencoder: {what} must be three powers of two ≥ 1 (time, height, width), "
                             f"got {list(factors)}")
        out.append(int(math.log2(f)))
    if len(out) != 3 or max(out) == 0:
        raise ValueError(f"LVDM video autoencoder: {what} must be three powers of two (time, height, width), at least "
                         f"one above 1, got {list(factors)}")
    return out


class Encoder(nn.Module):
    """``(B, image_channel, F, H, W) -> (B, 2·z_channels, F/d_t, H/d_h, W/d_w)`` (d = ``downsample``)."""

    def __init__(self, n_hiddens: int, downsample: Sequence[int], z_channels: int, double_z: bool = True,
                 image_channel: int = 3, padding_type: str = "replicate"):
        super().__init__()
        levels = _levels(downsample, "encoder downsample")
        self.conv_first = SamePadConv3d(image_channel, n_hiddens, 3, padding_type=padding_type)
        self.conv_blocks = nn.ModuleList()
        out_channels = n_hiddens
        for i in range(max(levels)):
            block = nn.Module()
            out_channels = n_hiddens * 2 ** (i + 1)
            stride = tuple(2 if n > i else 1 for n in levels)
            block.down = SamePadConv3d(n_hiddens * 2 ** i, out_channels, 4, stride=stride, padding_type=padding_type)
            block.res = ResBlock(out_channels)     # the official ResBlock pads with its default, replicate
            self.conv_blocks.append(block)
        self.final_block = nn.Sequential(_norm(out_channels), nn.SiLU(),
                                         SamePadConv3d(out_channels, 2 * z_channels if double_z else z_channels, 3,
                                                       padding_type=padding_type))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_first(x)
        for block in self.conv_blocks:
            h = block.res(block.down(h))
        return self.final_block(h)


class Decoder(nn.Module):
    """``(B, z_channels, T, h, w) -> (B, image_channel, u_t·T, u_h·h, u_w·w)`` (u = ``upsample``)."""

    def __init__(self, n_hiddens: int, upsample: Sequence[int], z_channels: int, image_channel: int = 3):
        super().__init__()
        levels = _levels(upsample, "decoder upsample")
        n = max(levels)
        self.conv_blocks = nn.ModuleList()
        in_channels = z_channels
        for i in range(n):
            block = nn.Module()
            out_channels = n_hiddens * 2 ** (n - i)
            stride = tuple(2 if lv > i else 1 for lv in levels)
            block.up = SamePadConvTranspose3d(in_channels, out_channels, 4, stride=stride)
            block.res1 = ResBlock(out_channels)
            block.res2 = ResBlock(out_channels)
            self.conv_blocks.append(block)
            in_channels = out_channels
        self.conv_out = SamePadConv3d(out_channels, image_channel, 3)

    def norm_layers(self) -> List[nn.GroupNorm]:
        """The GroupNorms in the order the forward pass calls them."""
        return [n for b in self.conv_blocks for r in (b.res1, b.res2) for n in (r.norm1, r.norm2)]

    def forward(self, x: torch.Tensor, norm: Optional[NormFn] = None) -> torch.Tensor:
        h = x
        for block in self.conv_blocks:
            h = block.res2(block.res1(block.up(h), norm), norm)
        return self.conv_out(h)


def _check_config(ddconfig: dict, embed_dim: int) -> Tuple[dict, dict]:
    def need(d: dict, key: str, where: str):
        if key not in d:
            raise ValueError(f"LVDM video autoencoder config: '{where}' has no '{key}'")
        return d[key]

    enc, dec = need(ddconfig, "encoder", "ddconfig"), need(ddconfig, "decoder", "ddconfig")
    enc = enc.get("params", enc) if isinstance(enc, dict) else enc      # the yaml's {target, params} also works
    dec = dec.get("params", dec) if isinstance(dec, dict) else dec
    z = need(ddconfig, "z_channels", "ddconfig")
    if not need(ddconfig, "double_z", "ddconfig"):
        raise ValueError("LVDM video autoencoder config: double_z must be true (the posterior needs mean and "
                         "log-variance; the official AutoencoderKL asserts it)")
    for part, d in (("encoder", enc), ("decoder", dec)):
        if d.get("norm_type", "group") != "group":
            raise ValueError(f"LVDM video autoencoder config: {part} norm_type must be 'group' (every released model "
                             f"uses it; 'batch' = SyncBatchNorm is not supported), got {d.get('norm_type')!r}")
        nh = need(d, "n_hiddens", part)
        if not isinstance(nh, int) or nh < 16 or nh % 16:
            raise ValueError(f"LVDM video autoencoder config: {part} n_hiddens must be a multiple of 16 (its narrowest "
                             f"GroupNorm has 2·n_hiddens channels in {GROUPS} groups), got {nh!r}; the smallest "
                             f"working value is 16 (the released models use 32)")
        if need(d, "z_channels", part) != z:
            raise ValueError(f"LVDM video autoencoder config: {part} z_channels {d['z_channels']} differs from "
                             f"ddconfig z_channels {z}")
    if not enc.get("double_z", True):
        raise ValueError("LVDM video autoencoder config: encoder double_z must be true")
    if enc.get("padding_type", "replicate") not in PAD_MODES:
        raise ValueError(f"LVDM video autoencoder config: encoder padding_type must be one of {PAD_MODES}, got "
                         f"{enc.get('padding_type')!r}")
    if not isinstance(embed_dim, int) or embed_dim < 1:
        raise ValueError(f"LVDM video autoencoder config: embed_dim must be a positive int, got {embed_dim!r}")
    return enc, dec


class VideoAutoencoderKL(nn.Module):
    """The LVDM/TATS 3-D video autoencoder (inference). ``ddconfig`` is the official yaml's ``ddconfig`` with the
    encoder/decoder ``params`` inline (``{"double_z", "z_channels", "encoder": {n_hiddens, downsample,
    image_channel, norm_type, padding_type, double_z, z_channels}, "decoder": {n_hiddens, upsample, z_channels,
    image_channel, norm_type}}``; a ``{"target", "params"}`` pair is also read). A tiny variant is the same class
    with n_hiddens 16 (the smallest the GroupNorm(32)s allow; any multiple of 16 works).

    Released size (n_hiddens 32): encoder 7.46M, decoder 11.99M parameters.
    """

    def __init__(self, ddconfig: dict, embed_dim: int):
        super().__init__()
        enc, dec = _check_config(ddconfig, embed_dim)
        z = ddconfig["z_channels"]
        self.encoder = Encoder(enc["n_hiddens"], enc["downsample"], z, True, enc.get("image_channel", 3),
                               enc.get("padding_type", "replicate"))
        self.decoder = Decoder(dec["n_hiddens"], dec["upsample"], z, dec.get("image_channel", 3))
        self.quant_conv = SamePadConv3d(2 * z, 2 * embed_dim, 1)
        self.post_quant_conv = SamePadConv3d(embed_dim, z, 1)
        self.embed_dim = embed_dim
        self.image_channels = enc.get("image_channel", 3)
        self.downsample = tuple(enc["downsample"])
        self.upsample = tuple(dec["upsample"])

    @classmethod
    def from_config(cls, config: dict) -> "VideoAutoencoderKL":
        """Build from a shipped JSON (``{"embed_dim", "ddconfig"}``; keys starting with ``_`` are comments)."""
        for key in ("embed_dim", "ddconfig"):
            if key not in config:
                raise ValueError(f"LVDM video autoencoder config has no '{key}' (keys: {sorted(config)})")
        return cls(config["ddconfig"], config["embed_dim"])

    @property
    def temporal_factor(self) -> int:
        """Frames per latent: 4 for the released models."""
        return self.upsample[0]

    # ------------------------------------------------------------------ encode / decode

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Video ``x`` ``(B, 3, F, H, W)`` in [−1, 1] → posterior ``(mean, logvar)``, each ``(B, 4, F/4, H/8, W/8)``
        (released factors). ``logvar`` is clamped to [−30, 20] as the official DiagonalGaussianDistribution does;
        LVDM samples ``z = mean + exp(logvar/2)·ε`` (``get_first_stage_encoding``)."""
        if x.ndim != 5 or x.shape[1] != self.image_channels:
            raise ValueError(f"LVDM video autoencoder encode: expected a video (B, {self.image_channels}, F, H, W), "
                             f"got shape {tuple(x.shape)}")
        for size, factor, name in zip(x.shape[2:], self.downsample, ("frame count F", "height H", "width W")):
            if size < factor or size % factor:
                raise ValueError(f"LVDM video autoencoder encode: {name} must be a positive multiple of {factor}, "
                                 f"got {size}")
        moments = self.quant_conv(self.encoder(x))
        mean, logvar = torch.chunk(moments, 2, dim=1)
        return mean, logvar.clamp(*LOGVAR_CLAMP)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents ``z`` ``(B, 4, T, h, w)`` (not scaled/shifted) → video ``(B, 3, 4T, 8h, 8w)``, about [−1, 1]
        (released factors). All T latents in one pass; see :func:`decode_overlapped` for long ones."""
        self._check_latents(z, "decode")
        return self._decode(z)

    def _decode(self, z: torch.Tensor, norm: Optional[NormFn] = None) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z), norm)

    def _check_latents(self, z: torch.Tensor, where: str) -> None:
        if z.ndim != 5 or z.shape[1] != self.embed_dim or z.shape[2] < 1:
            raise ValueError(f"LVDM video autoencoder {where}: expected latents (B, {self.embed_dim}, T, h, w) with "
                             f"T ≥ 1, got shape {tuple(z.shape)}")

    def released_aliases(self) -> Dict[str, str]:
        """``{alias key: key}`` for the alias each same-padding conv has in the released files
        (``<m>.weight`` → ``<m>.conv.weight``); transposed convs have none."""
        return {f"{name}.weight": f"{name}.conv.weight"
                for name, m in self.named_modules() if isinstance(m, SamePadConv3d)}


# ---------------------------------------------------------------------- long latents

def decoder_temporal_margins(ae: VideoAutoencoderKL) -> Tuple[int, int]:
    """``(left, right)``: how many latents before and after latent c the decoder's convolutions reach for the frames
    of latent c, counted through every layer's input (so that no replicate padding at a window edge touches them).
    Computed from the layers' kernel sizes, strides and paddings, ignoring GroupNorm's pooling. Released decoder:
    (6, 6): the frames of latent c depend on latents c−6 … c+6 (13 latents), mostly through the eight k3 convs at
    2× frame rate (±4 frames there) and the eight plus ``conv_out`` at 4× (±9 frames, widened by the transposed
    convs' taps)."""
    dec = ae.decoder
    rate = 1
    layers = []                        # (module, its input's frames per latent), forward order
    layers.append((ae.post_quant_conv, 1))
    for block in dec.conv_blocks:
        layers.append((block.up, rate))
        rate *= block.up.convt.stride[0]
        for res in (block.res1, block.res2):
            layers += [(res.conv1, rate), (res.conv2, rate)]      # the skip path adds nothing wider
    layers.append((dec.conv_out, rate))
    c = 64                            # any latent far from the ends
    lo, hi = rate * c, rate * (c + 1) - 1          # the output frames of latent c
    left = right = 0
    for m, r in reversed(layers):
        if isinstance(m, SamePadConvTranspose3d):
            k, s = m.convt.kernel_size[0], m.convt.stride[0]
            pad = m.pad_input[-2]
            # output o = j'·s + kk − (k − 1) for padded input j', kk < k: j' in [ceil(o/s), floor((o + k − 1)/s)]
            lo = _ceil_div(lo, s) - pad
            hi = (hi + k - 1) // s - pad
        else:
            k, s = m.conv.kernel_size[0], m.conv.stride[0]
            pad = m.pad_input[-2]
            lo, hi = lo * s - pad, hi * s + k - 1 - pad      # output i reads padded inputs i·s … i·s + k − 1
        # this layer's input covers latents [lo // r, hi // r]
        left = max(left, c - lo // r)
        right = max(right, hi // r - c)
    return left, right


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def plan_windows(frames: int, window: int, overlap: int) -> List[Tuple[int, int, int, int]]:
    """Windows over ``frames`` latents: ``[(start, end, keep_start, keep_end)]``. Windows start every
    ``window − overlap`` latents and each seam sits in the middle of an overlap, so every window drops
    ``overlap/2`` latents at each inner seam (as the official ``overlapped_decode``); the last window is moved back
    to end at the last latent (full length) instead of being cut short. The kept ranges tile ``[0, frames)``.

    The official ``LatentDiffusion.overlapped_decode`` (ddpm3d.py), by comparison: as released it calls
    ``self.decode(z_, predict_cids, force_not_quantize)`` while ``decode`` takes ``z`` only (a TypeError); with that
    call fixed its loop (``while start <= T``) keeps adding windows past the end, short ones that decode only
    ``overlap`` latents or fewer, and an empty one (a crash) whenever ``T − window`` is a multiple of the step;
    odd overlaps drop one more latent on the right of a seam than on the left (here overlaps are even)."""
    _check_window(window, overlap)
    if frames <= window:
        return [(0, frames, 0, frames)]
    step, half = window - overlap, overlap // 2
    starts = list(range(0, frames - window, step)) + [frames - window]
    seams = [0] + [a + half for a in starts[1:]] + [frames]
    return [(a, a + window, seams[i], seams[i + 1]) for i, a in enumerate(starts)]


def _check_window(window, overlap) -> None:
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ValueError(f"overlapped decode: window must be a whole number of latents ≥ 1, got {window!r}")
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 0 or overlap % 2:
        raise ValueError(f"overlapped decode: overlap must be an even whole number of latents ≥ 0 (half of it is "
                         f"dropped on each side of a seam), got {overlap!r}")
    if overlap >= window:
        raise ValueError(f"overlapped decode: overlap must be smaller than the window ({window} latents), got "
                         f"{overlap}")


class _Stop(Exception):
    """Ends a statistics pass right after the GroupNorm whose statistics it gathers."""


class _Moments:
    """Per-(sample, group) count, mean and sum of squared deviations, combined across windows in float64 on the
    CPU (Chan et al.'s parallel update), so no device needs float64."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, None, None

    def add(self, x: torch.Tensor, groups: int) -> None:
        calc = torch.promote_types(x.dtype, torch.float32)
        x = x.reshape(x.shape[0], groups, -1).to(calc)
        var, mean = torch.var_mean(x, dim=-1, correction=0)
        n_b = x.shape[-1]
        mean, m2 = mean.to("cpu", torch.float64), var.to("cpu", torch.float64) * n_b
        if self.mean is None:
            self.n, self.mean, self.m2 = n_b, mean, m2
            return
        n = self.n + n_b
        delta = mean - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2 + delta.square() * (self.n * n_b / n)
        self.n = n

    def finish(self, eps: float) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.mean, (self.m2 / self.n + eps).rsqrt()


def _fixed_norm(layer: nn.GroupNorm, h: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor) -> torch.Tensor:
    """GroupNorm of ``h`` ``(B, C, t, H, W)`` with given per-(sample, group) ``mean``/``rstd`` ``(B, G)``."""
    b, c = h.shape[:2]
    calc = torch.promote_types(h.dtype, torch.float32)
    per = c // layer.num_groups
    shape = (b, c) + (1,) * (h.ndim - 2)
    rstd_c = rstd.to(h.device, calc).repeat_interleave(per, dim=1).reshape(shape)
    mean_c = mean.to(h.device, calc).repeat_interleave(per, dim=1).reshape(shape)
    scale = rstd_c * layer.weight.to(calc).reshape((1, c) + (1,) * (h.ndim - 2))
    shift = layer.bias.to(calc).reshape(scale.shape[1:]) - mean_c * scale
    return (h.to(calc) * scale + shift).to(h.dtype)


@torch.no_grad()
def decode_overlapped(ae: VideoAutoencoderKL, z: torch.Tensor, window: int, overlap: int, mode: str = "exact",
                      out_device: Optional[torch.device] = None,
                      callback: Optional[Callable[[int, int], None]] = None) -> torch.Tensor:
    """Decode raw latents ``z`` ``(B, 4, T, h, w)`` → ``(B, 3, 4T, 8h, 8w)`` window by window, ``window`` latents
    at a time, consecutive windows overlapping by ``overlap`` latents (even; ``overlap/2`` dropped on each side of a
    seam, see :func:`plan_windows`). ``z`` may stay on another device (the CPU): each window is moved to the
    model's device and dtype. The output is allocated once on ``out_device`` (default: ``z``'s device) in the
    model's dtype, and only one window's activations are alive at a time. ``T ≤ window`` is one plain
    :meth:`~VideoAutoencoderKL.decode`.

    ``mode``:

    - ``"plain"`` (fast; the official ``overlapped_decode``'s scheme): each window is decoded on its own. The
      decoder's GroupNorms then take their statistics over the window instead of the whole clip, so the result
      differs from the one-shot decode everywhere, by an amount that depends on the content, whatever the overlap.
    - ``"exact"``: equal to the one-shot decode (within float rounding) at bounded memory. The decoder's G
      GroupNorms (12 in the released one) get the whole clip's statistics first: pass k runs every window up to norm
      k (norms before k already using their whole-clip statistics) and gathers norm k's statistics over the frames
      the window keeps; a last pass decodes with all statistics fixed. Needs ``overlap/2`` ≥ the decoder's reach
      (:func:`decoder_temporal_margins`: 6 latents for the released decoder, so overlap ≥ 12; a smaller one is
      refused when T > window). Costs about 6–8× the plain mode with the same windows, as the G statistics passes
      stop at their norm (bench/lvdm_decode.py).

    ``callback(done, total)`` is called after each window pass.
    """
    ae._check_latents(z, "decode_overlapped")
    if mode not in ("exact", "plain"):
        raise ValueError(f"overlapped decode: mode must be 'exact' or 'plain', got {mode!r}")
    plan = plan_windows(z.shape[2], window, overlap)
    if mode == "exact":
        need = max(decoder_temporal_margins(ae))
        if overlap // 2 < need and len(plan) > 1:
            raise ValueError(f"overlapped decode (exact): overlap must be at least {2 * need} latents (twice the "
                             f"decoder's temporal reach of {need} latents), got {overlap}")
    factor = ae.temporal_factor
    weight = next(ae.parameters())
    device, dtype = weight.device, weight.dtype
    out_device = z.device if out_device is None else torch.device(out_device)
    if len(plan) == 1:
        return ae.decode(z.to(device, dtype)).to(out_device)

    norms = ae.decoder.norm_layers() if mode == "exact" else []
    stats: Dict[nn.GroupNorm, Tuple[torch.Tensor, torch.Tensor]] = {}
    total, done = len(plan) * (len(norms) + 1), 0

    def window_norm(target: Optional[nn.GroupNorm], moments: Optional[_Moments], a: int, b: int, ka: int,
                    kb: int) -> NormFn:
        def norm(layer: nn.GroupNorm, h: torch.Tensor) -> torch.Tensor:
            if layer in stats:
                return _fixed_norm(layer, h, *stats[layer])
            if layer is target:          # gather over the frames this window keeps, at this layer's frame rate
                r = h.shape[2] // (b - a)
                moments.add(h[:, :, r * (ka - a):r * (kb - a)], layer.num_groups)
                raise _Stop
            raise AssertionError("a GroupNorm was reached before its statistics were gathered")
        return norm

    for layer in norms:                 # one statistics pass per GroupNorm, in forward order
        moments = _Moments()
        for a, b, ka, kb in plan:
            try:
                ae._decode(z[:, :, a:b].to(device, dtype), window_norm(layer, moments, a, b, ka, kb))
            except _Stop:
                pass
            done += 1
            if callback is not None:
                callback(done, total)
        stats[layer] = moments.finish(layer.eps)

    out = None
    for a, b, ka, kb in plan:
        x = ae._decode(z[:, :, a:b].to(device, dtype), window_norm(None, None, a, b, ka, kb) if norms else None)
        if out is None:
            out = torch.empty(x.shape[:2] + (factor * z.shape[2],) + x.shape[3:], dtype=x.dtype, device=out_device)
        out[:, :, factor * ka:factor * kb] = x[:, :, factor * (ka - a):factor * (kb - a)].to(out_device)
        del x
        done += 1
        if callback is not None:
            callback(done, total)
    return out
