"""The LGC-VD sampler (samplers/lgcvd.py) against independent references, with stub models only.

- Schedule: the cosine ᾱ against the closed form; the respaced timesteps of "100" against ``round(i·999/99)``.
- One step: the DDPM posterior of the respaced process and the DDIM(η = 0) update, written by hand in the VP form
  with the clipped v-prediction x̂0 (guided-diffusion's formulas, the official ``q_posterior`` coefficients), against
  one window step of our σ-space loop over a VPDenoiser with a v-predicting stub network.
- Context: the local context tensor (channels, position maps, absent frames) of every task, rebuilt from the official
  rule ``normalize_img(cat(y1, (p1 + 1)/9, y2, (p2 + 1)/9))`` and the output video; the global feature against the
  recursion f_0 = E(blank), f_k = ½·E(x̂_{k−1}) + ½·f_{k−1} with a counting encoder (the clip mean).
- Windows: the official layout for 30 frames written out by hand from ``Trainer.test`` (starts 0, 6, 12, 18, 22;
  write-back [0:8], [6:14], [12:20], [18:26], [26:30]), the official rule (⌈(N − 2)/6⌉ windows, the last aligned to
  the end, its last res frames written) re-derived for N = 8..100, and coverage for any length and number of given
  frames.
- Infilling: the paste rule rebuilt from our own copy of the re-noise generator; with element-wise Gaussian data
  (μ = 0.1, s = 0.15, so the clip at ±1 is 6 s.d. away and never acts) the unknown frames equal the unconditional
  samples bit for bit without jumps, and with jumps match the exact moments of the jump chain (an affine recursion
  written here) within 4 Monte-Carlo standard errors (stated in the test).
- NFE: counting stubs, one call = one network call on a batch of B windows.

Every test names, in its docstring, the one-line break of samplers/lgcvd.py it was seen to catch.
"""
import gc
import math
import warnings

import pytest
import torch

from cvk_testkit.gaussian import GaussianDenoiser, ddim_eta_sigmas, predicted_moments
from consistent_video_kit.samplers import lgcvd as L
from consistent_video_kit.samplers import vp
from consistent_video_kit.samplers.noise import generator

AC = L.cosine_alphas_cumprod()
TABLE = vp.sigmas_from_alphas_cumprod(AC)


def grid(steps):
    return L.sampling_sigmas(AC, steps)


class Recorder:
    """A σ-space denoiser for element-wise Gaussian data N(μ, s²) (the exact posterior mean) that records every call:
    x, σ and the cond dict. Batch B per call (its batch sizes are kept)."""

    def __init__(self, mean=0.1, std=0.15, record=True):
        self.g = GaussianDenoiser(mean, std)
        self.record = record
        self.calls = []

    def __call__(self, x, sigma, cond):
        if self.record:
            self.calls.append(dict(x=x.clone(), sigma=float(sigma), cond=cond))
        return self.g(x, sigma)

    @property
    def nfe(self):
        return self.g.calls


class Encoder:
    """A counting encoder: the feature of a clip ``(B, 3, 8, H, W)`` is its mean per sample ``(B,)``."""

    def __init__(self):
        self.clips = []

    def __call__(self, clip):
        assert clip.shape[1:3] == (3, 8), clip.shape
        self.clips.append(clip.clone())
        return clip.mean(dim=(1, 2, 3, 4))


def last_x0s(steps):
    """A callback that keeps the x0 of the last step of every window (the window's sample when the grid ends at 0)."""
    kept = []

    def cb(i, x, x0, sigma):
        if i % steps == steps - 1:
            kept.append(x0.clone())
    return kept, cb


# ---------------------------------------------------------------- schedule and one step

