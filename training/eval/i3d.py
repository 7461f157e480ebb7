"""The I3D video classifier for FVD / KVD: Inception-v1 inflated to 3-D (Carreira & Zisserman), written here with the
module names of pytorch-i3d's ``InceptionI3d`` so that its released state dicts load strictly (``rgb_imagenet.pt``,
LGC-VD's ``check_points/i3d_rgb_imagenet.pt``, LVDM's ``i3d_pretrained_400.pt``: ``Conv3d_1a_7x7.conv3d.weight``,
``Mixed_3b.b1b.bn.running_mean``, …, ``logits.conv3d.{weight,bias}``). A TorchScript I3D is accepted too.

Features (what the FVD is computed on):

* state-dict I3D — LVDM's ``get_fvd_logits``: the 400 logits (1×1×1 conv after a [2, 7, 7] average pool, stride 1),
  averaged over the remaining time steps (LVDM's ``InceptionI3d.forward``: ``logits.mean(dim=2)``);
* TorchScript I3D with a ``return_features`` argument (StyleGAN-V's ``i3d_torchscript.pt``) — LGC-VD's ``get_feats``:
  ``detector(x, rescale=False, resize=False, return_features=True)``, its 400 pre-softmax features; any other
  TorchScript module is called as ``detector(x)`` and its output averaged over any dimension past the second.

Preprocessing (:func:`i3d_preprocess`), inputs in [0, 1], output [−1, 1] at 224², bilinear, ``align_corners=False``,
no antialiasing: ``resize="stretch"`` — LVDM ``fvd_utils.preprocess``: every frame to 224×224 (aspect not kept),
then ``2·x/255 − 1`` of the 0…255 values; ``resize="crop"`` — LGC-VD ``preprocess_single`` (StyleGAN-V's): the shorter
side to 224, the longer ``ceil(side·224/shorter)``, a centred 224² crop (offset ``(side − 224)//2``), then
``(x − 0.5)·2``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .weights import (MetricWeightsError, infer_width, is_torchscript, load_strict, load_torchscript, read_weights,
                      require_file, scaled, takes_stylegan_keywords)

# (Mixed block, its six widths: 1×1 | 1×1 → 3×3×3 | 1×1 → 3×3×3 | pool → 1×1), pytorch-i3d's InceptionI3d
MIXED = (("Mixed_3b", (64, 96, 128, 16, 32, 32)), ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
         ("Mixed_4b", (192, 96, 208, 16, 48, 64)), ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
         ("Mixed_4d", (128, 128, 256, 24, 64, 64)), ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
         ("Mixed_4f", (256, 160, 320, 32, 128, 128)), ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
         ("Mixed_5c", (384, 192, 384, 48, 128, 128)))
STEM = (64, 64, 192)          # Conv3d_1a_7x7, Conv3d_2b_1x1, Conv3d_2c_3x3
I3D_SIZE = 224
#: the BatchNorms' ε: 1e-5 in LVDM's copy (scripts/fvd_utils/pytorch_i3d.py, with i3d_pretrained_400.pt); piergiaj's
#: own pytorch-i3d uses 1e-3 with rgb_imagenet.pt (the same weights' layout): --i3d-bn-eps 1e-3 reproduces that code
BN_EPS = 1e-5
MIN_FRAMES = 9                # the temporal strides leave ≥ 2 steps for the [2, 7, 7] pool


def _same_pad(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """TF "SAME" padding (zeros), the extra pixel at the end, as pytorch-i3d's ``compute_pad``."""
    pads = []
    for dim, (k, s) in enumerate(zip(kernel, stride)):
        n = x.shape[2 + dim]
        p = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        pads.append((p // 2, p - p // 2))
    return F.pad(x, (*pads[2], *pads[1], *pads[0]))


class Unit3D(nn.Module):
    """Conv3d (no bias unless ``bias``) with SAME padding, BatchNorm (ε 1e-5; :class:`InceptionI3d` sets its
    ``bn_eps``) and ReLU unless told otherwise."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn: bool = True, relu: bool = True,
                 bias: bool = False):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-5, momentum=0.001) if bn else None

    def forward(self, x):
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x):
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    def __init__(self, cin: int, w: Sequence[int]):
        super().__init__()
        self.b0 = Unit3D(cin, w[0])
        self.b1a, self.b1b = Unit3D(cin, w[1]), Unit3D(w[1], w[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, w[3]), Unit3D(w[3], w[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, w[5])
        self.out_channels = w[0] + w[2] + w[4] + w[5]

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """I3D (RGB, 3 input channels). ``width`` scales every channel count (1.0: the released network; tests build
    tiny stand-ins); ``num_classes`` the logits (400: Kinetics); ``bn_eps`` the BatchNorms' ε (:data:`BN_EPS`).
    ``(B, 3, T, 224, 224)`` in [−1, 1], T ≥ 9 → :meth:`features` ``(B, num_classes)``."""

    def __init__(self, num_classes: int = 400, width: float = 1.0, bn_eps: float = BN_EPS):
        super().__init__()
        s = lambda c: scaled(c, width)         # noqa: E731
        self.Conv3d_1a_7x7 = Unit3D(3, s(STEM[0]), (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(s(STEM[0]), s(STEM[1]))
        self.Conv3d_2c_3x3 = Unit3D(s(STEM[1]), s(STEM[2]), (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        c = s(STEM[2])
        for name, widths in MIXED:
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
            block = InceptionModule(c, [s(w) for w in widths])
            setattr(self, name, block)
            c = block.out_channels
        self.logits = Unit3D(c, num_classes, bn=False, relu=False, bias=True)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.eps = float(bn_eps)
        self.requires_grad_(False).eval()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[2] < MIN_FRAMES:
            raise ValueError(f"FVD (I3D): expected clips (B, 3, T ≥ {MIN_FRAMES}, H, W), got {tuple(x.shape)}; "
                             f"I3D's temporal strides need at least {MIN_FRAMES} frames")
        for name in ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
                     "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
                     "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c"):
            x = getattr(self, name)(x)
        x = self.logits(F.avg_pool3d(x, (2, 7, 7), stride=1))     # dropout: identity in eval
        return x.squeeze(4).squeeze(3).mean(dim=2)

    forward = features


def i3d_preprocess(video: torch.Tensor, resize: str = "stretch", size: int = I3D_SIZE) -> torch.Tensor:
    """``(B, 3, T, H, W)`` in [0, 1] → ``(B, 3, T, size, size)`` in [−1, 1] (module docstring: "stretch" = LVDM,
    "crop" = LGC-VD / StyleGAN-V)."""
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"FVD (I3D): expected RGB videos (B, 3, T, H, W), got {tuple(video.shape)}")
    b, c, t, h, w = video.shape
    frames = video.float().transpose(1, 2).reshape(b * t, c, h, w)
    if resize == "stretch":
        frames = F.interpolate(frames * 255, size=(size, size), mode="bilinear", align_corners=False)
        frames = 2.0 * frames / 255.0 - 1
    elif resize == "crop":
        scale = size / min(h, w)
        target = (size, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), size)
        frames = F.interpolate(frames, size=target, mode="bilinear", align_corners=False)
        y0, x0 = (frames.shape[2] - size) // 2, (frames.shape[3] - size) // 2
        frames = (frames[:, :, y0:y0 + size, x0:x0 + size] - 0.5) * 2
    else:
        raise ValueError(f"I3D resize must be 'stretch' (LVDM) or 'crop' (LGC-VD), got {resize!r}")
    return frames.reshape(b, t, c, size, size).transpose(1, 2).contiguous()


class I3DFeatures(nn.Module):
    """The FVD feature extractor: preprocessing + network (state dict or TorchScript). ``(B, 3, T, H, W)`` in [0, 1]
    → ``(B, D)`` float64."""

    def __init__(self, net: nn.Module, resize: str = "stretch", torchscript: bool = False):
        super().__init__()
        self.net, self.resize, self.torchscript = net, resize, torchscript
        self.stylegan_kwargs = takes_stylegan_keywords(net, torchscript)

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = i3d_preprocess(video, self.resize)
        p = next(self.net.parameters(), None)
        x = x.to(p.device if p is not None else "cpu")
        if not self.torchscript:
            return self.net.features(x).double().cpu()
        if self.stylegan_kwargs:
            out = self.net(x, rescale=False, resize=False, return_features=True)
        else:
            out = self.net(x)
        out = out.double().cpu()
        return out.flatten(2).mean(dim=2) if out.ndim > 2 else out


def load_i3d(path: Optional[str], resize: Optional[str] = None, device="cpu", bn_eps: float = BN_EPS) -> I3DFeatures:
    """The FVD/KVD feature extractor from the user's file: a pytorch-i3d state dict, loaded strictly into the network
    whose widths and class count the file's ``Conv3d_1a_7x7`` and ``logits`` give (the released network: width 1,
    400 classes), or a TorchScript I3D. ``resize``: "stretch" (LVDM) or "crop" (LGC-VD); None: "stretch" for a
    state dict (LVDM's pipeline), "crop" for a TorchScript (LGC-VD's ``i3d_torchscript.pt`` pipeline). ``bn_eps``:
    the state dict network's BatchNorm ε (:data:`BN_EPS`)."""
    path = require_file(path, "fvd")
    if is_torchscript(path):
        return I3DFeatures(load_torchscript(path, "fvd").to(device), resize or "crop", torchscript=True)
    sd = read_weights(path, "fvd")
    width, _ = infer_width(sd, "Conv3d_1a_7x7.conv3d.weight", STEM[0], "fvd")
    _, logits = infer_width(sd, "logits.conv3d.weight", 1, "fvd")
    net = load_strict(InceptionI3d(logits.shape[0], width, bn_eps), path, "fvd", sd)
    return I3DFeatures(net.to(device), resize or "stretch")


__all__ = ["InceptionI3d", "I3DFeatures", "i3d_preprocess", "load_i3d", "MetricWeightsError"]
