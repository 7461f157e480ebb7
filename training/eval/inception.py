"""The FID Inception-v3 for FID and IS: the TF ``inception-2015-12-05`` graph as pytorch-fid ports it
(``fid_inception_v3``: torchvision's Inception3 layout with 1008 classes and no auxiliary head, where the A/C/E_1
blocks' average pools leave padded zeros out of the average and E_2's pool is a max pool), written here with the same
module names so that ``pt_inception-2015-12-05-6726825d.pth`` loads strictly (``Conv2d_1a_3x3.conv.weight``,
``Mixed_5b.branch_pool.bn.running_var``, …, ``fc.weight`` ``(1008, 2048)``). A TorchScript Inception is accepted too.

Preprocessing (:func:`inception_preprocess`), pytorch-fid's ``InceptionV3(resize_input=True, normalize_input=True)``:
frames in [0, 1] resized to 299×299 (bilinear, ``align_corners=False``, no antialiasing, aspect not kept), then
``2x − 1``.

Outputs: the pool3 features (2048, after the global average pool: FID) and the logits without the fc bias (IS, as the
original TF code's ``tf.matmul(pool3, w)`` and StyleGAN-V's ``no_output_bias=True``). A TorchScript file with a
``return_features`` argument (StyleGAN2-ADA's ``inception-2015-12-05.pt``) takes 0…255 frames and resizes them
itself: it is called on ``x·255`` with ``return_features=True`` (FID) and ``no_output_bias=True`` (probabilities,
whose log serves as logits for IS).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .weights import (infer_width, is_torchscript, load_strict, load_torchscript, read_weights, require_file, scaled,
                      takes_stylegan_keywords)

INCEPTION_SIZE = 299


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg3(x):          # TF's average pool: padded zeros are not counted
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin, pool_features, s):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, s(64), kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, s(48), kernel_size=1)
        self.branch5x5_2 = BasicConv2d(s(48), s(64), kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, s(64), kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(s(64), s(96), kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(s(96), s(96), kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, s(pool_features), kernel_size=1)
        self.out_channels = s(64) + s(64) + s(96) + s(pool_features)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg3(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin, s):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, s(384), kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, s(64), kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(s(64), s(96), kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(s(96), s(96), kernel_size=3, stride=2)
        self.out_channels = s(384) + s(96) + cin

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin, c7, s):
        super().__init__()
        c7 = s(c7)
        self.branch1x1 = BasicConv2d(cin, s(192), kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, s(192), kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, s(192), kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, s(192), kernel_size=1)
        self.out_channels = 4 * s(192)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for k in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{k}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin, s):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, s(192), kernel_size=1)
        self.branch3x3_2 = BasicConv2d(s(192), s(320), kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, s(192), kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(s(192), s(192), kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(s(192), s(192), kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(s(192), s(192), kernel_size=3, stride=2)
        self.out_channels = s(320) + s(192) + cin

    def forward(self, x):
        d = x
        for k in range(1, 5):
            d = getattr(self, f"branch7x7x3_{k}")(d)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), d, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin, s, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, s(320), kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, s(384), kernel_size=1)
        self.branch3x3_2a = BasicConv2d(s(384), s(384), kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(s(384), s(384), kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, s(448), kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(s(448), s(384), kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(s(384), s(384), kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(s(384), s(384), kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, s(192), kernel_size=1)
        self.out_channels = s(320) + 4 * s(384) + s(192)

    def forward(self, x):
        a = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(pool)], 1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's FID Inception. ``width`` scales every channel count (1.0: the released network; tests build tiny
    stand-ins); ``num_classes`` 1008. ``(N, 3, 299, 299)`` in [−1, 1] → :meth:`features` (pool3 ``(N, 2048)``,
    logits without bias ``(N, 1008)``)."""

    def __init__(self, num_classes: int = 1008, width: float = 1.0):
        super().__init__()
        s = lambda c: scaled(c, width)         # noqa: E731
        self.Conv2d_1a_3x3 = BasicConv2d(3, s(32), kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(s(32), s(32), kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(s(32), s(64), kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(s(64), s(80), kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(s(80), s(192), kernel_size=3)
        c = s(192)
        for name, make in (("Mixed_5b", lambda c: InceptionA(c, 32, s)), ("Mixed_5c", lambda c: InceptionA(c, 64, s)),
                           ("Mixed_5d", lambda c: InceptionA(c, 64, s)), ("Mixed_6a", lambda c: InceptionB(c, s)),
                           ("Mixed_6b", lambda c: InceptionC(c, 128, s)), ("Mixed_6c", lambda c: InceptionC(c, 160, s)),
                           ("Mixed_6d", lambda c: InceptionC(c, 160, s)), ("Mixed_6e", lambda c: InceptionC(c, 192, s)),
                           ("Mixed_7a", lambda c: InceptionD(c, s)), ("Mixed_7b", lambda c: InceptionE(c, s, False)),
                           ("Mixed_7c", lambda c: InceptionE(c, s, True))):
            block = make(c)
            setattr(self, name, block)
            c = block.out_channels
        self.fc = nn.Linear(c, num_classes)
        self.requires_grad_(False).eval()

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                     "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        pool = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return pool, pool @ self.fc.weight.T

    forward = features


def inception_preprocess(frames: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """``(N, 3, H, W)`` in [0, 1] → ``(N, 3, 299, 299)`` in [−1, 1] (pytorch-fid: bilinear resize, then 2x − 1)."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"FID/IS (Inception): expected RGB frames (N, 3, H, W), got {tuple(frames.shape)}")
    x = F.interpolate(frames.float(), size=(size, size), mode="bilinear", align_corners=False)
    return 2 * x - 1


class InceptionFeatures(nn.Module):
    """FID/IS feature extractor: frames ``(N, 3, H, W)`` in [0, 1] → (pool3 ``(N, D)``, logits ``(N, K)``), float64."""

    def __init__(self, net: nn.Module, torchscript: bool = False):
        super().__init__()
        self.net, self.torchscript = net, torchscript
        self.stylegan_kwargs = takes_stylegan_keywords(net, torchscript)

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        p = next(self.net.parameters(), None)
        dev = p.device if p is not None else torch.device("cpu")
        if self.torchscript and self.stylegan_kwargs:
            x = (frames.float() * 255).to(dev)
            feats = self.net(x, return_features=True).double().cpu()
            probs = self.net(x, no_output_bias=True).double().cpu()
            return feats, probs.clamp(min=1e-30).log()
        x = inception_preprocess(frames).to(dev)
        if self.torchscript:
            out = self.net(x)
            out = out[0] if isinstance(out, (list, tuple)) else out
            return out.double().flatten(1).cpu(), None
        pool, logits = self.net.features(x)
        return pool.double().cpu(), logits.double().cpu()


def load_inception(path: Optional[str], device="cpu", metric: str = "fid") -> InceptionFeatures:
    """The FID/IS feature extractor from the user's file: pytorch-fid's state dict, loaded strictly into the network
    whose widths and class count the file's ``Conv2d_1a_3x3`` and ``fc`` give (the released one: width 1, 1008
    classes), or a TorchScript Inception."""
    path = require_file(path, metric)
    if is_torchscript(path):
        return InceptionFeatures(load_torchscript(path, metric).to(device), torchscript=True)
    sd = read_weights(path, metric)
    width, _ = infer_width(sd, "Conv2d_1a_3x3.conv.weight", 32, metric)
    _, fc = infer_width(sd, "fc.weight", 1, metric)
    return InceptionFeatures(load_strict(FIDInceptionV3(fc.shape[0], width), path, metric, sd).to(device))