def test_cosine_alphas_cumprod_matches_the_closed_form():
    """ᾱ_t = f(t + 1)/f(0), f(u) = cos(((u/1000) + 0.008)/1.008·π/2)², in plain float64 math, except the last entry
    where β is clipped at 0.9999: ᾱ_999 = ᾱ_998·(1 − 0.9999). rtol 2e-5: the official buffers are float32 products.
    Breaks caught: s = 0.008 → 0.08; the clip 0.9999 → 0.999; ``ac[1:] / ac[:-1]`` → ``ac[:-1] / ac[1:]``."""
    f = [math.cos(((u / 1000) + 0.008) / 1.008 * math.pi / 2) ** 2 for u in range(1001)]
    want = torch.tensor([f[t + 1] / f[0] for t in range(999)], dtype=torch.float64)
    assert AC.shape == (1000,) and AC.dtype == torch.float64
    torch.testing.assert_close(AC[:999], want, rtol=2e-5, atol=0)
    assert AC[999].item() == pytest.approx(AC[998].item() * (1 - 0.9999), rel=1e-3)


def test_respaced_timesteps_and_sigma_grid():
    """"100" keeps round(i·999/99), i = 0..99 (999/99 = 111/11: no .5 ties); the grid is σ of those timesteps
    descending, then 0, and every level tells a VPDenoiser its original timestep (nearest). DDIM uses the same grid.
    Breaks caught: ``reverse=True`` dropped in kept_timesteps; the final level ``zeros(1)`` → ``table[:1]``;
    ``str(steps)`` → ``f"ddim{steps}"``."""
    want = [round(i * 999 / 99) for i in range(100)][::-1]
    assert L.kept_timesteps(100) == want and want[0] == 999 and want[-1] == 0
    sig = grid(100)
    assert sig.shape == (101,) and sig.dtype == torch.float64 and sig[-1] == 0
    torch.testing.assert_close(sig[:-1], ((1 - AC[want]) / AC[want]).sqrt(), rtol=1e-12, atol=0)
    den = vp.VPDenoiser(lambda z, t, c: z, AC, "v_prediction")
    assert [int(den.timestep(float(s))) for s in sig[:-1]] == want
    assert L.kept_timesteps(10) == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]


class VNet:
    """A v-predicting stub network ``v = −2z + 0.1`` that records the timesteps it is told. At ᾱ ≈ ½ its x̂0 ≈ 2.1·z
    leaves [−1, 1] for about a third of the entries, so the clip matters."""

    def __init__(self):
        self.ts = []

    def __call__(self, z, t, cond):
        self.ts.append(int(t))
        return -2.0 * z + 0.1


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_one_step_is_the_respaced_posterior_or_ddim_written_by_hand(sampler):
    """One step of a window from kept timestep t = 505 to t' = 494 of "100" (σ-space, our loop) against the VP form by
    hand: z_t = ε (the "initial" draw), x̂0 = clip(√ᾱ_t·z_t − √(1 − ᾱ_t)·v̂), β' = 1 − ᾱ_t/ᾱ_t';
    DDPM: z_t' = β'√ᾱ_t'/(1 − ᾱ_t)·x̂0 + (1 − ᾱ_t')√(1 − β')/(1 − ᾱ_t)·z_t + √(β'(1 − ᾱ_t')/(1 − ᾱ_t))·n
    (n the "ancestral" draw); DDIM: z_t' = √ᾱ_t'·x̂0 + √(1 − ᾱ_t')·(z_t − √ᾱ_t·x̂0)/√(1 − ᾱ_t). The network is told 505.
    The last step (t = 0 → σ = 0) returns the clipped x̂0. atol 2e-5 (float32).
    Breaks caught: ``.clamp(-1.0, 1.0)`` dropped from clip_x0; ``eta_of`` ddpm → 0.0 (for ddpm) and ddim → 1.0
    (for ddim); ``gens["ancestral"]`` → ``gens["initial"]``."""
    seed, shape = 7, (2, 3, 8, 3, 3)
    kept = L.kept_timesteps(100)
    i = kept.index(505)
    t, tp = kept[i], kept[i + 1]
    sig = grid(100)
    net = VNet()
    den = vp.VPDenoiser(net, AC, "v_prediction")
    gens = {"initial": generator(seed, "initial"), "ancestral": generator(seed, "ancestral")}
    x = L.sample_window(den, shape, sig[i:i + 2], {}, sampler, gens)
    assert net.ts == [505]
    eps = torch.randn(shape, generator=generator(seed, "initial")).to(torch.float64)
    n = torch.randn(shape, generator=generator(seed, "ancestral")).to(torch.float64)
    a, ap = AC[t].item(), AC[tp].item()
    v = -2.0 * eps + 0.1
    raw = math.sqrt(a) * eps - math.sqrt(1 - a) * v
    assert (raw.abs() > 1).float().mean() > 0.2
    x0 = raw.clamp(-1, 1)
    if sampler == "ddpm":
        b = 1 - a / ap
        want = (b * math.sqrt(ap) / (1 - a) * x0 + (1 - ap) * math.sqrt(1 - b) / (1 - a) * eps
                + math.sqrt(b * (1 - ap) / (1 - a)) * n)
    else:
        want = math.sqrt(ap) * x0 + math.sqrt(1 - ap) * (eps - math.sqrt(a) * x0) / math.sqrt(1 - a)
    got = x.to(torch.float64) / math.sqrt(1 + float(sig[i + 1]) ** 2)
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5)
    # the last step: timestep 0 → σ = 0 gives the clipped x̂0
    net.ts.clear()
    last = L.sample_window(den, shape, sig[-2:], {}, sampler, {"initial": generator(seed, "initial"),
                                                               "ancestral": generator(seed, "ancestral")})
    a0 = AC[0].item()
    want0 = (math.sqrt(a0) * eps - math.sqrt(1 - a0) * (-2.0 * eps + 0.1)).clamp(-1, 1)
    assert net.ts == [0]
    torch.testing.assert_close(last.to(torch.float64), want0, rtol=0, atol=2e-5)


