"""Long videos window by window (LVDM, arXiv 2211.13221): extension, keyframes and interpolation, as short functions
over a σ-space denoiser that takes σ per frame (the contract in :mod:`samplers`).

A **window** is ``length`` latent frames, the model's own clip length. Some of its slots are **known** (clean latents
of the video so far, or two keyframes), the others are generated. Each window perturbs its known latents once to the
level s with one fixed draw ξ_s: ``z_s = z + σ_s·ξ_s`` in σ-space, which is ``√ᾱ_s·z + √(1 − ᾱ_s)·ξ_s`` in the VP
form (LVDM's "conditional latent perturbation"; s a timestep index of the model's own table). z_s enters the steps
in one of two ways:

- ``replace`` — every model; **our adaptation of LVDM's rule to models without a conditioning input**. At a step at
  level σ_t the known slots hold ``z_s`` when σ_t ≤ σ_s, and ``z_s + √(σ_t² − σ_s²)·ξ`` (ξ drawn fresh each step, so
  the slots sit at level σ_t like the rest of the window) when σ_t > σ_s. The model denoises the whole window, each
  slot scaled at its own level, and is told the step's timestep t. Known latents never reach the model cleaner than s.
- ``exact`` — LVDM's pred/interp models, as the official ``apply_model`` builds it: z_s pasted into its slots at
  every step whatever σ_t, the conditioning carrying the mask (1 = known slot, ``(B, 1, length, 1, 1)``) and the
  label s; the network is told t. The mask marks exactly the known slots, as the training masks do (the official
  ``autoregressive_pred`` forgets to pass ``T_cond`` on, so from its second window the mask is all ones).

**Unconditional guidance** (exact mode only): ``ε̂ = (1+w)·ε_c − w·ε_u``, with ε_u from the same network given an
all-zero mask and no label (:data:`NO_LABEL`) on the same pasted input. It is computed for every w ≠ 0: the official
samplers skip ε_u at w = 1, reading the weight as a CFG scale (reference §1.6) — not copied. Since x0 = x − σ·ε is
affine in ε at each slot's level, this is CFG with scale 1 + w on the x0 estimates (:func:`.guidance.guidance`), so
ε_c and ε_u share **one** network call of batch 2B. A window without known slots has ε_c = ε_u exactly and makes one
call of batch B (the official code spends a second, identical pass there).

Memory: the video so far stays on ``store`` (the host's intermediate device); a window moves only its own latents to
the model's device, so peak memory does not grow with the number of windows beyond the stored latents.

Randomness: one generator per purpose for a whole run (``initial`` and ``ancestral`` as the plain sampler names them,
``long-video/perturb`` for ξ_s, ``long-video/renoise`` for ξ), drawn window after window; interpolation prefixes its
purposes with ``interp/``. So an extension from nothing starts with the plain sampler's first window, bit for bit, and
a long video equals its keyframe extension followed by interpolation with the same seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from .guidance import guidance
from .noise import generator, randn
from .sampling import initial_latent, sample_ddim
from .vp import to_vp

REPLACE, EXACT = "replace", "exact"
MODES = (REPLACE, EXACT)
NO_LABEL = -1        # the label of a sample without one (guidance's unconditional branch), batched with labelled ones
INTERP = "interp/"   # purpose prefix of the interpolation stage


def generators(seed: int, prefix: str = "") -> dict:
    """The run's generators, one per purpose (``prefix`` separates a stage's draws from another's)."""
    return {"initial": generator(seed, prefix + "initial") if prefix else generator(seed, "initial"),
            "ancestral": generator(seed, prefix + "ancestral"),
            "perturb": generator(seed, prefix + "long-video/perturb"),
            "renoise": generator(seed, prefix + "long-video/renoise")}


def known_values(z_s: torch.Tensor, sigma_t: float, sigma_s: float, mode: str,
                 gen: Optional[torch.Generator]) -> tuple[torch.Tensor, float]:
    """What the known slots hold at a step at level σ_t, and their level: ``(z_s, σ_s)`` in exact mode or when
    σ_t ≤ σ_s; else ``(z_s + √(σ_t² − σ_s²)·ξ, σ_t)``, ξ fresh from ``gen``. ``z_s`` ``(B, C, k, h, w)``."""
    if mode == EXACT or sigma_t <= sigma_s:
        return z_s, sigma_s
    xi = randn(z_s.shape, gen, z_s.device, z_s.dtype)
    return z_s + math.sqrt(sigma_t ** 2 - sigma_s ** 2) * xi, sigma_t


