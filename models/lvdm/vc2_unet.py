"""VideoCrafter2's text-to-video UNet (AILab-CVC/VideoCrafter ``lvdm/modules/networks/openaimodel3d.py::UNetModel``
with ``lvdm/modules/attention.py``, config ``configs/inference_t2v_512_v2.0.yaml``), as the official code computes it.

An SD-2-style 2-D UNet run on every frame (frames folded into the batch, ``(B·T, C, h, w)``) with three temporal
pieces added:

- every ResBlock ends with a temporal conv block (attribute ``temopral_conv``, sic): four ``GroupNorm → SiLU →
  (Dropout) → Conv3d (3, 1, 1)`` stages over ``(B, C, T, h, w)``, zero-initialised last conv, plus the input;
- every spatial transformer (self-attention over the ``h·w`` tokens of a frame, cross-attention to the text context,
  GEGLU feed-forward; Linear ``proj_in`` / ``proj_out`` with ``use_linear``) is followed by a temporal transformer
  over the ``T`` frames of each pixel whose ``attn2`` is a second self-attention (``temporal_selfatt_only``);
- ``init_attn``: one more temporal transformer right after the input conv, with 8 heads hard-coded (``n_heads=8``,
  ``d_head = num_head_channels``: inner width 512 for the released model), ``Conv1d`` ``proj_in`` / ``proj_out``
  (it is built without ``use_linear``) and ``transformer_depth`` blocks;

and the frame rate as a second sinusoidal embedding: ``emb = time_embed(sin(t)) + fps_embedding(sin(fps))``.

Two GroupNorm epsilons, as the official code has them: ``1e-5`` in the ResBlocks, the output head and the temporal
conv blocks (``normalization()`` / ``nn.GroupNorm`` defaults), ``1e-6`` in the spatial and temporal transformers (and
so in ``init_attn``). GroupNorm statistics are per frame in the ResBlocks, the spatial transformers and the output
head (they see ``(B·T, C, h, w)``), and over all frames in the temporal conv blocks and temporal transformers (they
see ``(B, C, T, h, w)``). LayerNorms use ``1e-5``.

Frames: the official network takes any ``T``. ``temporal_length`` (16) is used only by the relative-position and
causal-mask options, which the released config switches off (both are refused here), so it is recorded and not used;
the official inference scripts take their default frame count from it.

State-dict keys and shapes equal the released ``model.ckpt``'s UNet keys with the ``model.diffusion_model.`` prefix
removed (1484 tensors, 1 413 284 420 parameters). The shipped config is ``models/configs/lvdm/vc2_unet.json``;
:meth:`VC2UNet.from_config` builds from it.

Differences from the official code, on purpose (none changes a result beyond float rounding): the network runs in its
parameters' dtype and returns ``x.dtype`` (the official code casts the input to float32 and its ResBlock GroupNorms
to float32); every GroupNorm computes in float32 for half-precision inputs; attention goes through SDPA (or xformers)
instead of einsum + softmax; the cross-attention does not repeat the context for every frame: the queries of a
sample's ``T`` frames attend to its one context together (each query attends on its own, so this is the same
attention); the kernel-1 ``Conv1d`` / ``Conv2d`` projections run as the equal matrix products; ``fps`` has no default
(the official ``forward`` falls back to 16 when it is not passed, while its text-to-video scripts pass 28), so a
forgotten fps is an error, not a silent 16; the adapter hook (``features_adapter``) is not taken. Options the released
config does not use and that are not built here (relative positions, causal temporal attention, temporal
cross-attention, image cross-attention, spatially aware temporal convs, resblock up/down, 3-D convs, the fp16 flag,
feature adapters) are refused with a ``ValueError``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..cameractrl import _FeedForward
from .unet3d import (ADMUNetBase, AttentionProjections, GroupNorm32, ResBlock, _check_xformers_device, _xformers_ops,
                     _zero, build_adm_blocks, check_video_shape, maybe_checkpoint, refuse_unbuilt, time_embed_mlp,
                     timestep_embedding)

INIT_ATTN_HEADS = 8        # hard-coded in the official UNetModel for init_attn


# ---------------------------------------------------------------------------------------------------- attention

def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, backend: str = "sdpa") -> torch.Tensor:
    """Multi-head softmax attention, scale ``d^(-1/2)``, heads split as the official ``'b n (h d) -> (b h) n d'``.

    Args:
        q: ``(N, Lq, H·d)``; k, v: ``(N, Lk, H·d)``.
        heads: ``H``.
        backend: ``"sdpa"`` or ``"xformers"`` (CUDA only).
    Returns:
        ``(N, Lq, H·d)``.
    """
    n, lq, width = q.shape
    d = width // heads
    if backend == "xformers":
        _check_xformers_device(q.device)
        xops = _xformers_ops()
        out = xops.memory_efficient_attention(*(a.reshape(n, a.shape[1], heads, d) for a in (q, k, v)))
    else:
        out = F.scaled_dot_product_attention(*(a.reshape(n, a.shape[1], heads, d).transpose(1, 2) for a in (q, k, v)))
        out = out.transpose(1, 2)
    return out.reshape(n, lq, width)


def _token_proj(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A Linear, or a kernel-1 Conv1d / Conv2d, applied to the last (channel) axis of token-major ``x (..., C)``."""
    return F.linear(x, layer.weight.reshape(layer.weight.shape[0], -1), layer.bias)