# ---------------------------------------------------------------- windows

OFFICIAL_30 = [(0, (0, 8)), (6, (6, 14)), (12, (12, 20)), (18, (18, 26)), (22, (26, 30))]   # Trainer.test, by hand


def official_layout(n, cond=2, new=6):
    """``Trainer.test``'s windows re-derived: total_clips = (N − cond)//new (+1 when res = (N − cond) % new); window k
    starts at k·new except, when res, the last at N − 8; writes [start, start + 8), the last (res) [N − res, N)."""
    total, res = (n - cond) // new, (n - cond) % new
    total += 1 if res else 0
    out = []
    for k in range(total):
        if res and k == total - 1:
            out.append((n - cond - new, (n - res, n)))
        else:
            out.append((k * new, (k * new, k * new + cond + new)))
    return out


def test_window_plan_is_the_official_layout_for_30_frames_and_any_length():
    """30 frames: the official 5 windows, starts 0, 6, 12, 18, 22; ours writes the official write-back minus the two
    context slots ([2:8], [8:14], [14:20], [20:26], [26:30]); given = 0 / 1 (generation, live photo) have the same
    starts and write from frame 0 / 1. For N = 8..100: same starts as the official rule, each of our writes inside the
    official one, and the context slots of every window after the first already written.
    Breaks caught: ``total_frames - F`` alignment → ``total_frames - F + 1``; stride ``F - cond`` → ``F``;
    ``max(start + cond …)`` i.e. ``slice(end, …)`` → ``slice(start + cond, …)`` (overlaps the last window)."""
    assert official_layout(30) == OFFICIAL_30
    plan = L.window_plan(30)
    assert [w.start for w in plan] == [0, 6, 12, 18, 22]
    assert [(w.write.start, w.write.stop) for w in plan] == [(2, 8), (8, 14), (14, 20), (20, 26), (26, 30)]
    assert [(w.start, w.write.start, w.write.stop) for w in L.window_plan(30, given=0)][0] == (0, 0, 8)
    assert [(w.start, w.write.start) for w in L.window_plan(30, given=1)][0] == (0, 1)
    for g in (0, 1):
        assert [w.start for w in L.window_plan(30, given=g)] == [0, 6, 12, 18, 22]
    assert L.window_count(30, 2) == 5
    for n in range(8, 101):
        plan, off = L.window_plan(n), official_layout(n)
        assert [w.start for w in plan] == [s for s, _ in off], n
        end = 2
        for w, (s, (a, b)) in zip(plan, off):
            assert a <= w.write.start and w.write.stop == b, (n, w, a, b)
            assert w.write.start == end and w.start + 1 < end, (n, w)     # contiguous; context slots known
            end = w.write.stop
        assert end == n


