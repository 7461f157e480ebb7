"""LVDM's 3-D video autoencoder: shapes, the released key set and shapes (meta device, against the manifest),
parameter counts, TATS replicate "same" padding against a hand computation, the posterior clamp, the decoder's
temporal reach (against an autograd dependency probe), overlapped decoding (exact mode equals the one-shot decode,
plain mode does not because GroupNorm pools over time, only window-sized pieces are decoded) and the errors."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

from consistent_video_kit.models.loaders import CONFIG_ROOT
from consistent_video_kit.models.lvdm import autoencoder3d as ae3d
from consistent_video_kit.models.lvdm.autoencoder3d import VideoAutoencoderKL, decode_overlapped, plan_windows
from test_loaders import MANIFESTS, needs_manifests

CONFIG = os.path.join(CONFIG_ROOT, "lvdm", ae3d.CONFIG_NAME)


def released_config() -> dict:
    with open(CONFIG) as f:
        return json.load(f)


def ddconfig(n_hiddens=16, factors=(4, 8, 8)) -> dict:
    dd = json.loads(json.dumps(released_config()["ddconfig"]))
    dd["encoder"].update(n_hiddens=n_hiddens, downsample=list(factors))
    dd["decoder"].update(n_hiddens=n_hiddens, upsample=list(factors))
    return dd


def tiny(factors=(4, 8, 8), dtype=torch.float32, seed=0) -> VideoAutoencoderKL:
    """n_hiddens 16 (the smallest the GroupNorm(32)s allow), random GroupNorm affines."""
    torch.manual_seed(seed)
    ae = VideoAutoencoderKL(ddconfig(16, factors), 4).eval()
    with torch.no_grad():
        for m in ae.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return ae.to(dtype)


@pytest.fixture(scope="module")
def tiny_ae():
    return tiny()


def latents(t, h=1, w=1, b=1, dtype=torch.float32, seed=1):
    return torch.randn(b, 4, t, h, w, generator=torch.Generator().manual_seed(seed)).to(dtype)


# ---------------------------------------------------------------- shapes, keys, sizes

def test_shapes(tiny_ae):
    x = torch.rand(2, 3, 16, 32, 40, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        mean, logvar = tiny_ae.encode(x)
        video = tiny_ae.decode(latents(5, 2, 3))
    assert mean.shape == logvar.shape == (2, 4, 4, 4, 5)
    assert video.shape == (1, 3, 20, 16, 24)
    assert tiny_ae.temporal_factor == 4


def test_logvar_clamped_as_the_official_posterior(tiny_ae):
    with torch.no_grad():
        bias = tiny_ae.quant_conv.conv.bias
        saved = bias.clone()
        bias[4:6], bias[6:8] = 1e3, -1e3          # the log-variance channels, far outside [-30, 20]
        try:
            mean, logvar = tiny_ae.encode(torch.zeros(1, 3, 4, 8, 8))
        finally:
            bias.copy_(saved)
    assert torch.all(logvar[:, :2] == 20.0) and torch.all(logvar[:, 2:] == -30.0)
    assert mean.abs().max() < 1e3 / 2               # the mean channels were not touched


def meta_full_size() -> VideoAutoencoderKL:
    with torch.device("meta"):
        return VideoAutoencoderKL.from_config(released_config())


@needs_manifests
def test_released_keys_and_shapes():
    with open(os.path.join(MANIFESTS, "lvdm_sky_videoae.json")) as f:
        man = json.load(f)
    aliases = dict(man["aliases"])
    want = {k: tuple(s) for k, s in man["tensors"].items() if k not in aliases and not k.startswith("loss.")}
    ae = meta_full_size()
    got = {k: tuple(v.shape) for k, v in ae.state_dict().items()}
    assert set(got) == set(want), (sorted(set(got) - set(want)), sorted(set(want) - set(got)))
    assert got == want
    assert ae.released_aliases() == aliases                 # every alias pair of the file, and no other
    assert all(man["tensors"][a] == man["tensors"][k] for a, k in aliases.items())


def test_full_size_parameter_counts():
    ae = meta_full_size()
    count = lambda m: sum(p.numel() for p in m.parameters())   # noqa: E731
    assert round(count(ae.encoder) / 1e6, 2) == 7.46
    assert round(count(ae.decoder) / 1e6, 2) == 11.99
    assert count(ae.quant_conv) == 8 * 8 + 8 and count(ae.post_quant_conv) == 4 * 4 + 4


# ---------------------------------------------------------------- replicate "same" padding, by hand

def clamp_pad(x, pads):
    """Replicate padding by index clamping, ``pads`` = ((t_lo, t_hi), (h_lo, h_hi), (w_lo, w_hi))."""
    for dim, (lo, hi) in zip((2, 3, 4), pads):
        n = x.shape[dim]
        idx = torch.arange(-lo, n + hi).clamp(0, n - 1)
        x = x.index_select(dim, idx)
    return x


def zero_insert(x, strides):
    """Put s − 1 zeros between neighbouring samples along t, h, w."""
    b, c, t, h, w = x.shape
    st, sh, sw = strides
    out = x.new_zeros(b, c, (t - 1) * st + 1, (h - 1) * sh + 1, (w - 1) * sw + 1)
    out[:, :, ::st, ::sh, ::sw] = x
    return out


@pytest.mark.parametrize("kernel, stride, pads", [
    (3, (1, 1, 1), ((1, 1), (1, 1), (1, 1))),
    (4, (2, 2, 2), ((1, 1), (1, 1), (1, 1))),
    (4, (1, 2, 2), ((2, 1), (1, 1), (1, 1))),     # k − s = 3: the odd pad on the left
])
def test_same_pad_conv_is_replicate_pad_then_plain_conv(kernel, stride, pads):
    torch.manual_seed(0)
    conv = ae3d.SamePadConv3d(3, 5, kernel, stride=stride).double()
    x = torch.randn(2, 3, 6, 8, 10, dtype=torch.float64)
    want = F.conv3d(clamp_pad(x, pads), conv.conv.weight, conv.conv.bias, stride=stride)
    got = conv(x)
    assert got.shape == (2, 5, 6 // stride[0], 8 // stride[1], 10 // stride[2])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("stride, pads", [((2, 2, 2), ((1, 1), (1, 1), (1, 1))), ((1, 2, 2), ((2, 1), (1, 1), (1, 1)))])
def test_same_pad_transposed_conv_by_zero_insertion(stride, pads):
    """Transposed conv with padding k − 1 = zero-insert the replicate-padded input, then a plain conv with the
    kernel flipped and in/out swapped."""
    torch.manual_seed(0)
    up = ae3d.SamePadConvTranspose3d(3, 5, 4, stride=stride).double()
    x = torch.randn(1, 3, 3, 4, 5, dtype=torch.float64)
    w = up.convt.weight.flip(2, 3, 4).transpose(0, 1)            # (in, out, k...) -> (out, in, k...) flipped
    want = F.conv3d(zero_insert(clamp_pad(x, pads), stride), w, up.convt.bias)
    got = up(x)
    assert got.shape == (1, 5, 3 * stride[0], 4 * stride[1], 5 * stride[2])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- temporal reach

def probed_reach(ae, t=30, c=15):
    """Latents that the frames of latent c depend on, by autograd, GroupNorm taken out (it couples all frames)."""
    z = latents(t, dtype=ae.quant_conv.conv.weight.dtype).requires_grad_(True)
    y = ae._decode(z, norm=lambda layer, h: h)
    y[:, :, 4 * c:4 * c + 4].sum().backward()
    dep = (z.grad.abs().sum((0, 1, 3, 4)) > 0).nonzero().flatten()
    return c - dep.min().item(), dep.max().item() - c


def test_decoder_temporal_reach(tiny_ae):
    assert ae3d.decoder_temporal_margins(meta_full_size()) == (6, 6)
    assert ae3d.decoder_temporal_margins(tiny_ae) == probed_reach(tiny_ae) == (6, 6)
    small = tiny((4, 2, 2), torch.float64)
    assert ae3d.decoder_temporal_margins(small) == probed_reach(small)


def test_groupnorm_pools_over_time(tiny_ae):
    """The same first 8 latents decode differently inside 20 and 40 latents (far beyond the conv reach): the
    decoder's GroupNorms take statistics over time, so no plain windowing can equal the one-shot decode."""
    z = latents(40)
    with torch.no_grad():
        a, b = tiny_ae.decode(z[:, :, :20])[:, :, :32], tiny_ae.decode(z)[:, :, :32]
    assert (a - b).abs().max() > 1e-3 * b.abs().max()


