"""VideoGuide: equivalence with the baseline, exact evaluation counts, the interpolation's effect on
Gaussian data, timestep vs σ matching, model loading, self-guidance and errors."""
import copy
import math

import pytest
import torch

from cvk_testkit.gaussian import GaussianDenoiser
from consistent_video_kit.models.bundle import LatentFormat
from consistent_video_kit.nodes.common import CVKInputError
from consistent_video_kit.nodes.video import CVK_TextToVideo
from consistent_video_kit.nodes.videoguide import CVK_VideoGuideSampler
from consistent_video_kit.samplers import schedules, vp
from consistent_video_kit.samplers.guidance import Guided, guidance
from consistent_video_kit.samplers.noise import generator
from consistent_video_kit.samplers.videoguide import (VideoGuideSettings, default_timesteps, guide_denoiser,
                                                      guide_levels, guide_x0, sample_videoguide)

ARGS = dict(prompt="a cat", negative_prompt="", seed=3, steps=10, guided_steps=3, guide_steps=4, guide_grid=8,
            guide_weight=0.2, guidance="cfg", guidance_scale=7.5, guide_guidance="cfg++", guide_guidance_scale=0.8,
            filter="butterworth", filter_n=4, filter_d_s=0.125, filter_d_t=0.125, match_by="sigma", frames=4, width=64,
            height=64, grid="videoguide")


def spy_network(model, monkeypatch):
    """Record (VP input, timestep, batch) of every call of a model's network."""
    calls = []
    net = model.network

    def spy(z, t, cond):
        calls.append((z.detach().clone(), t.clone(), z.shape[0]))
        return net(z, t, cond)
    monkeypatch.setitem(model.__dict__, "network", spy)
    return calls


def test_weight_zero_filter_none_is_the_baseline_bit_for_bit(tiny_animatediff, tiny_modelscope, monkeypatch):
    s_calls = spy_network(tiny_animatediff, monkeypatch)
    g_calls = spy_network(tiny_modelscope, monkeypatch)
    args = dict(ARGS, guide_weight=0.0, filter="none", grid="model default")
    (vg,) = CVK_VideoGuideSampler().sample(tiny_animatediff, guide=tiny_modelscope, **args)
    assert len(s_calls) == 10 and len(g_calls) == 3 * 4           # N sampler, I·τ guide evaluations
    assert {b for *_, b in s_calls} == {2} and {b for *_, b in g_calls} == {2}   # cond+uncond batched: 1 call each
    (base,) = CVK_TextToVideo().generate(tiny_animatediff, "a cat", "", 3, 10, "cfg", 7.5, "ddim", 0.0, 4, 64, 64)
    assert torch.equal(vg["samples"], base["samples"])
    (moved,) = CVK_VideoGuideSampler().sample(tiny_animatediff, guide=tiny_modelscope, **dict(args, guide_weight=0.2))
    assert not torch.equal(moved["samples"], base["samples"])


@pytest.mark.parametrize("scale,batch", [(7.5, 2), (1.0, 1)])
def test_exact_evaluation_counts(scale, batch):
    ac = vp.vp_alphas_cumprod("linear", 0.00085, 0.012)
    sigmas = schedules.sigma_grid(ac, default_timesteps(20), "zero")
    sampler, guide = GaussianDenoiser(0.1, 0.5), GaussianDenoiser(0.4, 0.5)
    c, u = {"mean": torch.tensor([0.1])}, {"mean": torch.tensor([0.0])}
    st = VideoGuideSettings(guided_steps=4, guide_steps=6, guide_grid=24)
    sample_videoguide(guidance(sampler, c, u, scale, "cfg"), guidance(guide, c, u, scale, "cfg"),
                      torch.zeros(1, 4, 4, 8, 8), sigmas, vp.sigmas_from_alphas_cumprod(ac), st)
    assert sampler.calls == 20 and guide.calls == 4 * 6
    assert set(sampler.batch_sizes) == set(guide.batch_sizes) == {batch}


