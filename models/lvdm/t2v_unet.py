"""LVDM's text-to-video UNet (arXiv 2211.13221; YingqingHe/LVDM ``configs/lvdm_short/text2video.yaml``, checkpoint
``lvdm_short/t2v.ckpt``; ``lvdm/models/modules/openaimodel3d.py::UNetModel`` with ``use_temporal_transformer=True``,
``attention_temporal.py::{SpatialTemporalTransformer, BasicTransformerBlockST, CrossAttention,
TemporalCrossAttention}``), as the official code computes it.

The network is SD-1.x shaped (widths 320 / 640 / 1280 / 1280, 2 ResBlocks per level, attention at downsampling rates
1, 2, 4, 8 heads, 768-wide CLIP-L text context) on the ADM skeleton of :mod:`.unet3d`, with:

- every convolution spatial (``(1, 3, 3)`` kernels), down/upsampling spatial only, ResBlocks with the timestep
  embedding added as a bias (``use_scale_shift_norm`` off in the released config);
- at each attention site a :class:`SpatialTemporalTransformer`: GroupNorm (eps 1e-6) and 1×1×1 Conv3d ``proj_in``, then
  :class:`BasicTransformerBlockST` blocks, then a zero-initialised 1×1×1 Conv3d ``proj_out``, residual. Each block, in
  the official order (pre-LayerNorm, residual)::

      spatial self-attention   attn1      (norm1)  over the h·w tokens of each frame
      temporal self-attention  attn1_tmp  (norm4)  over the T frames of each pixel, relative positions
      spatial cross-attention  attn2      (norm2)  frame tokens -> text context (B, L, context_dim)
      temporal self-attention  attn2_tmp  (norm5)  (named "cross" in the code; its context is always None)
      feed-forward             ff         (norm3)  GEGLU, 4× inner width

The temporal attention is the official ``TemporalCrossAttention`` (per head, width ``c``, frames ``t, s``;
``K[d] = k-table row d + L``, ``V[d] = v-table row d + L``, ``L = temporal_length``, ``clip(d) = min(max(d, -L), L)``)::

    logits[t, s] = c^(-1/2) (q_t·k_s + q_t·K[clip(s - t)])        # NOT transposed, unlike LVDM's QKVAttention
    out[t] = Σ_s p[t, s] (v_s + V[clip(s - t)]),   p = softmax_s(logits)

with tables of ``2L + 1`` rows (33 for ``L = 16``). Distances are clipped, so any number of frames runs (the model
was trained on 16). The official code never passes an attention mask to it (``BasicTransformerBlockST.forward`` drops
its kwargs), so there is none here.

State-dict keys and shapes equal the released checkpoint's ``model.diffusion_model.*`` keys with the prefix removed
(``input_blocks.1.1.transformer_blocks.0.attn1_tmp.relative_position_k.embeddings_table`` ``(33, 40)``, ...). The
shipped config is ``models/configs/lvdm/t2v_unet.json``; :meth:`T2VUNet.from_config` builds from it.

Differences from the official code, on purpose (none changes a float32 result beyond rounding): the network runs in
its parameters' dtype and returns ``x.dtype`` (the official code casts to float32 inside); all GroupNorms compute in
float32 for half-precision inputs (the official transformer GroupNorm does not cast); the text context's keys and
values are computed once per clip and repeated over frames (the official code repeats the context first);
the transformer blocks are gradient-checkpointed only with ``use_checkpoint`` (the official code always checkpoints
them); options the released config never uses are refused with a ``ValueError``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .unet3d import (ADMUNetBase, AttentionProjections, GroupNorm32, RelativePosition, _zero, attention,
                     check_video_input, maybe_checkpoint, refuse_unbuilt, relative_attention, resblock_maker,
                     time_embed_mlp, timestep_embedding)


# ---------------------------------------------------------------------------------------------------- attention

class CrossAttention(AttentionProjections):
    """Multi-head attention with SD's names (official ``CrossAttention`` / ``MemoryEfficientCrossAttention``, which
    compute the same): ``to_q, to_k, to_v`` (Linear, no bias), ``to_out.0`` (Linear), scale ``d_head^(-1/2)``.

    ``x (N, L_q, dim)``, ``context (N_c, L_k, context_dim)`` or ``None`` (self-attention) ``-> (N, L_q, dim)``. With a
    context, ``N`` must be ``repeat · N_c`` (query rows ``i·repeat … (i+1)·repeat - 1`` attend to context ``i``: the
    frames of clip ``i``); keys and values are computed once per context and repeated. Parameters as
    :class:`.unet3d.AttentionProjections` (same constructor).
    """

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        n, length, _ = x.shape
        src = x if context is None else context
        heads = (n, length, self.heads, self.dim_head)
        q = self.to_q(x).view(heads)
        k, v = (f(src).view(src.shape[0], src.shape[1], self.heads, self.dim_head) for f in (self.to_k, self.to_v))
        if context is not None and context.shape[0] != n:
            k, v = (a.repeat_interleave(n // context.shape[0], dim=0) for a in (k, v))
        out = attention(q, k, v, self.attention_backend)
        return self.to_out(out.reshape(n, length, -1))


class TemporalCrossAttention(AttentionProjections):
    """The official ``TemporalCrossAttention`` as the T2V model uses it: self-attention over frames with learned
    relative positions for keys and values (formula in the module docstring), scale ``d_head^(-1/2)`` on both logit
    terms, no mask. Keys: ``to_q, to_k, to_v, to_out.0``, ``relative_position_{k,v}.embeddings_table``
    ``(2·temporal_length + 1, d_head)``; the projections are zero-initialised as in the official code.

    ``x (N, T, dim) -> (N, T, dim)``. Always SDPA (the value term needs the attention probabilities).
    """

    def __init__(self, query_dim: int, heads: int, dim_head: int, temporal_length: int, dropout: float = 0.0):
        super().__init__(query_dim, heads, dim_head, dropout=dropout)
        for layer in (self.to_q, self.to_k, self.to_v, self.to_out[0]):
            _zero(layer)
        self.relative_position_k = RelativePosition(dim_head, temporal_length)
        self.relative_position_v = RelativePosition(dim_head, temporal_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        # (N, T, H·c) -> (N, H, T, c)
        q, k, v = (f(x).view(n, t, self.heads, self.dim_head).transpose(1, 2) for f in (self.to_q, self.to_k,
                                                                                       self.to_v))
        out = relative_attention(q, k, v, self.relative_position_k(t, t), self.relative_position_v(t, t),
                                 rel_scale=self.dim_head ** -0.5, transposed=False)
        return self.to_out(out.transpose(1, 2).reshape(n, t, -1))


class GEGLU(nn.Module):
    """``proj (dim, 2·inner)``; ``x, gate = proj(x).chunk(2)``; ``x · gelu(gate)`` (exact GELU). ``(…, dim) -> (…,
    inner)``."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """SD's gated feed-forward: ``net = [GEGLU(dim, 4·dim), Dropout, Linear(4·dim, dim)]``. ``(…, dim) -> (…, dim)``."""

    def __init__(self, dim: int, dropout: float = 0.0, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(dropout), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlockST(nn.Module):
    """One spatial-temporal transformer block (official ``BasicTransformerBlockST``), in the official order: spatial
    self-attention (``attn1``, ``norm1``), temporal self-attention (``attn1_tmp``, ``norm4``), spatial cross-attention to
    the text (``attn2``, ``norm2``), temporal self-attention (``attn2_tmp``, ``norm5``), feed-forward (``ff``,
    ``norm3``); each pre-LayerNorm and residual.

    ``x (B, C, T, h, w), context (B, L, context_dim) -> (B, C, T, h, w)``.
    """

    def __init__(self, dim: int, n_heads: int, d_head: int, context_dim: int, temporal_length: int,
                 dropout: float = 0.0, use_checkpoint: bool = False):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        # registration order = the official state-dict order
        self.attn1 = CrossAttention(dim, n_heads, d_head, dropout=dropout)
        self.attn2 = CrossAttention(dim, n_heads, d_head, context_dim=context_dim, dropout=dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.attn1_tmp = TemporalCrossAttention(dim, n_heads, d_head, temporal_length, dropout=dropout)
        self.attn2_tmp = TemporalCrossAttention(dim, n_heads, d_head, temporal_length, dropout=dropout)
        self.norm4 = nn.LayerNorm(dim)
        self.norm5 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return maybe_checkpoint(self, self._forward, x, context)

    def _forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        x = x.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)                        # (B·T, h·w, C)
        x = x + self.attn1(self.norm1(x))
        x = x.reshape(b, t, h * w, c).transpose(1, 2).reshape(b * h * w, t, c)     # (B·h·w, T, C)
        x = x + self.attn1_tmp(self.norm4(x))
        x = x.reshape(b, h * w, t, c).transpose(1, 2).reshape(b * t, h * w, c)     # (B·T, h·w, C)
        x = x + self.attn2(self.norm2(x), context)
        x = x.reshape(b, t, h * w, c).transpose(1, 2).reshape(b * h * w, t, c)     # (B·h·w, T, C)
        x = x + self.attn2_tmp(self.norm5(x))
        x = x + self.ff(self.norm3(x))
        return x.reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)                      # (B, C, T, h, w)