class CrossAttention(AttentionProjections):
    """The official ``CrossAttention`` without relative positions (keys ``to_q``, ``to_k``, ``to_v`` without bias,
    ``to_out.0``).

    ``forward(x (N, L, dim), context=None)``: self-attention when ``context`` is None, else attention to ``context
    (n, Lc, context_dim)``, where ``N = n·F``: the ``F`` consecutive rows ``i·F … i·F + F − 1`` of ``x`` (the frames of
    sample ``i``) all attend to ``context[i]``. Returns ``(N, L, dim)``.
    """

    def __init__(self, query_dim: int, context_dim: Optional[int] = None, heads: int = 8, dim_head: int = 64,
                 dropout: float = 0.0):
        super().__init__(query_dim, heads, dim_head, context_dim, dropout)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        q = self.to_q(x)
        if context is None:
            out = attention(q, self.to_k(x), self.to_v(x), self.heads, self.attention_backend)
        else:
            # the official code repeats the context for every frame; attending once with all frames' queries is equal
            n_ctx = context.shape[0]
            out = attention(q.reshape(n_ctx, -1, q.shape[-1]), self.to_k(context), self.to_v(context), self.heads,
                            self.attention_backend).reshape(q.shape)
        return self.to_out(out)


class BasicTransformerBlock(nn.Module):
    """``x += attn1(LN1 x); x += attn2(LN2 x, context); x += FF(LN3 x)`` (official ``BasicTransformerBlock``, GEGLU
    feed-forward of width ``4·dim``). ``attn2`` is a second self-attention when ``context_dim`` is None.
    ``(N, L, dim) -> (N, L, dim)``."""

    def __init__(self, dim: int, n_heads: int, d_head: int, context_dim: Optional[int] = None,
                 use_checkpoint: bool = False):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.attn1 = CrossAttention(dim, None, n_heads, d_head)
        self.ff = _FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, n_heads, d_head)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        return maybe_checkpoint(self, self._forward, x, context)

    def _forward(self, x: torch.Tensor, context: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class _Transformer(nn.Module):
    """The parameters of :class:`SpatialTransformer` and :class:`TemporalTransformer`: ``norm`` (GroupNorm(32), eps
    1e-6), ``proj_in``, ``transformer_blocks`` (``depth`` × :class:`BasicTransformerBlock`, ``attn2`` to
    ``context_dim`` wide tokens or self), zero-initialised ``proj_out``; the projections Linear with ``use_linear``,
    else kernel-1 ``conv`` (Conv2d / Conv1d)."""

    def __init__(self, in_channels: int, n_heads: int, d_head: int, depth: int, context_dim: Optional[int],
                 use_linear: bool, conv: type, use_checkpoint: bool):
        super().__init__()
        inner = n_heads * d_head
        self.norm = GroupNorm32(32, in_channels, eps=1e-6)
        self.proj_in = nn.Linear(in_channels, inner) if use_linear else conv(in_channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, n_heads, d_head, context_dim, use_checkpoint) for _ in range(depth)])
        self.proj_out = _zero(nn.Linear(inner, in_channels) if use_linear else conv(inner, in_channels, 1))


