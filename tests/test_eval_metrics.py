"""Evaluation metrics (training/eval, issue 22) against independent references written here: PSNR and SSIM (both
windows) by hand in numpy, best-of-N on a constructed case, the Fréchet distance against the closed form and a numpy
eigenvalue computation, KVD against a hand-written MMD, IS against hand values; the I3D and FID Inception networks:
the released key layouts (expanded here from the official architectures' width tables), tiny stand-ins saved and
loaded, TorchScript files, refusals, and their pinned preprocessing; scripts/evaluate.py end to end."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from consistent_video_kit.training.data import moving_shapes, write_moving_shapes
from consistent_video_kit.training.eval import metrics as M
from consistent_video_kit.training.eval.i3d import InceptionI3d, i3d_preprocess, load_i3d
from consistent_video_kit.training.eval.inception import FIDInceptionV3, inception_preprocess, load_inception
from consistent_video_kit.training.eval.weights import MetricWeightsError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rand_video(seed, b=2, t=3, h=16, w=20):
    return torch.rand(b, 3, t, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------------------------------------- PSNR, SSIM

def np_psnr(x, y, max_val=1.0):
    return 10 * math.log10(max_val ** 2 / np.mean((x - y) ** 2))


def np_filter_valid(img, kernel2d):
    """Correlation of a 2-D image with a 2-D kernel over the valid positions, by explicit loops over the kernel."""
    k = kernel2d.shape[0]
    h, w = img.shape[0] - k + 1, img.shape[1] - k + 1
    out = np.zeros((h, w))
    for dy in range(k):
        for dx in range(k):
            out += kernel2d[dy, dx] * img[dy:dy + h, dx:dx + w]
    return out


def np_ssim(x, y, window, max_val=1.0):
    """SSIM of one single-channel image pair by the formula of Wang et al. (K1 0.01, K2 0.03)."""
    if window == "gaussian":
        r = np.arange(11) - 5
        g = np.exp(-r ** 2 / (2 * 1.5 ** 2))
        g /= g.sum()
        kern, cov_norm = np.outer(g, g), 1.0
    else:
        kern, cov_norm = np.full((7, 7), 1 / 49), 49 / 48
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    mx, my = np_filter_valid(x, kern), np_filter_valid(y, kern)
    vx = cov_norm * (np_filter_valid(x * x, kern) - mx ** 2)
    vy = cov_norm * (np_filter_valid(y * y, kern) - my ** 2)
    vxy = cov_norm * (np_filter_valid(x * y, kern) - mx * my)
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.mean()


def test_psnr_per_frame_and_per_clip_match_the_formula():
    a, b = rand_video(0), rand_video(1)
    got = M.psnr_frames(a, b)
    A, B = a.numpy(), b.numpy()
    want = np.array([[np_psnr(A[i, :, t], B[i, :, t]) for t in range(3)] for i in range(2)])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    # LGC-VD: mean of per-frame PSNR over frames ≥ skip; MCVD: PSNR of the frame-averaged MSE
    np.testing.assert_allclose(M.psnr_clips(a, b, skip=1).numpy(), want[:, 1:].mean(1), rtol=1e-10)
    mse = np.array([np.mean([np.mean((A[i, :, t] - B[i, :, t]) ** 2) for t in range(1, 3)]) for i in range(2)])
    np.testing.assert_allclose(M.psnr_clips(a, b, skip=1, average="mse").numpy(), 10 * np.log10(1 / mse), rtol=1e-10)
    # [-1, 1] videos are mapped by (x + 1) / 2 first
    np.testing.assert_allclose(M.to_unit(a * 2 - 1).numpy(), A, atol=1e-6)


@pytest.mark.parametrize("window", ["gaussian", "uniform"])
def test_ssim_matches_the_hand_formula(window):
    a = rand_video(2, b=1, t=2, h=18, w=23)
    b = (a + 0.15 * rand_video(3, b=1, t=2, h=18, w=23)).clamp(0, 1)
    got = M.ssim_frames(a, b, window=window)
    A, B = a.numpy(), b.numpy()
    want = [[np.mean([np_ssim(A[0, c, t], B[0, c, t], window) for c in range(3)]) for t in range(2)]]
    np.testing.assert_allclose(got.numpy(), np.array(want), rtol=1e-6, atol=1e-7)
    assert abs(float(M.ssim_frames(a, a, window=window).mean()) - 1) < 1e-6


def test_best_of_n_picks_the_best_sample_per_video():
    real = rand_video(4, b=1, t=3)[0]
    noise = rand_video(5, b=1, t=3)[0] - 0.5
    levels = {0: (0.3, 0.05, 0.2), 1: (0.02, 0.4, 0.1)}      # video v: sample noise levels; best = the smallest
    clip_psnr, clip_ssim = [], []
    for v in range(2):
        samples = torch.stack([(real + s * noise) for s in levels[v]])
        reals = real[None].expand_as(samples)
        clip_psnr.append(M.psnr_clips(reals, samples))
        clip_ssim.append(M.clip_average(M.ssim_frames(reals, samples, window="uniform")))
    best_psnr = M.best_of_n(torch.stack(clip_psnr), higher_is_better=True)
    best_ssim = M.best_of_n(torch.stack(clip_ssim), higher_is_better=True)
    R = real.numpy()
    for v, best in ((0, 1), (1, 0)):
        S = R + levels[v][best] * noise.numpy()
        want = np.mean([np_psnr(R[:, t], S[:, t]) for t in range(3)])
        assert abs(float(best_psnr[v]) - want) < 1e-9
        assert float(best_ssim[v]) == float(clip_ssim[v][best])
    lp = torch.tensor([[0.3, 0.1, 0.2], [0.05, 0.5, 0.4]])
    assert M.best_of_n(lp, higher_is_better=False).tolist() == pytest.approx([0.1, 0.05])


# ---------------------------------------------------------------------------------------------- distances

def np_frechet(x, y):
    """Independent reference: numpy stats; tr((Σ1Σ2)^½) as the sum of the square roots of Σ1Σ2's eigenvalues."""
    m1, m2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    ev = np.linalg.eigvals(s1 @ s2).real.clip(min=0)
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(ev).sum())