class SpatialTemporalTransformer(nn.Module):
    """Official ``SpatialTemporalTransformer``: ``norm`` (GroupNorm(32), eps 1e-6), ``proj_in`` (Conv3d 1×1×1),
    ``transformer_blocks`` (:class:`BasicTransformerBlockST` × depth), ``proj_out`` (zero-initialised Conv3d 1×1×1),
    residual. ``x (B, C, T, h, w), context (B, L, context_dim) -> (B, C, T, h, w)``."""

    takes_context = True          # EmbedSequential hands it the text context

    def __init__(self, in_channels: int, n_heads: int, d_head: int, depth: int, context_dim: int,
                 temporal_length: int, dropout: float = 0.0, use_checkpoint: bool = False):
        super().__init__()
        inner = n_heads * d_head
        self.norm = GroupNorm32(32, in_channels, eps=1e-6)
        self.proj_in = nn.Conv3d(in_channels, inner, 1)
        self.transformer_blocks = nn.ModuleList([
            BasicTransformerBlockST(inner, n_heads, d_head, context_dim, temporal_length, dropout, use_checkpoint)
            for _ in range(depth)])
        self.proj_out = _zero(nn.Conv3d(inner, in_channels, 1))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        h = self.proj_in(self.norm(x))
        for block in self.transformer_blocks:
            h = block(h, context)
        return x + self.proj_out(h)


