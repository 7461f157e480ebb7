"""Video quality metrics of the LVDM and LGC-VD papers, as their official evaluation code computes them.

Videos are float tensors ``(B, C, T, H, W)``. The frame metrics take values in [0, 1] (the range LGC-VD's
``calc_metric`` and MCVD's runner compare in); :func:`to_unit` converts the pack's [−1, 1] videos as the official
code does, ``(x + 1) / 2``, without clamping.

* PSNR / SSIM (kornia) per frame, averaged over the frames after ``skip`` (LGC-VD's ``calc_metric`` skips its 2
  context frames); :func:`best_of_n` keeps, per real video, the best of its N stochastic samples (the MCVD protocol
  LGC-VD follows).
* :func:`frechet_distance` (FVD from I3D features, FID from Inception pool3 features): the Fréchet distance of the two
  Gaussians fitted to the features, the matrix square root by eigen-decomposition in float64 torch.
* :func:`kernel_distance` (KVD): the unbiased polynomial-kernel MMD² of LVDM's ``polynomial_mmd``.
* :func:`inception_score` (IS): exp(E KL(p(y|x) ‖ p(y))) over splits.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------- ranges, frames


def to_unit(video: torch.Tensor, value_range: str = "-1,1") -> torch.Tensor:
    """A video in ``value_range`` ("-1,1": the pack's decoded videos and training clips; "0,1") as [0, 1] values:
    ``(x + 1) / 2`` for [−1, 1], as LGC-VD's sampler un-normalises before saving; no clamping (out-of-range
    samples count as they are)."""
    if value_range in ("-1,1", "[-1,1]"):
        return (video.float() + 1) / 2
    if value_range in ("0,1", "[0,1]"):
        return video.float()
    raise ValueError(f"value_range must be '-1,1' or '0,1', got {value_range!r}")


def _check_pair(real: torch.Tensor, fake: torch.Tensor, what: str) -> None:
    if real.ndim != 5 or fake.ndim != 5:
        raise ValueError(f"{what}: expected videos (B, C, T, H, W), got shapes {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    if real.shape != fake.shape:
        raise ValueError(f"{what}: the real and generated videos differ in shape: {tuple(real.shape)} vs "
                         f"{tuple(fake.shape)} (same frames, size and channels needed)")


def _frames(video: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = video.shape
    return video.transpose(1, 2).reshape(b * t, c, h, w)


# --------------------------------------------------------------------------------------------- PSNR, SSIM


def psnr_frames(real: torch.Tensor, fake: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR of each frame, ``10·log10(data_range² / MSE)`` with the MSE over the frame's channels and pixels
    (kornia's ``psnr`` per frame; skimage's ``peak_signal_noise_ratio(..., data_range=1)`` as LGC-VD calls it).
    ``(B, C, T, H, W) × 2 → (B, T)``; an exact match gives +inf."""
    _check_pair(real, fake, "PSNR")
    mse = (real.double() - fake.double()).square().mean(dim=(1, 3, 4))
    return 10 * torch.log10(data_range ** 2 / mse)