def test_window_plan_covers_every_frame_once_for_any_length_and_given():
    """N = 1..80, given = 0..min(N, 12): the windows write [given, N) exactly once, in order, each write inside its
    window and from its first new slot on; the first window starts at max(given − 2, 0), the later ones step by at most
    6 and keep their context slots (start, start + 1) inside what is already made.
    Breaks caught: ``start = max(given - cond, 0)`` → ``0`` (given = 5: context not the last two given frames);
    ``min(start + F, total_frames)`` → ``start + F`` (writes past the end)."""
    for n in range(1, 81):
        for given in range(0, min(n, 12) + 1):
            plan = L.window_plan(n, given=given)
            written = []
            end = given
            for k, w in enumerate(plan):
                assert w.write.start == end and w.write.stop > w.write.start
                assert w.start <= w.write.start and w.write.stop <= min(w.start + 8, n)
                if k == 0:
                    assert w.start == max(given - 2, 0)
                else:
                    assert w.start + 1 < w.write.start and 0 < w.start - plan[k - 1].start <= 6
                written += list(range(w.write.start, w.write.stop))
                end = w.write.stop
            assert written == list(range(given, n)), (n, given)


# ---------------------------------------------------------------- context

def official_context(y1, p1, y2, p2, B=1, H=2, W=2):
    """``normalize_img(cat(cond1, mask_p1, cond2, mask_p2))`` with frames and maps in [0, 1], absent frames zeros
    (``Trainer.test``); our frames are in [−1, 1], so y = (frame + 1)/2 before the normalisation."""
    def frame(y):
        return torch.zeros(B, 3, H, W) if y is None else (y + 1) / 2
    def mask(p):
        return torch.ones(B, 1, H, W) * ((p + 1) / (8 + 1))
    return torch.cat([frame(y1), mask(p1), frame(y2), mask(p2)], dim=1) * 2 - 1


def test_local_context_of_every_task_is_the_official_tensor():
    """Each task's windows: the context the denoiser gets equals the official tensor built from the output video —
    prediction (0, 1) then (0, 1) with the window's first two frames; live photo (0, −1); generation (−1, −1);
    interpolation (0, 7) with the first and last frame; prediction from 5 frames: the first window's context is the
    last two given frames. Maps: 0 → −7/9, 1 → −5/9, 7 → 7/9, absent → −1 with the frame −1.
    Breaks caught: ``(int(pos) + 1) / (F + 1)`` → ``int(pos) / F``; the absent frame ``-1.0`` → ``0.0``; ``positions =
    first_positions if k == 0 else (0, 1)`` → ``first_positions``; ``win.start + p`` → ``p``."""
    assert [L.position_value(p) for p in (-1, 0, 1, 7)] == pytest.approx([-1, -7 / 9, -5 / 9, 7 / 9])
    steps, B, H, W = 2, 1, 2, 2
    sig = grid(steps)
    gen = torch.Generator().manual_seed(3)
    frames = torch.rand(B, 3, 5, H, W, generator=gen) * 2 - 1
    cases = {
        "prediction": (lambda d, e: L.predict(d, e, frames[:, :, :2], 18, sig), 2, (0, 1)),
        "live": (lambda d, e: L.predict(d, e, frames[:, :, :1], 19, sig), 1, (0, -1)),
        "generation": (lambda d, e: L.generate(d, e, (B, 3, 20, H, W), sig), 0, (-1, -1)),
        "from5": (lambda d, e: L.predict(d, e, frames, 15, sig), 5, (0, 1)),
    }
    for name, (run, given, first) in cases.items():
        den = Recorder()
        out = run(den, Encoder())
        plan = L.window_plan(20, given=given)
        assert len(den.calls) == steps * len(plan), name
        for k, w in enumerate(plan):
            p1, p2 = first if k == 0 else (0, 1)
            y1 = None if p1 == -1 else out[:, :, w.start + p1]
            y2 = None if p2 == -1 else out[:, :, w.start + p2]
            want = official_context(y1, p1, y2, p2)
            for call in den.calls[k * steps:(k + 1) * steps]:
                torch.testing.assert_close(call["cond"]["context"], want, rtol=0, atol=1e-6)
        if name == "from5":
            assert plan[0].start == 3
            torch.testing.assert_close(den.calls[0]["cond"]["context"][:, 0:3], frames[:, :, 3])
            torch.testing.assert_close(den.calls[0]["cond"]["context"][:, 4:7], frames[:, :, 4])
    den = Recorder()
    two = frames[:, :, [0, 4]]
    out = L.interpolate(den, Encoder(), two, sig)
    assert out.shape == (B, 3, 8, H, W) and len(den.calls) == steps
    assert torch.equal(out[:, :, 0], two[:, :, 0]) and torch.equal(out[:, :, 7], two[:, :, 1])
    want = official_context(two[:, :, 0], 0, two[:, :, 1], 7)
    torch.testing.assert_close(den.calls[0]["cond"]["context"], want, rtol=0, atol=1e-6)
    with pytest.raises(ValueError):
        L.local_context(None, frames[:, :, 0], (0, 1), B, H, W)