# ---------------------------------------------------------------------------------------------------- the UNet

def _refuse(name: str, value, expected, why: str = "the released T2V config never uses it and it is not built here"):
    raise ValueError(f"T2VUNet: {name}={value!r} is not supported ({why}); expected {expected}")


class T2VUNet(ADMUNetBase):
    """LVDM's text-to-video UNet (official ``UNetModel`` with ``use_temporal_transformer=True``), built from the
    config's ``params`` names.

    Layout (ADM, as :class:`.unet3d.LVDMUNet`): ``input_blocks`` (conv in; per level ``num_res_blocks`` × [ResBlock
    (+ SpatialTemporalTransformer where the downsampling rate ``ds`` is in ``attention_resolutions``)], a Downsample
    between levels), ``middle_block`` (ResBlock, transformer, ResBlock), ``output_blocks`` (per level
    ``num_res_blocks + 1`` × [ResBlock on the skip concat (+ transformer)], an Upsample closing each level but the
    last), ``out`` (GroupNorm, SiLU, zero conv).

    Args (the official names; the released config in brackets):
        image_size: latent size the model was trained at; recorded, not used [32].
        in_channels / out_channels: [4 / 4].
        model_channels: base width [320]; the timestep embedding is ``4·model_channels`` wide.
        num_res_blocks: [2].
        attention_resolutions: downsampling rates with a transformer [4, 2, 1]: levels 0–2, not level 3.
        dropout: in every ResBlock, attention output and feed-forward [0].
        channel_mult: per-level width multipliers [1, 2, 4, 4].
        use_checkpoint: gradient checkpointing of ResBlocks and transformer blocks while training (no effect on
            results) [True].
        num_heads / num_head_channels: heads per attention [8 / -1]; with ``num_head_channels`` set, the heads are
            ``width / num_head_channels`` instead. Head width ``d_head = width / heads`` (40 at level 0).
        num_heads_upsample: -1 only (the official code ignores it).
        use_scale_shift_norm: FiLM conditioning in the ResBlocks [False: the embedding is added as a bias].
        transformer_depth: blocks per transformer [1].
        context_dim: text-embedding width [768, CLIP ViT-L/14].
        legacy: accepted either way; with the temporal transformer it changes nothing [False].
        kernel_size_t / padding_t: the conv kernel and padding in time [1 / 0: spatial-only convs].
        use_temporal_transformer: True only (the STAttentionBlock network is :class:`.unet3d.LVDMUNet`).
        temporal_length: relative-position range ``L`` [16]: tables of ``2L + 1`` rows.
        use_relative_position: True only [True].
        conv_resample, dims, num_classes, use_fp16, resblock_updown, nonlinearity_type, ST_transformer_module,
        ST_transformer_class: accepted at their official defaults only (refused otherwise).
    """

    def __init__(self, image_size: int, in_channels: int, model_channels: int, out_channels: int,
                 num_res_blocks: int, attention_resolutions: Sequence[int], dropout: float = 0.0,
                 channel_mult: Sequence[int] = (1, 2, 4, 8), conv_resample: bool = True, dims: int = 3,
                 num_classes: Optional[int] = None, use_checkpoint: bool = False, use_fp16: bool = False,
                 num_heads: int = -1, num_head_channels: int = -1, num_heads_upsample: int = -1,
                 use_scale_shift_norm: bool = False, resblock_updown: bool = False, transformer_depth: int = 1,
                 context_dim: Optional[int] = None, legacy: bool = True, kernel_size_t: int = 1, padding_t: int = 1,
                 use_temporal_transformer: bool = False, temporal_length: Optional[int] = None,
                 use_relative_position: bool = False, nonlinearity_type: str = "silu",
                 ST_transformer_module: str = "attention_temporal",
                 ST_transformer_class: str = "SpatialTemporalTransformer"):
        super().__init__()
        if use_temporal_transformer is not True:
            _refuse("use_temporal_transformer", use_temporal_transformer, "True",
                    "without the temporal transformer this is the STAttentionBlock network, LVDMUNet")
        if not isinstance(context_dim, int) or isinstance(context_dim, bool) or context_dim < 1:
            _refuse("context_dim", context_dim, "a positive int (768 for CLIP ViT-L/14)",
                    "the spatial cross-attention needs the text-embedding width")
        if use_relative_position is not True:
            _refuse("use_relative_position", use_relative_position, "True")
        if not isinstance(temporal_length, int) or isinstance(temporal_length, bool) or temporal_length < 1:
            raise ValueError(f"T2VUNet: use_relative_position needs temporal_length >= 1, got {temporal_length!r}")
        if not isinstance(transformer_depth, int) or transformer_depth < 1:
            raise ValueError(f"T2VUNet: transformer_depth must be a positive int, got {transformer_depth!r}")
        refuse_unbuilt(_refuse, (("conv_resample", conv_resample, True), ("dims", dims, 3),
                                 ("num_classes", num_classes, None),
                                 ("use_fp16", use_fp16, False), ("resblock_updown", resblock_updown, False),
                                 ("num_heads_upsample", num_heads_upsample, -1),
                                 ("nonlinearity_type", nonlinearity_type, "silu"),
                                 ("ST_transformer_module", ST_transformer_module, "attention_temporal"),
                                 ("ST_transformer_class", ST_transformer_class, "SpatialTemporalTransformer")))
        if num_heads == -1 and num_head_channels == -1:
            raise ValueError("T2VUNet: set num_heads or num_head_channels (both are -1)")

        self.image_size = image_size
        ted = self._record_layout(in_channels, model_channels, out_channels, num_res_blocks, attention_resolutions,
                                  channel_mult, temporal_length)
        self.context_dim = context_dim
        res = resblock_maker(ted, dropout, use_scale_shift_norm=use_scale_shift_norm, use_checkpoint=use_checkpoint,
                             kernel_size_t=kernel_size_t, padding_t=padding_t)

        def attn(ch):
            heads = num_heads if num_head_channels == -1 else ch // num_head_channels
            if heads < 1 or ch % heads:
                raise ValueError(f"T2VUNet: attention width {ch} is not divisible into {heads} heads "
                                 f"(num_heads={num_heads}, num_head_channels={num_head_channels})")
            return [SpatialTemporalTransformer(ch, heads, ch // heads, transformer_depth, context_dim,
                                               temporal_length, dropout, use_checkpoint)]

        self.time_embed = time_embed_mlp(model_channels, ted)
        self._build_lvdm_skeleton(res, attn, kernel_size_t, padding_t)

    # ---------------------------------------------------------------- attention backend

    _attention_layers = CrossAttention

    def set_attention(self, backend: str) -> "T2VUNet":
        """Choose the attention kernel: ``"sdpa"`` (default; ``F.scaled_dot_product_attention``) or ``"xformers"``
        (``xformers.ops.memory_efficient_attention`` for the spatial self- and cross-attention; the temporal
        attention with relative positions stays on SDPA, which returns the probabilities its value term needs).
        xformers must be importable (checked here) and the input on CUDA (checked at the call). Returns ``self``."""
        return self._set_attention(backend, "T2VUNet")

    # ---------------------------------------------------------------- forward

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """ε prediction.

        Args:
            x: ``(B, in_channels, T, h, w)`` noisy latents (``h, w`` divisible by ``2^(levels - 1)``; any ``T``, the
                model was trained on 16).
            timesteps: ``(B,)`` diffusion timesteps (a 0-d tensor is broadcast).
            context: ``(B, L, context_dim)`` text embeddings (CLIP ViT-L/14 last hidden state, ``L = 77``; the
                unconditional half of CFG is the empty prompt's embedding), the same for every frame of a clip.
        Returns:
            ``(B, out_channels, T, h, w)`` in ``x.dtype``.
        """
        timesteps = check_video_input("T2VUNet", x, timesteps, self.in_channels, len(self.channel_mult) - 1)
        b = x.shape[0]
        if not isinstance(context, torch.Tensor) or context.dim() != 3 or context.shape[0] != b \
                or context.shape[2] != self.context_dim:
            got = tuple(context.shape) if isinstance(context, torch.Tensor) else type(context).__name__
            raise ValueError(f"T2VUNet: context must be a (B={b}, L, context_dim={self.context_dim}) tensor of text "
                             f"embeddings, got {got}")
        dtype = self.time_embed[0].weight.dtype
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(dtype))
        context = context.to(device=x.device, dtype=dtype)
        return self.out(self._run_blocks(x.to(dtype), emb, context)).to(x.dtype)
