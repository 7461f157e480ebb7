"""DDIM and ancestral sampling with the exact denoiser of Gaussian data.

Data x0 ~ N(μ, s²) element-wise, μ = 0.7, s = 0.5. Each step is affine in (x − μ) plus fresh noise,
so the sampler's output moments follow an exact recursion (``predicted_moments``, whose σ_down / σ_up are the
hand DDIM(η) formulas, checked against diffusers' DDIMScheduler.step). With η = 0 there is no noise and the
output is exactly the predicted affine map of the start, element by element. Tolerances:

1. Monte-Carlo: the empirical mean / std of n = 32768 independent elements lie within 4 standard
   errors (sd/√n for the mean, sd/√(2n) for the std) of the recursion's prediction. This pins the
   step arithmetic: a wrong σ_up, a missing noise term or a wrong start scale moves the std by far more.
2. Bias of the sampler itself, derived from the recursion:
   - mean: the VP start z_T = ε has mean 0, not √ᾱ_T·μ. The probability-flow (η = 0) map shrinks that
     offset by G = s/√(s² + σ_max²) (= 0.0199 here), so |E − μ| ≤ |μ|·G; ancestral steps forget the
     start faster, so the same bound holds.
   - std: DDIM's discretisation error is O(1/N) and makes the std too small; at N = 200 trailing steps
     it is ≤ 2.5 % (η = 0) and ≤ 4.5 % (η = 1), and it shrinks with N (≤ 1.2 % at N = 999).
"""
import math

import pytest
import torch

from cvk_testkit.gaussian import GaussianDenoiser, ddim_eta_sigmas, predicted_moments
from consistent_video_kit.samplers import schedules, vp
from consistent_video_kit.samplers.guidance import guidance
from consistent_video_kit.samplers.sampling import sample_ddim

MU, S = 0.7, 0.5


@pytest.fixture(scope="module")
def ac():
    return vp.vp_alphas_cumprod("linear", 0.00085, 0.012)


def grid(ac, steps):
    return schedules.sigma_grid(ac, schedules.spaced_timesteps("trailing", steps, 1000), "zero")


@pytest.mark.parametrize("eta,std_tol", [(0.0, 0.025), (1.0, 0.045)])
def test_sampler_reproduces_gaussian_data(ac, eta, std_tol):
    sigmas = grid(ac, 200)
    start = math.sqrt(1 + float(sigmas[0]) ** 2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 32, 32, generator=g, dtype=torch.float64) * start
    den = GaussianDenoiser(MU, S)
    out = sample_ddim(guidance(den, cond=None), x, sigmas, eta, torch.Generator().manual_seed(1))
    n = out.numel()
    pm, ps = predicted_moments(MU, S, sigmas, eta, start)
    assert abs(out.mean().item() - pm) <= 4 * ps / math.sqrt(n)
    assert abs(out.std().item() - ps) <= 4 * ps / math.sqrt(2 * n)
    # the prediction itself is within the derived bias of the data distribution
    G = S / math.sqrt(S**2 + float(sigmas[0]) ** 2)
    assert abs(pm - MU) <= abs(MU) * G
    assert 0 <= S - ps <= std_tol * S
    assert den.calls == 200


@pytest.mark.parametrize("steps", [25, 200])
@pytest.mark.parametrize("eta", [0.3, 1.0])
def test_oracle_sigmas_are_diffusers_ddim_step(ac, steps, eta):
    """The oracle's hand σ_down / σ_up against diffusers' DDIMScheduler.step on the same trailing grid: with
    model output ε = 1 and a sample whose x0 is 0, the VP step returns its direction coefficient
    sqrt(1 − ᾱ' − std²) (no noise) or its noise std (variance_noise = 1, sample and output 0); times
    sqrt(1 + σ'²) these are σ_down and σ_up in σ-space. The last step goes to ᾱ = 1 (σ' = 0)."""
    from diffusers import DDIMScheduler
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", timestep_spacing="trailing",
                          clip_sample=False, set_alpha_to_one=True)
    sched.set_timesteps(steps)
    assert torch.equal(sched.timesteps, schedules.spaced_timesteps("trailing", steps, 1000))
    table = sched.alphas_cumprod.to(torch.float64)
    sig = ((1 - table) / table).sqrt()
    ts = sched.timesteps.tolist()
    one, zero = torch.ones(1), torch.zeros(1)
    for i, t in enumerate(ts):
        s, s_next = float(sig[t]), float(sig[ts[i + 1]]) if i + 1 < len(ts) else 0.0
        down, up = ddim_eta_sigmas(s, s_next, eta)
        scale = math.sqrt(1 + s_next**2)
        z = torch.full((1,), math.sqrt(1 - float(table[t])))            # ε = 1 and x0 = 0
        direction = sched.step(one, t, z, eta=eta, variance_noise=zero).prev_sample
        noise = sched.step(zero, t, zero, eta=eta, variance_noise=one).prev_sample
        assert float(direction) * scale == pytest.approx(down, rel=1e-5, abs=1e-6), (t, s, s_next)
        assert float(noise) * scale == pytest.approx(up, rel=1e-5, abs=1e-6), (t, s, s_next)
    assert ddim_eta_sigmas(5.0, 2.0, 0.0) == (2.0, 0.0) and ddim_eta_sigmas(5.0, 0.0, 1.0) == (0.0, 0.0)
    assert ddim_eta_sigmas(2.0, 2.0, 1.0) == (2.0, 0.0)                # a repeated level adds no noise


