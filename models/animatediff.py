"""AnimateDiff's UNet as the original code computes it, on diffusers' ``UNetMotionModel`` (no fork).

diffusers' ``UNetMotionModel`` differs from the original AnimateDiff (guoyww/AnimateDiff,
``animatediff/models``) in how some GroupNorms see a clip:

- **Motion modules.** ``AnimateDiffTransformer3D`` group-normalises a ``(b, c, f, h, w)`` tensor, so its
  statistics pool over the frames; the original ``TemporalTransformer3DModel`` rearranges to
  ``(b f) c h w`` first and normalises each frame alone (as AnimateDiff-Evolved does). With identical
  weights the two give ε that differ by 12–17 % (random weights). diffusers also builds the motion norms
  with the base UNet's group count, not the motion module's own ``motion_norm_num_groups`` (the original
  always uses 32).
- **v1 modules** were trained with ``use_inflated_groupnorm: false``: the original v1 UNet normalises its
  spatial ResNet blocks and ``conv_norm_out`` over the whole clip (a plain GroupNorm on
  ``(b, c, f, h, w)``), while its spatial transformers and motion modules normalise per frame. v2 and v3
  (``use_inflated_groupnorm: true``) normalise everything per frame, as diffusers' 2-D blocks do.

:func:`match_original` swaps the affected norm modules for :class:`FrameGroupNorm` /
:class:`ClipGroupNorm`: subclasses of ``nn.GroupNorm`` with the same parameters and state-dict keys,
so files load as before.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MOTION_VERSIONS = ("v1", "v2", "v3")
V1_FRAMES = 24   # v1 modules carry 24-row positional tables; v2 and v3 carry 32


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm of each frame on its own: ``(B, C, F, H, W)`` is normalised as ``(B·F, C, H, W)``
    (the original motion modules' ``rearrange(x, "b c f h w -> (b f) c h w")`` before their norm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        # diffusers hands over a permuted view of a (B, F, C, H, W) tensor: transposing back is free
        y = F.group_norm(x.transpose(1, 2).reshape(b * f, c, h, w), self.num_groups, self.weight, self.bias, self.eps)
        return y.reshape(b, f, c, h, w).transpose(1, 2)


class _ClipLength:
    """The frame count of the UNet call in progress, for :class:`ClipGroupNorm` (set by a forward pre-hook)."""
    frames = None

    def __call__(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        self.frames = sample.shape[2]


class ClipGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics pool over all frames of a clip: ``(B·F, C, H, W)`` is normalised as
    ``(B, C, F, H, W)`` — the original v1 UNet's plain GroupNorm on 5-D tensors. ``clip.frames`` is F."""

    def __init__(self, *args, clip: _ClipLength, **kwargs):
        super().__init__(*args, **kwargs)
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.clip.frames
        bf, c, h, w = x.shape
        y = F.group_norm(x.reshape(bf // f, f, c, h, w).transpose(1, 2), self.num_groups, self.weight, self.bias,
                         self.eps)
        return y.transpose(1, 2).reshape(bf, c, h, w)


def _swap(norm: nn.GroupNorm, cls, num_groups: int, **kwargs) -> nn.GroupNorm:
    """``norm`` rebuilt as ``cls`` with ``num_groups``, sharing its parameters (meta or real)."""
    new = cls(num_groups, norm.num_channels, norm.eps, norm.affine, device="meta", **kwargs)
    new.weight, new.bias = norm.weight, norm.bias
    return new


def motion_version(has_mid_block: bool, table_length: int | None) -> str:
    """``v2`` (a mid-block module), ``v1`` (no mid block, a 24-row positional table) or ``v3``. A diffusers-
    layout file carries no table: without a mid block it counts as v3."""
    if has_mid_block:
        return "v2"
    return "v1" if table_length == V1_FRAMES else "v3"


def match_original(unet: nn.Module, motion_groups: int, version: str = "v3") -> nn.Module:
    """Make a ``UNetMotionModel`` compute what the original AnimateDiff computes, in place: every motion
    module's input norm per frame with ``motion_groups`` groups, and for ``v1`` the ResNet norms and
    ``conv_norm_out`` pooled over the clip. Parameters and state-dict keys are unchanged. Returns ``unet``."""
    from diffusers.models.resnet import ResnetBlock2D
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
    if version not in MOTION_VERSIONS:
        raise ValueError(f"motion module version must be one of {MOTION_VERSIONS}, got {version!r}")
    for m in unet.modules():
        if isinstance(m, AnimateDiffTransformer3D) and not isinstance(m.norm, FrameGroupNorm):
            m.norm = _swap(m.norm, FrameGroupNorm, motion_groups)
    if version == "v1" and not isinstance(unet.conv_norm_out, ClipGroupNorm):
        clip = _ClipLength()
        for m in unet.modules():
            if isinstance(m, ResnetBlock2D):
                m.norm1 = _swap(m.norm1, ClipGroupNorm, m.norm1.num_groups, clip=clip)
                m.norm2 = _swap(m.norm2, ClipGroupNorm, m.norm2.num_groups, clip=clip)
        unet.conv_norm_out = _swap(unet.conv_norm_out, ClipGroupNorm, unet.conv_norm_out.num_groups, clip=clip)
        unet.register_forward_pre_hook(clip, with_kwargs=True)
    return unet
