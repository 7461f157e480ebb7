"""LVDM's ADM-style 3-D UNet (arXiv 2211.13221; YingqingHe/LVDM ``lvdm/models/modules/openaimodel3d.py::UNetModel``
and ``FrameInterpPredUNet``, ``attention_temporal.py::STAttentionBlock``), as the official code computes it.

The short unconditional models (sky / taichi / UCF) and the long-video pred / interp models share one network:

- every convolution is spatial for the released configs (kernel ``(kernel_size_t, 3, 3)`` with ``kernel_size_t = 1``),
  down/upsampling is spatial only (stride ``(1, 2, 2)``, nearest ``×2`` in h and w);
- time is modelled only by :class:`STAttentionBlock`: spatial self-attention over the ``h·w`` tokens of each frame, then
  temporal self-attention over the ``T`` frames of each pixel with learned relative positions (tables of
  ``2·temporal_length + 1`` rows, distances clipped at ``±temporal_length``, so any ``T`` runs);
- the pred / interp variant (:class:`LVDMFrameInterpPredUNet`) takes 5 input channels (4 latent + 1 mask, the mask
  concatenated after the latent) and adds ``label_emb(y)`` (``Embedding(num_classes = 251, 4·model_channels)``) to the
  timestep embedding, where ``y`` is the noise level ``s`` of the perturbed conditioning latents. Without ``y`` (the
  unconditional call of unconditional guidance) nothing is added.

The temporal attention reproduces the official ``QKVAttention`` exactly, quirks included (per head, head width ``c``,
tokens ``t, s``; ``σ = c^(-1/4)``; ``K[d] = k-table row d + L``, ``V[d] = v-table row d + L``, ``L = temporal_length``,
``clip(d) = min(max(d, -L), L)``)::

    logits[t, s] = (σ q_t)·(σ k_s) + (σ q_s)·K[clip(t - s)]        # rel. term from the SCALED q, added TRANSPOSED
    p = softmax_s(logits)
    out[t] = Σ_s p[t, s] v_s + Σ_s p[t, s] V[clip(s - t)]           # value term: not transposed

(The non-transposed logit term would be ``(σ q_t)·K[clip(s - t)]``.) With SDPA (the default backend) the relative
logit term goes in as a float additive mask, and the attention probabilities that the value term needs come back from
SDPA itself through ``T`` one-hot value channels (``Σ_s p[t, s] δ(s, s') = p[t, s']``), so the result is exact.

State-dict keys and shapes equal the released checkpoints' UNet keys with the ``model.diffusion_model.`` prefix
removed (``input_blocks.1.0.in_layers.2.weight``, ``input_blocks.5.1.relative_position_k.embeddings_table``, ...).
The shipped configs are ``models/configs/lvdm/unet_{short,pred,interp}.json``; :meth:`LVDMUNet.from_config` builds
from one of them.

Differences from the official code, on purpose (none changes a result): the network runs in its parameters' dtype and
returns ``x.dtype`` (the official code casts to float32 inside); GroupNorm computes in float32 only for half-precision
inputs; the attention block adds instead of writing into its input in place; options the released configs never
use (temporal transformer, resblock up/down, avg-pool resampling, fp16 flag, other nonlinearities, ``cond_aug_mode
= 'time_embed'``) are refused with a ``ValueError`` instead of being half-supported.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as _grad_checkpoint

ATTENTION_BACKENDS = ("sdpa", "xformers")


# ---------------------------------------------------------------------------------------------------- small pieces

def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos(t·f_i), sin(t·f_i)]``, ``f_i = max_period^(-i/half)``, computed in float32 as the
    official code does (its rounding is part of what the weights were trained with).

    Args:
        timesteps: ``(B,)``, integer or fractional.
        dim: embedding width.
    Returns:
        ``(B, dim)`` float32.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half).to(timesteps.device)
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32, C) that computes in float32 for half-precision inputs (as the official ``GroupNorm32``) and in
    the input's dtype otherwise. ``(N, C, *) -> (N, C, *)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            w = None if self.weight is None else self.weight.float()
            b = None if self.bias is None else self.bias.float()
            return F.group_norm(x.float(), self.num_groups, w, b, self.eps).to(x.dtype)
        return super().forward(x)


def _norm(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels)


def _conv3d(c_in: int, c_out: int, kernel_size_t: int, padding_t: int, stride=1) -> nn.Conv3d:
    return nn.Conv3d(c_in, c_out, (kernel_size_t, 3, 3), stride=stride, padding=(padding_t, 1, 1))


def _conv(dims: int, c_in: int, c_out: int, kernel_size_t: int, padding_t: int, down: bool = False) -> nn.Module:
    """The 3×3 conv over (h, w) (stride 2 there when ``down``): a ``(kernel_size_t, 3, 3)`` Conv3d for ``dims=3``, a
    Conv2d over frames folded into the batch for ``dims=2`` (``kernel_size_t`` / ``padding_t`` unused)."""
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims!r}")
    if dims == 2:
        return nn.Conv2d(c_in, c_out, 3, stride=2 if down else 1, padding=1)
    return _conv3d(c_in, c_out, kernel_size_t, padding_t, stride=(1, 2, 2) if down else 1)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.detach().zero_()
    return module


def time_embed_mlp(model_channels: int, emb_channels: int) -> nn.Sequential:
    """``Linear(model_channels, E) → SiLU → Linear(E, E)``: the official ``time_embed`` (and VideoCrafter2's
    ``fps_embedding``)."""
    return nn.Sequential(nn.Linear(model_channels, emb_channels), nn.SiLU(), nn.Linear(emb_channels, emb_channels))


def maybe_checkpoint(module: nn.Module, fn, x: torch.Tensor, *args) -> torch.Tensor:
    """``fn(x, *args)``, gradient-checkpointed when ``module.use_checkpoint`` is set and a backward pass may follow
    (grad mode on and ``x`` requiring grad or the module training); the results are the same either way."""
    if module.use_checkpoint and torch.is_grad_enabled() and (x.requires_grad or module.training):
        return _grad_checkpoint(fn, x, *args, use_reentrant=False)
    return fn(x, *args)


class Upsample(nn.Module):
    """Nearest ×2 in h and w (time kept), then a ``(kernel_size_t, 3, 3)`` conv. ``(B, C, T, h, w) -> (B, C, T, 2h,
    2w)``; with ``dims=2`` a 3×3 Conv2d, ``(N, C, h, w) -> (N, C, 2h, 2w)``."""

    def __init__(self, channels: int, kernel_size_t: int, padding_t: int, dims: int = 3):
        super().__init__()
        self.channels = channels
        self.conv = _conv(dims, channels, channels, kernel_size_t, padding_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, (*x.shape[2:-2], x.shape[-2] * 2, x.shape[-1] * 2), mode="nearest")
        return self.conv(x)


class Downsample(nn.Module):
    """A ``(kernel_size_t, 3, 3)`` conv of stride ``(1, 2, 2)``. ``(B, C, T, h, w) -> (B, C, T, h/2, w/2)``; with
    ``dims=2`` a 3×3 Conv2d of stride 2, ``(N, C, h, w) -> (N, C, h/2, w/2)``."""

    def __init__(self, channels: int, kernel_size_t: int, padding_t: int, dims: int = 3):
        super().__init__()
        self.channels = channels
        self.op = _conv(dims, channels, channels, kernel_size_t, padding_t, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """ADM residual block with the timestep embedding as FiLM (``use_scale_shift_norm``) or as a bias.

    ``x (B, C, T, h, w), emb (B, E) -> (B, C_out, T, h, w)``. Keys: ``in_layers.{0,2}``, ``emb_layers.1``,
    ``out_layers.{0,3}``, ``skip_connection`` (a 1×1×1 conv when the width changes). With ``dims=2`` the convs are
    ``Conv2d`` 3×3 (skip 1×1) over frames folded into the batch, ``x (N, C, h, w), emb (N, E)`` (VideoCrafter2);
    ``kernel_size_t`` / ``padding_t`` are then unused. Extra :meth:`forward` arguments go to :meth:`_forward`
    (a subclass's hook, e.g. the frame count for a temporal layer).
    """

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: Optional[int] = None,
                 use_scale_shift_norm: bool = False, use_checkpoint: bool = False, kernel_size_t: int = 1,
                 padding_t: int = 0, dims: int = 3):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint

        def conv(c_in, c_out):
            return _conv(dims, c_in, c_out, kernel_size_t, padding_t)

        self.in_layers = nn.Sequential(_norm(channels), nn.SiLU(), conv(channels, self.out_channels))
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels))
        self.out_layers = nn.Sequential(
            _norm(self.out_channels), nn.SiLU(), nn.Dropout(p=dropout),
            _zero(conv(self.out_channels, self.out_channels)))
        if self.out_channels == channels:
            self.skip_connection = nn.Identity()
        else:
            self.skip_connection = (nn.Conv2d if dims == 2 else nn.Conv3d)(channels, self.out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, *args) -> torch.Tensor:
        return maybe_checkpoint(self, self._forward, x, emb, *args)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        emb_out = self.emb_layers(emb).to(h.dtype)
        emb_out = emb_out.reshape(*emb_out.shape, *(1,) * (h.dim() - 2))
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class RelativePosition(nn.Module):
    """Learned relative-position table: ``embeddings_table (2·L + 1, units)``; :meth:`forward` returns
    ``E[t, s] = table[clip(s - t, -L, L) + L]``, shape ``(T_q, T_k, units)``."""

    def __init__(self, num_units: int, max_relative_position: int):
        super().__init__()
        self.num_units = num_units
        self.max_relative_position = max_relative_position
        self.embeddings_table = nn.Parameter(torch.empty(2 * max_relative_position + 1, num_units))
        nn.init.xavier_uniform_(self.embeddings_table)

    def forward(self, length_q: int, length_k: int) -> torch.Tensor:
        dev = self.embeddings_table.device
        dist = torch.arange(length_k, device=dev)[None, :] - torch.arange(length_q, device=dev)[:, None]
        idx = dist.clamp(-self.max_relative_position, self.max_relative_position) + self.max_relative_position
        return self.embeddings_table[idx]


# ---------------------------------------------------------------------------------------------------- attention

def _xformers_ops():
    """``xformers.ops``, or a ValueError saying it is not installed."""
    try:
        import xformers.ops as xops
    except Exception as e:  # ImportError, or a broken build
        raise ValueError(f"attention backend 'xformers' needs the xformers package, which could not be imported "
                         f"({type(e).__name__}: {e}); use 'sdpa' (the default)") from None
    return xops


def check_attention_backend(backend: str, who: str) -> None:
    """ValueError unless ``backend`` is one of :data:`ATTENTION_BACKENDS` (and, for xformers, importable)."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"{who}.set_attention: backend {backend!r} is not one of {ATTENTION_BACKENDS}")
    if backend == "xformers":
        _xformers_ops()


class AttentionProjections(nn.Module):
    """SD's attention parameters, as the official ``CrossAttention`` names them: ``to_q, to_k, to_v`` (Linear, no
    bias; keys and values from ``context_dim`` wide tokens, or ``query_dim`` for self-attention), ``to_out.0``
    (Linear) and ``to_out.1`` (Dropout); ``heads · dim_head`` inner width. Subclasses add ``forward``."""

    def __init__(self, query_dim: int, heads: int, dim_head: int, context_dim: Optional[int] = None,
                 dropout: float = 0.0):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.dim_head = dim_head
        self.attention_backend = "sdpa"
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))