def test_frechet_distance_closed_form_and_identity():
    g = np.random.default_rng(0)
    q, _ = np.linalg.qr(g.normal(size=(5, 5)))
    d1, d2 = g.uniform(0.2, 3, 5), g.uniform(0.2, 3, 5)
    mu1, mu2 = g.normal(size=5), g.normal(size=5)
    s1, s2 = q @ np.diag(d1) @ q.T, q @ np.diag(d2) @ q.T               # commuting covariances
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(d1) - np.sqrt(d2)) ** 2).sum()
    got = M.frechet_from_stats(*(torch.from_numpy(a) for a in (mu1, s1, mu2, s2)))
    assert got == pytest.approx(want, rel=1e-9)
    x, y = g.normal(size=(300, 6)), g.normal(size=(250, 6)) @ g.normal(size=(6, 6)) + 0.5
    assert M.frechet_distance(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(np_frechet(x, y), rel=1e-7)
    assert abs(M.frechet_distance(torch.from_numpy(x), torch.from_numpy(x))) < 1e-8


def test_kvd_is_the_unbiased_polynomial_mmd():
    g = np.random.default_rng(1)
    x, y = g.normal(size=(7, 4)), g.normal(size=(9, 4)) + 0.3
    k = lambda a, b: (a @ b / 4 + 1) ** 3                   # noqa: E731  sklearn defaults: gamma 1/D, coef0 1, deg 3
    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    xy = sum(k(x[i], y[j]) for i in range(7) for j in range(9)) / (7 * 9)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    assert M.kernel_distance(X, Y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)
    # StyleGAN-V's subset scheme with subsets of the whole (equal-size) sets is the same estimator on every subset
    assert M.kernel_distance(X, Y[:7], subsets=3) == pytest.approx(M.kernel_distance(X, Y[:7]), rel=1e-10)


def test_inception_score_hand_values():
    assert M.inception_score(torch.zeros(20, 5), splits=2) == pytest.approx((1.0, 0.0))
    logits = torch.full((8, 8), -50.0)
    logits[torch.arange(8), torch.arange(8)] = 50.0                     # 8 confident, distinct classes
    mean, std = M.inception_score(logits, splits=2)                     # each split of 4: exp(log 4)
    assert mean == pytest.approx(4.0, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------- networks

# pytorch-i3d InceptionI3d: stem (name, cin, cout, kernel) and the Mixed blocks' six widths (official architecture)
I3D_STEM = (("Conv3d_1a_7x7", 3, 64, 7), ("Conv3d_2b_1x1", 64, 64, 1), ("Conv3d_2c_3x3", 64, 192, 3))
I3D_MIXED = (("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)), ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
             ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)), ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
             ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)), ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
             ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)), ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
             ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)))