# ---------------------------------------------------------------- overlapped decoding

def test_plan_windows_tile_and_keep_margins():
    for frames, window, overlap in ((10, 4, 2), (16, 8, 4), (31, 14, 12), (13, 12, 0), (5, 8, 4), (8, 8, 4)):
        plan = plan_windows(frames, window, overlap)
        assert plan[0][2] == 0 and plan[-1][3] == frames
        for (a, b, ka, kb), nxt in zip(plan, plan[1:] + [None]):
            assert 0 <= a <= ka < kb <= b <= frames and b - a == min(window, frames)
            if nxt is not None:
                assert nxt[2] == kb                                  # kept ranges tile [0, frames)
                assert b - kb >= overlap // 2 and nxt[2] - nxt[0] >= overlap // 2
    assert plan_windows(10, 4, 2) == [(0, 4, 0, 3), (2, 6, 3, 5), (4, 8, 5, 7), (6, 10, 7, 10)]
    assert plan_windows(10, 8, 4) == [(0, 8, 0, 4), (2, 10, 4, 10)]  # the last window moved back, full length


@pytest.mark.parametrize("t, window, overlap, h, w", [(19, 14, 12, 1, 1), (27, 16, 12, 1, 2)])
def test_exact_overlapped_equals_one_shot_released_architecture(tiny_ae, t, window, overlap, h, w):
    z = latents(t, h, w)
    with torch.no_grad():
        one = tiny_ae.decode(z)
        got = decode_overlapped(tiny_ae, z, window, overlap, "exact")
    assert got.shape == one.shape
    assert (got - one).abs().max() <= 1e-5 * one.abs().max()


