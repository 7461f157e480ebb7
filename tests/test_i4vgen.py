"""I4VGen: the NI-VSDS update in both of the reference's forms, the AnimateDiff schedule, the relaxation rate
on Gaussian data, exact evaluation counts, no autograd, the selector and image-to-video."""
import pytest
import torch

from cvk_testkit.gaussian import GaussianDenoiser
from consistent_video_kit.nodes.common import CVKInputError
from consistent_video_kit.models.scorers import Scorer
from consistent_video_kit.nodes.i4vgen import CVK_AnchorCandidates, CVK_AnchorSelector, CVK_NIVSDSAnimator, CVK_Regenerate
from consistent_video_kit.samplers import i4vgen, vp

AD = "animatediff (10, 10, 10, then 1)"


def linear_eps_net():
    """A VP ε-network whose output depends on its input, timestep and conditioning."""
    W = torch.randn(4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.3

    def net(z, t, cond):
        return torch.einsum("ij,bjfhw->bifhw", W, z) + 0.001 * t.double() + cond["text"].reshape(-1, 1, 1, 1, 1)
    return net


def test_ni_vsds_equals_both_reference_forms():
    ac = vp.vp_alphas_cumprod("linear", 0.00085, 0.012)
    net = linear_eps_net()
    den = vp.VPDenoiser(net, ac)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, 3, 4, 4, generator=g, dtype=torch.float64)
    eps_star = torch.randn(z.shape, generator=g, dtype=torch.float64)
    cond, uncond = {"text": torch.tensor([0.7], dtype=torch.float64)}, {"text": torch.tensor([-0.2], dtype=torch.float64)}
    s, eta, t = 7.5, 10.0, 961
    sigma = float(den.sigmas[t])
    ours = i4vgen.ni_vsds(den, z, torch.tensor([sigma, 0.0], dtype=torch.float64), cond, uncond, s, [eta], eps_star)
    a = ac[t]
    z_t = a.sqrt() * z + (1 - a).sqrt() * eps_star                                 # the official ε form
    tt = torch.tensor(t)
    e_u, e_c = net(z_t, tt, uncond), net(z_t, tt, cond)
    e = e_u + s * (e_c - e_u)
    official = z - eta * (1 - a) * (e - eps_star)
    x0 = (z_t - (1 - a).sqrt() * e) / a.sqrt()                                      # the x0-relaxation form
    relaxed = z + eta * (a * (1 - a)).sqrt() * (x0 - z)
    assert torch.allclose(ours, official, rtol=1e-10, atol=1e-12) and torch.allclose(ours, relaxed, rtol=1e-10, atol=1e-12)


def test_eps_star_is_drawn_once(tiny_animatediff):
    seen_x, seen_z = [], []
    sigmas = tiny_animatediff.sigmas(10)

    def den(x, s, c):
        seen_x.append((x[:1].clone(), s))
        return x * 0.5
    z = torch.randn(1, 4, 3, 4, 4)
    i4vgen.animate(den, z[:, :, :1], 3, sigmas, {"text": torch.zeros(1, 2, 2)}, {"text": torch.zeros(1, 2, 2)}, 7.5, 0.6,
                   "animatediff", seed=4, callback=lambda i, zz, x0, s: seen_z.append(zz.clone()))
    eps = [(x - zz) / s for (x, s), zz in zip(seen_x, seen_z)]
    assert len(eps) == 7 and all(torch.allclose(e, eps[0], atol=1e-4) for e in eps)
    assert not torch.allclose(eps[0][:, :, 0], eps[0][:, :, 1])                # differs per frame


def test_animatediff_schedule():
    ac = vp.vp_alphas_cumprod("linear", 0.00085, 0.012)
    from consistent_video_kit.samplers.schedules import sigma_grid, spaced_timesteps
    sig = sigma_grid(ac, spaced_timesteps("leading", 25, 1000, 1), "sigma_min")
    k = i4vgen.ni_vsds_iterations(25, 0.6)
    ts = vp.sigma_to_t(sig[:k], vp.sigmas_from_alphas_cumprod(ac))
    assert k == 16 and ts.tolist() == list(range(961, 360, -40))
    assert i4vgen.step_sizes("animatediff", k) == [10.0, 10.0, 10.0] + [1.0] * 13
    assert i4vgen.step_sizes("constant", 5) == [1.0] * 5
    etas = i4vgen.step_sizes("animatediff", i4vgen.ni_vsds_iterations(100, 0.6))       # the official list stops at 25
    assert len(etas) == 61 and etas[3:] == [1.0] * 58
    assert [i4vgen.regeneration_start(25, p) for p in (1.0, 0.8, 0.04)] == [0, 5, 24]
    with pytest.raises(ValueError, match="leaves no step"):
        i4vgen.regeneration_start(25, 0.01)