class SpatialTransformer(_Transformer):
    """Per-frame transformer (official ``SpatialTransformer``): GroupNorm(32, eps 1e-6) → ``proj_in`` → ``depth``
    blocks over the ``h·w`` tokens (cross-attention to the context) → zero-initialised ``proj_out``, residual.
    ``proj_in`` / ``proj_out`` are Linear with ``use_linear``, else Conv2d 1×1.

    ``x (B·T, C, h, w), context (B, L, context_dim) -> (B·T, C, h, w)``.
    """

    def __init__(self, in_channels: int, n_heads: int, d_head: int, depth: int, context_dim: int,
                 use_linear: bool, use_checkpoint: bool = False):
        super().__init__(in_channels, n_heads, d_head, depth, context_dim, use_linear, nn.Conv2d, use_checkpoint)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        tokens = _token_proj(self.proj_in, self.norm(x).flatten(2).transpose(1, 2))        # (B·T, h·w, inner)
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        return x + _token_proj(self.proj_out, tokens).transpose(1, 2).reshape(n, c, h, w)


class TemporalTransformer(_Transformer):
    """Per-pixel transformer over the frames (official ``TemporalTransformer`` with ``only_self_att``, no relative
    positions, no causal mask): GroupNorm(32, eps 1e-6) over ``(B, C, T, h, w)`` → ``proj_in`` → ``depth`` blocks over
    the ``T`` tokens of each pixel (``attn2`` a second self-attention) → zero-initialised ``proj_out``, residual.
    ``proj_in`` / ``proj_out`` are Linear with ``use_linear``, else Conv1d kernel 1 (``init_attn``).

    ``x (B·T, C, h, w), frames T -> (B·T, C, h, w)``.
    """

    def __init__(self, in_channels: int, n_heads: int, d_head: int, depth: int, use_linear: bool,
                 use_checkpoint: bool = False):
        super().__init__(in_channels, n_heads, d_head, depth, None, use_linear, nn.Conv1d, use_checkpoint)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        n, c, h, w = x.shape
        b = n // frames
        x5 = x.reshape(b, frames, c, h, w).transpose(1, 2)                                   # (B, C, T, h, w)
        tokens = self.norm(x5).permute(0, 3, 4, 2, 1).reshape(b * h * w, frames, c)        # (B·h·w, T, C)
        tokens = _token_proj(self.proj_in, tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens)
        out = _token_proj(self.proj_out, tokens).reshape(b, h, w, frames, c).permute(0, 3, 4, 1, 2)   # (B, T, C, h, w)
        return x + out.reshape(n, c, h, w)