def i3d_released_layout():
    out = {}

    def unit(name, cin, cout, k):
        out[f"{name}.conv3d.weight"] = (cout, cin, k, k, k)
        for p in ("weight", "bias", "running_mean", "running_var"):
            out[f"{name}.bn.{p}"] = (cout,)
    for name, cin, cout, k in I3D_STEM:
        unit(name, cin, cout, k)
    for name, cin, w in I3D_MIXED:
        unit(f"{name}.b0", cin, w[0], 1)
        unit(f"{name}.b1a", cin, w[1], 1)
        unit(f"{name}.b1b", w[1], w[2], 3)
        unit(f"{name}.b2a", cin, w[3], 1)
        unit(f"{name}.b2b", w[3], w[4], 3)
        unit(f"{name}.b3b", cin, w[5], 1)
    out["logits.conv3d.weight"], out["logits.conv3d.bias"] = (400, 1024, 1, 1, 1), (400,)
    return out


# torchvision Inception3 blocks as pytorch-fid's FID Inception uses them: (module, [(conv, cin, cout, kh, kw)])
def inception_released_layout():
    convs = [("Conv2d_1a_3x3", 3, 32, 3, 3), ("Conv2d_2a_3x3", 32, 32, 3, 3), ("Conv2d_2b_3x3", 32, 64, 3, 3),
             ("Conv2d_3b_1x1", 64, 80, 1, 1), ("Conv2d_4a_3x3", 80, 192, 3, 3)]

    def a(n, cin, pf):
        return [(f"{n}.branch1x1", cin, 64, 1, 1), (f"{n}.branch5x5_1", cin, 48, 1, 1), (f"{n}.branch5x5_2", 48, 64, 5, 5),
                (f"{n}.branch3x3dbl_1", cin, 64, 1, 1), (f"{n}.branch3x3dbl_2", 64, 96, 3, 3),
                (f"{n}.branch3x3dbl_3", 96, 96, 3, 3), (f"{n}.branch_pool", cin, pf, 1, 1)]

    def c(n, c7):
        return [(f"{n}.branch1x1", 768, 192, 1, 1), (f"{n}.branch7x7_1", 768, c7, 1, 1),
                (f"{n}.branch7x7_2", c7, c7, 1, 7), (f"{n}.branch7x7_3", c7, 192, 7, 1),
                (f"{n}.branch7x7dbl_1", 768, c7, 1, 1), (f"{n}.branch7x7dbl_2", c7, c7, 7, 1),
                (f"{n}.branch7x7dbl_3", c7, c7, 1, 7), (f"{n}.branch7x7dbl_4", c7, c7, 7, 1),
                (f"{n}.branch7x7dbl_5", c7, 192, 1, 7), (f"{n}.branch_pool", 768, 192, 1, 1)]

    def e(n, cin):
        return [(f"{n}.branch1x1", cin, 320, 1, 1), (f"{n}.branch3x3_1", cin, 384, 1, 1),
                (f"{n}.branch3x3_2a", 384, 384, 1, 3), (f"{n}.branch3x3_2b", 384, 384, 3, 1),
                (f"{n}.branch3x3dbl_1", cin, 448, 1, 1), (f"{n}.branch3x3dbl_2", 448, 384, 3, 3),
                (f"{n}.branch3x3dbl_3a", 384, 384, 1, 3), (f"{n}.branch3x3dbl_3b", 384, 384, 3, 1),
                (f"{n}.branch_pool", cin, 192, 1, 1)]
    convs += a("Mixed_5b", 192, 32) + a("Mixed_5c", 256, 64) + a("Mixed_5d", 288, 64)
    convs += [("Mixed_6a.branch3x3", 288, 384, 3, 3), ("Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1),
              ("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 3), ("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3)]
    convs += c("Mixed_6b", 128) + c("Mixed_6c", 160) + c("Mixed_6d", 160) + c("Mixed_6e", 192)
    convs += [("Mixed_7a.branch3x3_1", 768, 192, 1, 1), ("Mixed_7a.branch3x3_2", 192, 320, 3, 3),
              ("Mixed_7a.branch7x7x3_1", 768, 192, 1, 1), ("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7),
              ("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1), ("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3)]
    convs += e("Mixed_7b", 1280) + e("Mixed_7c", 2048)
    out = {}
    for name, cin, cout, kh, kw in convs:
        out[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for p in ("weight", "bias", "running_mean", "running_var"):
            out[f"{name}.bn.{p}"] = (cout,)
    out["fc.weight"], out["fc.bias"] = (1008, 2048), (1008,)
    return out


def shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def test_released_layouts():
    assert shapes(InceptionI3d()) == i3d_released_layout()
    assert shapes(FIDInceptionV3()) == inception_released_layout()


def randomised(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif name.endswith(("running_mean", "bn.bias")):
                t.uniform_(-0.2, 0.2)
            elif name.endswith("bn.weight"):
                t.uniform_(0.5, 1.5)
    return model


def old_style_file(model, path):
    """Save as the old releases are: no BatchNorm num_batches_tracked counters."""
    torch.save({k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}, path)


def test_i3d_tiny_stand_in_loads_and_refuses(tmp_path):
    net = randomised(InceptionI3d(num_classes=8, width=1 / 16), 0)
    old_style_file(net, tmp_path / "i3d.pt")
    feats = load_i3d(str(tmp_path / "i3d.pt"))
    video = torch.rand(3, 3, 10, 40, 48, generator=torch.Generator().manual_seed(0))
    f = feats(video)
    assert f.shape == (3, 8) and f.dtype == torch.float64
    torch.testing.assert_close(f, net.features(i3d_preprocess(video)).double())
    # LVDM's head, by hand over the trunk: [2, 7, 7] average pool (stride 1), the 1×1×1 logits conv with bias, the
    # mean over the remaining time steps (24 frames leave 2)
    x = i3d_preprocess(video[:1].repeat_interleave(3, dim=2)[:, :, :24])
    for name in ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3", "Mixed_3b",
                 "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f",
                 "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c"):
        x = getattr(net, name)(x)
    assert x.shape[2:] == (3, 7, 7)
    pooled = torch.stack([x[:, :, t:t + 2].mean(dim=(2, 3, 4)) for t in range(2)], dim=2)      # (1, C, 2)
    logits = torch.einsum("oc,bct->bot", net.logits.conv3d.weight[:, :, 0, 0, 0], pooled) + net.logits.conv3d.bias[:, None]
    torch.testing.assert_close(feats(video[:1].repeat_interleave(3, dim=2)[:, :, :24]), logits.mean(dim=2).double(),
                               rtol=1e-4, atol=1e-5)
    assert feats.resize == "stretch"
    # piergiaj's own code computes the same weights with BatchNorm ε 1e-3 (LVDM's copy 1e-5, the default)
    eps = load_i3d(str(tmp_path / "i3d.pt"), bn_eps=1e-3)
    bns = [m for m in eps.net.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert bns and all(m.eps == 1e-3 for m in bns)
    assert all(m.eps == 1e-5 for m in feats.net.modules() if isinstance(m, torch.nn.BatchNorm3d))
    assert not torch.allclose(eps(video), f, rtol=1e-6, atol=0)
    sd = net.state_dict()                                              # a file missing a tensor, or a foreign file
    del sd["Mixed_4c.b1b.bn.running_var"]
    torch.save(sd, tmp_path / "partial.pt")
    with pytest.raises(MetricWeightsError, match=r"FVD.*missing keys: Mixed_4c\.b1b\.bn\.running_var.*--fvd"):
        load_i3d(str(tmp_path / "partial.pt"))
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(MetricWeightsError, match=r"FVD: the file is not the I3D.*Conv3d_1a_7x7"):
        load_i3d(str(tmp_path / "other.pt"))
    for bad in (None, str(tmp_path / "nope.pt")):
        with pytest.raises(MetricWeightsError, match=r"^FVD needs the I3D.*--fvd FILE.*i3d_pretrained_400\.pt.*"
                                                     r"rgb_imagenet\.pt"):
            load_i3d(bad)


def test_inception_tiny_stand_in_loads_and_refuses(tmp_path):
    net = randomised(FIDInceptionV3(num_classes=10, width=1 / 16), 1)
    torch.nn.init.uniform_(net.fc.bias, 1, 2)
    old_style_file(net, tmp_path / "pt_inception.pth")
    feats = load_inception(str(tmp_path / "pt_inception.pth"))
    frames = torch.rand(2, 3, 64, 80, generator=torch.Generator().manual_seed(1))
    pool, logits = feats(frames)
    assert pool.shape == (2, 128) and logits.shape == (2, 10)
    torch.testing.assert_close(logits, pool @ net.fc.weight.double().T)       # IS logits: no fc bias
    with pytest.raises(MetricWeightsError, match=r"^FID needs the FID Inception.*--fid FILE.*"
                                                 r"pt_inception-2015-12-05-6726825d\.pth"):
        load_inception(None)
    with pytest.raises(MetricWeightsError, match=r"^IS needs .*--fid .*FILE.*pt_inception-2015-12-05-6726825d\.pth"):
        load_inception(str(tmp_path / "missing.pth"), metric="is")
    old_style_file(randomised(InceptionI3d(8, 1 / 16), 0), tmp_path / "i3d.pt")
    with pytest.raises(MetricWeightsError, match=r"FID: the file is not the FID Inception"):
        load_inception(str(tmp_path / "i3d.pt"))


class _ScriptedI3D(torch.nn.Module):
    """StyleGAN-V's i3d_torchscript.pt call signature."""

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False):
        flags = torch.tensor([float(rescale), float(resize), float(return_features)])
        return torch.cat([x.mean(dim=(1, 2, 3, 4))[:, None], flags.expand(x.shape[0], 3)], dim=1)


class _PlainScript(torch.nn.Module):
    def forward(self, x: torch.Tensor):
        return x.mean(dim=(3, 4))                          # (B, C, T): averaged over time by the loader


def test_torchscript_files(tmp_path):
    torch.jit.save(torch.jit.script(_ScriptedI3D()), str(tmp_path / "i3d_torchscript.pt"))
    feats = load_i3d(str(tmp_path / "i3d_torchscript.pt"))
    video = torch.rand(2, 3, 4, 30, 40, generator=torch.Generator().manual_seed(2))
    f = feats(video)
    assert feats.resize == "crop"                          # LGC-VD's pipeline for this file
    assert f[:, 1:].tolist() == [[0.0, 0.0, 1.0]] * 2      # rescale=False, resize=False, return_features=True
    torch.testing.assert_close(f[:, 0], i3d_preprocess(video, "crop").mean(dim=(1, 2, 3, 4)).double())
    torch.jit.save(torch.jit.script(_PlainScript()), str(tmp_path / "plain.pt"))
    f = load_i3d(str(tmp_path / "plain.pt"), resize="stretch")(video)
    torch.testing.assert_close(f, i3d_preprocess(video, "stretch").mean(dim=(2, 3, 4)).double())


def np_resize_axis(a, out, axis):
    """Bilinear resampling along one axis, align_corners=False, no antialiasing (PyTorch/TF1 half-pixel rule)."""
    n = a.shape[axis]
    src = np.maximum((np.arange(out) + 0.5) * n / out - 0.5, 0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    w = src - i0
    a0, a1 = np.take(a, i0, axis=axis), np.take(a, i1, axis=axis)
    shape = [1] * a.ndim
    shape[axis] = out
    return a0 * (1 - w.reshape(shape)) + a1 * w.reshape(shape)


def test_i3d_preprocessing_pinned():
    g = np.random.default_rng(3)
    v = g.uniform(0, 1, size=(1, 3, 2, 50, 70)).astype(np.float32)      # (B, C, T, H, W), RGB
    v[:, 0] *= 0.2                                                      # channels distinguishable
    x = torch.from_numpy(v)
    # LVDM: every frame stretched to 224×224, values 2·x − 1
    want = np_resize_axis(np_resize_axis(v.astype(np.float64), 224, 3), 224, 4) * 2 - 1
    got = i3d_preprocess(x, "stretch")
    assert got.shape == (1, 3, 2, 224, 224)
    np.testing.assert_allclose(got.numpy(), want, atol=2e-5)
    # LGC-VD: shorter side (50) to 224, the longer ceil(70·224/50) = 314, centre crop from column (314−224)//2 = 45
    big = np_resize_axis(np_resize_axis(v.astype(np.float64), 224, 3), 314, 4)
    want = (big[..., :, 45:45 + 224] - 0.5) * 2
    got = i3d_preprocess(x, "crop")
    assert got.shape == (1, 3, 2, 224, 224)
    np.testing.assert_allclose(got.numpy(), want, atol=2e-5)


def test_inception_preprocessing_pinned():
    g = np.random.default_rng(4)
    f = g.uniform(0, 1, size=(2, 3, 40, 90)).astype(np.float32)
    f[:, 2] *= 0.1
    want = np_resize_axis(np_resize_axis(f.astype(np.float64), 299, 2), 299, 3) * 2 - 1
    got = inception_preprocess(torch.from_numpy(f))
    assert got.shape == (2, 3, 299, 299)
    np.testing.assert_allclose(got.numpy(), want, atol=2e-5)


# ---------------------------------------------------------------------------------------------- the CLI

def run_cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "evaluate.py"), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_end_to_end(tmp_path):
    real, gen = tmp_path / "real", tmp_path / "gen"
    write_moving_shapes(str(real), videos=2, frames=10, size=32, seed=0)
    rng = np.random.default_rng(5)
    expected_psnr, expected_ssim = [], []
    for i in range(2):                         # sample 0: real + small noise (best); sample 1: another video
        r = moving_shapes(10, 32, 0, i)
        samples = [np.clip(r.astype(int) + rng.integers(-6, 7, r.shape), 0, 255).astype(np.uint8),
                   moving_shapes(10, 32, 1, i)][::1 if i == 0 else -1]
        for k, s in enumerate(samples):
            folder = gen / f"v{i}_s{k}"
            folder.mkdir(parents=True)
            for n, frame in enumerate(s):
                Image.fromarray(frame).save(folder / f"{n}.png")
        R = r.astype(np.float64) / 255
        ps = [np.mean([np_psnr(R[t], s[t] / 255.0) for t in range(2, 10)]) for s in samples]
        ss = [np.mean([np_ssim(R[t, ..., c], s[t, ..., c] / 255.0, "uniform") for t in range(2, 10) for c in range(3)])
              for s in samples]
        assert ps[i] > ps[1 - i]                   # video 0: sample 0 is the best, video 1: sample 1
        expected_psnr.append(max(ps))
        expected_ssim.append(max(ss))
    old_style_file(randomised(InceptionI3d(num_classes=8, width=1 / 16), 0), tmp_path / "i3d.pt")
    out = tmp_path / "res.json"
    p = run_cli(gen, real, "--psnr", "--ssim", "--fvd", tmp_path / "i3d.pt", "--kvd", "--samples", 2, "--skip", 2,
                "--json", out)
    assert p.returncode == 0, p.stderr
    assert "PSNR" in p.stdout and "FVD" in p.stdout and "KVD" in p.stdout
    res = json.loads(out.read_text())
    assert res["psnr"]["per_video"] == pytest.approx(expected_psnr, rel=1e-6)     # frames read as float32
    assert res["ssim"]["per_video"] == pytest.approx(expected_ssim, rel=1e-6)
    assert res["psnr"]["mean"] == pytest.approx(np.mean(expected_psnr), rel=1e-6)
    assert res["videos"] == {"real": 2, "generated": 4, "samples_per_video": 2, "shape_CTHW": [3, 10, 32, 32]}
    assert math.isfinite(res["fvd"]) and res["fvd"] > 0 and math.isfinite(res["kvd"])
    # bad input: one line, exit 2
    for args, msg in (((gen, real, "--psnr", "--samples", 3), "4 generated videos for 2 real ones"),
                      ((gen, real, "--fvd", tmp_path / "none.pt"), "FVD needs the I3D"),
                      ((gen, tmp_path / "nowhere", "--psnr"), "does not exist"),
                      ((gen, real), "no metric chosen"),
                      ((gen, real, "--fvd", tmp_path / "i3d.pt", "--kvd", "--kvd-subsets", 0),
                       "kvd_subsets must be ≥ 1"),
                      *([] if torch.cuda.is_available() else
                        [((gen, real, "--psnr", "--device", "cuda"), "no CUDA GPU is available here")])):
        p = run_cli(*args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert p.stderr.startswith("evaluate.py: error: ") and msg in p.stderr and p.stderr.count("\n") == 1, p.stderr


def test_hdf5_shards_evaluate_as_their_frames(tmp_path):
    """MCVD/LGC-VD HDF5 shards (the official converters' layout) give the numbers their frames give as PNG folders."""
    pytest.importorskip("h5py")
    from consistent_video_kit.training.eval.evaluate import evaluate_folders
    from cvk_testkit.hdf5_shard import write_shard
    videos = {"real": [moving_shapes(10, 32, 0, i) for i in range(2)],
              "gen": [moving_shapes(10, 32, 1, i) for i in range(2)]}
    for side, vids in videos.items():
        (tmp_path / "h5" / side).mkdir(parents=True)
        write_shard(tmp_path / "h5" / side / "shard_0001.hdf5", vids)
        for k, frames in enumerate(vids):
            folder = tmp_path / "png" / side / f"v{k}"
            folder.mkdir(parents=True)
            for i, frame in enumerate(frames):
                Image.fromarray(frame).save(folder / f"{i}.png")
    a = evaluate_folders(str(tmp_path / "h5" / "gen"), str(tmp_path / "h5" / "real"), psnr=True, ssim=True)
    b = evaluate_folders(str(tmp_path / "png" / "gen"), str(tmp_path / "png" / "real"), psnr=True, ssim=True)
    assert a["psnr"] == b["psnr"] and a["ssim"] == b["ssim"] and a["videos"] == b["videos"]