def test_gaussian_relaxation_rate():
    """With the exact denoiser of N(μ, s²) data, x̂0 = μ + a(z + σε* − μ), a = s²/(s²+σ²). One iteration is
    z' = z + r(x̂0 − z), r = η σ/(1+σ²), whose fixed point is z* = μ + a σ ε*/(1 − a); so the distance to z*
    shrinks by exactly (1 − r(1 − a)) per iteration."""
    mu, s = 0.4, 0.6
    sig = torch.tensor([3.0, 1.5, 0.7, 0.3, 0.0], dtype=torch.float64)
    etas = [10.0, 1.0, 1.0, 1.0]
    z0 = torch.randn(1, 1, 2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z = z0
    for i, eta in enumerate(etas):
        sigma = float(sig[i])
        a, r = s * s / (s * s + sigma * sigma), eta * sigma / (1 + sigma * sigma)
        fixed = mu + a * sigma * eps / (1 - a)
        nxt = i4vgen.ni_vsds(GaussianDenoiser(mu, s), z, sig[i:i + 2], None, None, 1.0, [eta], eps)
        assert torch.allclose(nxt - fixed, (1 - r * (1 - a)) * (z - fixed), atol=1e-12)
        z = nxt


def spy(model, monkeypatch):
    calls = []
    net = model.network

    def wrapped(z, t, cond):
        calls.append((z.shape[0], torch.is_grad_enabled(), torch.is_inference_mode_enabled()))
        return net(z, t, cond)
    monkeypatch.setitem(model.__dict__, "network", wrapped)
    return calls


def test_exact_counts_and_no_autograd(tiny_animatediff, monkeypatch):
    m = tiny_animatediff
    calls = spy(m, monkeypatch)
    imgs, lat = CVK_AnchorCandidates().generate(m, "a cat", "", 0, 3, 6, 7.5, 64, 64)
    assert len(calls) == 6 and {c[0] for c in calls} == {2 * 3}                    # one [uncond×3; cond×3] call per step
    calls.clear()
    img, l1, _ = CVK_AnchorSelector().select(imgs, lat, "a cat", "index", "", 2)
    (anim,) = CVK_NIVSDSAnimator().animate(m, "a cat", "", 4, 6, 0.6, AD, 7.5, 0, anchor_latent=l1)
    assert len(calls) == int(6 * 0.6) + 1 and {c[0] for c in calls} == {2}
    calls.clear()
    (out,) = CVK_Regenerate().regenerate(m, anim, "a cat", "", 0.5, 6, "ddim", 7.5, 0)
    assert len(calls) == 3
    assert all(not grad and inf for _, grad, inf in calls)
    for t in (imgs, lat["samples"], anim["samples"], out["samples"]):
        assert t.grad_fn is None and not t.requires_grad
    assert torch.equal(l1["samples"], lat["samples"][2:3])


def test_regeneration_is_noised_explicitly(tiny_animatediff):
    """p_re = 1 starts at the first grid level: x = z + σ_t0·ε′ with ε′ from its own generator."""
    from consistent_video_kit.samplers.noise import generator, randn
    sig = tiny_animatediff.sigmas(4)
    z = torch.randn(1, 4, 2, 4, 4)
    seen = []
    i4vgen.regenerate(lambda x, s, c: seen.append((x.clone(), s)) or x * 0, z, sig, {"text": torch.zeros(1, 1, 1)},
                      {"text": torch.zeros(1, 1, 1)}, 1.0, 1.0, seed=9)
    expected = z + float(sig[0]) * randn(z.shape, generator(9, "regenerate"))
    assert seen[0][1] == float(sig[0]) and torch.allclose(seen[0][0], expected)


def test_selector(tiny_animatediff):
    imgs = torch.rand(3, 16, 16, 3)
    lat = {"samples": torch.randn(3, 4, 1, 2, 2)}

    class Fixed(Scorer):
        name = "fixed"

        def score(self, prompt, images):
            return torch.tensor([0.1, 0.9, 0.3])
    img, l, scores = CVK_AnchorSelector().select(imgs, lat, "p", "scorer", "", 0, Fixed())
    assert torch.equal(img, imgs[1:2]) and torch.equal(l["samples"], lat["samples"][1:2]) and scores == "0.1, 0.9, 0.3"
    img, _, scores = CVK_AnchorSelector().select(imgs, lat, "p", "external scores", "3, -1, 2.5", 0)
    assert torch.equal(img, imgs[0:1]) and scores == "3, -1, 2.5"
    errors = [
        (dict(images=torch.zeros(0, 16, 16, 3)), "input 'images'", "non-empty IMAGE batch"),
        (dict(latent={"samples": torch.randn(2, 4, 1, 2, 2)}), "input 'latent'", "3 single-frame candidate latents"),
        (dict(selection="external scores", external_scores="1, x, 2"), "input 'external_scores'", "score 2 of 3, 'x', is not a number"),
        (dict(selection="external scores", external_scores="1, 2"), "input 'external_scores'", "2 scores given for 3 candidates"),
        (dict(selection="scorer"), "input 'scorer' got None", "a CVK_SCORER"),
        (dict(selection="index", index=3), "input 'index' got 3", "out of range for 3 candidates"),
    ]
    for change, head, tail in errors:
        args = dict(images=imgs, latent=lat, prompt="p", selection="index", external_scores="", index=0)
        args.update(change)
        with pytest.raises(CVKInputError) as e:
            CVK_AnchorSelector().select(**args)
        assert head in str(e.value) and tail in str(e.value), str(e.value)


def test_animator_anchor_inputs(tiny_animatediff):
    m = tiny_animatediff
    pic = torch.rand(1, 64, 48, 3)
    (a,) = CVK_NIVSDSAnimator().animate(m, "a cat", "", 3, 4, 0.5, AD, 7.5, 0, anchor_image=pic)
    assert a["samples"].shape == (1, 4, 3, 8, 6)
    cases = [(dict(), "exactly one anchor"),
             (dict(anchor_image=pic, anchor_latent={"samples": torch.zeros(1, 4, 1, 8, 6)}), "exactly one anchor"),
             (dict(anchor_image=torch.rand(1, 60, 48, 3)),
              r"input 'anchor_image' got a tensor of shape \(1, 60, 48, 3\); expected width and height that are multiples of 8"),
             (dict(anchor_image=torch.rand(2, 64, 48, 3)), r"expected one picture.*a batch of 2 pictures would keep only one"),
             (dict(anchor_latent={"samples": torch.zeros(2, 4, 1, 8, 6)}), "one single-frame latent")]
    for kw, msg in cases:
        with pytest.raises(CVKInputError, match=msg):
            CVK_NIVSDSAnimator().animate(m, "a cat", "", 3, 4, 0.5, AD, 7.5, 0, **kw)
    with pytest.raises(CVKInputError, match="input 'p_re' got 0.01: p_re = 0.01 leaves no step of 4"):
        CVK_Regenerate().regenerate(m, a, "a cat", "", 0.01, 4, "ddim", 7.5, 0)


def test_chain_ends_at_sigma_zero_by_default(tiny_animatediff, monkeypatch):
    """As the official pipeline (DDIMScheduler with set_alpha_to_one left True): the candidates and the
    regeneration end at σ = 0, and each stage's output is the clean estimate of its last network call."""
    from consistent_video_kit.samplers import sampling
    runs = []
    real = sampling.sample_ddim

    def recording(model, x, sigmas, eta=0.0, generator=None, callback=None):
        last = {}

        def remember(x_in, sigma):
            out = model(x_in, sigma)
            last["x0"] = out.x0
            return out
        out = real(remember, x, sigmas, eta, generator, callback)
        runs.append((sigmas, last["x0"], out))
        return out
    monkeypatch.setattr(sampling, "sample_ddim", recording)
    monkeypatch.setattr(i4vgen, "sample_ddim", recording)
    m = tiny_animatediff
    imgs, lat = CVK_AnchorCandidates().generate(m, "a cat", "", 0, 2, 5, 7.5, 64, 64)
    _, l1, _ = CVK_AnchorSelector().select(imgs, lat, "a cat", "index", "", 0)
    (anim,) = CVK_NIVSDSAnimator().animate(m, "a cat", "", 3, 5, 0.6, AD, 7.5, 0, anchor_latent=l1)
    (out,) = CVK_Regenerate().regenerate(m, anim, "a cat", "", 1.0, 5, "ddim", 7.5, 0)
    assert len(runs) == 2
    for (sigmas, x0, x), result in zip(runs, (lat, out)):
        assert sigmas[-1] == 0 and sigmas[-2] > 0
        assert torch.equal(x, x0) and torch.equal(result["samples"], x0)