def test_global_context_is_the_running_average_of_the_previous_windows():
    """Generation of 30 frames (5 windows): the encoder runs once per window; window 0 encodes the blank clip (all 0 =
    0.5 before the normalisation) and gets f_0 = E(blank) = 0; window k encodes x̂_{k−1} = the previous window's
    sample (its last step's x0, all 8 frames) and gets f_k = ½·E(x̂_{k−1}) + ½·f_{k−1}, i.e. Σ_j 2^{j−k}·E(x̂_j)
    + 2^{−k}·E(blank). The written frames of window k are x̂_k's frames.
    Breaks caught: ``_average`` returning ``a`` (no running average); ``blank_clip`` ones instead of zeros;
    ``previous = x`` → ``previous = out[:, :, win.start:win.start + F]`` (encodes the written video)."""
    steps = 3
    enc, den = Encoder(), Recorder(mean=0.3, std=0.2)
    xs, cb = last_x0s(steps)
    out = L.generate(den, enc, (2, 3, 30, 2, 2), grid(steps), seed=4, callback=cb)
    plan = L.window_plan(30, given=0)
    assert len(enc.clips) == len(plan) == len(xs) == 5
    assert torch.equal(enc.clips[0], torch.zeros(2, 3, 8, 2, 2))
    f = torch.zeros(2)
    for k, w in enumerate(plan):
        if k:
            torch.testing.assert_close(enc.clips[k], xs[k - 1], rtol=0, atol=0)
            f = 0.5 * xs[k - 1].mean(dim=(1, 2, 3, 4)) + 0.5 * f
        closed = sum(2.0 ** (j - k) * xs[j].mean(dim=(1, 2, 3, 4)) for j in range(k)) if k else torch.zeros(2)
        for call in den.calls[k * steps:(k + 1) * steps]:
            torch.testing.assert_close(call["cond"]["feature"], f, rtol=0, atol=1e-6)
            torch.testing.assert_close(call["cond"]["feature"], closed, rtol=0, atol=1e-6)
        assert torch.equal(out[:, :, w.write], xs[k][:, :, w.write.start - w.start:w.write.stop - w.start])
    assert (f.abs() > 1e-3).all()


# ---------------------------------------------------------------- runs, NFE, seeds, memory

