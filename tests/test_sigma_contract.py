"""The denoiser contract (samplers/__init__.py): σ as a float, per sample ``(B,)`` or per frame
``(B, 1, F, 1, 1)``; one timestep per sample, explicit when σ varies within a sample; CFG doubles both
for its batched call. Checked against single-level calls with a frame-independent stand-in network."""
import pytest
import torch

from consistent_video_kit.samplers import vp
from consistent_video_kit.samplers.guidance import guidance

AC = vp.vp_alphas_cumprod("linear", 0.00085, 0.012)
W = torch.randn(4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 0.5


class FrameIndependentNet:
    """A VP network that treats each frame on its own (a channel mix, a non-linearity), plus a term in its
    per-sample timestep and conditioning. Records what it was given."""

    def __init__(self):
        self.seen = []

    def __call__(self, z, t, cond):
        self.seen.append((z.shape[0], torch.as_tensor(t).clone()))
        t = torch.as_tensor(t, dtype=z.dtype).reshape(-1, 1, 1, 1, 1)
        return torch.einsum("ij,bjfhw->bifhw", W, z).tanh() + 1e-3 * t + cond["text"].reshape(-1, 1, 1, 1, 1)


def data(b=2, f=5):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, 4, f, 3, 3, generator=g, dtype=torch.float64) * 4
    levels = vp.sigmas_from_alphas_cumprod(AC)[torch.tensor([900, 10, 500, 250, 999])[:f]]
    return x, levels


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_per_frame_sigma_equals_single_level_calls(prediction):
    den = vp.VPDenoiser(FrameIndependentNet(), AC, prediction)
    x, levels = data(b=1)
    cond = {"text": torch.tensor([0.3], dtype=torch.float64)}
    t = torch.tensor([700])
    per_frame = den(x, levels.reshape(1, 1, -1, 1, 1), cond, timestep=t)
    for j, s in enumerate(levels.tolist()):
        single = den(x, s, cond, timestep=t)
        assert torch.allclose(per_frame[:, :, j], single[:, :, j], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(per_frame[:, :, 0], den(x, float(levels[1]), cond, timestep=t)[:, :, 0])


def test_per_sample_sigma_derives_one_timestep_per_sample():
    net = FrameIndependentNet()
    den = vp.VPDenoiser(net, AC)
    x, levels = data()
    cond = {"text": torch.tensor([0.3, -0.1], dtype=torch.float64)}
    both = den(x, levels[:2], cond)
    assert torch.equal(net.seen[-1][1], torch.tensor([900, 10]))               # (B,) timesteps, from each σ
    for i in range(2):
        alone = den(x[i:i + 1], float(levels[i]), {"text": cond["text"][i:i + 1]})
        assert torch.allclose(both[i:i + 1], alone, rtol=1e-12, atol=1e-12)
    # a per-frame tensor that is uniform within each sample is per sample too
    same = den(x, levels[:2].reshape(2, 1, 1, 1, 1).expand(2, 1, 5, 1, 1), cond)
    assert torch.allclose(same, both, rtol=1e-12, atol=1e-12)


def test_float_sigma_path_is_unchanged():
    net = FrameIndependentNet()
    den = vp.VPDenoiser(net, AC)
    x, levels = data()
    cond = {"text": torch.tensor([0.3, -0.1], dtype=torch.float64)}
    s = float(levels[2])
    out = den(x, s, cond)
    assert net.seen[-1][1].ndim == 0 and int(net.seen[-1][1]) == 500                # one scalar timestep
    z = x / (1 + s * s) ** 0.5
    assert torch.allclose(out, x - s * net(z, torch.tensor(500), cond), rtol=1e-12, atol=1e-12)
    assert torch.allclose(den(x, torch.tensor(s, dtype=torch.float64), cond), out, rtol=1e-12, atol=1e-12)


def test_what_the_denoiser_refuses(tiny_animatediff):
    den = vp.VPDenoiser(FrameIndependentNet(), AC)
    x, levels = data()
    cond = {"text": torch.zeros(2, dtype=torch.float64)}
    with pytest.raises(ValueError, match=r"varies within a sample.*pass timestep explicitly"):
        den(x, levels.reshape(1, 1, -1, 1, 1), cond)
    with pytest.raises(ValueError, match=r"timestep must be a scalar or one per sample \(2,\), got shape \(3,\)"):
        den(x, 1.0, cond, timestep=torch.tensor([1, 2, 3]))
    m = tiny_animatediff
    text = m.text.encode(["a"])
    with pytest.raises(ValueError, match="conditioned on text; it cannot take 'noise_level'"):
        m.network(torch.zeros(1, 4, 2, 8, 8), torch.tensor(10), {"text": text, "noise_level": torch.tensor([3])})


@pytest.mark.parametrize("mode", ["cfg", "cfg++"])
def test_guidance_doubles_per_frame_sigma_and_timestep(mode):
    net = FrameIndependentNet()
    den = vp.VPDenoiser(net, AC)
    x, levels = data()
    levels = levels.clone()
    levels[1] = 0.0                                   # a clean context frame
    sig = torch.stack([levels, levels.flip(0)]).reshape(2, 1, 5, 1, 1)
    t = torch.tensor([600, 300])
    cond = {"text": torch.tensor([0.5, 0.2], dtype=torch.float64)}
    uncond = {"text": torch.tensor([-0.4, 0.0], dtype=torch.float64)}
    x0, eps = guidance(den, cond, uncond, 3.0, mode)(x, sig, timestep=t)
    assert net.seen[-1][0] == 4 and torch.equal(net.seen[-1][1], torch.tensor([600, 300, 600, 300]))  # one call
    x0_c, x0_u = den(x, sig, cond, timestep=t), den(x, sig, uncond, timestep=t)
    assert torch.allclose(x0, x0_u + 3.0 * (x0_c - x0_u), rtol=1e-12, atol=1e-12)
    s = sig.expand_as(x)
    ref_eps = (x - (x0 if mode == "cfg" else x0_u)) / s
    noisy = s > 0
    assert torch.allclose(eps[noisy], ref_eps[noisy], rtol=1e-12, atol=1e-12)
    assert torch.equal(eps[~noisy], torch.zeros_like(eps[~noisy])) and torch.isfinite(eps).all()


def test_signal_scale_denoiser_feeds_the_network_a_t_x_and_starts_from_unit_noise():
    """VideoCrafter2's forward process z_t = √ᾱ_t·s_t·x0 + √(1−ᾱ_t)·ε, written by hand: on its own timesteps the
    denoiser gives the network exactly z_t for x = x0 + σ_t·ε (σ_t = b_t/a_t), and the sampler's start is z_T = ε."""
    import math
    from consistent_video_kit.samplers.sampling import initial_latent
    from consistent_video_kit.samplers.vp import VPDenoiser, vp_alphas_cumprod
    ac = vp_alphas_cumprod("scaled_linear", 0.00085, 0.012)
    scale = torch.cat([torch.linspace(1.0, 0.7, 400, dtype=torch.float64), torch.full((1000,), 0.7, dtype=torch.float64)])
    seen = []
    den = VPDenoiser(lambda z, t, c: seen.append((z, t)) or torch.zeros_like(z), ac, "epsilon", signal_scale=scale)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(1, 4, 2, 3, 3, generator=g, dtype=torch.float64), torch.randn(1, 4, 2, 3, 3, generator=g,
                                                                                        dtype=torch.float64)
    for t in (0, 150, 399, 400, 981):
        a, b = math.sqrt(ac[t]) * float(scale[t]), math.sqrt(1 - ac[t])
        sigma = b / a
        assert abs(float(den.sigmas[t]) - sigma) < 1e-12 * sigma
        den(x0 + sigma * eps, sigma, {})
        z, tt = seen[-1]
        assert int(tt) == t and torch.allclose(z, a * x0 + b * eps, atol=1e-12)
    plain = VPDenoiser(lambda z, t, c: z, ac, "epsilon")
    assert torch.allclose(den.sigmas[:400], plain.sigmas[:400] / scale[:400])
    sig = den.sigmas.flip(0)[:2]
    x_T = initial_latent((1, 4, 2, 3, 3), sig, 5, denoise=den)
    assert torch.allclose(x_T * den.input_scale(float(sig[0])), initial_latent((1, 4, 2, 3, 3), sig, 5) /
                          math.sqrt(1 + float(sig[0]) ** 2), atol=1e-6)