def _check_xformers_device(device: torch.device) -> None:
    if device.type != "cuda":
        raise ValueError(f"attention backend 'xformers' runs on CUDA only, but the input is on {device}; "
                         f"use set_attention('sdpa') on this device")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
    """Plain multi-head softmax attention, scale ``c^(-1/2)``, through SDPA or xformers.

    Args:
        q: ``(N, L_q, H, c)`` (xformers' ``(B, M, H, K)`` layout); k, v: ``(N, L_k, H, c)``.
        backend: ``"sdpa"`` or ``"xformers"`` (CUDA only; checked here).
    Returns:
        ``(N, L_q, H, c)``.
    """
    if backend == "xformers":
        _check_xformers_device(q.device)
        return _xformers_ops().memory_efficient_attention(q, k, v)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def relative_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_rp: torch.Tensor, v_rp: torch.Tensor,
                       rel_scale: float, transposed: bool) -> torch.Tensor:
    """Self-attention with learned relative positions (Shaw et al.) through SDPA, exactly.

    Per attention row (head width ``c``, tokens ``t, s``; ``k_rp, v_rp`` as :class:`RelativePosition` returns them,
    ``E[t, s] = table[clip(s - t) + L]``)::

        logits[t, s] = c^(-1/2) q_t·k_s + rel_scale · (q_t·k_rp[t, s]     if not transposed
                                                        q_s·k_rp[s, t]     if transposed: LVDM's QKVAttention quirk)
        out[t] = Σ_s p[t, s] (v_s + v_rp[t, s]),   p = softmax_s(logits)

    The relative logit term goes in as a float additive mask; the probabilities the value term needs come back from
    the same SDPA call through ``L`` one-hot value channels (``Σ_s p[t, s] δ(s, s') = p[t, s']``).

    Args:
        q, k, v: ``(..., L, c)`` token-major (any leading batch / head dims).
        k_rp, v_rp: ``(L, L, c)``.
        rel_scale: the factor on the relative logit term (LVDM's QKVAttention: ``c^(-1/4)``; the T2V model's
            TemporalCrossAttention: ``c^(-1/2)``).
        transposed: add the relative logit term transposed (LVDM's QKVAttention) or not (TemporalCrossAttention).
    Returns:
        ``(..., L, c)``.
    """
    length, ch = q.shape[-2], q.shape[-1]
    bias = torch.einsum("...tc,tsc->...ts", q * rel_scale, k_rp.to(q.dtype))
    if transposed:
        bias = bias.transpose(-1, -2)
    eye = torch.eye(length, dtype=v.dtype, device=v.device).expand(*v.shape[:-1], length)
    both = F.scaled_dot_product_attention(q, k, torch.cat([v, eye], dim=-1), attn_mask=bias, scale=ch ** -0.5)
    out, p = both[..., :ch], both[..., ch:]
    return out + torch.einsum("...ts,tsc->...tc", p, v_rp.to(p.dtype))