class TemporalConvBlock(nn.Module):
    """The official ``TemporalConvBlock`` (ModelScope's), ``spatial_aware=False``: ``conv1 … conv4``, each
    ``GroupNorm(32, eps 1e-5) → SiLU → [Dropout(0.1)] → Conv3d kernel (3, 1, 1), padding (1, 0, 0)`` (zero padding in
    time, so the first and last frames see zeros), the last conv zero-initialised, plus the input.

    ``(B, C, T, h, w) -> (B, C, T, h, w)``.
    """

    def __init__(self, channels: int, dropout: float = 0.1):
        super().__init__()

        def stage(drop: bool) -> nn.Sequential:
            layers = [GroupNorm32(32, channels), nn.SiLU()] + ([nn.Dropout(dropout)] if drop else [])
            return nn.Sequential(*layers, nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0)))

        self.conv1 = stage(False)
        self.conv2 = stage(True)
        self.conv3 = stage(True)
        self.conv4 = stage(True)
        _zero(self.conv4[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class VC2ResBlock(ResBlock):
    """The 2-D ADM ResBlock (:class:`~.unet3d.ResBlock` with ``dims=2``) followed by a :class:`TemporalConvBlock`
    (``temopral_conv``) when ``temporal_conv``. ``x (B·T, C, h, w), emb (B·T, E), frames T -> (B·T, C_out, h, w)``."""

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: Optional[int] = None,
                 use_scale_shift_norm: bool = False, use_checkpoint: bool = False, temporal_conv: bool = True):
        super().__init__(channels, emb_channels, dropout, out_channels, use_scale_shift_norm, use_checkpoint,
                         dims=2)
        if temporal_conv:
            self.temopral_conv = TemporalConvBlock(self.out_channels)     # sic: the released checkpoint's name

    def _forward(self, x: torch.Tensor, emb: torch.Tensor, frames: int) -> torch.Tensor:
        h = super()._forward(x, emb)
        if hasattr(self, "temopral_conv"):
            n, c, hh, ww = h.shape
            h5 = h.reshape(n // frames, frames, c, hh, ww).transpose(1, 2)
            h = self.temopral_conv(h5).transpose(1, 2).reshape(n, c, hh, ww)
        return h


class VC2Sequential(nn.Sequential):
    """``nn.Sequential`` that hands each child what it takes: ResBlocks ``(x, emb, frames)``, spatial transformers
    ``(x, context)``, temporal transformers ``(x, frames)``, anything else ``(x)``."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, VC2ResBlock):
                x = layer(x, emb, frames)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            elif isinstance(layer, TemporalTransformer):
                x = layer(x, frames)
            else:
                x = layer(x)
        return x


# ---------------------------------------------------------------------------------------------------- the UNet

def _refuse(name: str, value, expected, why: str = "the released VideoCrafter2 config does not use it and it is not "
                                                   "built here"):
    raise ValueError(f"VC2UNet: {name}={value!r} is not supported ({why}); expected {expected}")


class VC2UNet(ADMUNetBase):
    """VideoCrafter2's UNet (official ``UNetModel``), built from the config's ``unet_config.params`` names.

    Layout: ``time_embed`` (+ ``fps_embedding``); ``input_blocks`` (conv in; per level ``num_res_blocks`` ×
    [ResBlock (+ SpatialTransformer, TemporalTransformer where the downsampling rate ``ds`` is in
    ``attention_resolutions``)], a stride-2 conv between levels); ``init_attn`` after the conv in; ``middle_block``
    (ResBlock, SpatialTransformer, TemporalTransformer, ResBlock); ``output_blocks`` (per level ``num_res_blocks + 1``
    × [ResBlock on the skip concat (+ transformers)], an Upsample closing each level but the last); ``out``
    (GroupNorm, SiLU, zero 3×3 conv).

    Args (the official names; the released config in brackets):
        in_channels / out_channels: [4 / 4].
        model_channels: base width [320]; the embeddings are ``4·model_channels`` wide.
        num_res_blocks: [2].
        attention_resolutions: downsampling rates with transformers [4, 2, 1]: levels 0–2, not level 3.
        channel_mult: per-level width multipliers [1, 2, 4, 4].
        num_head_channels / num_heads: head width [64]: ``width / 64`` heads per transformer; with
            ``num_head_channels = -1`` the heads are ``num_heads`` of width ``width / num_heads`` instead.
        transformer_depth: blocks per spatial transformer and in ``init_attn`` [1].
        temporal_transformer_depth: blocks per temporal transformer [1, the default].
        context_dim: text-token width [1024, OpenCLIP ViT-H].
        use_linear: Linear ``proj_in`` / ``proj_out`` in the spatial and temporal transformers [True].
        use_checkpoint: gradient checkpointing while training (no effect on results) [True].
        dropout: in every ResBlock [0.0]; the temporal conv blocks have their own 0.1 (official, hard-coded).
        temporal_conv: temporal conv block in every ResBlock but the resampling ones [True].
        temporal_attention: the temporal transformers [True].
        addition_attention: ``init_attn`` [True]; needs ``num_head_channels`` (its head width).
        fps_cond: the fps embedding [True].
        use_scale_shift_norm: FiLM conditioning in the ResBlocks [False].
        temporal_length: [16]; recorded, not used (only relative positions and causal masks use it).
        temporal_selfatt_only (True), use_relative_position (False), use_causal_attention (False), tempspatial_aware
            (False), use_image_attention (False), resblock_updown (False), conv_resample (True), dims (2), use_fp16
            (False): accepted at the released values only.
    """

    def __init__(self, in_channels: int, model_channels: int, out_channels: int, num_res_blocks: int,
                 attention_resolutions: Sequence[int], dropout: float = 0.0, channel_mult: Sequence[int] = (1, 2, 4, 8),
                 conv_resample: bool = True, dims: int = 2, context_dim: Optional[int] = None,
                 use_scale_shift_norm: bool = False, resblock_updown: bool = False, num_heads: int = -1,
                 num_head_channels: int = -1, transformer_depth: int = 1, use_linear: bool = False,
                 use_checkpoint: bool = False, temporal_conv: bool = False, tempspatial_aware: bool = False,
                 temporal_attention: bool = True, temporal_selfatt_only: bool = True,
                 use_relative_position: bool = True, use_causal_attention: bool = False,
                 temporal_length: Optional[int] = None, use_fp16: bool = False, addition_attention: bool = False,
                 use_image_attention: bool = False, temporal_transformer_depth: int = 1, fps_cond: bool = False):
        super().__init__()
        refuse_unbuilt(_refuse, (("conv_resample", conv_resample, True), ("dims", dims, 2),
                                 ("resblock_updown", resblock_updown, False),
                                 ("tempspatial_aware", tempspatial_aware, False),
                                 ("temporal_selfatt_only", temporal_selfatt_only, True),
                                 ("use_relative_position", use_relative_position, False),
                                 ("use_causal_attention", use_causal_attention, False),
                                 ("use_fp16", use_fp16, False),
                                 ("use_image_attention", use_image_attention, False)))
        if not isinstance(context_dim, int) or context_dim < 1:
            _refuse("context_dim", context_dim, "a positive int (the text-token width, 1024)",
                    "the network is text-conditioned; the context-free variant is not built here")
        if num_heads == -1 and num_head_channels == -1:
            raise ValueError("VC2UNet: set num_heads or num_head_channels (both are -1)")
        if addition_attention and num_head_channels < 1:
            raise ValueError(f"VC2UNet: addition_attention needs num_head_channels >= 1 (init_attn's head width; "
                             f"the official code passes it as d_head), got {num_head_channels}")
        if min(model_channels, *(m * model_channels for m in channel_mult)) % 32:
            raise ValueError(f"VC2UNet: every width must be divisible by 32 (GroupNorm(32)), got model_channels="
                             f"{model_channels}, channel_mult={list(channel_mult)}")

        ted = self._record_layout(in_channels, model_channels, out_channels, num_res_blocks, attention_resolutions,
                                  channel_mult, temporal_length)
        self.context_dim = context_dim
        self.fps_cond = fps_cond
        self.addition_attention = addition_attention

        def res(c_in, c_out=None):
            return VC2ResBlock(c_in, ted, dropout, c_out, use_scale_shift_norm, use_checkpoint, temporal_conv)

        def heads_of(ch):
            if num_head_channels == -1:
                if ch % num_heads:
                    raise ValueError(f"VC2UNet: width {ch} is not divisible by num_heads {num_heads}")
                return num_heads, ch // num_heads
            if ch % num_head_channels:
                raise ValueError(f"VC2UNet: width {ch} is not divisible by num_head_channels {num_head_channels}")
            return ch // num_head_channels, num_head_channels

        def transformers(ch):
            heads, d_head = heads_of(ch)
            layers = [SpatialTransformer(ch, heads, d_head, transformer_depth, context_dim, use_linear,
                                         use_checkpoint)]
            if temporal_attention:
                layers.append(TemporalTransformer(ch, heads, d_head, temporal_transformer_depth, use_linear,
                                                  use_checkpoint))
            return layers

        self.time_embed = time_embed_mlp(model_channels, ted)
        if fps_cond:
            self.fps_embedding = time_embed_mlp(model_channels, ted)
        self.input_blocks = nn.ModuleList([VC2Sequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        if addition_attention:
            # official: n_heads=8 hard-coded, d_head=num_head_channels, depth=transformer_depth, no use_linear
            self.init_attn = VC2Sequential(TemporalTransformer(model_channels, INIT_ATTN_HEADS, num_head_channels,
                                                               transformer_depth, False, use_checkpoint))
        self.middle_block, self.output_blocks, ch = build_adm_blocks(
            self.input_blocks, VC2Sequential, model_channels, channel_mult, num_res_blocks,
            self.attention_resolutions, res, transformers, 1, 0, dims=2)
        self.out = nn.Sequential(GroupNorm32(32, ch), nn.SiLU(),
                                 _zero(nn.Conv2d(model_channels, out_channels, 3, padding=1)))
        self._backend = "sdpa"

    # ---------------------------------------------------------------- attention backend

    _attention_layers = CrossAttention

    def set_attention(self, backend: str) -> "VC2UNet":
        """Choose the attention kernel of every attention layer: ``"sdpa"`` (default; ``F.scaled_dot_product_attention``)
        or ``"xformers"`` (``xformers.ops.memory_efficient_attention``, as the official code uses when xformers is
        installed). xformers must be importable (checked here) and the input on CUDA (checked at the call).
        Returns ``self``."""
        return self._set_attention(backend, "VC2UNet")

    # ---------------------------------------------------------------- forward

    def _per_sample(self, name: str, value, b: int, device: torch.device) -> torch.Tensor:
        """``value`` as a real ``(B,)`` tensor (a number or 0-d tensor is broadcast), else a ValueError."""
        value = torch.as_tensor(value, device=device)
        if value.dtype == torch.bool or value.is_complex():
            raise ValueError(f"VC2UNet: {name} must be real numbers, got dtype {value.dtype}")
        if value.dim() == 0:
            value = value.expand(b)
        if value.shape != (b,):
            raise ValueError(f"VC2UNet: {name} must have shape ({b},) (one per sample) or be a scalar, got "
                             f"{tuple(value.shape)}")
        return value

    def _check_inputs(self, x, timesteps, context, fps):
        check_video_shape("VC2UNet", x, self.in_channels, len(self.channel_mult) - 1, mask_channel=False)
        b = x.shape[0]
        timesteps = self._per_sample("timesteps", timesteps, b, x.device)
        if not isinstance(context, torch.Tensor) or context.dim() != 3 or context.shape[0] != b \
                or context.shape[2] != self.context_dim or context.shape[1] < 1:
            got = tuple(context.shape) if isinstance(context, torch.Tensor) else type(context).__name__
            raise ValueError(f"VC2UNet: context must be a tensor of shape ({b}, L, {self.context_dim}) (text tokens, "
                             f"one sequence per sample), got {got}")
        if self.fps_cond:
            if fps is None:
                raise ValueError("VC2UNet: fps is required (the model has an fps embedding; the official UNet's "
                                 "default is 16, VideoCrafter2's inference scripts pass 28)")
            fps = self._per_sample("fps", fps, b, x.device)
        elif fps is not None:
            raise ValueError("VC2UNet: fps was given, but this model has no fps embedding (fps_cond=False); "
                             "expected fps=None")
        return timesteps, fps

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                fps: Optional[torch.Tensor] = None) -> torch.Tensor:
        """ε prediction.

        Args:
            x: ``(B, in_channels, T, h, w)`` noisy latents; any ``T`` ≥ 1; ``h``, ``w`` divisible by
                ``2^(len(channel_mult) − 1)`` (8).
            timesteps: ``(B,)`` diffusion timesteps (a number or 0-d tensor is broadcast).
            context: ``(B, L, context_dim)`` text tokens (OpenCLIP penultimate layer, ``L = 77``), the same for every
                frame.
            fps: ``(B,)`` frame rates (a number or 0-d tensor is broadcast); required with ``fps_cond``, else None.
        Returns:
            ``(B, out_channels, T, h, w)`` in ``x.dtype``.
        """
        timesteps, fps = self._check_inputs(x, timesteps, context, fps)
        b, c, t, hh, ww = x.shape
        dtype = self.time_embed[0].weight.dtype
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(dtype))
        if self.fps_cond:
            emb = emb + self.fps_embedding(timestep_embedding(fps, self.model_channels).to(dtype))
        emb = emb.repeat_interleave(t, dim=0)                                                 # (B·T, E)
        context = context.to(dtype)
        h = x.to(dtype).transpose(1, 2).reshape(b * t, c, hh, ww)                             # (B·T, C, h, w)
        h = self._run_blocks(h, emb, context, t, after_first=self.init_attn if self.addition_attention else None)
        y = self.out(h)
        return y.reshape(b, t, self.out_channels, hh, ww).transpose(1, 2).to(x.dtype)