@pytest.fixture(scope="module")
def small64():
    return tiny((4, 2, 2), torch.float64)             # reach 4: overlaps from 8


@pytest.mark.parametrize("t, window, overlap, b, h, w", [
    (15, 10, 8, 1, 2, 2), (11, 10, 8, 2, 1, 1), (30, 12, 8, 1, 1, 1), (23, 16, 10, 1, 1, 2), (40, 20, 14, 2, 1, 1),
    (9, 10, 8, 1, 1, 1)])
def test_exact_overlapped_equals_one_shot(small64, t, window, overlap, b, h, w):
    z = latents(t, h, w, b, torch.float64, seed=t)
    with torch.no_grad():
        one = small64.decode(z)
        got = decode_overlapped(small64, z, window, overlap, "exact")
    torch.testing.assert_close(got, one, rtol=0, atol=1e-10 * one.abs().max().item())


def test_exact_needs_the_overlap_it_asks_for(small64, monkeypatch):
    """With overlap/2 one latent short of the reach the seams show, so refusing smaller overlaps is right."""
    reach = max(ae3d.decoder_temporal_margins(small64))
    z = latents(30, dtype=torch.float64)
    with torch.no_grad():
        one = small64.decode(z)
        monkeypatch.setattr(ae3d, "decoder_temporal_margins", lambda ae: (0, 0))
        short = decode_overlapped(small64, z, 14, 2 * reach - 2, "exact")
    assert (short - one).abs().max() > 1e-6 * one.abs().max()


def test_plain_mode_decodes_each_window_alone(small64):
    z = latents(30, dtype=torch.float64)
    with torch.no_grad():
        got = decode_overlapped(small64, z, 12, 8, "plain")
        one = small64.decode(z)
        for a, b, ka, kb in plan_windows(30, 12, 8):
            alone = small64.decode(z[:, :, a:b])
            assert torch.equal(got[:, :, 4 * ka:4 * kb], alone[:, :, 4 * (ka - a):4 * (kb - a)])
    assert (got - one).abs().max() > 1e-3 * one.abs().max()        # GroupNorm: the windows' own statistics