def qkv_attention(qkv: torch.Tensor, n_heads: int, rp: Optional[tuple] = None, backend: str = "sdpa") -> torch.Tensor:
    """The official ``QKVAttention`` (q, k, v split before the heads), through SDPA or xformers.

    Args:
        qkv: ``(N, 3·H·c, L)``: channels ``[q heads | k heads | v heads]``, each head ``c`` contiguous channels.
        n_heads: ``H``.
        rp: ``None`` or ``(k_rp, v_rp)``, each ``(L, L, c)`` from :class:`RelativePosition` (``E[t, s]``): adds
            ``(σ q_s)·k_rp[s, t]`` to the logit at ``[t, s]`` (``σ = c^(-1/4)``; the official transposed term) and
            ``Σ_s p[t, s] v_rp[t, s]`` to the output at ``t`` (:func:`relative_attention` with ``transposed=True``).
        backend: ``"sdpa"`` or ``"xformers"`` (xformers only for the plain term; with ``rp`` SDPA is used, since the
            value term needs the attention probabilities).
    Returns:
        ``(N, H·c, L)``.
    """
    n, width, length = qkv.shape
    ch = width // (3 * n_heads)
    # (N, H·c, L) -> (N, L, H, c) token-major views for the kernels
    q, k, v = (a.reshape(n, n_heads, ch, length).permute(0, 3, 1, 2) for a in qkv.chunk(3, dim=1))
    if rp is None:
        out = attention(q, k, v, backend)                                                   # scale c^(-1/2) = σ·σ
    else:
        q, k, v = (a.transpose(1, 2) for a in (q, k, v))                                   # (N, H, L, c)
        out = relative_attention(q, k, v, *rp, rel_scale=ch ** -0.25, transposed=True).transpose(1, 2)
    return out.permute(0, 2, 3, 1).reshape(n, n_heads * ch, length)