def test_prediction_keeps_the_given_frames_nfe_is_steps_times_windows_and_seeds_repeat():
    """Prediction of 28 frames after 2 at 100 steps: 5 windows, 500 network calls of batch B = 2 and 5 encoder calls;
    the given frames come back bit for bit; the same seed gives the same video, another seed another; every output
    value lies in [−1, 1] (the last step returns the clipped x̂0). Live photo (one frame) to 30 frames with DDIM: the
    same 5 windows, 500 calls. Interpolation: 100 calls.
    Breaks caught: ``out[:, :, :G] = frames`` dropped (given frames left empty); the generators rebuilt from the seed
    in every window (``gens`` → ``_generators(seed)`` in _run_windows: windows repeat their noise)."""
    B, H, W, steps = 2, 2, 2, 100
    sig = grid(steps)
    frames = torch.rand(B, 3, 2, H, W, generator=torch.Generator().manual_seed(0)) * 2 - 1
    den, enc = Recorder(record=False), Encoder()
    out = L.predict(den, enc, frames, 28, sig, seed=5)
    assert out.shape == (B, 3, 30, H, W)
    assert den.nfe == 500 == steps * L.window_count(30, 2) and set(den.g.batch_sizes) == {B} and len(enc.clips) == 5
    assert torch.equal(out[:, :, :2], frames)
    assert out.abs().max() <= 1
    assert not torch.equal(out[:, :, 2:8], out[:, :, 8:14])
    again = L.predict(Recorder(record=False), Encoder(), frames, 28, sig, seed=5)
    assert torch.equal(out, again)
    other = L.predict(Recorder(record=False), Encoder(), frames, 28, sig, seed=6)
    assert not torch.equal(out[:, :, 2:], other[:, :, 2:])
    den = Recorder(record=False)
    L.predict(den, Encoder(), frames[:, :, :1], 29, sig, sampler="ddim", seed=5)
    assert den.nfe == steps * L.window_count(30, 1) == 500
    den = Recorder(record=False)
    L.interpolate(den, Encoder(), frames, sig)
    assert den.nfe == steps