def predicted_mean(mu_s, mu_g, std, sigmas, table, st):
    """Expected output mean of VideoGuide with exact Gaussian denoisers (data N(μ_s, std²) for the sampler,
    N(μ_g, std²) for the guide), starting from mean 0. Every operation is affine and all noise is zero-mean,
    so means follow: sampler E[x0] = μ_s + a(σ)(M − μ_s) with a(σ) = std²/(std² + σ²); the guide's τ steps
    on its levels l_k from Y = E[x0_s]: E[x0_g] = μ_g + a(l_k)(Y − μ_g), Y ← E[x0_g] + (l_{k+1}/l_k)(Y − E[x0_g]);
    x̄0 = E[x0_s] + w(E[x0_g] − E[x0_s]); M' = x̄0 + (σ'/σ)(M − E[x0_s]). The low-pass mix keeps the
    (constant) mean, since the mask is 1 at zero frequency."""
    a = lambda s: std**2 / (std**2 + s**2)  # noqa: E731
    m = 0.0
    sig = [float(s) for s in sigmas]
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        x0s = mu_s + a(s) * (m - mu_s)
        x0 = x0s
        if i < st.guided_steps:
            lv = [float(v) for v in guide_levels(table, s, st.guide_grid)]
            y = x0s
            for k in range(st.guide_steps):
                x0g = mu_g + a(lv[k]) * (y - mu_g)
                if k < st.guide_steps - 1:
                    y = x0g + lv[k + 1] / lv[k] * (y - x0g)
            x0 = x0s + st.weight * (x0g - x0s)
        m = x0 if s_next == 0 else x0 + s_next / s * (m - x0s)
    return m