def _uniform_ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float, win: int = 7) -> torch.Tensor:
    """skimage ``structural_similarity`` defaults: a win×win uniform window, sample covariances (N/(N−1)), the
    border of (win−1)/2 pixels left out (only windows fully inside the image)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    n = win * win
    cov_norm = n / (n - 1)
    pool = lambda t: F.avg_pool2d(t, win, stride=1)            # noqa: E731  valid windows only
    ux, uy = pool(x), pool(y)
    vx = cov_norm * (pool(x * x) - ux * ux)
    vy = cov_norm * (pool(y * y) - uy * uy)
    vxy = cov_norm * (pool(x * y) - ux * uy)
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def ssim_frames(real: torch.Tensor, fake: torch.Tensor, data_range: float = 1.0, window: str = "gaussian"
                ) -> torch.Tensor:
    """SSIM of each frame, averaged over its channels and the valid (un-padded) window positions.
    ``(B, C, T, H, W) × 2 → (B, T)``. K1 0.01, K2 0.03.

    ``window``: "gaussian" — an 11×11 Gaussian window of σ 1.5, population statistics (Wang et al.; kornia's
    ``metrics.ssim`` with ``padding="valid"``; skimage with ``gaussian_weights=True, use_sample_covariance=False``,
    MCVD's call); "uniform" — a 7×7 uniform window with sample covariances (skimage's defaults, which LGC-VD's
    ``calc_metric`` uses: ``structural_similarity(img1, img2, data_range=1, channel_axis=0)``)."""
    _check_pair(real, fake, "SSIM")
    x, y = _frames(real.double()), _frames(fake.double())
    if window == "gaussian":
        if min(x.shape[-2:]) < 11:
            raise ValueError(f"SSIM (gaussian window 11): frames of {x.shape[-1]}×{x.shape[-2]} are smaller than "
                             f"the window")
        import kornia
        smap = kornia.metrics.ssim(x, y, 11, max_val=data_range, padding="valid")
    elif window == "uniform":
        if min(x.shape[-2:]) < 7:
            raise ValueError(f"SSIM (uniform window 7): frames of {x.shape[-1]}×{x.shape[-2]} are smaller than "
                             f"the window")
        smap = _uniform_ssim_map(x, y, data_range)
    else:
        raise ValueError(f"SSIM window must be 'gaussian' or 'uniform', got {window!r}")
    b, t = real.shape[0], real.shape[2]
    return smap.mean(dim=(1, 2, 3)).reshape(b, t)


def lpips_frames(real: torch.Tensor, fake: torch.Tensor, lpips: torch.nn.Module, batch: int = 16) -> torch.Tensor:
    """LPIPS of each frame with the pack's LPIPS (``training.autoencoder.LPIPS``, VGG16 v0.1 heads), which takes
    [−1, 1] inputs: the [0, 1] videos are mapped by ``2x − 1``. ``(B, C, T, H, W) × 2 → (B, T)``."""
    _check_pair(real, fake, "LPIPS")
    x, y = _frames(real.float()) * 2 - 1, _frames(fake.float()) * 2 - 1
    p = next(lpips.parameters(), None)
    dev = p.device if p is not None else torch.device("cpu")
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out.append(lpips(x[i:i + batch].to(dev), y[i:i + batch].to(dev)).flatten().double().cpu())
    return torch.cat(out).reshape(real.shape[0], real.shape[2])


def clip_average(per_frame: torch.Tensor, skip: int = 0) -> torch.Tensor:
    """One score per clip from per-frame scores ``(B, T)``: the mean over frames ``skip..T−1`` (LGC-VD's
    ``calc_metric``: ``sum(psnr_list) / len(psnr_list)`` over frames 2…T−1, its 2 given frames skipped)."""
    if not 0 <= skip < per_frame.shape[1]:
        raise ValueError(f"skip={skip} leaves no frame of {per_frame.shape[1]}")
    return per_frame[:, skip:].mean(dim=1)


def psnr_clips(real: torch.Tensor, fake: torch.Tensor, skip: int = 0, average: str = "frames",
               data_range: float = 1.0) -> torch.Tensor:
    """One PSNR per clip ``(B,)``: ``average="frames"`` — the mean of per-frame PSNRs (LGC-VD ``calc_metric``);
    ``average="mse"`` — ``10·log10(data_range² / mean-over-frames MSE)`` (MCVD's runner:
    ``10 * np.log10(1 / vid_mse)``)."""
    if average == "frames":
        return clip_average(psnr_frames(real, fake, data_range), skip)
    if average == "mse":
        _check_pair(real, fake, "PSNR")
        if not 0 <= skip < real.shape[2]:
            raise ValueError(f"skip={skip} leaves no frame of {real.shape[2]}")
        mse = (real.double() - fake.double()).square().mean(dim=(1, 3, 4))[:, skip:].mean(dim=1)
        return 10 * torch.log10(data_range ** 2 / mse)
    raise ValueError(f"PSNR average must be 'frames' or 'mse', got {average!r}")


HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "mse": False}


def best_of_n(scores: torch.Tensor, higher_is_better: bool) -> torch.Tensor:
    """Best-of-N (MCVD's protocol, which LGC-VD's ``eva.py`` follows): ``scores`` ``(V, N)`` holds each clip score
    of the N stochastic samples of real video v; returns ``(V,)``, per video the max (PSNR, SSIM) or the min
    (LPIPS) over its samples. The reported figure is the mean over videos (and its std over videos)."""
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise ValueError(f"best_of_n: expected scores (videos, samples), got shape {tuple(scores.shape)}")
    return scores.max(dim=1).values if higher_is_better else scores.min(dim=1).values


# --------------------------------------------------------------------------------------------- feature distances


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean ``(D,)``, unbiased covariance ``(D, D)``) of features ``(N, D)`` in float64 (``np.cov(rowvar=False)``)."""
    f = features.detach().double().flatten(1)
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {f.shape[0]}")
    mu = f.mean(dim=0)
    d = f - mu
    return mu, d.T @ d / (f.shape[0] - 1)


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """Symmetric PSD square root by eigen-decomposition (negative round-off eigenvalues clipped to 0)."""
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_from_stats(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """``‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)``. tr((Σ1Σ2)^½) = tr((Σ1^½ Σ2 Σ1^½)^½) (the similar, symmetric PSD
    form: the TF-GAN route LVDM's ``trace_sqrt_product`` takes), computed by two eigen-decompositions in float64;
    StyleGAN-V / pytorch-fid take ``scipy.linalg.sqrtm(Σ1 Σ2)``, equal up to round-off."""
    mu1, mu2, s1, s2 = mu1.double(), mu2.double(), sigma1.double(), sigma2.double()
    r = _sqrtm_psd(s1)
    tr_sqrt = torch.linalg.eigvalsh(r @ s2 @ r).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + torch.trace(s1) + torch.trace(s2) - 2 * tr_sqrt)