def test_deterministic_sampler_is_the_predicted_affine_map_and_its_bias_shrinks_with_steps(ac):
    """η = 0 has no noise: each step maps x − μ to g·(x − μ), so the output is exactly μ + G·(x − μ) with
    G = Π g (the oracle's std over the start std), element by element. The std deficit S − G·start, DDIM's
    discretisation error, shrinks as the grid gets finer (≤ 1.2 % at 999 steps)."""
    errs = []
    x = torch.randn(1, 2, 4, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for steps in (25, 100, 200, 999):
        sigmas = grid(ac, steps)
        start = math.sqrt(1 + float(sigmas[0]) ** 2)
        den = GaussianDenoiser(MU, S)
        out = sample_ddim(guidance(den, cond=None), x * start, sigmas, 0.0)
        assert den.calls == steps
        _, ps = predicted_moments(MU, S, sigmas, 0.0, start)
        G = ps / start
        torch.testing.assert_close(out, MU + G * (x * start - MU), rtol=0, atol=1e-10)
        errs.append(S - ps)
    assert all(a > b > 0 for a, b in zip(errs, errs[1:]))
    assert errs[-1] <= 0.012 * S


def test_ancestral_sampler_follows_the_oracle_on_coarse_and_fine_grids(ac):
    """η = 1 (DDPM's posterior variance) at 25 and at 999 steps: the empirical mean and std of n = 32768
    independent elements lie within 4 standard errors of the oracle, whose discretisation error shrinks
    from the coarse grid to the fine one (≤ 1.2 % at 999 steps)."""
    errs = []
    for steps in (25, 999):
        sigmas = grid(ac, steps)
        start = math.sqrt(1 + float(sigmas[0]) ** 2)
        x = torch.randn(1, 4, 8, 32, 32, generator=torch.Generator().manual_seed(steps), dtype=torch.float64) * start
        den = GaussianDenoiser(MU, S)
        out = sample_ddim(guidance(den, cond=None), x, sigmas, 1.0, torch.Generator().manual_seed(7))
        assert den.calls == steps
        n = out.numel()
        pm, ps = predicted_moments(MU, S, sigmas, 1.0, start)
        assert abs(out.mean().item() - pm) <= 4 * ps / math.sqrt(n)
        assert abs(out.std().item() - ps) <= 4 * ps / math.sqrt(2 * n)
        errs.append(S - ps)
    assert errs[0] > errs[1] > 0 and errs[1] <= 0.012 * S


def test_eta_needs_a_generator_and_nonnegative(ac):
    g = guidance(GaussianDenoiser(), cond=None)
    x = torch.zeros(1, 1, 1, 2, 2)
    with pytest.raises(ValueError, match="generator"):
        sample_ddim(g, x, grid(ac, 5), eta=0.5)
    with pytest.raises(ValueError, match="eta"):
        sample_ddim(g, x, grid(ac, 5), eta=-0.1)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_repeated_final_level_changes_nothing(ac, eta):
    """A grid ending at t=0 with final ᾱ₀ repeats σ(0): one more model call, no change, no noise."""
    grid = schedules.sigma_grid(ac, torch.tensor([500, 0]), "sigma_min")
    x = torch.randn(1, 2, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 5
    den = GaussianDenoiser(0.2, 0.7)
    g = guidance(den, cond=None)
    longer = sample_ddim(g, x, grid, eta, torch.Generator().manual_seed(4))
    shorter = sample_ddim(g, x, grid[:-1], eta, torch.Generator().manual_seed(4))
    assert den.calls == 3
    assert torch.allclose(longer, shorter, rtol=0, atol=1e-12)