def test_interpolation_runs_on_a_v_prediction_model():
    """Interpolation through the whole model-side path (VPDenoiser, v-prediction, a stub network reading cond):
    (0, 7) context, 10 steps, finite output in [−1, 1], the two given frames unchanged, the network told the 10 kept
    timesteps 999 … 0 in order. (The official test loop crashes on this task.)
    Breaks caught: ``(0, F_WINDOW - 1)`` → ``(0, 1)`` (the map of slot 7 is no longer 7/9; the context reads the
    still-empty slot 1)."""
    seen = []

    def net(z, t, cond):
        seen.append(int(t))
        assert cond["context"].shape == (1, 8, 4, 4)
        assert cond["context"][:, 7].unique().tolist() == [pytest.approx(7 / 9)]
        return -0.5 * z + 0.1 * cond["context"][:, None, 4:7].mean()

    frames = torch.rand(1, 3, 2, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = L.interpolate(vp.VPDenoiser(net, AC, "v_prediction"), lambda c: c.mean(), frames, grid(10), seed=2)
    assert torch.isfinite(out).all() and out.abs().max() <= 1
    assert torch.equal(out[:, :, 0], frames[:, :, 0]) and torch.equal(out[:, :, 7], frames[:, :, 1])
    assert seen == L.kept_timesteps(10)


def _live_bytes(exclude_nbytes):
    """Bytes of the distinct storages of live CPU tensors, those of ``exclude_nbytes`` bytes left out."""
    seen = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for o in gc.get_objects():
            if isinstance(o, torch.Tensor) and o.device.type == "cpu":
                st = o.untyped_storage()
                if st.nbytes() != exclude_nbytes:
                    seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def test_peak_memory_is_flat_in_the_number_of_windows():
    """Generation of 44 frames (7 windows): the bytes of live CPU tensors at every step, the output video excluded (the
    one storage of its size), have the same maximum in windows 1..6 (window 0 has no previous sample): one feature and
    one previous window are held, whatever the number of windows.
    Breaks caught: keeping every window's sample (``previous = x`` → a list appended to) or every feature."""
    steps, shape = 3, (2, 3, 44, 8, 8)
    video_bytes = math.prod(shape) * 4
    per_window = {}

    def cb(i, x, x0, sigma):
        gc.collect()
        per_window[i // steps] = max(per_window.get(i // steps, 0), _live_bytes(video_bytes))

    L.generate(Recorder(record=False), lambda c: c.mean(dim=(1, 2, 3, 4)), shape, grid(steps), seed=1, callback=cb)
    assert len(per_window) == 7
    assert len({per_window[k] for k in range(1, 7)}) == 1, per_window


# ---------------------------------------------------------------- infilling

def repaint_schedule(t_T, jump_length, jump_n_sample):
    """RePaint's ``get_schedule_jump`` (Lugmayr et al., start_resampling off, n_sample 1), as published: respaced t
    from t_T − 1 down to −1 with jumps back up."""
    jumps = {}
    for j in range(0, t_T - jump_length, jump_length):
        jumps[j] = jump_n_sample - 1
    t = t_T
    ts = []
    while t >= 1:
        t = t - 1
        ts.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] = jumps[t] - 1
            for _ in range(jump_length):
                t = t + 1
                ts.append(t)
    ts.append(-1)
    return ts


def test_jump_schedule_is_repaints_and_its_nfe_formula():
    """jump_schedule on grid positions j = steps − 1 − t equals RePaint's schedule for several (steps, L, r); its
    denoising transitions number steps + (r − 1)·L·|range(0, steps − L, L)| (100, 10, 10: 910; r = 1: steps).
    Breaks caught: ``range(0, steps - jump_length, …)`` → ``range(0, steps, …)``; ``t += 1`` → ``t -= 1``."""
    for steps, jl, r in [(6, 2, 2), (20, 5, 3), (100, 10, 10), (100, 10, 1), (7, 10, 4), (13, 4, 2)]:
        got = L.jump_schedule(steps, jl, r)
        assert got == [steps - 1 - t for t in repaint_schedule(steps, jl, r)]
        downs = sum(b > a for a, b in zip(got[:-1], got[1:]))
        assert downs == L.infill_nfe_per_window(steps, jl, r) == steps + (r - 1) * jl * len(range(0, steps - jl, jl))
    assert L.infill_nfe_per_window(100, 10, 10) == 910 and L.jump_schedule(4, 10, 1) == [0, 1, 2, 3, 4]


def test_infill_pastes_the_known_frames_at_each_steps_level_and_returns_them_unchanged():
    """Infilling 20 frames (windows 0, 6, 12) with known frames {0, 1, 9, 19}, 6 steps, no jumps: at every call after
    the first of a window, the pasted slots (known frames; from window 1 on also the two context slots, frames already
    made) hold x0 + σ_i·n with n from our own copy of the "lgcvd/renoise" generator (drawn step after step, window after
    window), so at the last call they are within σ_last·max|n| of the frames; the output's known frames are the given
    ones bit for bit. NFE = 3 windows × 6. First window context (0, 1) with frames 0 and 1.
    Breaks caught: paste at ``s`` (the input level) instead of ``s_next``; the paste dropped; ``k > 0 and j < COND``
    dropped (context slots not pasted); ``gens["renoise"]`` → ``gens["ancestral"]``."""
    steps, B, H, W, N = 6, 2, 2, 2, 20
    known = [0, 1, 9, 19]
    sig = grid(steps)
    video = torch.rand(B, 3, N, H, W, generator=torch.Generator().manual_seed(2)) * 2 - 1
    den = Recorder()
    out = L.infill(den, Encoder(), video, known, sig, seed=3)
    assert den.nfe == 3 * steps
    assert torch.equal(out[:, :, known], video[:, :, known])
    renoise = generator(3, L.RENOISE)
    plan = L.window_plan(N, given=0)
    for k, w in enumerate(plan):
        slots = [j for j in range(8) if (w.start + j in known) or (k > 0 and j < 2)]
        x0 = out[:, :, [w.start + j for j in slots]]
        calls = den.calls[k * steps:(k + 1) * steps]
        torch.testing.assert_close(calls[0]["cond"]["context"],        # (0, 1): frames 0, 1 known / already made
                                   official_context(out[:, :, w.start], 0, out[:, :, w.start + 1], 1, B), rtol=0,
                                   atol=1e-6)
        for i in range(1, steps):
            n = torch.randn(x0.shape, generator=renoise)
            torch.testing.assert_close(calls[i]["x"][:, :, slots], x0 + float(sig[i]) * n, rtol=0, atol=1e-5)
        assert (calls[-1]["x"][:, :, slots] - x0).abs().max() <= float(sig[steps - 1]) * n.abs().max() + 1e-6
        assert float(sig[steps - 1]) < 0.01
    # no known frame in slots 0, 1: the first window is unconditional (−1, −1)
    den = Recorder()
    L.infill(den, Encoder(), video, [9], sig, seed=3)
    torch.testing.assert_close(den.calls[0]["cond"]["context"], official_context(None, -1, None, -1, B), rtol=0,
                               atol=0)


def jump_moments(mean, std, sigmas, schedule, start_std):
    """Exact mean / std of the jump chain on element-wise Gaussian data (no clip acting): a denoising step j → j + 1 is
    affine, m' = g·m, v' = g²v + σ_up² (g = a + (σ_down/σ)(1 − a), a = s²/(s² + σ²)); a step back up adds
    σ_up² − σ² of variance."""
    m, v = -mean, start_std ** 2
    sig = [float(s) for s in sigmas]
    for j, jn in zip(schedule[:-1], schedule[1:]):
        s, sn = sig[j], sig[jn]
        if jn < j:
            v += sn * sn - s * s
            continue
        a = std ** 2 / (std ** 2 + s * s)
        down, up = ddim_eta_sigmas(s, sn, 1.0)
        g = a + (down / s) * (1 - a) if sn > 0 else a
        m, v = g * m, g * g * v + up * up
    return mean + m, math.sqrt(v)


def test_infill_unknown_frames_are_unconditional_samples_for_frame_independent_data():
    """Element-wise Gaussian data N(0.1, 0.15²), a denoiser that ignores cond. Without jumps the unknown frames of an
    infill equal, bit for bit, the same frames of ``generate`` with the same seed (same windows, same draws: pasting
    known slots never touches the others). With jumps (20 steps, L = 5, r = 3: 50 calls per window) their mean and
    std match the exact moments of the jump chain (``jump_moments``), and without jumps the plain chain
    (``predicted_moments``), within 4 Monte-Carlo standard errors: n = 64·3·4·4·15 = 46 080 values, SE(mean) = sd/√n
    ≈ 7e-4, SE(sd) ≈ sd/√(2n) ≈ 5e-4.
    Breaks caught: the ancestral noise drawn from ``gens["renoise"]`` in infill (draws shift); the up step
    ``√(σ_up² − σ²)`` → ``σ_up`` (std 0.118 against 0.107)."""
    mean, std, steps, B, H, W, N = 0.1, 0.15, 20, 64, 4, 4, 20
    known = [0, 1, 7, 12, 19]
    unknown = [i for i in range(N) if i not in known]
    sig = grid(steps)
    video = (torch.rand(B, 3, N, H, W, generator=torch.Generator().manual_seed(9)) * 2 - 1) * 0.5
    plain = L.infill(Recorder(mean, std, record=False), Encoder(), video, known, sig, seed=11)
    free = L.generate(Recorder(mean, std, record=False), Encoder(), (B, 3, N, H, W), sig, seed=11)
    assert torch.equal(plain[:, :, unknown], free[:, :, unknown])
    den = Recorder(mean, std, record=False)
    jumped = L.infill(den, Encoder(), video, known, sig, seed=11, jump_length=5, jump_n_sample=3)
    windows = L.window_count(N, 0)
    assert den.nfe == windows * L.infill_nfe_per_window(steps, 5, 3) == windows * 50
    n = B * 3 * H * W * len(unknown)
    start_std = math.sqrt(1 + float(sig[0]) ** 2)
    for got, (m, s) in ((plain, predicted_moments(mean, std, sig, 1.0, start_std)),
                        (jumped, jump_moments(mean, std, sig, L.jump_schedule(steps, 5, 3), start_std))):
        vals = got[:, :, unknown].to(torch.float64).reshape(-1)
        assert vals.abs().max() < 1                                     # the clip never acted
        assert abs(vals.mean().item() - m) < 4 * s / math.sqrt(n), (vals.mean().item(), m)
        assert abs(vals.std().item() - s) < 4 * s / math.sqrt(2 * n), (vals.std().item(), s)
    assert not torch.equal(plain[:, :, unknown], jumped[:, :, unknown])
