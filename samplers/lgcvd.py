"""LGC-VD (arXiv 2306.02562): its noise schedule and respacing, its window loop and its tasks (prediction, live
photo, unconditional generation, interpolation, infilling), as pure functions over a σ-space denoiser. No ComfyUI, no
model code.

Schedule: Nichol–Dhariwal's cosine ᾱ over 1000 steps with β clipped at 0.9999, built as the official
``cosine_beta_schedule`` (float64) and stored in float32 as its ``GaussianDiffusion`` buffers are. Sampling is
respaced guided-diffusion style (``space_timesteps``): the network is told the original timestep indices.

The model side gives ``denoise(x, σ, cond) -> x0`` (a VPDenoiser over the v-predicting UNet, pixels in [−1, 1]), with
``cond = {"context": (B, 8, H, W), "feature": encode(previous clip)}``, and ``encode(clip (B, 3, 8, H, W))``. Here:

- steps: :func:`sampling_sigmas` (the kept timesteps, final 0); x̂0 clipped to [−1, 1] (:func:`clip_x0`);
  ``ddpm`` = DDIM(η = 1) on that grid, which is the respaced posterior step; ``ddim`` = η = 0 on the same grid.
- windows of 8 frames, 2 context + 6 new, stride 6, the last aligned to the end (:func:`window_plan`);
- local context: two (frame, position map) pairs (:func:`local_context`); global context: the encoder's feature of the
  previous window's sample averaged with the running one (:class:`GlobalContext`), the blank clip first;
- tasks: :func:`predict` (live photo from one frame), :func:`generate`, :func:`interpolate`, :func:`infill` (RePaint).

Deviations from the official loop, on purpose: the given frames (and the frames a window is conditioned on) are kept as
they are, never regenerated; ``encode`` and ``denoise`` use the same weights (the official test encodes with the raw
weights and samples with the EMA ones); interpolation runs (the official test has no branch for it); infilling runs
(the official one calls an undefined ``get_schedule_jump``) and re-noises with fresh noise at the step's output level.

Cost: NFE = (len(sigmas) − 1) × windows, one call of batch B per step (no CFG), plus one encoder call per window
(500 NFE for 30 frames from 2 at 100 steps); infilling with jumps: :func:`infill_nfe_per_window` × windows. The video
stays on ``store``; a window moves only its own 8 frames, one feature and one previous sample are held, so peak memory
does not grow with the number of windows. Randomness: one CPU generator per purpose for the whole run, drawn window
after window — ``initial`` (each window's start noise), ``ancestral`` (DDPM noise), ``lgcvd/renoise`` and
``lgcvd/jump`` (infilling) — so with the same seed an infill's draws for the unknown frames are generate's.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import torch

from .guidance import guidance
from .noise import generator, randn
from .sampling import ancestral_step, initial_latent, sample_ddim

NUM_TIMESTEPS = 1000


def cosine_alphas_cumprod(timesteps: int = NUM_TIMESTEPS, s: float = 0.008) -> torch.Tensor:
    """ᾱ ``(T,)`` as the official code computes it: ``ᾱ(x) = cos(((x/T) + s)/(1 + s)·π/2)²`` on ``x = 0..T`` normalised
    by ``ᾱ(0)``, β = clip(1 − ᾱ(x+1)/ᾱ(x), 0, 0.9999) in float64, then β in float32 and the cumulative product of
    1 − β in float32 (the official buffers). Returned as float64."""
    x = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
    ac = torch.cos(((x / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    ac = ac / ac[0]
    betas = torch.clip(1 - (ac[1:] / ac[:-1]), 0, 0.9999).to(torch.float32)
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float64)


def space_timesteps(num_timesteps: int, section_counts) -> list[int]:
    """The original timesteps a respaced sampler keeps, ascending (guided-diffusion's ``space_timesteps``): the
    process cut into ``len(section_counts)`` equal portions, each strided to its count (``"100"``: 100 steps
    ``round(i·999/99)``); ``"ddimN"``: the integer stride giving exactly N steps."""
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            want = int(section_counts[len("ddim"):])
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == want:
                    return list(range(0, num_timesteps, stride))
            raise ValueError(f"cannot make exactly {want} steps of {num_timesteps} with an integer stride")
        section_counts = [int(c) for c in section_counts.split(",")]
    size_per, extra = divmod(num_timesteps, len(section_counts))
    start, steps = 0, []
    for i, count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if not 1 <= count <= size:
            raise ValueError(f"cannot divide a section of {size} steps into {count}")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        at = 0.0
        for _ in range(count):      # accumulated, as the official loop does (k·stride rounds some ties otherwise)
            steps.append(start + round(at))
            at += stride
        start += size
    return sorted(set(steps))


# ================================================================ the sampler
#
# Written from Trainer.test / Trainer.inpainting / GaussianDiffusion.p_sample of the official code (exisas/LGC-VD,
# MIT); no code taken from it. All tensors here are in the model's pixel space [−1, 1].

F_WINDOW = 8          # frames per window (cond_frames 2 + new_frames 6)
COND = 2              # local-context frames
SAMPLERS = ("ddpm", "ddim")
RENOISE = "lgcvd/renoise"   # purpose of infill's re-noise of the known frames
JUMP = "lgcvd/jump"         # purpose of infill's resampling jumps (forward diffusion back up)


def clip_x0(denoise: Callable) -> Callable:
    """The denoiser with x̂0 clamped to [−1, 1] (the official ``p_mean_variance(clip_denoised=True)``, static
    threshold): ``clip_x0(denoise)(x, sigma, cond, **extra) = denoise(x, sigma, cond, **extra).clamp(−1, 1)``.
    Samplers re-derive the noise direction from the clipped x̂0, as guided-diffusion's posterior and DDIM do."""
    def clipped(x, sigma, cond, **extra):
        return denoise(x, sigma, cond, **extra).clamp(-1.0, 1.0)
    clipped.wrapped = denoise
    return clipped


def kept_timesteps(steps: int = 100, num_timesteps: int = NUM_TIMESTEPS) -> list[int]:
    """The respaced process's timesteps, descending: ``space_timesteps(T, str(steps))`` (100: ``round(i·999/99)``,
    999 first and 0 last)."""
    if not isinstance(steps, int) or not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be an integer in [1, {num_timesteps}], got {steps!r}")
    return sorted(space_timesteps(num_timesteps, str(steps)), reverse=True)


def sampling_sigmas(alphas_cumprod: torch.Tensor, steps: int = 100) -> torch.Tensor:
    """The σ grid ``(steps + 1,)`` float64 of both samplers: σ of the kept timesteps (:func:`kept_timesteps`) on the
    1000-step table, descending, then 0.

    ``ddpm`` (respaced ancestral, the official sampler): one DDIM(η = 1) step between neighbouring levels is the
    respaced process's posterior q(x_{t'} | x_t, x̂0) (its β' = 1 − ᾱ_t/ᾱ_{t'}); the last step, from timestep 0 to
    σ = 0, returns the clipped x̂0 (the official t = 0 step adds no noise and its posterior mean is x̂0).
    ``ddim`` (η = 0): **our choice** — the same kept timesteps (guided-diffusion's ``ddim_sample_loop`` on the same
    respaced process), so the two samplers differ only in η. Each level is a level of the 1000-step table, so a
    VPDenoiser with nearest timesteps tells the network the original timestep index."""
    from .vp import sigmas_from_alphas_cumprod
    table = sigmas_from_alphas_cumprod(alphas_cumprod)
    ts = torch.tensor(kept_timesteps(steps, len(table)))
    return torch.cat([table[ts], torch.zeros(1, dtype=torch.float64)])


def eta_of(sampler: str) -> float:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    return 1.0 if sampler == "ddpm" else 0.0


# ---------------------------------------------------------------- local context

def position_value(pos: int, F: int = F_WINDOW) -> float:
    """The value of a position map after the official normalisation: ``m = (pos + 1)/(F + 1)`` in [0, 1], then
    ``2m − 1`` (``normalize_img`` of the whole context tensor). Absent (pos = −1): −1; position 0: −7/9; 7: 7/9."""
    if not -1 <= int(pos) < F:
        raise ValueError(f"a position must be −1 (absent) or in [0, {F - 1}], got {pos}")
    return 2.0 * (int(pos) + 1) / (F + 1) - 1.0


def position_map(pos: int, batch: int, height: int, width: int, F: int = F_WINDOW, device=None,
                 dtype=torch.float32) -> torch.Tensor:
    """The constant map ``(B, 1, H, W)`` of one position (:func:`position_value`)."""
    return torch.full((batch, 1, height, width), position_value(pos, F), device=device, dtype=dtype)


def local_context(y1: Optional[torch.Tensor], y2: Optional[torch.Tensor], positions: tuple[int, int], batch: int,
                  height: int, width: int, F: int = F_WINDOW, device=None, dtype=torch.float32) -> torch.Tensor:
    """The local context ``(B, 8, H, W)`` = ``[y1, m1, y2, m2]`` (3 + 1 + 3 + 1 channels), as the official loop builds
    it (``Trainer.test``: ``cond = cat(cond1, mask_p1, cond2, mask_p2)`` in [0, 1], then ``normalize_img``): ``y_k``
    ``(B, 3, H, W)`` the frame at window position ``pos_k`` (already in [−1, 1]), or −1 everywhere when absent
    (zeros before the normalisation); ``m_k`` :func:`position_map`. ``y_k`` is None exactly when ``pos_k = −1``."""
    parts = []
    for y, pos in zip((y1, y2), positions):
        if (y is None) != (int(pos) == -1):
            raise ValueError(f"a context frame is given exactly when its position is not −1: position {pos}, frame "
                             f"{'None' if y is None else tuple(y.shape)}")
        if y is None:
            y = torch.full((batch, 3, height, width), -1.0, device=device, dtype=dtype)
        elif tuple(y.shape) != (batch, 3, height, width):
            raise ValueError(f"a context frame must be ({batch}, 3, {height}, {width}), got {tuple(y.shape)}")
        parts += [y.to(device=device, dtype=dtype), position_map(pos, batch, height, width, F, device, dtype)]
    return torch.cat(parts, dim=1)


# ---------------------------------------------------------------- global context

def blank_clip(batch: int, height: int, width: int, F: int = F_WINDOW, device=None,
               dtype=torch.float32) -> torch.Tensor:
    """The first window's "previous clip" ``(B, 3, F, H, W)``: the official constant 0.5 in [0, 1], i.e. 0."""
    return torch.zeros(batch, 3, F, height, width, device=device, dtype=dtype)


def _average(a, b):
    """(a + b)/2 over a feature: a tensor, or a list/tuple/dict of tensors."""
    if torch.is_tensor(a):
        return (a + b) / 2
    if isinstance(a, (list, tuple)):
        return type(a)(_average(u, v) for u, v in zip(a, b))
    if isinstance(a, dict):
        return {k: _average(a[k], b[k]) for k in a}
    raise TypeError(f"a global feature must be a tensor or a list/tuple/dict of tensors, got {type(a).__name__}")


class GlobalContext:
    """The running global feature of a window loop (``Trainer.test``): window 0 gets ``f_0 = E(blank)``; window k > 0
    gets ``f_k = (E(x̂_{k−1}) + f_{k−1})/2`` with x̂_{k−1} the previous window's sample (its 8 frames as sampled,
    before write-back). So f_k weighs the previous windows ½, ¼, … and the blank clip's feature what is left. Only the
    current feature is held (memory flat in the number of windows). ``encode(clip (B, 3, F, H, W)) -> feature``.

    The official loop encodes with the raw weights and samples with the EMA weights; ours encodes and samples with
    the one set of weights the model side loaded (whatever ``encode`` and ``denoise`` close over)."""

    def __init__(self, encode: Callable):
        self.encode = encode
        self.feature = None

    def next(self, previous: Optional[torch.Tensor], batch: int, height: int, width: int, F: int = F_WINDOW,
             device=None, dtype=torch.float32):
        """The feature of the next window; ``previous`` the last window's sample, None for the first window."""
        if self.feature is None:
            if previous is not None:
                raise ValueError("the first window has no previous window")
            self.feature = self.encode(blank_clip(batch, height, width, F, device, dtype))
        else:
            if previous is None:
                raise ValueError("a window after the first needs the previous window's sample")
            self.feature = _average(self.encode(previous), self.feature)
        return self.feature


# ---------------------------------------------------------------- windows

class Window(NamedTuple):
    """One window: its first frame ``start`` in the video, and the frames ``write`` (a slice of the video) it fills."""
    start: int
    write: slice


def window_plan(total_frames: int, F: int = F_WINDOW, cond: int = COND, given: Optional[int] = None) -> list[Window]:
    """The windows that make a video of ``total_frames`` whose first ``given`` frames are known (default ``cond``).

    The official test loop (``Trainer.test``) with ``given = 2``: ⌈(N − 2)/6⌉ windows at starts 0, 6, 12, …, the last
    one aligned to the end (start N − 8) when (N − 2) is not a multiple of 6, of which only the last ``res = (N − 2) mod
    6`` frames are written; for N = 30: starts 0, 6, 12, 18, 22. The official loop writes all 8 frames of every other
    window back, regenerating its two context slots; **ours writes only frames not known yet** (window k writes
    ``[max(start + cond, end so far), start + F)`` clipped to N), so the given frames and the frames a window was
    conditioned on stay as they were: the official write-back minus the context slots.

    ``given`` > cond (prediction from more frames): the first window starts at ``given − cond``, its local context the
    last two given frames. ``given`` < cond (generation 0, live photo 1): the first window starts at 0 and writes from
    frame ``given``. A video shorter than the window (N < F) is one window whose surplus frames are dropped."""
    given = cond if given is None else int(given)
    if not 0 < cond < F:
        raise ValueError(f"cond must be in [1, {F - 1}], got {cond}")
    if not 0 <= given <= total_frames:
        raise ValueError(f"given must be in [0, total_frames = {total_frames}], got {given}")
    plan: list[Window] = []
    end = given
    start = max(given - cond, 0)
    while end < total_frames:
        if plan:
            start = min(plan[-1].start + F - cond, total_frames - F)   # stride F − cond, the last aligned to the end
        plan.append(Window(start, slice(end, min(start + F, total_frames))))
        end = plan[-1].write.stop
    return plan


def window_count(total_frames: int, given: int, F: int = F_WINDOW, cond: int = COND) -> int:
    """Windows of :func:`window_plan` (NFE = steps × windows for predict / generate; 5 for 30 frames from 2)."""
    return len(window_plan(total_frames, F, cond, given))


# ---------------------------------------------------------------- one window

def _generators(seed: int) -> dict:
    """One CPU generator per purpose for a whole run: ``initial`` (each window's start noise, window after window,
    as the plain sampler's purpose), ``ancestral`` (DDPM noise), ``lgcvd/renoise`` and ``lgcvd/jump`` (infilling)."""
    return {"initial": generator(seed, "initial"), "ancestral": generator(seed, "ancestral"),
            "renoise": generator(seed, RENOISE), "jump": generator(seed, JUMP)}


def _offset(callback: Optional[Callable], offset: int) -> Optional[Callable]:
    if callback is None:
        return None
    return lambda i, x, x0, sigma: callback(offset + i, x, x0, sigma)


def sample_window(denoise: Callable, shape, sigmas: torch.Tensor, cond: dict, sampler: str, gens: dict, device=None,
                  callback: Optional[Callable] = None) -> torch.Tensor:
    """One window ``shape`` ``(B, 3, F, H, W)``: the start noise z_T = ε (``gens["initial"]``) as x = ε·√(1 + σ₀²),
    then DDIM(η) over ``sigmas`` (η = 1 for ``ddpm``: the respaced posterior, noise from ``gens["ancestral"]``;
    η = 0 for ``ddim``) with x̂0 clipped to [−1, 1]. Returns x at ``sigmas[-1]`` in σ-space (the sample itself
    when the grid ends at 0). ``cond``: ``{"context": (B, 8, H, W), "feature": …}``. One network call per level."""
    eta = eta_of(sampler)
    x = initial_latent(shape, sigmas, 0, device, gen=gens["initial"])
    guided = guidance(clip_x0(denoise), cond)
    return sample_ddim(guided, x, sigmas, eta, gens["ancestral"] if eta > 0 else None, callback)


def _check_video(name: str, v: torch.Tensor):
    if v.ndim != 5 or v.shape[1] != 3:
        raise ValueError(f"{name} must be a video (B, 3, F, H, W) in [−1, 1], got shape {tuple(v.shape)}")


def _run_windows(denoise, encode, out: torch.Tensor, plan: list[Window], first_positions: tuple[int, int],
                 sigmas, sampler, seed, device, callback, F: int = F_WINDOW, sample=None) -> torch.Tensor:
    """The window loop over ``out`` ``(B, 3, N, H, W)`` (on its store device, the given frames in place): window k
    takes its local context from the video at ``start + pos`` (positions ``first_positions`` for window 0, (0, 1)
    after), its global feature from :class:`GlobalContext`, samples, and writes its ``write`` frames."""
    B, _, N, H, W = out.shape
    gens = _generators(seed)
    glob = GlobalContext(encode)
    previous = None
    steps = len(sigmas) - 1
    for k, win in enumerate(plan):
        positions = first_positions if k == 0 else (0, 1)
        ys = [None if p == -1 else out[:, :, win.start + p].to(device) for p in positions]
        ctx = local_context(ys[0], ys[1], positions, B, H, W, F, device, torch.float32)
        feature = glob.next(previous, B, H, W, F, device, torch.float32)
        cond = {"context": ctx, "feature": feature}
        if sample is None:
            x = sample_window(denoise, (B, 3, F, H, W), sigmas, cond, sampler, gens, device,
                              _offset(callback, k * steps))
        else:
            x = sample(k, win, cond, gens)
        out[:, :, win.write] = x[:, :, win.write.start - win.start:win.write.stop - win.start].to(out.device,
                                                                                                    out.dtype)
        previous = x
    return out


# ---------------------------------------------------------------- tasks

def predict(denoise: Callable, encode: Callable, frames: torch.Tensor, new_frames: int, sigmas: torch.Tensor,
            sampler: str = "ddpm", seed: int = 0, device=None, store=None,
            callback: Optional[Callable] = None) -> torch.Tensor:
    """Video prediction: ``frames`` ``(B, 3, G, H, W)`` in [−1, 1] (G ≥ 1) followed by ``new_frames`` new ones.
    Returns ``(B, 3, G + new_frames, H, W)`` on ``store`` (default: the frames' device), the given frames unchanged.

    One frame (G = 1): the first window is "live photo", positions (0, −1), the picture in slot 0. G ≥ 2: the first
    window starts at frame G − 2 with positions (0, 1), the last two given frames its local context. Every later window
    has positions (0, 1) (:func:`window_plan`). **Deviation**: the official loop writes back the whole first window,
    regenerating the two given frames (and each window's two context frames); ours keeps them as given.
    ``sigmas`` :func:`sampling_sigmas`; ``sampler`` ``"ddpm"`` | ``"ddim"``; ``denoise(x, σ, cond)`` the σ-space
    denoiser (cond ``{"context", "feature"}``), ``encode(clip) -> feature``. NFE = (len(sigmas) − 1) × windows;
    ``callback(i, x, x0, sigma)`` with i counting the network calls of the whole run."""
    _check_video("frames", frames)
    if frames.shape[2] < 1:
        raise ValueError("prediction needs at least one given frame")
    if int(new_frames) < 0:
        raise ValueError(f"new_frames must be ≥ 0, got {new_frames}")
    B, _, G, H, W = frames.shape
    store = store if store is not None else frames.device
    out = torch.empty(B, 3, G + int(new_frames), H, W, device=store, dtype=torch.float32)
    out[:, :, :G] = frames
    plan = window_plan(out.shape[2], given=G)
    return _run_windows(denoise, encode, out, plan, (0, -1) if G == 1 else (0, 1), sigmas, sampler, seed, device,
                        callback)


def generate(denoise: Callable, encode: Callable, shape, sigmas: torch.Tensor, sampler: str = "ddpm", seed: int = 0,
             device=None, store=None, callback: Optional[Callable] = None) -> torch.Tensor:
    """Unconditional generation of ``shape`` ``(B, 3, N, H, W)``: the first window with positions (−1, −1) (no local
    context, the blank clip's feature), then (0, 1). Returns the video on ``store`` (default CPU). NFE as
    :func:`predict` (windows :func:`window_plan` with given = 0: the official layout, starts 0, 6, …)."""
    B, C, N, H, W = shape
    if C != 3 or N < 1:
        raise ValueError(f"shape must be (B, 3, N ≥ 1, H, W), got {tuple(shape)}")
    out = torch.empty(B, 3, N, H, W, device=store if store is not None else "cpu", dtype=torch.float32)
    return _run_windows(denoise, encode, out, window_plan(N, given=0), (-1, -1), sigmas, sampler, seed, device,
                        callback)


def interpolate(denoise: Callable, encode: Callable, frames: torch.Tensor, sigmas: torch.Tensor,
                sampler: str = "ddpm", seed: int = 0, device=None, store=None,
                callback: Optional[Callable] = None) -> torch.Tensor:
    """Interpolation: ``frames`` ``(B, 3, 2, H, W)`` (first, last) → ``(B, 3, 8, H, W)``: the first frame, the 6 frames
    between, the last frame (given frames unchanged). One window with positions (0, 7) as trained (the "interploation"
    task of ``Trainer.train``), the blank clip's feature. The official test loop has no branch for this task (its
    positions stay undefined and it crashes). NFE = len(sigmas) − 1."""
    _check_video("frames", frames)
    if frames.shape[2] != 2:
        raise ValueError(f"interpolation takes exactly 2 frames (first, last), got {frames.shape[2]}")
    B, _, _, H, W = frames.shape
    out = torch.empty(B, 3, F_WINDOW, H, W, device=store if store is not None else frames.device, dtype=torch.float32)
    out[:, :, 0] = frames[:, :, 0]
    out[:, :, F_WINDOW - 1] = frames[:, :, 1]
    return _run_windows(denoise, encode, out, [Window(0, slice(1, F_WINDOW - 1))], (0, F_WINDOW - 1), sigmas, sampler,
                        seed, device, callback)


# ---------------------------------------------------------------- infilling (RePaint)

def jump_schedule(steps: int, jump_length: int = 10, jump_n_sample: int = 1) -> list[int]:
    """RePaint's resampling schedule (Lugmayr et al. 2022, ``get_schedule_jump``, which the official ``inpainting``
    calls but never defines), written here on grid positions: a list of indices j into a grid of ``steps + 1`` levels
    (j = 0 the noisiest, j = steps σ = 0), from 0 to ``steps``. j → j + 1 is a denoising step (one network call),
    j → j − 1 a forward diffusion step back up. In RePaint's respaced index t = steps − 1 − j: jump points
    t ∈ range(0, steps − L, L), each taken ``jump_n_sample − 1`` times on the way down: from t go up L levels, then down
    again. ``jump_n_sample = 1``: no jumps, the plain descent 0, 1, …, steps."""
    if jump_n_sample < 1 or jump_length < 1:
        raise ValueError(f"jump_length and jump_n_sample must be ≥ 1, got {jump_length}, {jump_n_sample}")
    jumps = {t: jump_n_sample - 1 for t in range(0, steps - jump_length, jump_length)}
    t, ts = steps, []
    while t >= 1:
        t -= 1
        ts.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(jump_length):
                t += 1
                ts.append(t)
    ts.append(-1)
    return [steps - 1 - t for t in ts]


def infill_nfe_per_window(steps: int, jump_length: int = 10, jump_n_sample: int = 1) -> int:
    """Network calls of one infilling window: ``steps + (jump_n_sample − 1)·L·|range(0, steps − L, L)|`` (every jump
    goes up L levels and comes down L denoising steps again). 100 steps, no jumps: 100; L = 10, r = 10: 910."""
    return steps + (jump_n_sample - 1) * jump_length * len(range(0, steps - jump_length, jump_length))


def infill(denoise: Callable, encode: Callable, video: torch.Tensor, known, sigmas: torch.Tensor,
           sampler: str = "ddpm", seed: int = 0, jump_length: int = 10, jump_n_sample: int = 1, device=None,
           store=None, callback: Optional[Callable] = None) -> torch.Tensor:
    """Infilling: ``video`` ``(B, 3, N, H, W)`` in [−1, 1] of which the frames ``known`` (indices) are given; returns
    the video with every other frame generated, the known frames unchanged, on ``store`` (default: the video's device).

    Windows as :func:`generate` (``window_plan(N, given=0)``: starts 0, 6, …, the last aligned to the end). In a window
    the **pasted** slots are its known frames and, after the first window, its two context slots (frames already
    made; the official ``masks[:, :2] = 1``). RePaint (the official ``Trainer.inpainting``, made to run): after every
    denoising step to level σ' the pasted slots are replaced by ``x0 + σ'·n`` — q_sample at the step's output level,
    ``n`` fresh from purpose ``lgcvd/renoise`` for each step (the official code pastes at the input level t with one
    fixed noise: not copied), clean at σ' = 0 — so the last step leaves them exactly as given. With resampling jumps
    (:func:`jump_schedule`, ``jump_n_sample`` > 1; default 1 = off) the whole window is diffused back up one level at a
    time, ``x + √(σ_up² − σ²)·n`` (purpose ``lgcvd/jump``). Local context: window 0 takes the first two known frames
    at window positions 0..6 (the "random" task's range), −1 for none (so (0, 1) when frames 0 and 1 are known, the
    official ``has_cond``; (−1, −1) for none); later windows (0, 1). Global context: the running average of
    :class:`GlobalContext` over the previous windows' samples (the official ``inpainting`` instead encodes the previous
    8 frames of the video written so far, without averaging).

    NFE = windows × (steps + (jump_n_sample − 1)·jump_length·|range(0, steps − jump_length, jump_length)|)
    (:func:`infill_nfe_per_window`), steps = len(sigmas) − 1; every window is sampled, even one with all its written
    frames known. ``callback(i, x, x0, sigma)``: i counts network calls of the run."""
    _check_video("video", video)
    B, _, N, H, W = video.shape
    known = sorted({int(i) for i in known})
    if any(not 0 <= i < N for i in known):
        raise ValueError(f"known frame indices must lie in [0, {N}), got {known}")
    eta = eta_of(sampler)
    steps = len(sigmas) - 1
    sig = [float(s) for s in sigmas]
    schedule = jump_schedule(steps, jump_length, jump_n_sample)
    per_window = infill_nfe_per_window(steps, jump_length, jump_n_sample)
    out = video.detach().to(device=store if store is not None else video.device, dtype=torch.float32, copy=True)
    plan = window_plan(N, given=0)
    first = [i for i in known if i < F_WINDOW - 1][:COND]
    first = tuple(first + [-1] * (COND - len(first)))

    def sample(k: int, win: Window, cond: dict, gens: dict) -> torch.Tensor:
        frames = range(win.start, win.start + F_WINDOW)
        slots = [j for j, f in enumerate(frames) if f < N and (f in known or (k > 0 and j < COND))]
        x = initial_latent((B, 3, F_WINDOW, H, W), sigmas, 0, device, gen=gens["initial"])
        guided = guidance(clip_x0(denoise), cond)
        index = torch.tensor(slots, dtype=torch.long, device=x.device)
        x0_known = out[:, :, [win.start + j for j in slots]].to(x.device, x.dtype) if slots else None
        calls = 0
        for j, j_next in zip(schedule[:-1], schedule[1:]):
            s, s_next = sig[j], sig[j_next]
            if j_next < j:                                   # back up one level: forward diffusion
                x = x + math.sqrt(s_next ** 2 - s ** 2) * randn(x.shape, gens["jump"], x.device, x.dtype)
                continue
            x0, eps = guided(x, s)
            if callback is not None:
                callback(k * per_window + calls, x, x0, s)
            calls += 1
            down, up = ancestral_step(s, s_next, eta)
            x = x0 if s_next == 0 else x0 + down * eps
            if up > 0:
                x = x + up * randn(x.shape, gens["ancestral"], x.device, x.dtype)
            if slots:                                        # RePaint: known slots at the output level
                paste = x0_known if s_next == 0 else \
                    x0_known + s_next * randn(x0_known.shape, gens["renoise"], x.device, x.dtype)
                x = x.index_copy(2, index, paste)
        return x

    return _run_windows(denoise, encode, out, plan, first, sigmas, sampler, seed, device, callback, sample=sample)
