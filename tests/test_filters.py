"""The 3-D frequency filter: masks as the formulas define them, and the low/high mix."""
import math

import numpy as np
import pytest
import torch

from consistent_video_kit.samplers.filters import FILTER_KINDS, frequency_mix, lowpass_mask


def freq(n):
    """The frequency (in units of Nyquist) at each index after fftshift: numpy's own definition."""
    return 2 * np.fft.fftshift(np.fft.fftfreq(n))


def formula(kind, F, H, W, n, ds, dt):
    """The mask written out element by element from the definition."""
    m = torch.zeros(F, H, W, dtype=torch.float64)
    if ds == 0 or dt == 0:
        return m
    rs, rt = round((H // 2) * ds), round((F // 2) * dt)
    uf, uh, uw = freq(F), freq(H), freq(W)
    for f in range(F):
        for h in range(H):
            for w in range(W):
                d2 = ((ds / dt) * uf[f]) ** 2 + uh[h] ** 2 + uw[w] ** 2
                if kind == "butterworth":
                    v = 1 / (1 + (d2 / ds**2) ** n)
                elif kind == "gaussian":
                    v = math.exp(-d2 / (2 * ds**2))
                elif kind == "ideal":
                    v = 1.0 if d2 <= 2 * ds else 0.0
                else:
                    inside = (F // 2 - rt <= f < F // 2 + rt) and (H // 2 - rs <= h < H // 2 + rs) \
                        and (W // 2 - rs <= w < W // 2 + rs)
                    v = 1.0 if inside else 0.0
                m[f, h, w] = v
    return m


@pytest.mark.parametrize("kind", ["butterworth", "gaussian", "ideal", "box"])
@pytest.mark.parametrize("size,ds,dt", [((4, 6, 6), 0.25, 0.25), ((5, 7, 6), 0.5, 0.25), ((8, 8, 8), 0.125, 0.5),
                                         ((4, 6, 6), 0.0, 0.25), ((4, 6, 6), 0.25, 0.0)])
def test_masks_match_formulas(kind, size, ds, dt):
    got = lowpass_mask(kind, *size, n=4, d_s=ds, d_t=dt)
    assert got.shape == size and got.dtype == torch.float32
    assert torch.allclose(got.double(), formula(kind, *size, 4, ds, dt), atol=1e-7)


@pytest.mark.parametrize("kind", ["butterworth", "gaussian", "ideal"])
def test_even_sizes_are_freeinit_and_odd_sizes_keep_zero_frequency(kind):
    """Even sizes: FreeInit's / VideoGuide's ``2i/N − 1`` exactly. Odd sizes: that formula is off-centre
    (5 frames: Butterworth 0.023 at DC); ours keeps the zero frequency whole."""
    F, H, W, ds = 8, 6, 10, 0.125
    i = [torch.arange(k, dtype=torch.float64) for k in (F, H, W)]
    d2 = ((2 * i[0] / F - 1) ** 2)[:, None, None] + ((2 * i[1] / H - 1) ** 2)[None, :, None] + \
        ((2 * i[2] / W - 1) ** 2)[None, None, :]
    official = {"butterworth": 1 / (1 + (d2 / ds**2) ** 4), "gaussian": torch.exp(-d2 / (2 * ds**2)),
                "ideal": (d2 <= 2 * ds).double()}[kind]
    assert torch.allclose(lowpass_mask(kind, F, H, W, 4, ds, ds).double(), official, atol=1e-7)
    for odd in [(5, 7, 9), (15, 65, 65), (1, 3, 3)]:
        m = lowpass_mask(kind, *odd, 4, ds, ds)
        dc = torch.fft.fftshift(torch.fft.fftn(torch.ones(odd))).abs().argmax()   # where fftshift puts the DC
        assert m.flatten()[dc] == 1.0 and m.max() == 1.0


def test_centre_and_corner_values():
    F = H = W = 8
    c = (4, 4, 4)
    ds = dt = 0.25
    corner_d2 = 3.0  # (2·0/8 − 1)² on each axis, d_s/d_t = 1
    bw = lowpass_mask("butterworth", F, H, W, 4, ds, dt)
    assert bw[c] == 1.0 and bw[0, 0, 0].item() == pytest.approx(1 / (1 + (corner_d2 / ds**2) ** 4))
    ga = lowpass_mask("gaussian", F, H, W, 4, ds, dt)
    assert ga[c] == 1.0 and ga[0, 0, 0].item() == pytest.approx(math.exp(-corner_d2 / (2 * ds**2)))
    ide = lowpass_mask("ideal", F, H, W, 4, ds, dt)
    assert ide[c] == 1.0 and ide[0, 0, 0] == 0.0
    box = lowpass_mask("box", F, H, W, 4, ds, dt)  # r = round(4·0.25) = 1 → only [3, 5) per axis
    assert box[c] == 1.0 and box[3, 3, 3] == 1.0 and box[5, 4, 4] == 0.0 and box.sum() == 8
    assert torch.equal(lowpass_mask("none", F, H, W), torch.ones(F, H, W))
    for kind in ("butterworth", "gaussian", "ideal", "box"):
        assert not lowpass_mask(kind, F, H, W, 4, 0.0, 0.25).any()
    with pytest.raises(ValueError, match="filter kind"):
        lowpass_mask("sinc", F, H, W)
    assert set(FILTER_KINDS) == {"butterworth", "gaussian", "ideal", "box", "none"}


def test_mix_keeps_low_of_x_and_high_of_noise():
    g = torch.Generator().manual_seed(0)
    F, H, W = 8, 16, 16
    f = torch.arange(F).view(F, 1, 1)
    h = torch.arange(H).view(1, H, 1)
    w = torch.arange(W).view(1, 1, W)
    checker = ((-1.0) ** (f + h + w)).float()           # the highest frequency on every axis
    x = (3.0 + checker).expand(2, 4, F, H, W).clone()   # DC 3 plus Nyquist
    n = torch.randn(2, 4, F, H, W, generator=g)
    mask = lowpass_mask("butterworth", F, H, W, 4, 0.25, 0.25)
    out = frequency_mix(x, n, mask)
    X, N, O = (torch.fft.fftn(t, dim=(-3, -2, -1)) for t in (x, n, out))
    assert torch.allclose(O[..., 0, 0, 0], X[..., 0, 0, 0], atol=1e-2)          # DC from x
    ny = (..., F // 2, H // 2, W // 2)
    assert torch.allclose(O[ny], N[ny], atol=1e-3)                               # Nyquist from noise
    # the extremes of the mask
    assert torch.allclose(frequency_mix(x, n, torch.ones(F, H, W)), x, atol=1e-5)
    assert torch.allclose(frequency_mix(x, n, torch.zeros(F, H, W)), n, atol=1e-5)
    with pytest.raises(ValueError, match="mask shape"):
        frequency_mix(x, n, torch.ones(F, H, W + 1))
