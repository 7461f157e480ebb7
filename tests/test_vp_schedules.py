"""σ ↔ timestep arithmetic, prediction conversions and timestep grids."""
import math

import pytest
import torch

from consistent_video_kit.samplers import schedules, vp


@pytest.fixture(scope="module")
def ac():
    return vp.vp_alphas_cumprod("linear", 0.00085, 0.012)


def test_alphas_cumprod_match_diffusers_tables():
    from diffusers import DDIMScheduler
    for sched in ("linear", "scaled_linear"):
        d = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule=sched)
        assert torch.equal(vp.vp_alphas_cumprod(sched, 0.00085, 0.012), d.alphas_cumprod.to(torch.float64))
    with pytest.raises(ValueError, match="beta_schedule"):
        vp.vp_alphas_cumprod("cosine", 0.1, 0.2)


def test_sigma_table_and_vp_scaling(ac):
    sig = vp.sigmas_from_alphas_cumprod(ac)
    assert (sig[1:] > sig[:-1]).all()
    # z = x / sqrt(1 + σ²) is sqrt(ᾱ)·x0 + sqrt(1-ᾱ)·ε for x = x0 + σ ε
    x0, eps = torch.randn(2, 3, 4, dtype=torch.float64)
    t = 500
    x = x0 + sig[t] * eps
    z = vp.to_vp(x, sig[t])
    assert torch.allclose(z, ac[t].sqrt() * x0 + (1 - ac[t]).sqrt() * eps)
    assert torch.allclose(vp.from_vp(z, sig[t]), x)


def test_sigma_to_t_nearest_and_interpolated(ac):
    sig = vp.sigmas_from_alphas_cumprod(ac)
    ts = torch.tensor([0, 1, 17, 500, 998, 999])
    assert torch.equal(vp.sigma_to_t(sig[ts], sig, "nearest"), ts)
    assert torch.allclose(vp.sigma_to_t(sig[ts], sig, "interpolated"), ts.double())
    # halfway in log σ between 400 and 401 → 400.5 interpolated, and back
    mid = (sig[400].log() * 0.5 + sig[401].log() * 0.5).exp()
    assert vp.sigma_to_t(mid, sig, "interpolated").item() == pytest.approx(400.5)
    assert vp.t_to_sigma(400.5, sig).item() == pytest.approx(mid.item())
    assert vp.sigma_to_t(sig[400] * 1.0001, sig, "nearest").item() == 400
    # beyond the table: clamped to its ends
    assert vp.sigma_to_t(sig[-1] * 10, sig, "interpolated").item() == 999
    with pytest.raises(ValueError, match="σ > 0"):
        vp.sigma_to_t(0.0, sig)
    with pytest.raises(ValueError, match="timestep mode"):
        vp.sigma_to_t(1.0, sig, "round")


def test_prediction_conversions(ac):
    sig = vp.sigmas_from_alphas_cumprod(ac)
    t = 321
    s, a = sig[t].item(), ac[t]
    x0, eps = torch.randn(2, 2, 3, 5, dtype=torch.float64)
    x = x0 + s * eps
    z = a.sqrt() * x0 + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    assert torch.allclose(vp.prediction_to_x0(eps, x, s, "epsilon"), x0)
    assert torch.allclose(vp.prediction_to_x0(v, x, s, "v_prediction"), x0)
    assert torch.allclose(vp.prediction_to_x0(x0, x, s, "sample"), x0)
    assert torch.allclose(vp.to_vp(x, s), z)
    with pytest.raises(ValueError, match="prediction_type"):
        vp.prediction_to_x0(x0, x, s, "flow")


