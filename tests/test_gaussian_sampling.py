"""DDIM and ancestral sampling with the exact denoiser of Gaussian data.

Data x0 ~ N(μ, s²) element-wise, μ = 0.7, s = 0.5. Each step is affine in (x − μ) plus fresh noise,
so the sampler's output moments follow an exact recursion (``predicted_moments``). Tolerances:

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

from cvk_testkit.gaussian import GaussianDenoiser, predicted_moments
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


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_discretisation_bias_shrinks_with_steps(ac, eta):
    errs = []
    for steps in (25, 100, 200, 999):
        sigmas = grid(ac, steps)
        _, ps = predicted_moments(MU, S, sigmas, eta, math.sqrt(1 + float(sigmas[0]) ** 2))
        errs.append(S - ps)
    assert all(a > b for a, b in zip(errs, errs[1:]))
    assert errs[-1] <= 0.012 * S


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