def frechet_distance(feats_fake: torch.Tensor, feats_real: torch.Tensor) -> float:
    """Fréchet distance between two feature sets ``(N, D)``, ``(M, D)``: FVD on I3D features, FID on Inception pool3
    features (StyleGAN-V ``frechet_video_distance``, LVDM ``fvd_utils.frechet_distance``)."""
    return frechet_from_stats(*gaussian_stats(feats_fake), *gaussian_stats(feats_real))


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: Optional[float] = None,
                      coef0: float = 1.0) -> torch.Tensor:
    """sklearn's ``polynomial_kernel`` (its defaults: degree 3, gamma 1/D, coef0 1): ``(γ x·y + c)^d``."""
    g = 1.0 / x.shape[1] if gamma is None else gamma
    return (g * x @ y.T + coef0) ** degree


def kernel_distance(feats_fake: torch.Tensor, feats_real: torch.Tensor, subsets: Optional[int] = None,
                    subset_size: int = 1000, seed: int = 0) -> float:
    """KVD (KID on Inception features): the unbiased MMD² with the cubic polynomial kernel ``(x·y/D + 1)³``.

    ``subsets=None`` — LVDM's ``polynomial_mmd`` (the paper's KVD): on the whole sets,
    ``ΣK_XX(off-diagonal)/(m(m−1)) + ΣK_YY(off-diagonal)/(n(n−1)) − 2ΣK_XY/(mn)``, reported unscaled.
    ``subsets=k`` — StyleGAN-V / StyleGAN2-ADA ``compute_kid``: the mean of the same estimator over k random
    subsets of ``min(N, M, subset_size)`` vectors of each set (drawn without replacement, torch generator of
    ``seed``); StyleGAN-V reports it ×1000 (KID), this returns it unscaled."""
    x, y = feats_fake.detach().double().flatten(1), feats_real.detach().double().flatten(1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"KVD: feature widths differ ({x.shape[1]} vs {y.shape[1]})")

    def mmd(a, b):
        m, n = a.shape[0], b.shape[0]
        if m < 2 or n < 2:
            raise ValueError("KVD needs at least 2 feature vectors per set")
        kxx, kyy, kxy = polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b)
        return ((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
                - 2 * kxy.sum() / (m * n))

    if subsets is None:
        return float(mmd(x, y))
    g = torch.Generator().manual_seed(seed)
    m = min(x.shape[0], y.shape[0], subset_size)
    total = 0.0
    for _ in range(subsets):
        total += float(mmd(x[torch.randperm(x.shape[0], generator=g)[:m]], y[torch.randperm(y.shape[0], generator=g)[:m]]))
    return total / subsets


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """IS from classifier logits ``(N, K)`` (the FID Inception's 1008 logits without the fc bias, as the original
    TF code and StyleGAN-V's ``no_output_bias=True``): p = softmax(logits); the N samples cut into ``splits``
    consecutive parts ``[i·N//s, (i+1)·N//s)``; per part exp(mean_x Σ_y p·(log p − log mean_x p)); returns (mean,
    std) over the parts (StyleGAN-V ``compute_is``)."""
    if logits.ndim != 2:
        raise ValueError(f"IS: expected logits (N, K), got shape {tuple(logits.shape)}")
    n = logits.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"IS: {splits} splits of {n} samples")
    p = torch.softmax(logits.double(), dim=1)
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        kl = part * (part.log() - part.mean(dim=0, keepdim=True).log())
        scores.append(math.exp(float(kl.sum(dim=1).mean())))
    s = torch.tensor(scores, dtype=torch.float64)
    return float(s.mean()), float(s.std(unbiased=False))
