"""Guidance combiners, the ancestral step, and seeded per-purpose noise."""
import math

import pytest
import torch

from cvk_testkit.gaussian import GaussianDenoiser
from consistent_video_kit.samplers import noise
from consistent_video_kit.samplers.guidance import concat_conds, guidance
from consistent_video_kit.samplers.sampling import ancestral_step, eta_for, sample


def conds():
    return {"mean": torch.tensor([1.0])}, {"mean": torch.tensor([-2.0])}


def test_cfg_is_epsilon_cfg_in_one_batched_call():
    den = GaussianDenoiser(std=0.8)
    cond, uncond = conds()
    x = torch.randn(1, 2, 3, 4, 4, dtype=torch.float64)
    s, w = 3.0, 5.5
    out = guidance(den, cond, uncond, w, "cfg")(x, s)
    assert den.calls == 1 and den.batch_sizes == [2]
    x0_c, x0_u = den(x, s, cond), den(x, s, uncond)
    e_c, e_u = (x - x0_c) / s, (x - x0_u) / s
    e = e_u + w * (e_c - e_u)
    assert torch.allclose(out.eps, e) and torch.allclose(out.x0, x - s * e)


def test_cfgpp_takes_x0_from_guided_and_direction_from_uncond():
    den = GaussianDenoiser(std=0.8)
    cond, uncond = conds()
    x = torch.randn(1, 2, 3, 4, 4, dtype=torch.float64)
    s, lam = 2.0, 0.8
    out = guidance(den, cond, uncond, lam, "cfg++")(x, s)
    x0_c, x0_u = den(x, s, cond), den(x, s, uncond)
    assert torch.allclose(out.x0, x0_u + lam * (x0_c - x0_u))
    assert torch.allclose(out.eps, (x - x0_u) / s)


def test_cfg_scale_one_is_a_single_unbatched_call():
    den = GaussianDenoiser()
    cond, uncond = conds()
    out = guidance(den, cond, uncond, 1.0, "cfg")(torch.ones(1, 1, 1, 2, 2), 1.0)
    assert den.batch_sizes == [1]
    assert torch.allclose(out.x0, den(torch.ones(1, 1, 1, 2, 2), 1.0, cond))
    with pytest.raises(ValueError, match="unconditional"):
        guidance(den, cond, None, 7.5, "cfg")
    with pytest.raises(ValueError, match="guidance mode"):
        guidance(den, cond, uncond, 1.0, "pag")


def test_concat_conds():
    a = {"text": torch.zeros(1, 3, 2), "fps": 8}
    b = {"text": torch.ones(1, 3, 2), "fps": 8}
    c = concat_conds([a, b])
    assert c["text"].shape == (2, 3, 2) and c["fps"] == 8
    with pytest.raises(ValueError, match="disagree"):
        concat_conds([a, {"text": torch.ones(1, 3, 2), "fps": 16}])


def test_ancestral_step_matches_ddim_variance():
    # DDIM's σ_t(η) in the VP latent, divided by sqrt(ᾱ_prev), is σ_up
    s, sn, eta = 5.0, 2.0, 0.7
    a_t, a_p = 1 / (1 + s * s), 1 / (1 + sn * sn)
    std_vp = eta * math.sqrt((1 - a_p) / (1 - a_t) * (1 - a_t / a_p))
    down, up = ancestral_step(s, sn, eta)
    assert up == pytest.approx(std_vp / math.sqrt(a_p))
    assert down**2 + up**2 == pytest.approx(sn**2)
    assert ancestral_step(s, 0.0, 1.0) == (0.0, 0.0)
    assert ancestral_step(s, sn, 0.0) == (sn, 0.0)
    assert eta_for("ddpm", 0.0) == 1.0 and eta_for("ddim", 0.3) == 0.3


def test_purpose_generators():
    # "initial" is the seed itself (ComfyUI's own latent noise for that seed)
    a = noise.randn((2, 3), noise.generator(5, "initial"))
    assert torch.equal(a, torch.randn((2, 3), generator=torch.Generator().manual_seed(5)))
    b = noise.randn((2, 3), noise.generator(5, "ancestral"))
    c = noise.randn((2, 3), noise.generator(5, "ancestral"))
    assert torch.equal(b, c) and not torch.equal(a, b)
    assert noise.purpose_seed(5, "ancestral") != noise.purpose_seed(6, "ancestral")
    assert noise.purpose_seed(noise.SEED_MAX, "x") >= 0
    with pytest.raises(ValueError, match="seed"):
        noise.purpose_seed(-1, "initial")


def test_method_draws_do_not_shift_sampler_noise():
    """Drawing from another purpose's generator between steps leaves the sampler's output unchanged."""
    from consistent_video_kit.samplers import schedules, vp
    ac = vp.vp_alphas_cumprod("linear", 0.00085, 0.012)
    sig = schedules.sigma_grid(ac, schedules.spaced_timesteps("leading", 6, 1000, 1), "sigma_min")
    den = GaussianDenoiser(0.3, 0.6)
    base = sample(den, (1, 1, 2, 4, 4), sig, None, None, 1.0, "cfg", 1.0, seed=11)
    other = noise.generator(11, "videoguide-renoise")

    def noisy_den(x, s, c):
        noise.randn(x.shape, other)   # a method's own draws
        return den(x, s, c)

    again = sample(noisy_den, (1, 1, 2, 4, 4), sig, None, None, 1.0, "cfg", 1.0, seed=11)
    assert torch.equal(base, again)
