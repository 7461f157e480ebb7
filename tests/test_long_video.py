"""Long videos window by window (samplers/long_video.py) against independent references.

The reference model is Gaussian data over the frames of a window, independently per (sample, channel, pixel):
``x0 ~ N(μ·1, Σ)`` with Σ ``(F, F)``. At per-frame noise levels σ_f the exact posterior-mean denoiser is
``E[x0 | x] = μ + Σ(Σ + diag(σ_f²))⁻¹(x − μ)`` along the frame axis (:class:`FrameGaussian`). It ignores the mask
and label of exact mode, so with it exact mode is "known slots held at the fixed level σ_s".

- Known slots (§ "Known slots"): the values and per-frame levels the denoiser receives at every step are rebuilt
  from our own copies of the run's generators, in the draw order the module docstring states.
- Frame-independent data (Σ = S²·I): new frames of an extension are the plain sampler's unconditional samples —
  sample for sample against ``sampling.sample_ddim`` on the testkit's scalar Gaussian denoiser, and in mean / std
  against the closed-form recursion of ``cvk_testkit.gaussian.predicted_moments`` within 4 standard errors.
- Frame-correlated data (AR(1), ρ = 0.9): the gap to the exact conditional N(μ_n + Σ_nk Σ_kk⁻¹(x_k − μ_k),
  Σ_nn − Σ_nk Σ_kk⁻¹ Σ_kn) is printed (run with ``-s``), with loose sanity asserts only.
- NFE: a counting stub; one call = one network call of one batch, the batch stated in every assert.

Every test names, in its docstring or a comment, the one-line break of long_video.py it was seen to catch.
"""
import math
import signal

import pytest
import torch

from cvk_testkit.gaussian import GaussianDenoiser, predicted_moments
from consistent_video_kit.samplers import long_video as lv
from consistent_video_kit.samplers import schedules, vp
from consistent_video_kit.samplers.guidance import guidance
from consistent_video_kit.samplers.noise import generator
from consistent_video_kit.samplers.sampling import sample, sample_ddim

AC = vp.vp_alphas_cumprod("scaled_linear", 0.0015, 0.0155)     # LVDM's "linear" schedule (reference §1.3)
TABLE = vp.sigmas_from_alphas_cumprod(AC)


def timesteps(steps):
    """LVDM's DDIM grid: uniform timesteps + 1 (diffusers ``leading`` with ``steps_offset=1``), final level 0."""
    return schedules.spaced_timesteps("leading", steps, 1000, steps_offset=1)


def grid(steps):
    return schedules.sigma_grid(AC, timesteps(steps), "zero")


def ar1(n, rho, s=1.0):
    i = torch.arange(n)
    return s * s * rho ** (i[:, None] - i[None]).abs().to(torch.float64)


class FrameGaussian:
    """The exact denoiser of ``x0 ~ N(μ, Σ)`` over frames, σ a float, ``(B,)`` or per frame ``(B|1, 1, F, 1, 1)``.
    ``.sigmas`` / ``.timestep(σ)`` as :class:`~samplers.vp.VPDenoiser`. With ``record``, keeps what every call got."""

    def __init__(self, mean, cov, record=False):
        self.mean, self.cov = float(mean), cov.to(torch.float64)
        self.sigmas = TABLE
        self.record = record
        self.calls = []

    def timestep(self, sigma):
        return vp.sigma_to_t(sigma, self.sigmas)

    def __call__(self, x, sigma, cond, timestep=None):
        B, F = x.shape[0], x.shape[2]
        if self.record:
            self.calls.append(dict(x=x.clone(), sigma=sigma.clone() if torch.is_tensor(sigma) else sigma,
                                   cond=cond, timestep=timestep))
        s = torch.as_tensor(sigma, dtype=torch.float64).cpu()
        if s.ndim == 1:
            s = s.reshape(-1, 1, 1, 1, 1)
        s = torch.broadcast_to(s.reshape((1,) * (5 - s.ndim) + tuple(s.shape)), (s.shape[0] if s.ndim == 5 else 1,
                                                                              1, F, 1, 1))
        s = s.reshape(-1, F)                                                       # (B or 1, F)
        M = self.cov + torch.diag_embed(s ** 2)
        A = torch.linalg.solve(M, self.cov.expand_as(M)).transpose(-1, -2)          # Σ M⁻¹ (both symmetric)
        d = x.to(torch.float64) - self.mean
        return (self.mean + torch.einsum("bfg,bcghw->bcfhw", A.expand(B, F, F), d)).to(x.dtype)