def test_vp_denoiser_feeds_vp_input_and_timestep(ac):
    seen = {}

    def net(z, t, cond):
        seen["z"], seen["t"] = z, t
        return torch.zeros_like(z)

    d = vp.VPDenoiser(net, ac, "epsilon")
    x = torch.randn(1, 4, 2, 3, 3)
    s = d.sigmas[700].item()
    out = d(x, s, None)
    assert seen["t"].item() == 700 and seen["t"].dtype == torch.int64
    assert torch.allclose(seen["z"], x / math.sqrt(1 + s * s))
    assert torch.equal(out, x)  # ε = 0 → x0 = x


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_spacings_match_diffusers_for_every_step_count(spacing):
    from diffusers import DDIMScheduler
    offset = 1 if spacing == "leading" else 0
    d = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", steps_offset=offset,
                      timestep_spacing=spacing, clip_sample=False, set_alpha_to_one=False)
    extra = []
    for steps in range(1, 1000):
        d.set_timesteps(steps)
        theirs = d.timesteps.long()
        if len(theirs) > steps:     # diffusers' trailing float error: one more entry, -1
            extra.append(steps)
            assert theirs[-1] == -1
            theirs = theirs[:steps]
        assert torch.equal(schedules.spaced_timesteps(spacing, steps, 1000, offset), theirs), steps
    if spacing == "trailing":
        assert 61 in extra
    else:
        assert not extra


def test_grid_final_levels(ac):
    ts = schedules.spaced_timesteps("leading", 25, 1000, 1)
    assert ts[0] == 961 and ts[-1] == 1
    g0 = schedules.sigma_grid(ac, ts, "zero")
    g1 = schedules.sigma_grid(ac, ts, "sigma_min")
    assert len(g0) == 26 and g0[-1] == 0
    assert g1[-1] == vp.sigmas_from_alphas_cumprod(ac)[0] > 0
    assert torch.equal(g0[:-1], g1[:-1])
    with pytest.raises(schedules.ScheduleError, match="final"):
        schedules.sigma_grid(ac, ts, "one")
    # ending at t=0 with final ᾱ₀ repeats that level (diffusers' last DDIM step from t=0 to ᾱ₀)
    g = schedules.sigma_grid(ac, torch.tensor([10, 0]), "sigma_min")
    assert g[1] == g[2] == vp.sigmas_from_alphas_cumprod(ac)[0]


def test_grid_errors():
    with pytest.raises(schedules.ScheduleError, match="steps must be an integer ≥ 1"):
        schedules.spaced_timesteps("leading", 0, 1000)
    with pytest.raises(schedules.ScheduleError, match="more than the model's noise table allows"):
        schedules.spaced_timesteps("trailing", 1001, 1000)
    # leading with an offset that pushes past the table
    with pytest.raises(schedules.ScheduleError, match=r"\[0, 999\]"):
        schedules.spaced_timesteps("leading", 1000, 1000, steps_offset=1)
    with pytest.raises(schedules.ScheduleError, match="strictly descending"):
        schedules.check_timesteps([5, 5, 3], 1000)
    with pytest.raises(schedules.ScheduleError, match="spacing"):
        schedules.spaced_timesteps("karras", 10, 1000)


def test_explicit_videoguide_grid(ac):
    ts = schedules.inclusive_linspace_timesteps(50, 999)
    assert ts[:3].tolist() == [999, 979, 959] and ts[-1] == 20 and len(ts) == 50
    grid = schedules.sigma_grid(ac, ts, "zero")
    assert grid[0] == vp.sigmas_from_alphas_cumprod(ac)[999]
    sub = schedules.inclusive_linspace_timesteps(24, 979)
    assert sub[0] == 979 and len(sub) == 24
    with pytest.raises(schedules.ScheduleError):
        schedules.inclusive_linspace_timesteps(30, 20)


def test_per_sample_sigma_tensors(ac):
    """σ may be a tensor broadcastable to x (per sample or per frame), e.g. for methods that noise frames
    to different levels; results equal the per-σ scalar computation."""
    sig = vp.sigmas_from_alphas_cumprod(ac)
    s = torch.stack([sig[100], sig[800]]).reshape(2, 1, 1, 1, 1)
    x = torch.randn(2, 4, 3, 5, 5)
    eps = torch.randn_like(x)
    for f in (vp.to_vp, vp.from_vp):
        both = f(x, s)
        assert torch.allclose(both[0], f(x[:1], float(s[0]))[0]) and torch.allclose(both[1], f(x[1:], float(s[1]))[0])
    for pred in ("epsilon", "v_prediction", "sample"):
        both = vp.prediction_to_x0(eps, x, s, pred)
        assert torch.allclose(both[1], vp.prediction_to_x0(eps[1:], x[1:], float(s[1]), pred)[0])