class STAttentionBlock(nn.Module):
    """Factorised space-time self-attention (official ``STAttentionBlock``): GroupNorm + 1×1 qkv + attention over the
    ``h·w`` tokens of each frame + zero-initialised projection, residual; then the same over the ``T`` frames of each
    pixel with relative positions. ``(B, C, T, h, w) -> (B, C, T, h, w)``.

    Keys: ``norm_s, norm_t, qkv_s, qkv_t`` (Conv1d ``(3C, C, 1)``), ``proj_out_s, proj_out_t`` (Conv1d ``(C, C, 1)``),
    ``relative_position_{k,v}.embeddings_table`` ``(2·temporal_length + 1, C / num_heads)``.
    """

    def __init__(self, channels: int, num_heads: int, temporal_length: Optional[int], use_relative_position: bool):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention width {channels} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.use_relative_position = use_relative_position
        self.attention_backend = "sdpa"
        self.norm_s = _norm(channels)
        self.norm_t = _norm(channels)
        self.qkv_s = nn.Conv1d(channels, channels * 3, 1)
        self.qkv_t = nn.Conv1d(channels, channels * 3, 1)
        if use_relative_position:
            self.relative_position_k = RelativePosition(channels // num_heads, temporal_length)
            self.relative_position_v = RelativePosition(channels // num_heads, temporal_length)
        self.proj_out_s = _zero(nn.Conv1d(channels, channels, 1))
        self.proj_out_t = _zero(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        backend = self.attention_backend
        # spatial: (B, C, T, h, w) -> (B·T, C, h·w)
        out = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h * w)
        out = self.proj_out_s(qkv_attention(self.qkv_s(self.norm_s(out)), self.num_heads, backend=backend))
        x = x + out.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        # temporal: (B, C, T, h, w) -> (B·h·w, C, T)
        out = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, c, t)
        rp = None
        if self.use_relative_position:
            rp = (self.relative_position_k(t, t), self.relative_position_v(t, t))
        out = self.proj_out_t(qkv_attention(self.qkv_t(self.norm_t(out)), self.num_heads, rp=rp, backend=backend))
        return x + out.reshape(b, h, w, c, t).permute(0, 3, 4, 1, 2)


class EmbedSequential(nn.Sequential):
    """``nn.Sequential`` that hands the timestep embedding to its :class:`ResBlock` children and the cross-attention
    context to children that declare ``takes_context = True`` (the T2V model's transformer)."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif getattr(layer, "takes_context", False):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


# ---------------------------------------------------------------------------------------------------- the UNet

def refuse_unbuilt(refuse, options) -> None:
    """``refuse(name, value, repr(default))`` (which raises) for the first ``(name, value, default)`` of ``options``
    whose value is not the default: the options a UNet accepts only at their official / released values."""
    for name, value, default in options:
        if value != default:
            refuse(name, value, repr(default))


def check_video_shape(who: str, x: torch.Tensor, in_channels: int, n_down: int, mask_channel: bool = True) -> None:
    """ValueError unless ``x`` is ``(B, in_channels, T, h, w)`` with ``h, w`` divisible by ``2^n_down``. With
    ``mask_channel``, a 5-channel model's error names the 4 latent + 1 mask channels (LVDM's pred / interp)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 5:
        raise ValueError(f"{who}: x must be a 5-D tensor (B, C, T, h, w), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    b, c, t, h, w = x.shape
    if c != in_channels:
        extra = " (4 latent channels + 1 mask channel)" if mask_channel and in_channels == 5 else ""
        raise ValueError(f"{who}: x has {c} channels, expected in_channels = {in_channels}{extra}")
    f = 2 ** n_down
    if h % f or w % f:
        raise ValueError(f"{who}: latent size {h}×{w} must be divisible by {f} ({n_down} spatial downsamplings)")


def check_video_input(who: str, x: torch.Tensor, timesteps, in_channels: int, n_down: int) -> torch.Tensor:
    """ValueError unless ``x`` is ``(B, in_channels, T, h, w)`` with ``h, w`` divisible by ``2^n_down``
    (:func:`check_video_shape`) and ``timesteps`` is ``(B,)`` or 0-d. Returns the timesteps as a ``(B,)`` tensor on
    ``x``'s device."""
    check_video_shape(who, x, in_channels, n_down)
    b = x.shape[0]
    timesteps = torch.as_tensor(timesteps, device=x.device)
    if timesteps.dim() == 0:
        timesteps = timesteps.expand(b)
    if timesteps.shape != (b,):
        raise ValueError(f"{who}: timesteps must have shape ({b},) (one per sample), got {tuple(timesteps.shape)}")
    return timesteps


def resblock_maker(emb_channels: int, dropout: float, **kwargs):
    """``res(c_in, c_out=None)``: a :class:`ResBlock` from ``c_in`` to ``c_out`` channels (``c_in`` if None) with the
    embedding width, dropout and ``kwargs`` (``use_scale_shift_norm``, ``use_checkpoint``, ...) fixed."""
    def res(c_in: int, c_out: Optional[int] = None) -> ResBlock:
        return ResBlock(c_in, emb_channels, dropout, out_channels=c_out, **kwargs)
    return res


def build_adm_blocks(input_blocks: nn.ModuleList, seq, model_channels: int, channel_mult: Sequence[int],
                     num_res_blocks: int, attention_resolutions: Sequence[int], res, attn, kernel_size_t: int,
                     padding_t: int, dims: int = 3):
    """The ADM skeleton (official ``UNetModel.__init__``), shared by LVDM's, the T2V and VideoCrafter2's UNets.

    Appends the encoder to ``input_blocks`` (which holds the input conv): per level ``num_res_blocks`` ×
    ``seq(res(c_in, c_out), *attn(c_out))`` (``attn`` only where the downsampling rate ``ds`` is in
    ``attention_resolutions``), a ``seq(Downsample)`` between levels; then builds the middle block ``seq(res(ch),
    *attn(ch), res(ch))`` and the decoder (per level ``num_res_blocks + 1`` × ResBlock on the skip concat (+ attn), an
    Upsample closing each level but the last). ``res(c_in, c_out=None)`` builds a ResBlock, ``attn(ch)`` the list of
    attention layers at width ``ch``, ``seq(*layers)`` the container; ``kernel_size_t, padding_t, dims`` go to the
    resamplers. Modules are created in the official order. Returns ``(middle_block, output_blocks, ch)``.
    """
    chans, ch, ds = [model_channels], model_channels, 1
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            layers = [res(ch, mult * model_channels)]
            ch = mult * model_channels
            if ds in attention_resolutions:
                layers += attn(ch)
            input_blocks.append(seq(*layers))
            chans.append(ch)
        if level != len(channel_mult) - 1:
            input_blocks.append(seq(Downsample(ch, kernel_size_t, padding_t, dims=dims)))
            chans.append(ch)
            ds *= 2
    middle_block = seq(res(ch), *attn(ch), res(ch))
    output_blocks = nn.ModuleList()
    for level, mult in list(enumerate(channel_mult))[::-1]:
        for i in range(num_res_blocks + 1):
            layers = [res(ch + chans.pop(), model_channels * mult)]
            ch = model_channels * mult
            if ds in attention_resolutions:
                layers += attn(ch)
            if level and i == num_res_blocks:
                layers.append(Upsample(ch, kernel_size_t, padding_t, dims=dims))
                ds //= 2
            output_blocks.append(seq(*layers))
    return middle_block, output_blocks, ch


class ADMUNetBase(nn.Module):
    """What LVDM's, the T2V and VideoCrafter2's UNets share around the ADM skeleton: :meth:`from_config`, the
    attention backend, and the pass through ``input_blocks``, ``middle_block`` and ``output_blocks``. A subclass sets
    ``_attention_layers`` (the module class whose ``attention_backend`` :meth:`_set_attention` sets)."""

    _attention_layers: type = nn.Module

    def _record_layout(self, in_channels: int, model_channels: int, out_channels: int, num_res_blocks: int,
                       attention_resolutions: Sequence[int], channel_mult: Sequence[int],
                       temporal_length: Optional[int]) -> int:
        """Keep the layout arguments as attributes (``attention_resolutions`` and ``channel_mult`` as tuples) and
        ``time_embed_dim = 4·model_channels``; returns ``time_embed_dim``."""
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_res_blocks = num_res_blocks
        self.attention_resolutions = tuple(attention_resolutions)
        self.channel_mult = tuple(channel_mult)
        self.temporal_length = temporal_length
        self.time_embed_dim = model_channels * 4
        return self.time_embed_dim

    def _build_lvdm_skeleton(self, res, attn, kernel_size_t: int, padding_t: int) -> None:
        """LVDM's skeleton (Conv3d convs, :class:`EmbedSequential` blocks) from the recorded layout: ``input_blocks``
        (the input conv, then :func:`build_adm_blocks`), ``middle_block``, ``output_blocks``, ``out`` (GroupNorm, SiLU,
        zero conv); the attention backend starts as SDPA."""
        mc = self.model_channels
        self.input_blocks = nn.ModuleList([EmbedSequential(_conv3d(self.in_channels, mc, kernel_size_t, padding_t))])
        self.middle_block, self.output_blocks, ch = build_adm_blocks(
            self.input_blocks, EmbedSequential, mc, self.channel_mult, self.num_res_blocks,
            self.attention_resolutions, res, attn, kernel_size_t, padding_t)
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), _zero(_conv3d(mc, self.out_channels, kernel_size_t, padding_t)))
        self._backend = "sdpa"

    @classmethod
    def from_config(cls, config: dict):
        """Build from a shipped config (``models/configs/lvdm/*.json``); keys starting with ``_`` are metadata and
        are dropped."""
        return cls(**{k: v for k, v in config.items() if not k.startswith("_")})

    @property
    def attention_backend(self) -> str:
        return self._backend

    def _set_attention(self, backend: str, who: str):
        check_attention_backend(backend, who)
        self._backend = backend
        for m in self.modules():
            if isinstance(m, self._attention_layers):
                m.attention_backend = backend
        return self

    def _run_blocks(self, h: torch.Tensor, *cond, after_first: Optional[nn.Module] = None) -> torch.Tensor:
        """``input_blocks`` (each output kept as a skip; ``after_first`` applied after the first), ``middle_block``,
        ``output_blocks`` (each on ``[h, skip]`` concatenated over channels); every block gets ``(h, *cond)``."""
        hs = []
        for i, module in enumerate(self.input_blocks):
            h = module(h, *cond)
            if i == 0 and after_first is not None:
                h = after_first(h, *cond)
            hs.append(h)
        h = self.middle_block(h, *cond)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), *cond)
        return h