def test_gaussian_output_mean_moves_toward_the_guide():
    ac = vp.vp_alphas_cumprod("linear", 0.00085, 0.012)
    table = vp.sigmas_from_alphas_cumprod(ac)
    sigmas = schedules.sigma_grid(ac, default_timesteps(25), "zero")
    mu_s, mu_g, std = 0.0, 1.0, 0.5
    st = VideoGuideSettings(guided_steps=8, guide_steps=10, guide_grid=24, weight=0.5)
    x = torch.randn(1, 4, 8, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = x * math.sqrt(1 + float(sigmas[0]) ** 2)
    run = lambda w: sample_videoguide(guidance(GaussianDenoiser(mu_s, std), None), guidance(GaussianDenoiser(mu_g, std), None),  # noqa: E731
                                      x, sigmas, table, VideoGuideSettings(**{**st.__dict__, "weight": w}), seed=1)
    guided, plain = run(0.5), run(0.0)
    n = guided.numel()
    pred, pred0 = predicted_mean(mu_s, mu_g, std, sigmas, table, st), predicted_mean(mu_s, mu_g, std, sigmas, table,
                                                                                    VideoGuideSettings(**{**st.__dict__, "weight": 0.0}))
    assert abs(pred0) < 1e-12 and pred > 0.05        # toward the guide's mean, by a visible amount
    se = guided.std().item() / math.sqrt(n)
    assert abs(guided.mean().item() - pred) <= 4 * se
    assert abs(plain.mean().item() - pred0) <= 4 * plain.std().item() / math.sqrt(n)


@pytest.mark.parametrize("match_by", ["timestep", "sigma"])
def test_guide_inputs_timestep_vs_sigma(tiny_animatediff, tiny_modelscope, match_by):
    """timestep: the guide gets the sampler's integer sub-grid timesteps and z = sqrt(ᾱ_s)·x0 + sqrt(1−ᾱ_s)·n with
    the SAMPLER's ᾱ (the official code); sigma: the timesteps of its own table nearest each level, and its own ᾱ."""
    s_ac, g_ac = tiny_animatediff.alphas_cumprod, tiny_modelscope.alphas_cumprod
    seen = []

    def net(z, t, cond):
        seen.append((z, t))
        return torch.zeros_like(z)       # ε = 0: the guide's x0 is its input
    den = guide_denoiser(match_by, net, g_ac, "epsilon", s_ac)
    t = 899
    s_sig = vp.sigmas_from_alphas_cumprod(s_ac)
    levels = guide_levels(den.sigmas, float(s_sig[t]), 24)
    x0 = torch.randn(1, 4, 2, 4, 4)
    guide_x0(guidance(den, None), x0, levels, 3, torch.Generator().manual_seed(9))
    n = torch.randn(x0.shape, generator=torch.Generator().manual_seed(9))
    official = torch.linspace(0, t, 25, dtype=torch.float64).round()[1:].flip(0).long()
    ac = s_ac if match_by == "timestep" else g_ac
    t0 = t if match_by == "timestep" else int(vp.sigma_to_t(float(s_sig[t]), vp.sigmas_from_alphas_cumprod(g_ac)))
    sub = official if match_by == "timestep" else torch.linspace(0, t0, 25, dtype=torch.float64).round()[1:].flip(0).long()
    assert [int(tt) for _, tt in seen] == sub[:3].tolist()
    if match_by == "sigma":
        assert t0 != t and sub[0] == t0          # the two tables put the same σ at different timesteps
    z0 = ac[sub[0]].sqrt().float() * x0 + (1 - ac[sub[0]]).sqrt().float() * n
    assert torch.allclose(seen[0][0], z0, atol=1e-5)


def test_official_timesteps_reach_the_guide_end_to_end(tiny_animatediff, tiny_modelscope, monkeypatch):
    g_calls = spy_network(tiny_modelscope, monkeypatch)
    CVK_VideoGuideSampler().sample(tiny_animatediff, guide=tiny_modelscope, **dict(ARGS, match_by="timestep", guide_grid=24))
    grid = default_timesteps(10)
    want = [int(v) for t in grid[:3] for v in torch.linspace(0, int(t), 25, dtype=torch.float64).round()[1:].flip(0)[:4]]
    assert [int(t) for _, t, _ in g_calls] == want and want[:4] == [999, 957, 916, 874]


def test_sampler_and_guide_are_loaded_in_one_call_and_stay(tiny_animatediff, tiny_modelscope, monkeypatch):
    """The host's model manager decides what is resident: the node asks once for both UNets (with room for the
    sampling batch) before the first step and moves nothing itself during or after the run; without guided
    steps the guide is not loaded at all."""
    from consistent_video_kit import host
    loads, moves = [], []
    real = host.load_models

    def spy(parts, memory_required=0):
        parts = list(parts)
        loads.append(([p.role for p in parts], [p.module for p in parts], memory_required))
        return real(parts, memory_required)
    monkeypatch.setattr(host, "load_models", spy)
    nets = {id(tiny_animatediff.unet), id(tiny_modelscope.unet)}
    to = torch.nn.Module.to

    def watch_to(self, *a, **k):
        if id(self) in nets:
            moves.append(type(self).__name__)
        return to(self, *a, **k)
    monkeypatch.setattr(torch.nn.Module, "to", watch_to)
    CVK_VideoGuideSampler().sample(tiny_animatediff, guide=tiny_modelscope, **ARGS)
    unet_loads = [(m, need) for roles, m, need in loads if "diffusion" in roles]
    assert unet_loads == [([tiny_animatediff.unet, tiny_modelscope.unet], tiny_animatediff.memory_required((1, 4, 4, 8, 8)))]
    assert unet_loads[0][1] == 2 * 4 * 8 * 8 * 4 * 0.01 * 1024 * 1024 // 1
    assert moves == []
    loads.clear()
    CVK_VideoGuideSampler().sample(tiny_animatediff, guide=tiny_modelscope, **dict(ARGS, guided_steps=0))
    assert [m for roles, m, _ in loads if "diffusion" in roles] == [[tiny_animatediff.unet]]


def test_self_guidance_needs_no_second_model(tiny_animatediff):
    (a,) = CVK_VideoGuideSampler().sample(tiny_animatediff, **ARGS)
    (b,) = CVK_VideoGuideSampler().sample(tiny_animatediff, guide=tiny_animatediff, **ARGS)
    (c,) = CVK_TextToVideo().generate(tiny_animatediff, "a cat", "", 3, 10, "cfg", 7.5, "ddim", 0.0, 4, 64, 64)
    assert torch.equal(a["samples"], b["samples"]) and torch.isfinite(a["samples"]).all()
    assert not torch.equal(a["samples"], c["samples"])


def test_errors(tiny_animatediff, tiny_modelscope):
    other = copy.copy(tiny_modelscope)
    other.latent_format = LatentFormat(4, 0.13025, 8)
    cases = [
        (dict(guide=other), "input 'guide' got", "a model in the sampler's latent space (4 channels, scaling 0.18215"),
        (dict(guide=tiny_animatediff, frames=33), "input 'frames' got 33", "at most 32 frames"),
        (dict(guide="vc2.ckpt"), "input 'guide' got 'vc2.ckpt'", "a CVK_VIDEO_MODEL"),
        (dict(guided_steps=11), "input 'guided_steps' got 11", "at most steps (10)"),
        (dict(guide_steps=9), "input 'guide_steps' got 9", "at most guide_grid (8)"),
        (dict(steps=50, guided_steps=50, guide_grid=24), "input 'guided_steps' got 50",
         "too low for a guide sub-grid of 24 points"),
    ]
    for change, head, tail in cases:
        args = dict(ARGS, guide=tiny_modelscope)
        args.update(change)
        model = tiny_modelscope if change.get("frames") else tiny_animatediff
        with pytest.raises(CVKInputError) as e:
            CVK_VideoGuideSampler().sample(model, **args)
        assert head in str(e.value) and tail in str(e.value), str(e.value)


# ---------------------------------------------------------------- the frequency filter after each guided step

def reference_lowpass(kind, F, H, W, n, d_s, d_t):
    """The documented masks (samplers/filters.py docstring), written here on *unshifted* FFT bins: for even sizes
    the docstring's centred coordinate 2f/F − 1 at shifted index f is the frequency 2·k/F of bin k
    (``2·fftfreq``), so no fftshift is needed. (F, H, W) float64; 1 keeps the low frequency."""
    assert F % 2 == H % 2 == W % 2 == 0
    f, h, w = (2 * torch.fft.fftfreq(m, dtype=torch.float64) for m in (F, H, W))
    d2 = ((d_s / d_t) * f[:, None, None]) ** 2 + h[None, :, None] ** 2 + w[None, None, :] ** 2
    if kind == "ideal":
        return (d2 <= 2 * d_s).to(torch.float64)
    if kind == "butterworth":
        return 1 / (1 + (d2 / d_s**2) ** n)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,d_s,d_t", [("ideal", 0.25, 0.5), ("butterworth", 0.3, 0.3)])
def test_each_guided_step_takes_the_filter_noise_high_band_in_the_vp_latent(kind, d_s, d_t):
    """After guided step i (x' = x̄0 + σ'·eps), the VP latent z' = x'/sqrt(1 + σ'²) keeps the unfiltered step's
    low band and takes the high band of the filter noise (the k-th draw of purpose "videoguide-filter" for the
    k-th guided step): FFT(z') = M·FFT(z_unfiltered) + (1 − M)·FFT(noise). Every step after the last guided one
    is the plain, unfiltered step. The unfiltered step is computed here from stand-in models whose x0 and eps are
    known: the sampler's x0 = μ + a(σ)(x − μ) (Gaussian data), the guide's x0 = G, a fixed tensor, whatever its
    (re-noised) input. What the loop did is read from the inputs the sampler sees at each level."""
    ac = vp.vp_alphas_cumprod("linear", 0.00085, 0.012)
    table = vp.sigmas_from_alphas_cumprod(ac)
    sigmas = schedules.sigma_grid(ac, default_timesteps(8), "zero")
    shape, seed, mu, std, w = (1, 2, 4, 8, 8), 11, 0.3, 0.6, 0.5
    st = VideoGuideSettings(guided_steps=3, guide_steps=2, guide_grid=8, weight=w, filter=kind, filter_n=4,
                            filter_d_s=d_s, filter_d_t=d_t)
    G = torch.randn(shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    seen = []

    def sampler_model(x, s):
        seen.append((x.clone(), float(s)))
        x0 = mu + std**2 / (std**2 + s**2) * (x - mu)
        return Guided(x0, (x - x0) / s)

    def guide_model(y, s):
        return Guided(G, (y - G) / s)

    x = torch.randn(shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * float(sigmas[0])
    out = sample_videoguide(sampler_model, guide_model, x, sigmas, table, st, seed=seed)

    sig = [float(s) for s in sigmas]
    assert [s for _, s in seen] == sig[:-1]
    xs = [x_ for x_, _ in seen] + [out]                     # x at every level, the output last (σ = 0)
    M = reference_lowpass(kind, *shape[-3:], st.filter_n, d_s, d_t)
    assert 0 < M.sum() < M.numel() / 2 and (M > 0.5).any() and (M < 1e-3).any()   # both bands are there
    filt = generator(seed, "videoguide-filter")
    dims = (-3, -2, -1)
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        x0 = mu + std**2 / (std**2 + s**2) * (xs[i] - mu)
        eps = (xs[i] - x0) / s
        guided = i < st.guided_steps
        if guided:
            x0 = x0 + w * (G - x0)
        plain = x0 + s_next * eps
        if not guided:                                       # after step I: the sampler alone, no filter
            torch.testing.assert_close(xs[i + 1], plain, rtol=0, atol=1e-12)
            continue
        scale = math.sqrt(1 + s_next**2)
        z, z_plain = xs[i + 1] / scale, plain / scale
        noise = torch.randn(shape, generator=filt, dtype=torch.float32).double()
        Z, Zp, Nz = (torch.fft.fftn(t, dim=dims) for t in (z, z_plain, noise))
        torch.testing.assert_close(Z, M * Zp + (1 - M) * Nz, rtol=0, atol=1e-4)
        low, high = M > 1 - 1e-6, M < 1e-6
        assert low.any() and high.any()
        torch.testing.assert_close(Z[..., low], Zp[..., low], rtol=0, atol=1e-4)     # low band: the step's own
        torch.testing.assert_close(Z[..., high], Nz[..., high], rtol=0, atol=1e-4)   # high band: the noise's
        assert (Z[..., high] - Zp[..., high]).abs().max() > 1.0                    # and the filter did change it