class CountingStub:
    """A cheap denoiser that counts network calls and their batch: ``x0 = x/(1 + σ²) + 0.1·[label ≥ 0] + text``
    per sample, so a labelled (conditional) branch differs from the unlabelled one and text CFG matters."""

    def __init__(self):
        self.sigmas = TABLE
        self.batches = []
        self.conds = []

    def timestep(self, sigma):
        return vp.sigma_to_t(sigma, self.sigmas)

    def __call__(self, x, sigma, cond, timestep=None):
        self.batches.append(x.shape[0])
        self.conds.append(cond)
        s = vp.as_sigma(sigma, x)
        x0 = x / (1.0 + s ** 2).to(x.dtype)
        if "label" in cond:
            x0 = x0 + 0.1 * (cond["label"] >= 0).to(x.dtype).reshape(-1, 1, 1, 1, 1)
        if "text" in cond:
            x0 = x0 + cond["text"].to(x.dtype).reshape(-1, 1, 1, 1, 1)
        return x0


# ---------------------------------------------------------------- known slots hold the stated values

def _check_steps(calls, steps_sigmas, ts, z_s, slots, length, sigma_s, mode, renoise, B):
    """The calls of one window with known slots against the stated rule; ``renoise`` our copy of the generator."""
    assert len(calls) == len(ts)
    others = [j for j in range(length) if j not in slots]
    for i, call in enumerate(calls):
        sigma_t = float(steps_sigmas[i])
        if mode == lv.REPLACE and sigma_t > sigma_s:
            xi = torch.randn(z_s.shape, generator=renoise)
            want, level = z_s + math.sqrt(sigma_t ** 2 - sigma_s ** 2) * xi, sigma_t
        else:
            want, level = z_s, sigma_s
        x = call["x"]
        for half in range(x.shape[0] // B):                  # both halves of a guidance batch see the same input
            torch.testing.assert_close(x[half * B:(half + 1) * B][:, :, slots], want, rtol=0, atol=1e-6)
        sig = call["sigma"]
        assert torch.is_tensor(sig) and sig.dtype == torch.float64 and sig.shape == (1, 1, length, 1, 1)
        assert sig.reshape(-1)[slots].tolist() == [level] * len(slots), (i, sigma_t, sigma_s)
        assert sig.reshape(-1)[others].tolist() == [sigma_t] * len(others), (i, sigma_t)
        assert int(call["timestep"]) == int(ts[i]), (i, call["timestep"], ts[i])   # told t, never s


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_replace_known_slots_hold_z_s_or_z_s_renoised_to_the_step_level(eta):
    """REPLACE, an extension of 3 windows (the first from nothing), context 2 of 4, s = 81 which lies ON the grid
    (σ_t = σ_s at t = 81: no draw there). Per step the known slots must hold z_s (σ_t ≤ σ_s) or z_s + √(σ_t² − σ_s²)·ξ
    (σ_t > σ_s) at the per-frame level σ_s / σ_t, the other slots σ_t, timestep t; ξ_s and ξ rebuilt from our own
    generators ("long-video/perturb", "long-video/renoise"), drawn window after window.
    Breaks caught: ``sigma_t <= sigma_s`` → ``<`` (an extra zero-scaled draw at t = 81 shifts the third window's ξ);
    ``return ..., sigma_t`` → ``sigma_s`` (level); dropping ``levels[:, :, slots] = level``; ξ_s drawn from
    ``gens["renoise"]``; ``timestep=denoise.timestep(sigma)`` → ``(sigma_s)``."""
    seed, B, C, L, k, s = 11, 2, 2, 4, 2, 81
    ts = timesteps(25)
    sig = grid(25)
    assert s in ts.tolist()
    den = FrameGaussian(0.2, ar1(L, 0.8), record=True)
    out = lv.extend(den, None, 8, L, k, sig, lv.Conditioning(lv.REPLACE, s), (B, C, 0, 3, 3), eta, seed)
    assert out.shape == (B, C, 8, 3, 3) and len(den.calls) == 3 * 25
    sigma_s = float(TABLE[s])
    perturb, renoise = generator(seed, "long-video/perturb"), generator(seed, "long-video/renoise")
    assert all(not torch.is_tensor(c["sigma"]) for c in den.calls[:25])   # window 0: nothing known, plain float path
    for win, start in ((1, 2), (2, 4)):                                   # window i holds out[start:start+2]
        z = out[:, :, start:start + k]
        z_s = z + sigma_s * torch.randn(z.shape, generator=perturb)
        _check_steps(den.calls[25 * win:25 * (win + 1)], sig, ts, z_s, [0, 1], L, sigma_s, lv.REPLACE, renoise, B)


def test_exact_known_slots_hold_z_s_with_mask_and_label_and_guidance_shares_one_call():
    """EXACT, w = 0.5: every step of a window with known slots is ONE call of batch 2B = 4, [uncond; cond]: both
    halves get the same pasted input with the known slots = z_s at level σ_s whatever σ_t, the cond half mask 1 on
    the known slots and label s, the uncond half an all-zero mask and NO_LABEL; timestep that of σ_t. The first
    window (nothing known) is one call of batch B with zero mask and NO_LABEL.
    Breaks caught: ``mode == EXACT or`` dropped from known_values (renoised slots); ``mask[:, :, slots] = 1.0`` on
    the wrong slots; ``int(s) if k`` → ``NO_LABEL``; ``u`` built from ``mask`` instead of ``zeros_like``."""
    seed, B, C, L, k, s = 3, 2, 1, 4, 1, 100
    ts = timesteps(20)
    sig = grid(20)
    den = FrameGaussian(-0.1, ar1(L, 0.9), record=True)
    out = lv.extend(den, None, 7, L, k, sig, lv.Conditioning(lv.EXACT, s, w=0.5), (B, C, 0, 2, 2), 1.0, seed)
    assert len(den.calls) == 2 * 20
    for call in den.calls[:20]:                                  # window 0
        assert call["x"].shape[0] == B and call["cond"]["mask"].abs().sum() == 0
        assert call["cond"]["label"].tolist() == [lv.NO_LABEL] * B
    sigma_s = float(TABLE[s])
    z = out[:, :, 3:4]
    z_s = z + sigma_s * torch.randn(z.shape, generator=generator(seed, "long-video/perturb"))
    calls = den.calls[20:]
    for call in calls:
        assert call["x"].shape[0] == 2 * B
        mask, label = call["cond"]["mask"], call["cond"]["label"]
        assert mask.shape == (2 * B, 1, L, 1, 1)
        assert mask[:B].abs().sum() == 0 and label[:B].tolist() == [lv.NO_LABEL] * B
        assert mask[B:].reshape(B, L).tolist() == [[1.0, 0.0, 0.0, 0.0]] * B and label[B:].tolist() == [s] * B
        assert torch.equal(call["x"][:B], call["x"][B:])
    _check_steps(calls, sig, ts, z_s, [0], L, sigma_s, lv.EXACT, None, B)


def test_interpolation_windows_hold_their_own_neighbouring_keyframes():
    """Interpolation, EXACT w = 0: gap g's window holds keys g and g+1, each perturbed with ξ_s from
    "interp/long-video/perturb" (drawn gap after gap), in slots 0 and length − 1 at level σ_s.
    Breaks caught: ``keys[:, :, i:i + 2]`` → ``keys[:, :, 2 * i:2 * i + 2]`` or slots ``(0, length − 2)``; the
    interpolation stage drawing with the keyframe stage's purposes (``prefix`` ignored)."""
    seed, B, L, s = 5, 1, 5, 60
    sig = grid(6)
    keys = torch.randn(B, 2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    den = FrameGaussian(0.0, ar1(L, 0.7), record=True)
    lv.interpolate(den, keys, L, sig, lv.Conditioning(lv.EXACT, s), seed=seed)
    assert len(den.calls) == 3 * 6
    perturb = generator(seed, "interp/long-video/perturb")
    sigma_s = float(TABLE[s])
    for g in range(3):
        z = keys[:, :, g:g + 2]
        z_s = z + sigma_s * torch.randn(z.shape, generator=perturb)
        _check_steps(den.calls[6 * g:6 * (g + 1)], sig, timesteps(6), z_s, [0, L - 1], L, sigma_s, lv.EXACT, None, B)
        assert all(c["cond"]["mask"].reshape(-1).tolist() == [1.0, 0, 0, 0, 1.0] for c in den.calls[6 * g:6 * g + 6])


# ---------------------------------------------------------------- frame-independent data: new frames = plain samples

MU, S = 0.7, 0.5


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("mode,w", [(lv.REPLACE, 0.0), (lv.EXACT, 0.1)])
def test_frame_independent_data_new_frames_are_the_plain_samplers_samples(mode, w, eta):
    """Σ = S²·I: known frames carry no information about new ones, so an extension's new frames must be the plain
    sampler's unconditional samples. A given video of 1 latent, windows of 4 with context 1, 6 new latents = 2
    windows of 50 LVDM DDIM steps, shape (16, 1, ·, 32, 32): N = 16·32·32·6 = 98,304 new latents.
    (a) Sample for sample: each window's new slots equal ``sample_ddim`` with the testkit's scalar Gaussian
        denoiser run on the same start noise and ancestral draws (our own "initial" / "ancestral" generators,
        continued window after window), |Δ| ≤ 1e-4 (float32 rounding over 50 steps).
    (b) Moments: mean within 4·SE = 4·sd/√N and std within 4·sd/√(2N) of the closed-form recursion
        ``predicted_moments`` (sd its predicted std; 4·SE ≈ 0.0011–0.0012 for the mean here).
    Breaks caught: ``levels = torch.full(..., sigma)`` → ``sigma_s`` (new frames at the wrong level);
    ``keep = win[:, :, k:...]`` → ``win[:, :, k - 1:...]`` (a perturbed slot kept); the window's start drawn
    from a fresh ``generator(seed)`` (windows repeat their noise: (a))."""
    seed, B, L, k = 4, 16, 4, 1
    sig = grid(50)
    den = FrameGaussian(MU, S * S * torch.eye(L))
    video = MU + S * torch.randn(B, 1, 1, 32, 32, generator=torch.Generator().manual_seed(99))
    out = lv.extend(den, video, 6, L, k, sig, lv.Conditioning(mode, 100, w), eta=eta, seed=seed)
    assert torch.equal(out[:, :, :1], video)
    new = out[:, :, 1:]
    # (a) the plain sampler on the same draws
    start = math.sqrt(1 + float(sig[0]) ** 2)
    g_init, g_anc = generator(seed, "initial"), generator(seed, "ancestral")
    plain = guidance(GaussianDenoiser(MU, S), cond=None)
    ref = []
    for _ in range(2):
        x_T = torch.randn((B, 1, L, 32, 32), generator=g_init) * start
        ref.append(sample_ddim(plain, x_T, sig, eta, g_anc)[:, :, k:])
    torch.testing.assert_close(new, torch.cat(ref, dim=2), rtol=0, atol=1e-4)
    # (b) moments against the closed form
    n = new.numel()
    pm, ps = predicted_moments(MU, S, sig, eta, start)
    assert abs(new.double().mean().item() - pm) <= 4 * ps / math.sqrt(n)
    assert abs(new.double().std().item() - ps) <= 4 * ps / math.sqrt(2 * n)
    assert abs(pm - MU) < 0.01 and 0 < S - ps < 0.15 * S   # near the data: DDIM's own 50-step std deficit (η=1: 12.5 %)


# ---------------------------------------------------------------- frame-correlated data: report the gap

RHO = 0.9


def _conditionals(cov, c, mu, sigma_s):
    """Exact N(x_n | x_k = c) for slot 0 known, and the law exact-mode-with-this-model targets: x_n | z_s with
    z_s = c + σ_s·ξ_s, marginalised over ξ_s."""
    Skk, Snk, Snn = cov[0, 0], cov[1:, 0], cov.diag()[1:]
    true_mean, true_var = mu + Snk / Skk * (c - mu), Snn - Snk ** 2 / Skk
    gain = Snk / (Skk + sigma_s ** 2)
    zs_mean, zs_var = mu + gain * (c - mu), Snn - gain * Snk + gain ** 2 * sigma_s ** 2
    return true_mean, true_var, zs_mean, zs_var


def test_frame_correlated_data_report_the_gap_to_the_exact_conditional(capsys):
    """AR(1) over frames (ρ = 0.9, S = 1, μ = 0.3), windows of 4 with slot 0 known, held at c = μ + 2S for all
    8·32·32 = 8,192 samples. Printed per new frame j = 1..3: mean error (sampler − exact conditional mean
    μ + ρ^j(c − μ)) and variance ratio (sampler / (1 − ρ^{2j})), for replace and exact (this model ignores the
    mask: exact = known slot held at level σ_s), s ∈ {100, 20, 0}, 50 / 200 steps, η ∈ {0, 1}. Also the gap of
    exact to the law it targets here, x_n | z_s. A second run with known frames drawn from the data reports the
    correlation of each new frame with the known frame (the data's: ρ^j).
    Asserted (loose): every new frame is pulled towards c and correlates positively with the known frame; exact's
    mean gap shrinks as s → 0; exact at η = 1 gets closer to x_n | z_s in variance as steps grow, and its mean is
    that of x_n | z_s within 4·SE + 0.01 (SE = sd/√8192 ≈ 0.006; 0.01 for the sampler's start bias).
    Breaks caught: exact mode's known slots at level σ_t instead of σ_s (``return z_s, sigma_s`` → σ_t for EXACT:
    exact becomes replacement without re-noise, its gap no longer shrinks with s); ``mode == EXACT or`` dropped
    (exact re-noised like replace); ``levels[:, :, slots] = level`` → ``= sigma``."""
    mu, L, c = 0.3, 4, 0.3 + 2.0
    cov = ar1(L, RHO)
    den = FrameGaussian(mu, cov)
    video = torch.full((8, 1, 1, 32, 32), c)
    rows, gaps = [], {}
    for steps in (50, 200):
        sig = grid(steps)
        for eta in (0.0, 1.0):
            for s in (100, 20, 0):
                sigma_s = float(TABLE[s])
                tm, tv, zm, zv = _conditionals(cov, c, mu, sigma_s)
                for mode, w in ((lv.REPLACE, 0.0), (lv.EXACT, 0.1)):
                    out = lv.extend(den, video, 3, L, 1, sig, lv.Conditioning(mode, s, w), eta=eta, seed=1)
                    new = out[:, :, 1:].double()
                    m, v = new.mean(dim=(0, 1, 3, 4)), new.var(dim=(0, 1, 3, 4))
                    assert ((m - mu) > 0).all(), (mode, s, steps, eta, m)            # pulled towards c
                    if mode == lv.EXACT and eta == 1.0:                                # ...and for exact, to x_n|z_s
                        assert ((m - zm).abs() <= 4 * (v / new[:, :, 0].numel()).sqrt() + 0.01).all(), (s, m, zm)
                    gaps[mode, steps, eta, s] = (m - tm, v / tv, m - zm, v / zv)
                    rows.append(f"{mode:7s} steps {steps:3d} eta {eta:.0f} s {s:3d} (σ_s {sigma_s:.3f}): "
                                f"mean err {_fmt(m - tm)} var ratio {_fmt(v / tv)} | vs x_n|z_s: mean err "
                                f"{_fmt(m - zm)} var ratio {_fmt(v / zv)}")
    # correlation with a varying known frame (drawn from the data), 50 steps, η = 1, s = 100
    known = mu + torch.randn(8, 1, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    for mode, w in ((lv.REPLACE, 0.0), (lv.EXACT, 0.1)):
        out = lv.extend(den, known, 3, L, 1, grid(50), lv.Conditioning(mode, 100, w), eta=1.0, seed=2).double()
        corr = [torch.corrcoef(torch.stack([out[:, :, 0].reshape(-1), out[:, :, j].reshape(-1)]))[0, 1].item()
                for j in (1, 2, 3)]
        assert all(r > 0 for r in corr), (mode, corr)
        rows.append(f"{mode:7s} corr(known, new j=1..3) at 50 steps η=1 s=100: {_fmt(torch.tensor(corr))} "
                    f"(data: {_fmt(torch.tensor([RHO, RHO ** 2, RHO ** 3]))})")
    with capsys.disabled():
        print("\nAR(1) ρ = 0.9, known frame c = μ + 2S; true conditional mean/var per new frame:",
              _fmt(_conditionals(cov, c, mu, 0.0)[0]), _fmt(_conditionals(cov, c, mu, 0.0)[1]))
        print("\n".join(rows))
    for steps in (50, 200):
        for eta in (0.0, 1.0):
            err = [gaps[lv.EXACT, steps, eta, s][0].abs().max().item() for s in (100, 20, 0)]
            assert err[0] > err[1] > err[2], (steps, eta, err)                  # exact: gap shrinks as s → 0
    for s in (100, 20, 0):
        r50, r200 = (gaps[lv.EXACT, n, 1.0, s][3] for n in (50, 200))
        assert ((r200 - 1).abs() < (r50 - 1).abs()).all(), (s, r50, r200)       # ...and as steps grow


def _fmt(t):
    return "[" + ", ".join(f"{v:+.3f}" for v in t.tolist()) + "]"


# ---------------------------------------------------------------- NFE

def _window(stub, mode, known, w=0.0, scale=1.0, B=2, L=4, steps=5, cond=None, uncond=None):
    slots = range(known.shape[2]) if known is not None else ()
    return lv.sample_window(stub, (B, 1, L, 1, 1), grid(steps), known, slots, 100, mode, cond or {}, uncond, scale,
                            w, 0.0, lv.generators(0))


def test_nfe_and_batch_of_each_kind_of_window():
    """One network call per step; its batch: EXACT w ≠ 0 with known slots 2B; EXACT w = 0 B; EXACT w ≠ 0 without
    known slots B (ε_c = ε_u); w = 1 is NOT short-circuited (2B, and the result differs from w = 0); REPLACE
    with text CFG scale 3 2B, scale 1 B. B = 2, 5 steps.
    Breaks caught: ``(k and w != 0)`` → ``(k and w not in (0, 1))`` (the official short-circuit); → ``(w != 0)``
    (2B for a window with nothing known); REPLACE built with ``guidance(denoise, cond)`` (CFG dropped); the cond
    label ``int(s) if k`` → ``NO_LABEL`` (w = 1 no longer differs)."""
    known = torch.ones(2, 1, 1, 1, 1)
    text = {"text": torch.tensor([0.5, 0.5])}, {"text": torch.tensor([0.0, 0.0])}
    cases = [(dict(mode=lv.EXACT, known=known, w=0.1), 4), (dict(mode=lv.EXACT, known=known, w=0.0), 2),
             (dict(mode=lv.EXACT, known=None, w=0.1), 2), (dict(mode=lv.EXACT, known=known, w=1.0), 4),
             (dict(mode=lv.REPLACE, known=known, scale=3.0, cond=text[0], uncond=text[1]), 4),
             (dict(mode=lv.REPLACE, known=known, cond=text[0]), 2),
             (dict(mode=lv.REPLACE, known=None, scale=3.0, cond=text[0], uncond=text[1]), 4)]
    outs = []
    for kw, batch in cases:
        stub = CountingStub()
        outs.append(_window(stub, **kw))
        assert stub.batches == [batch] * 5, (kw, stub.batches)
    assert (outs[3] - outs[1]).abs().min() > 1e-3                      # w = 1 guides: differs from w = 0 everywhere
    assert not torch.allclose(outs[3], outs[0])                        # ...and from w = 0.1


def test_nfe_of_the_official_1024_frame_plan():
    """1024 frames = 256 latents, pred windows of 4 with context 1, stride 4, interp windows of 5, DDIM 50, EXACT
    w = 0.1, s = 100, latent (1, 1, ·, 1, 1). Plan (§4.2): 67 keyframes by 22 pred windows, 66 gaps, 265 latents.
    Calls (B = 1): keyframe stage 50 of batch 1 (first window, nothing known) + 21·50 = 1,050 of batch 2;
    interpolation 66·50 = 3,300 of batch 2: 4,400 calls = 88 windows × 50, 8,750 batch-1 passes (the official code
    counts 8,800, spending an identical unconditional pass on the first clip). The output has 256 latents:
    keyframe i (made by the pred windows, read from the callback's last x0 of each window) at 4i, and gap g's
    latents 4g+1..4g+3 are interpolation window g's own last x0 (slots 1..3), for every gap that fits.
    Breaks caught: ``for i in range(K - 1)`` → the official ``range(len(range(0, K - 3, 3)))`` (22 gaps, 89
    latents: shape and counts fail); the clean keyframe dropped from ``pieces +=`` (window slot 0 kept instead);
    ``keep = win[:, :, k:...]`` → ``win[:, :, k - 1:...]`` in extend (keyframes shift); no trim; w ≠ 0 guidance
    also for the first window (``(w != 0)``: 8,800)."""
    plan = lv.plan_long_video(256, 4, 1, 4, 5)
    assert (plan.keyframes, plan.pred_windows, plan.gaps, plan.latents, plan.levels, plan.windows) == \
        (67, 22, 66, 265, 1, 88)
    pred, interp = CountingStub(), CountingStub()
    last = []
    cb = lambda i, x, x0, s: last.append(x0.clone()) if i == 49 else None   # noqa: E731
    how = lv.Conditioning(lv.EXACT, 100, 0.1)
    out = lv.long_video(pred, interp, 256, 4, 5, 1, 4, (1, 1, 0, 1, 1), grid(50), grid(50), how, how, eta=1.0,
                        seed=0, callback=cb)
    assert pred.batches == [1] * 50 + [2] * 1050
    assert interp.batches == [2] * 3300
    assert len(pred.batches) + len(interp.batches) == 4400 == 88 * 50
    assert sum(pred.batches) + sum(interp.batches) == 8750
    assert out.shape == (1, 1, 256, 1, 1) and len(last) == 88
    keys = torch.cat([last[0]] + [w[:, :, 1:] for w in last[1:22]], dim=2)
    assert keys.shape[2] == 67
    for i in range(64):                                             # keyframes 0..63 sit at 4i < 256
        assert torch.equal(out[:, :, 4 * i], keys[:, :, i]), i
    for g in range(64):                                             # gaps 0..63 fit; 64 and 65 fall in the trim
        assert torch.equal(out[:, :, 4 * g + 1:4 * g + 4], last[22 + g][:, :, 1:4]), g
    # every interpolation call is the guided pair [uncond; cond]: labels [NO_LABEL, s]
    assert all(c["label"].tolist() == [lv.NO_LABEL, 100] for c in interp.conds)


# ---------------------------------------------------------------- invariants

@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_extension_from_nothing_starts_with_the_plain_sampler_bit_for_bit(eta):
    """REPLACE from nothing: the first window of ``extend`` == ``sampling.sample`` with the same seed, shape,
    grid, cond/uncond/scale and η, bit for bit (analytic Gaussian, no CFG; and the stub with text CFG 3).
    Breaks caught: ``generators``' ``"initial"`` purpose renamed (``prefix + "initial/"``); each window's start
    from a fresh ``generator(0, "initial")``; REPLACE built with ``guidance(denoise, cond)`` (CFG dropped)."""
    shape, sig = (2, 1, 4, 3, 3), grid(10)
    den = FrameGaussian(0.4, ar1(4, 0.9))
    out = lv.extend(den, None, 7, 4, 1, sig, lv.Conditioning(lv.REPLACE, 100), (2, 1, 0, 3, 3), eta, seed=8)
    assert torch.equal(out[:, :, :4], sample(den, shape, sig, {}, scale=1.0, eta=eta, seed=8))
    cond, uncond = {"text": torch.tensor([0.3, -0.2])}, {"text": torch.zeros(2)}
    how = lv.Conditioning(lv.REPLACE, 100, conds=((cond, uncond),), scale=3.0)
    out = lv.extend(CountingStub(), None, 4, 4, 1, sig, how, (2, 1, 0, 3, 3), eta, seed=8)
    assert torch.equal(out, sample(CountingStub(), shape, sig, cond, uncond, 3.0, eta=eta, seed=8))


def test_extend_keeps_the_given_latents_and_appends_the_requested_number():
    """The given video comes back unchanged at the front (bit for bit), followed by exactly ``new`` latents whose
    first window continues from the video's last ``context`` latents.
    Break caught: ``keep = win[:, :, k:k + (new - made)]`` → ``win[:, :, k:]`` (the last window's surplus kept)."""
    den = FrameGaussian(0.0, ar1(4, 0.9))
    video = torch.randn(1, 2, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    for new in (1, 2, 3, 5):
        out = lv.extend(den, video, new, 4, 2, grid(5), lv.Conditioning(lv.REPLACE, 100), seed=1)
        assert out.shape == (1, 2, 3 + new, 2, 2) and torch.equal(out[:, :, :3], video)
    assert torch.equal(lv.extend(den, video, 0, 4, 2, grid(5), lv.Conditioning()), video)


def test_interpolate_keeps_keyframes_at_multiples_of_length_minus_one():
    """Keyframes come back clean at i·(length − 1), every gap filled; K − 1 windows run.
    Breaks caught: the clean keyframe replaced by the window's slot 0 (``win[:, :, 0:length - 1]``)."""
    keys = torch.randn(1, 2, 5, 2, 2, generator=torch.Generator().manual_seed(3))
    for L in (3, 5):
        den = FrameGaussian(0.0, ar1(L, 0.9), record=True)
        out = lv.interpolate(den, keys, L, grid(4), lv.Conditioning(lv.EXACT, 50, 0.1), seed=2)
        assert out.shape == (1, 2, 4 * (L - 1) + 1, 2, 2) and len(den.calls) == 4 * 4
        for i in range(5):
            assert torch.equal(out[:, :, i * (L - 1)], keys[:, :, i])


def _small_long_video(seed, den=None):
    den = den or FrameGaussian(0.1, ar1(4, 0.9))
    iden = FrameGaussian(0.1, ar1(5, 0.9))
    how = lv.Conditioning(lv.EXACT, 100, 0.1)
    return lv.long_video(den, iden, 22, 4, 5, 1, 4, (1, 1, 0, 2, 2), grid(6), grid(5), how, how, eta=1.0, seed=seed)


def test_long_video_is_extend_then_interpolate_and_follows_its_seed():
    """``long_video`` == ``extend`` (pred, from nothing, plan.keyframes) then ``interpolate`` with the same seed,
    trimmed to target; same seed → same video; another seed → another video.
    Breaks caught: the interpolation stage's prefix ``INTERP`` → ``""`` (it would redraw the keyframe stage's
    noise: still equal to itself, but not to ``interpolate``'s default); ``keys[:, :, :target]`` → ``keys``."""
    plan = lv.plan_long_video(22, 4, 1, 4, 5)
    assert (plan.keyframes, plan.gaps, plan.latents) == (7, 6, 25)
    a = _small_long_video(3)
    how = lv.Conditioning(lv.EXACT, 100, 0.1)
    keys = lv.extend(FrameGaussian(0.1, ar1(4, 0.9)), None, 7, 4, 1, grid(6), how, (1, 1, 0, 2, 2), 1.0, 3)
    ref = lv.interpolate(FrameGaussian(0.1, ar1(5, 0.9)), keys, 5, grid(5), how, 1.0, 3)
    assert a.shape == (1, 1, 22, 2, 2) and torch.equal(a, ref[:, :, :22])
    assert torch.equal(a, _small_long_video(3))
    b = _small_long_video(4)
    assert (a - b).abs().max() > 0.1


def test_window_count_and_plan_against_hand_counts():
    """Hand counts. window_count: 1 window from nothing for ≤ length, then ⌈rest/(length − context)⌉.
    plan: keyframes ⌈(target − 1)/stride⌉ + 1 rounded up to a whole window, gaps per level.
    The shell default (n_pred_steps 2): 10 keyframes → 9 gaps, 37 latents; the official loop runs
    len(range(0, 10 − 3, 3)) = 3 (§1.8).
    Breaks caught: ``first + math.ceil(...)`` → ``math.ceil(...)``; ``gaps += k - 1`` → ``gaps += k``;
    ``(n_pred - 1) * (pred_length - context)`` → ``n_pred * ...``."""
    assert lv.window_count(0, 4, 4, 1) == 1
    assert lv.window_count(0, 5, 4, 1) == 2
    assert lv.window_count(0, 10, 4, 1) == 3               # 4 + 3 + 3
    assert lv.window_count(0, 11, 4, 1) == 4
    assert lv.window_count(3, 6, 4, 1) == 2
    assert lv.window_count(3, 7, 4, 1) == 3
    assert lv.window_count(2, 5, 4, 2) == 3                # 2 new per window
    assert lv.window_count(5, 0, 4, 1) == 0
    plan = lv.plan_long_video(37, 4, 1, 4, 5)
    assert (plan.keyframes, plan.pred_windows, plan.levels, plan.gaps, plan.latents) == (10, 3, 1, 9, 37)
    assert len(range(0, plan.keyframes - 3, 3)) == 3        # the official loop's count for the same keyframes
    assert lv.plan_long_video(1, 4, 1, 4, 5).keyframes == 4  # at least one window
    assert lv.plan_long_video(13, 4, 1, 4, 5).latents == 13
    assert lv.plan_long_video(14, 4, 1, 4, 5).keyframes == 7
    two = lv.plan_long_video(64, 4, 1, 16, 5)              # stride 16 = 4²: two passes
    assert (two.keyframes, two.levels, two.gaps, two.latents) == (7, 2, 6 + 24, 97)
    three = lv.plan_long_video(17, 4, 2, 8, 3)             # stride 8 = 2³, 4 + 2 = 6 → 3 + 1 keyframes rounded up
    assert (three.keyframes, three.pred_windows, three.levels, three.gaps, three.latents) == (4, 1, 3, 3 + 6 + 12, 25)


@pytest.fixture
def deadline():
    """Turn a hang into a failure: SIGALRM after 2 s raises in the (pure-Python) loop."""
    def boom(*_):
        raise TimeoutError("did not return within 2 s")
    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def test_errors():
    """Bad arguments raise ValueError naming the problem.
    Breaks caught: each guard removed (w ≠ 0 in REPLACE; ``0 < context < length``; ``have < context``; the
    stride power check; ``K < 2``)."""
    known = torch.zeros(1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match=r"unconditional guidance \(w = 0.1\).*replacement"):
        _window(CountingStub(), lv.REPLACE, known, w=0.1, B=1)
    with pytest.raises(ValueError, match="unconditional guidance"):
        lv.extend(CountingStub(), None, 4, 4, 1, grid(3), lv.Conditioning(lv.REPLACE, 100, 0.1), (1, 1, 0, 1, 1))
    for ctx in (0, 4, 5):
        with pytest.raises(ValueError, match=r"context must be in \[1, 3\]"):
            lv.window_count(0, 8, 4, ctx)
    with pytest.raises(ValueError, match="fewer than the context"):
        lv.extend(CountingStub(), torch.zeros(1, 1, 1, 1, 1), 4, 4, 2, grid(3), lv.Conditioning())
    for stride, interp_len in ((6, 5), (1, 5), (8, 5), (3, 3)):
        with pytest.raises(ValueError, match="must be a power"):
            lv.plan_long_video(64, 4, 1, stride, interp_len)
    with pytest.raises(ValueError, match="at least 2 keyframes"):
        lv.interpolate(CountingStub(), torch.zeros(1, 1, 1, 1, 1), 5, grid(3), lv.Conditioning())
    with pytest.raises(ValueError, match="at least 3 latents"):
        lv.interpolate(CountingStub(), torch.zeros(1, 1, 2, 1, 1), 2, grid(3), lv.Conditioning())
    with pytest.raises(ValueError, match="mode must be one of"):
        _window(CountingStub(), "paste", known, B=1)


def test_plan_rejects_interpolation_windows_too_short_to_fill_anything(deadline):
    """BUG (fixed in this branch): ``plan_long_video(..., interp_length=2)`` looped forever — step = 1 divides every
    spacing and ``spacing //= 1`` never shrinks it; interp_length 1 raised ZeroDivisionError (``% 0``). Both must
    be the ValueError of a window that fills nothing (interpolate itself needs ≥ 3 latents).
    Break caught: the loop guard ``step >= 2 and`` removed (hang → TimeoutError after 2 s)."""
    for interp_len in (2, 1, 0):
        with pytest.raises(ValueError, match="must be a power"):
            lv.plan_long_video(64, 4, 1, 4, interp_len)


def test_exact_mode_refuses_a_cfg_scale():
    """EXACT guides with w; a text CFG scale ≠ 1 beside it would be dropped silently (the guided model is built from
    the mask/label conditioning alone), so it is refused, with w = 0 and with w ≠ 0.
    Break caught: the refusal removed (the window runs, scale ignored)."""
    known = torch.ones(2, 1, 1, 1, 1)
    cond, uncond = {"text": torch.tensor([0.5, 0.5])}, {"text": torch.zeros(2)}
    for w in (0.0, 0.1):
        with pytest.raises(ValueError, match="exact conditioning guides with w .*got scale 3.0"):
            _window(CountingStub(), lv.EXACT, known, scale=3.0, w=w, cond=cond, uncond=uncond)