@pytest.mark.parametrize("mode", ["exact", "plain"])
def test_only_window_sized_pieces_are_decoded(small64, mode, monkeypatch):
    seen = []
    real = small64.decoder.forward
    monkeypatch.setattr(small64.decoder, "forward", lambda x, norm=None: seen.append(x.shape[2]) or real(x, norm))
    calls = []
    with torch.no_grad():
        out = decode_overlapped(small64, latents(50, dtype=torch.float64), 12, 8, mode,
                                callback=lambda done, total: calls.append((done, total)))
    n_windows = len(plan_windows(50, 12, 8))
    passes = len(small64.decoder.norm_layers()) + 1 if mode == "exact" else 1
    assert out.shape[2] == 200 and max(seen) == 12 and len(seen) == n_windows * passes
    assert calls[-1] == (n_windows * passes, n_windows * passes) and len(calls) == n_windows * passes


def test_windows_take_the_models_dtype(small64):
    z = latents(20)                                                   # float32 latents, float64 model
    out = decode_overlapped(small64, z, 12, 8, "plain", out_device="cpu")
    # (4, 2, 2) factors: ×2 in space
    assert out.device.type == "cpu" and out.dtype == torch.float64 and out.shape == (1, 3, 80, 2, 2)
    assert decode_overlapped(small64, z[:, :, :10], 12, 8, "plain").dtype == torch.float64


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("shape, words", [
    ((1, 3, 15, 16, 16), ["frame count F", "multiple of 4", "15"]),
    ((1, 3, 16, 20, 16), ["height H", "multiple of 8", "20"]),
    ((1, 3, 16, 16, 12), ["width W", "multiple of 8", "12"]),
    ((1, 4, 16, 16, 16), ["(B, 3, F, H, W)", "(1, 4, 16, 16, 16)"]),
])
def test_encode_rejects_bad_sizes(tiny_ae, shape, words):
    with pytest.raises(ValueError) as e:
        tiny_ae.encode(torch.zeros(shape))
    assert all(w in str(e.value) for w in words), str(e.value)


def test_decode_rejects_bad_latents(tiny_ae):
    for shape in ((1, 8, 4, 2, 2), (1, 4, 2, 2), (1, 4, 0, 2, 2)):
        with pytest.raises(ValueError, match=r"\(B, 4, T, h, w\)"):
            tiny_ae.decode(torch.zeros(shape))


@pytest.mark.parametrize("window, overlap, mode, words", [
    (8, 3, "plain", ["overlap", "even", "3"]),
    (8, -2, "plain", ["overlap", "≥ 0"]),
    (8, 8, "plain", ["smaller than the window", "8"]),
    (0, 0, "plain", ["window", "≥ 1", "0"]),
    (8.0, 2, "plain", ["window", "whole number"]),
    (16, 10, "exact", ["at least 12", "10"]),
    (16, 12, "fast", ["'exact' or 'plain'", "fast"]),
])
def test_overlapped_rejects_bad_windows(tiny_ae, window, overlap, mode, words):
    with pytest.raises(ValueError) as e:
        decode_overlapped(tiny_ae, latents(30), window, overlap, mode)
    assert all(w in str(e.value) for w in words), str(e.value)


@pytest.mark.parametrize("change, words", [
    (lambda d: d["encoder"].update(n_hiddens=8), ["n_hiddens", "multiple of 16", "8"]),
    (lambda d: d["decoder"].update(n_hiddens=24), ["n_hiddens", "multiple of 16", "24"]),
    (lambda d: d["decoder"].update(norm_type="batch"), ["norm_type", "'batch'"]),
    (lambda d: d.update(double_z=False), ["double_z"]),
    (lambda d: d["encoder"].update(downsample=[4, 6, 8]), ["powers of two", "[4, 6, 8]"]),
    (lambda d: d["decoder"].update(z_channels=8), ["z_channels", "8"]),
    (lambda d: d.pop("decoder"), ["'decoder'"]),
])
def test_bad_configs_are_refused(change, words):
    dd = ddconfig(16)
    change(dd)
    with pytest.raises(ValueError) as e:
        VideoAutoencoderKL(dd, 4)
    assert all(w in str(e.value) for w in words), str(e.value)
