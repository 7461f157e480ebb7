"""3-D frequency filters for video latents ``[..., C, F, H, W]`` (FreeInit-style).

``lowpass_mask`` builds a centred mask ``(F, H, W)`` (1 = keep the low frequency). With
``D² = ((d_s/d_t)·u_F(f))² + u_H(h)² + u_W(w)²``, ``u_N(i) = 2(i − N//2)/N`` the frequency of fftshifted index i
(zero at the shifted DC, index N//2):

- butterworth: ``1 / (1 + (D²/d_s²)^n)``
- gaussian: ``exp(−D² / (2·d_s²))``
- ideal: ``1 if D² ≤ 2·d_s else 0``
- box: 1 on ``[c − r, c + r)`` along each axis, ``c = size // 2``, ``r = round((H // 2)·d_s)`` for both
  spatial axes and ``round((F // 2)·d_t)`` in time
- none: all ones (keep everything: the mix returns x unchanged)

Every mask but ``none`` is all zeros when d_s or d_t is 0. ``frequency_mix`` keeps x's low frequencies
and takes the noise's high ones.

For even N, ``u_N(i) = 2i/N − 1``, FreeInit's (and VideoGuide's) formula exactly. For odd N that formula is
off-centre by 1/N: with 5 frames the Butterworth mask is 0.023 at zero frequency, so the mix would replace
almost the whole latent with noise. We centre it (a documented deviation; equal for even sizes).
"""
from __future__ import annotations

import torch

FILTER_KINDS = ("butterworth", "gaussian", "ideal", "box", "none")


def lowpass_mask(kind: str, frames: int, height: int, width: int, n: int = 4, d_s: float = 0.25,
                 d_t: float = 0.25) -> torch.Tensor:
    """Centred low-pass mask ``(frames, height, width)``, float32."""
    if kind not in FILTER_KINDS:
        raise ValueError(f"filter kind must be one of {FILTER_KINDS}, got {kind!r}")
    if min(frames, height, width) < 1:
        raise ValueError(f"mask size must be ≥ 1 on every axis, got {(frames, height, width)}")
    if d_s < 0 or d_t < 0:
        raise ValueError(f"d_s and d_t must be ≥ 0, got d_s={d_s}, d_t={d_t}")
    F, H, W = frames, height, width
    if kind == "none":
        return torch.ones(F, H, W)
    if d_s == 0 or d_t == 0:
        return torch.zeros(F, H, W)
    if kind == "box":
        mask = torch.zeros(F, H, W)
        rs, rt = round((H // 2) * d_s), round((F // 2) * d_t)
        cf, ch, cw = F // 2, H // 2, W // 2
        mask[max(cf - rt, 0):cf + rt, max(ch - rs, 0):ch + rs, max(cw - rs, 0):cw + rs] = 1.0
        return mask
    def u(n):   # frequency of each fftshifted index, 0 at the DC (index n // 2)
        return 2 * (torch.arange(n, dtype=torch.float64) - n // 2) / n
    df = ((d_s / d_t) * u(F)) ** 2
    dh = u(H) ** 2
    dw = u(W) ** 2
    d2 = df[:, None, None] + dh[None, :, None] + dw[None, None, :]
    if kind == "butterworth":
        mask = 1.0 / (1.0 + (d2 / d_s**2) ** n)
    elif kind == "gaussian":
        mask = torch.exp(-d2 / (2 * d_s**2))
    else:  # ideal
        mask = (d2 <= 2 * d_s).to(torch.float64)
    return mask.to(torch.float32)


def frequency_mix(x: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Low frequencies of ``x``, high frequencies of ``noise``: ``[..., F, H, W]`` each, mask ``(F, H, W)``.

    FFT over the last three axes → fftshift → ``X·M + N·(1 − M)`` → ifftshift → inverse FFT → real part.
    Computed in float32 (or float64 if x is), returned in x's dtype.
    """
    if x.shape != noise.shape:
        raise ValueError(f"x and noise must have the same shape, got {tuple(x.shape)} and {tuple(noise.shape)}")
    if tuple(mask.shape) != tuple(x.shape[-3:]):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the latent's (F, H, W) {tuple(x.shape[-3:])}")
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    dims = (-3, -2, -1)
    m = mask.to(device=x.device, dtype=work)
    xf = torch.fft.fftshift(torch.fft.fftn(x.to(work), dim=dims), dim=dims)
    nf = torch.fft.fftshift(torch.fft.fftn(noise.to(work), dim=dims), dim=dims)
    mixed = xf * m + nf * (1 - m)
    return torch.fft.ifftn(torch.fft.ifftshift(mixed, dim=dims), dim=dims).real.to(x.dtype)