def sample_window(denoise: Callable, shape: Sequence[int], sigmas: torch.Tensor, known: Optional[torch.Tensor],
                  slots: Sequence[int], s: int, mode: str, cond: dict, uncond: Optional[dict] = None,
                  scale: float = 1.0, w: float = 0.0, eta: float = 0.0, gens: Optional[dict] = None, device=None,
                  callback: Optional[Callable] = None) -> torch.Tensor:
    """One window ``shape`` ``(B, C, length, h, w)``: DDIM(η) on ``sigmas`` from seeded noise, the clean latents
    ``known`` ``(B, C, k, h, w)`` (any device) held in ``slots`` (k distinct indices) as ``mode`` says. Returns the
    window's latent at the final level in VP form (as :func:`.sampling.sample`); its known slots hold the step's
    output at their own level, neither z nor z_s — callers keep the new slots only.

    ``denoise``: a σ-space denoiser with ``.sigmas`` (its σ table, for σ_s = ``sigmas[s]``) and ``.timestep(σ)``.
    ``cond``/``uncond``/``scale``: the model's own conditioning and CFG (e.g. text); ``w``: unconditional guidance
    (exact mode; with a ``scale`` of 1). ``gens``: :func:`generators` of the run.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if w != 0 and mode != EXACT:
        raise ValueError(f"unconditional guidance (w = {w}) needs a model with a frame-unconditional mode (exact "
                         f"conditioning); replacement has none: use w = 0")
    if mode == EXACT and scale != 1.0:
        raise ValueError(f"exact conditioning guides with w (unconditional guidance), not a CFG scale: got scale "
                         f"{scale}; use 1")
    length = shape[2]
    slots = [int(i) for i in slots]
    if len(set(slots)) != len(slots) or any(not 0 <= i < length for i in slots):
        raise ValueError(f"slots must be distinct indices in [0, {length}), got {slots}")
    k = len(slots)
    if (known is None) != (k == 0) or (known is not None and known.shape[2] != k):
        raise ValueError(f"known must hold one latent per slot ({k}), got "
                         f"{None if known is None else tuple(known.shape)}")
    gens = gens if gens is not None else generators(0)
    B = shape[0]
    x = initial_latent(shape, sigmas, 0, device, denoise, gen=gens["initial"])
    anc = gens["ancestral"] if eta > 0 else None
    if mode == EXACT:   # the mask and label entries, as the official cond / uc dicts
        mask = torch.zeros(B, 1, length, 1, 1, device=device)
        mask[:, :, slots] = 1.0
        label = torch.full((B,), int(s) if k else NO_LABEL, dtype=torch.long)
        c = {**cond, "mask": mask, "label": label}
        u = {**cond, "mask": torch.zeros_like(mask), "label": torch.full((B,), NO_LABEL, dtype=torch.long)}
        guided = guidance(denoise, c, u, 1.0 + w) if (k and w != 0) else guidance(denoise, c)
    else:
        guided = guidance(denoise, cond, uncond, scale)
    if not k:        # nothing known: the plain sampler's window
        return to_vp(sample_ddim(guided, x, sigmas, eta, anc, callback), float(sigmas[-1]))

    sigma_s = float(denoise.sigmas[int(s)])
    z = known.to(device=x.device, dtype=x.dtype)
    z_s = z + sigma_s * randn(z.shape, gens["perturb"], x.device, x.dtype)

    index = torch.tensor(slots, device=x.device)
    in_slot = torch.zeros(1, 1, length, 1, 1, dtype=torch.bool)
    in_slot[:, :, slots] = True
    steps = [float(v) for v in sigmas[:-1]]
    told = dict(zip(steps, denoise.timestep(torch.tensor(steps, dtype=torch.float64))))   # one look-up per window

    def conditioned(x: torch.Tensor, sigma: float):
        values, level = known_values(z_s, sigma, sigma_s, mode, gens["renoise"])
        levels = torch.where(in_slot, torch.tensor(level, dtype=torch.float64),
                             torch.tensor(sigma, dtype=torch.float64))          # σ per frame, exact in float64
        return guided(x.index_copy(2, index, values), levels, timestep=told[sigma])

    return to_vp(sample_ddim(conditioned, x, sigmas, eta, anc, callback), float(sigmas[-1]))


# ---------------------------------------------------------------- extension

def window_count(have: int, new: int, length: int, context: int) -> int:
    """Windows an extension runs: one from nothing when ``have`` = 0, then ``⌈rest / (length − context)⌉`` windows
    of ``context`` known + ``length − context`` new latents (the last one's surplus is dropped)."""
    if not 0 < context < length:
        raise ValueError(f"context must be in [1, {length - 1}] for windows of {length} latents, got {context}")
    if have and have < context:
        raise ValueError(f"the video so far has {have} latents, fewer than the context ({context})")
    first = 0 if have else 1
    rest = max(new - (length if first else 0), 0)
    return first + math.ceil(rest / (length - context))


@dataclass(frozen=True)
class Conditioning:
    """How windows are conditioned: ``mode`` (replace / exact), s (timestep index of the model's table), w, and the
    model's own conditioning per window (``conds[i] = (cond, uncond)``, the last repeating) with CFG ``scale``."""
    mode: str = REPLACE
    s: int = 100
    w: float = 0.0
    conds: Sequence[tuple] = (({}, None),)
    scale: float = 1.0

    def window(self, i: int) -> tuple:
        return self.conds[min(i, len(self.conds) - 1)]


def extend(denoise: Callable, video: Optional[torch.Tensor], new: int, length: int, context: int,
           sigmas: torch.Tensor, how: Conditioning, shape: Optional[Sequence[int]] = None, eta: float = 0.0,
           seed: int = 0, device=None, store=None, callback: Optional[Callable] = None,
           prefix: str = "") -> torch.Tensor:
    """``video`` ``(B, C, F, h, w)`` (clean latents, or None: then ``shape`` ``(B, C, ·, h, w)`` gives the size) plus
    ``new`` latents, window by window (:func:`window_count`): each window holds the last ``context`` latents so far
    in its first slots and generates ``length − context``. Returns ``(B, C, F + new, h, w)`` on ``store`` (default:
    the video's device, else CPU), allocated once and filled window by window; the given latents are copied
    unchanged."""
    have = 0 if video is None else video.shape[2]
    if video is None and shape is None:
        raise ValueError("extend needs the video so far or the shape of a window")
    B, C, _, h, w_ = video.shape if video is not None else shape
    store = store if store is not None else (video.device if video is not None else torch.device("cpu"))
    n = window_count(have, new, length, context)
    gens = generators(seed, prefix)
    out = torch.empty(B, C, have + new, h, w_, device=store, dtype=video.dtype if video is not None else torch.float32)
    if video is not None:
        out[:, :, :have] = video
    end = have
    for i in range(n):
        cond, uncond = how.window(i)
        k = 0 if end == 0 else context
        win = sample_window(denoise, (B, C, length, h, w_), sigmas, out[:, :, end - k:end] if k else None, range(k),
                            how.s, how.mode, cond, uncond, how.scale, how.w, eta, gens, device, callback)
        keep = win[:, :, k:k + (have + new - end)]
        out[:, :, end:end + keep.shape[2]] = keep
        end += keep.shape[2]
    return out


# ---------------------------------------------------------------- interpolation and the keyframe hierarchy

def interpolate(denoise: Callable, keys: torch.Tensor, length: int, sigmas: torch.Tensor, how: Conditioning,
                eta: float = 0.0, seed: int = 0, device=None, store=None, callback: Optional[Callable] = None,
                prefix: str = INTERP) -> torch.Tensor:
    """Fill every gap between neighbouring keyframes ``keys`` ``(B, C, K, h, w)``: gap i is a window with keys i
    and i+1 in slots 0 and ``length − 1`` (conditioned on both ends) generating the ``length − 2`` latents between.
    Returns ``(B, C, (K − 1)·(length − 1) + 1, h, w)`` on ``store``; the keyframes are kept clean (the window's
    outer slots are dropped). All K − 1 gaps are filled (the official loop fills about the first third, §1.8)."""
    if length < 3:
        raise ValueError(f"an interpolation window needs at least 3 latents, got {length}")
    B, C, K, h, w_ = keys.shape
    if K < 2:
        raise ValueError(f"interpolation needs at least 2 keyframes, got {K}")
    store = store if store is not None else keys.device
    gens = generators(seed, prefix)
    step = length - 1
    out = torch.empty(B, C, (K - 1) * step + 1, h, w_, device=store, dtype=keys.dtype)
    out[:, :, ::step] = keys          # the keyframes, clean
    for i in range(K - 1):
        cond, uncond = how.window(i)
        win = sample_window(denoise, (B, C, length, h, w_), sigmas, keys[:, :, i:i + 2], (0, length - 1), how.s,
                            how.mode, cond, uncond, how.scale, how.w, eta, gens, device, callback)
        out[:, :, i * step + 1:(i + 1) * step] = win[:, :, 1:length - 1]
    return out


@dataclass(frozen=True)
class LongVideoPlan:
    """A keyframe hierarchy for ``target`` latents: ``keyframes`` (made by ``pred_windows`` windows of the keyframe
    model), ``levels`` interpolation passes of ``gaps`` windows in all, ``latents`` made before trimming."""
    target: int
    keyframes: int
    pred_windows: int
    levels: int
    gaps: int
    latents: int

    @property
    def windows(self) -> int:
        return self.pred_windows + self.gaps


def plan_long_video(target: int, pred_length: int, context: int, stride: int, interp_length: int) -> LongVideoPlan:
    """Keyframes ``stride`` latents apart, enough to cover ``target`` latents (``⌈(target − 1)/stride⌉ + 1``, at least
    one window), made by extension windows of ``pred_length`` with ``context`` known (every window's new keyframes
    kept, as the official script); then interpolation passes, each dividing the spacing by ``interp_length − 1``
    (``stride`` must be a power of it; the official models: 4 = 5 − 1, one pass)."""
    if target < 1:
        raise ValueError(f"target must be ≥ 1 latent, got {target}")
    step = interp_length - 1
    levels, spacing = 0, stride
    while step >= 2 and spacing > 1 and spacing % step == 0:   # step 1 never shrinks it (a hang), 0 divides by 0
        spacing //= step
        levels += 1
    if step < 2 or spacing != 1 or levels == 0:
        raise ValueError(f"stride {stride} must be a power (≥ 1) of {step}: each interpolation pass of a "
                         f"{interp_length}-latent window fills {step - 1} latents between neighbours")
    want = max(math.ceil((target - 1) / stride) + 1, pred_length)
    n_pred = window_count(0, want, pred_length, context)
    keyframes = pred_length + (n_pred - 1) * (pred_length - context)
    gaps, k = 0, keyframes
    for _ in range(levels):
        gaps += k - 1
        k = (k - 1) * step + 1
    return LongVideoPlan(target, keyframes, n_pred, levels, gaps, k)


def long_video(pred: Callable, interp: Callable, target: int, pred_length: int, interp_length: int, context: int,
               stride: int, shape: Sequence[int], pred_sigmas: torch.Tensor, interp_sigmas: torch.Tensor,
               pred_how: Conditioning, interp_how: Conditioning, eta: float = 1.0, seed: int = 0, device=None,
               store=None, callback: Optional[Callable] = None) -> torch.Tensor:
    """LVDM's hierarchy (§1.8, with every gap filled): keyframes by extension with ``pred`` from nothing, then
    :func:`interpolate` with ``interp`` until consecutive; trimmed to ``target`` latents. ``shape`` ``(B, C, ·, h,
    w)``. The keyframe stage uses the plain purposes and the interpolation stage ``interp/``-prefixed ones, so this
    equals :func:`extend` followed by :func:`interpolate` with the same seed."""
    plan = plan_long_video(target, pred_length, context, stride, interp_length)
    keys = extend(pred, None, plan.keyframes, pred_length, context, pred_sigmas, pred_how, shape, eta, seed, device,
                  store, callback)
    for level in range(plan.levels):   # a second pass draws apart from the first
        keys = interpolate(interp, keys, interp_length, interp_sigmas, interp_how, eta, seed, device, store, callback,
                           INTERP if level == 0 else f"interp-{level}/")
    return keys[:, :, :target]