def _refuse(name: str, value, expected, why: str = "the released LVDM configs never use it and it is not built here"):
    raise ValueError(f"LVDMUNet: {name}={value!r} is not supported ({why}); expected {expected}")


class LVDMUNet(ADMUNetBase):
    """LVDM's 3-D UNet (official ``UNetModel`` with ``use_temporal_transformer=False``), built from the configs'
    ``params`` names.

    Layout (ADM): ``input_blocks`` (conv in; per level ``num_res_blocks`` × [ResBlock (+ STAttentionBlock where the
    downsampling rate ``ds`` is in ``attention_resolutions``)], a Downsample between levels), ``middle_block``
    (ResBlock, STAttentionBlock, ResBlock), ``output_blocks`` (per level ``num_res_blocks + 1`` × [ResBlock on the
    skip concat (+ attention)] with an Upsample closing each level but the last), ``out`` (GroupNorm, SiLU, zero conv).

    Args (the official names; the released short / pred / interp configs in brackets):
        image_size: latent size the model was trained at; recorded, not used [32].
        in_channels: 4 (short) or 5 = 4 latent + 1 mask (pred / interp).
        model_channels: base width [256]; the timestep embedding is ``4·model_channels`` wide.
        out_channels: [4].
        num_res_blocks: [3].
        attention_resolutions: downsampling rates with attention [8, 4, 2]: levels 1–3, not level 0.
        dropout: in every ResBlock [0].
        channel_mult: per-level width multipliers [1, 2, 3, 4].
        num_classes: ``None``, or the size of ``label_emb`` (pred / interp: 251 noise levels ``s``).
        use_checkpoint: gradient checkpointing of the ResBlocks while training (no effect on results) [True].
        num_heads / num_head_channels: heads per attention block [4 / -1]; with ``num_head_channels`` set, the
            heads are ``width / num_head_channels`` instead.
        num_heads_upsample: -1 only (the official code ignores it).
        use_scale_shift_norm: FiLM conditioning in the ResBlocks [True].
        legacy: accepted either way; it changes nothing for this attention block [False].
        kernel_size_t / padding_t: the conv kernel and padding in time [1 / 0: spatial-only convs].
        use_temporal_transformer: False only (the T2V model's transformer is not built here).
        temporal_length: relative-position range ``L`` [4; interp 5]: tables of ``2L + 1`` rows.
        use_relative_position: [True].
        conv_resample, dims, use_fp16, resblock_updown, transformer_depth, context_dim, nonlinearity_type,
        ST_transformer_module, ST_transformer_class: accepted at their official defaults only (refused otherwise).
    """

    def __init__(self, image_size: int, in_channels: int, model_channels: int, out_channels: int,
                 num_res_blocks: int, attention_resolutions: Sequence[int], dropout: float = 0.0,
                 channel_mult: Sequence[int] = (1, 2, 4, 8), conv_resample: bool = True, dims: int = 3,
                 num_classes: Optional[int] = None, use_checkpoint: bool = False, use_fp16: bool = False,
                 num_heads: int = -1, num_head_channels: int = -1, num_heads_upsample: int = -1,
                 use_scale_shift_norm: bool = False, resblock_updown: bool = False, transformer_depth: int = 1,
                 context_dim=None, legacy: bool = True, kernel_size_t: int = 1, padding_t: int = 1,
                 use_temporal_transformer: bool = False, temporal_length: Optional[int] = None,
                 use_relative_position: bool = False, nonlinearity_type: str = "silu",
                 ST_transformer_module: str = "attention_temporal",
                 ST_transformer_class: str = "SpatialTemporalTransformer"):
        super().__init__()
        if use_temporal_transformer:
            _refuse("use_temporal_transformer", use_temporal_transformer, "False",
                    "the T2V model's SpatialTemporalTransformer is a different network, not built here")
        if context_dim is not None:
            _refuse("context_dim", context_dim, "None", "cross-attention needs use_temporal_transformer")
        refuse_unbuilt(_refuse, (("conv_resample", conv_resample, True), ("dims", dims, 3),
                                 ("use_fp16", use_fp16, False), ("resblock_updown", resblock_updown, False),
                                 ("transformer_depth", transformer_depth, 1),
                                 ("num_heads_upsample", num_heads_upsample, -1),
                                 ("nonlinearity_type", nonlinearity_type, "silu"),
                                 ("ST_transformer_module", ST_transformer_module, "attention_temporal"),
                                 ("ST_transformer_class", ST_transformer_class, "SpatialTemporalTransformer")))
        if num_heads == -1 and num_head_channels == -1:
            raise ValueError("LVDMUNet: set num_heads or num_head_channels (both are -1)")
        if use_relative_position and (not isinstance(temporal_length, int) or temporal_length < 1):
            raise ValueError(f"LVDMUNet: use_relative_position needs temporal_length >= 1, got {temporal_length!r}")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"LVDMUNet: num_classes must be None or a positive int, got {num_classes!r}")

        self.image_size = image_size
        ted = self._record_layout(in_channels, model_channels, out_channels, num_res_blocks, attention_resolutions,
                                  channel_mult, temporal_length)
        self.num_classes = num_classes
        self.use_relative_position = use_relative_position
        res = resblock_maker(ted, dropout, use_scale_shift_norm=use_scale_shift_norm, use_checkpoint=use_checkpoint,
                             kernel_size_t=kernel_size_t, padding_t=padding_t)

        def attn(ch):
            heads = num_heads if num_head_channels == -1 else ch // num_head_channels
            return [STAttentionBlock(ch, heads, temporal_length, use_relative_position)]

        self.time_embed = time_embed_mlp(model_channels, ted)
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, ted)

        self._build_lvdm_skeleton(res, attn, kernel_size_t, padding_t)

    # ---------------------------------------------------------------- attention backend

    _attention_layers = STAttentionBlock

    def set_attention(self, backend: str) -> "LVDMUNet":
        """Choose the attention kernel: ``"sdpa"`` (default; ``F.scaled_dot_product_attention``) or ``"xformers"``
        (``xformers.ops.memory_efficient_attention`` for the spatial attention; the temporal attention with relative
        positions stays on SDPA, which returns the probabilities its value term needs). xformers must be importable
        (checked here) and the input on CUDA (checked at the call). Returns ``self``."""
        return self._set_attention(backend, "LVDMUNet")

    # ---------------------------------------------------------------- forward

    def _check_inputs(self, x: torch.Tensor, timesteps: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        timesteps = check_video_input("LVDMUNet", x, timesteps, self.in_channels, len(self.channel_mult) - 1)
        b = x.shape[0]
        if y is not None:
            if self.num_classes is None:
                raise ValueError("LVDMUNet: y (the class label / noise level s) was given, but this model has no "
                                 "label_emb (num_classes=None); expected y=None")
            if not isinstance(y, torch.Tensor) or y.shape != (b,) or y.dtype.is_floating_point or y.is_complex():
                raise ValueError(f"LVDMUNet: y must be an integer tensor of shape ({b},), got "
                                 f"{(y.dtype, tuple(y.shape)) if isinstance(y, torch.Tensor) else type(y).__name__}")
            if len(y) and not y.is_meta and (int(y.min()) < -1 or int(y.max()) >= self.num_classes):
                raise ValueError(f"LVDMUNet: y values must lie in [0, {self.num_classes - 1}] (or -1: no label), got "
                                 f"min {int(y.min())}, max {int(y.max())}")
        return timesteps

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """ε prediction.

        Args:
            x: ``(B, in_channels, T, h, w)``; for pred / interp the noisy latent with the conditioning latents pasted
                into their slots, then the mask channel (1 = given slot), constant over space.
            timesteps: ``(B,)`` diffusion timesteps (a 0-d tensor is broadcast).
            y: ``None`` or ``(B,)`` int labels in ``[0, num_classes)``: the conditioning noise level ``s``; adds
                ``label_emb(y)`` to the timestep embedding (same for every frame). An entry −1 adds nothing to its
                sample, as ``y=None`` would (the unconditional branch of guidance, batched with labelled samples).
        Returns:
            ``(B, out_channels, T, h, w)`` in ``x.dtype``.
        """
        timesteps = self._check_inputs(x, timesteps, y)
        dtype = self.time_embed[0].weight.dtype
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(dtype))
        if y is not None:
            y = y.to(x.device).long()
            given = (y >= 0).to(emb.dtype).unsqueeze(1)
            emb = emb + self.label_emb(y.clamp(min=0)) * given
        return self.out(self._run_blocks(x.to(dtype), emb)).to(x.dtype)


class LVDMFrameInterpPredUNet(LVDMUNet):
    """The pred / interp network (official ``FrameInterpPredUNet`` as the released configs build it): the same UNet
    with ``in_channels = 5`` and ``num_classes = 251``. ``cond_aug_mode`` is accepted as ``None`` or
    ``'learned_embed'`` (both a no-op in the official code); ``'time_embed'`` (a per-frame mixed t/s embedding that no
    released config enables) is refused. :meth:`forward` is :meth:`LVDMUNet.forward` with ``y`` = ``s``.
    """

    def __init__(self, image_size: int, in_channels: int, *args, cond_aug_mode: Optional[str] = None, **kwargs):
        if cond_aug_mode not in (None, "learned_embed"):
            _refuse("cond_aug_mode", cond_aug_mode, "None or 'learned_embed'",
                    "the per-frame 'time_embed' mode is unused by the released configs and not built here"
                    if cond_aug_mode == "time_embed" else "unknown mode")
        super().__init__(image_size, in_channels, *args, **kwargs)
        self.cond_aug_mode = cond_aug_mode


def build_unet(config: dict) -> LVDMUNet:
    """Build the class a shipped config names (``_class_name``: ``LVDMUNet`` or ``LVDMFrameInterpPredUNet``)."""
    classes = {"LVDMUNet": LVDMUNet, "LVDMFrameInterpPredUNet": LVDMFrameInterpPredUNet}
    name = config.get("_class_name", "LVDMUNet")
    if name not in classes:
        raise ValueError(f"build_unet: _class_name {name!r} is not one of {sorted(classes)}")
    return classes[name].from_config(config)
