"""A native ComfyUI ``MODEL`` (a ModelPatcher) with its ``CONDITIONING`` as a σ-space denoiser (the contract in
:mod:`..samplers`): ``denoise(x, sigma, cond=None, timestep=None) -> x0``, ``x`` ``(B, C, F, h, w)``, ``x = x0 + σ·ε``,
plus ``.sigmas`` (the model's σ table, ascending) and ``.timestep(σ)``.

The adapter is made INSIDE ComfyUI's own sampling run, so that everything ComfyUI does around a sampler still happens:
:class:`NativeSampler` is a ComfyUI ``SAMPLER`` (a ``comfy.samplers.Sampler``) that ``SamplerCustomAdvanced`` or
``comfy.samplers.sample`` runs under their ``CFGGuider``. The guider has then loaded the model through
``comfy.model_management`` (with its ControlNets and other additional models), applied the ModelPatcher's weight
patches (LoRA) and hooks, and processed the conditioning (areas, masks, ControlNet, the model's extra conds) for the
latent's shape. The denoiser calls the guider itself (``CFGGuider.__call__`` → ``predict_noise`` →
``sampling_function``, which batches cond and uncond through ``calc_cond_batch``): CFG, ``sampler_cfg_function``,
pre/post-CFG functions, wrappers and the inpainting mask act as they do for a core sampler. ``cond="positive"`` /
``"negative"`` asks for one branch alone (``calc_cond_batch`` with that processed conditioning).

Prediction kinds (``model_sampling``), in the model's own space ``x_c`` at level ``s``:

- ``EPS`` and ``V_PREDICTION`` work in σ-space already (``x_c = x0 + s·ε``; ComfyUI scales the network's input by
  ``1/sqrt(1 + s²)`` itself): σ = s, x = x_c.
- ``CONST`` (flow: Wan, LTX-Video, HunyuanVideo, Flux): ``x_c = (1 − s)·x0 + s·ε``. Divided by ``1 − s`` this is
  ``x0 + σ·ε`` with ``σ = s/(1 − s)``; back: ``s = σ/(1 + σ)``, ``x_c = x/(1 + σ)``. x0 is the same in both. The flow
  start s = 1 has σ = ∞; it is held at :data:`FLOW_SIGMA_MAX` = 1e9, whose s rounds to 1.0 in float32 — the network is
  told exactly what ComfyUI tells it, and float32 keeps ``ε = (x − x0)/σ`` to its last bits.
- anything else (X0, EDM, IMG_TO_IMG, COSMOS_RFLOW, V_PREDICTION_DDPM, ...) is refused, naming the kind.

Latent layouts (``latent_format.latent_dimensions``): 2 — an image model that takes a video's frames as its batch
(SD1.5 with AnimateDiff-Evolved), ComfyUI latent ``(B·F, C, h, w)`` ↔ ours ``(B, C, F, h, w)``, one video (B = 1) per
ComfyUI latent; 3 — a video model's own 5-D latent ``(B, C, T, h, w)`` (Wan, LTXV, Hunyuan; T is already the
temporally compressed length), ours as it is.

ComfyUI is imported lazily, inside functions: the pack imports without it.
"""
from __future__ import annotations

import contextlib
import math
import sys
from typing import Callable, Optional

import torch

FLOW_SIGMA_MAX = 1e9   # σ of the flow start s = 1: s = σ/(1 + σ) rounds to 1.0 in float32
KINDS = ("eps", "v_prediction", "flow")
LAYOUTS = ("frames_in_batch", "5d")
BRANCHES = (None, "cfg", "positive", "negative")


def _comfy_samplers():
    import comfy.samplers   # noqa: lazy: only inside ComfyUI
    _note_core_sampling_function(comfy.samplers)
    return comfy.samplers


_CORE_SAMPLING_FUNCTION = None


def _note_core_sampling_function(module) -> None:
    """Keep ComfyUI's own ``comfy.samplers.sampling_function`` once seen as itself: a pack may replace it for the
    length of its run (AnimateDiff-Evolved does, with one that needs its state in the model options), and a second
    model without that pack's wrappers is called with ComfyUI's own (:meth:`SecondGuider.active`)."""
    global _CORE_SAMPLING_FUNCTION
    fn = getattr(module, "sampling_function", None)
    if _CORE_SAMPLING_FUNCTION is None and getattr(fn, "__module__", None) == "comfy.samplers":
        _CORE_SAMPLING_FUNCTION = fn


if "comfy.samplers" in sys.modules:      # the pack is imported by ComfyUI at start, outside any sampling run
    _note_core_sampling_function(sys.modules["comfy.samplers"])


def prediction_kind(model_sampling) -> str:
    """``"eps"``, ``"v_prediction"`` or ``"flow"`` for a ComfyUI ``model_sampling`` object, from the prediction class
    it is built on (``comfy.model_sampling.EPS`` / ``V_PREDICTION`` / ``CONST``, exactly: a subclass that changes the
    formulas, such as EDM or IMG_TO_IMG_FLOW, is another kind). Other kinds raise a ValueError naming theirs."""
    import comfy.model_sampling as ms
    known = {ms.EPS: "eps", ms.V_PREDICTION: "v_prediction", ms.CONST: "flow"}
    predictions = {getattr(ms, n) for n in dir(ms) if isinstance(getattr(ms, n), type)
                   and hasattr(getattr(ms, n), "calculate_denoised")}
    for cls in type(model_sampling).__mro__:
        if cls in predictions:
            if cls in known:
                return known[cls]
            raise ValueError(f"native model: prediction kind {cls.__name__} ({type(model_sampling).__name__} built on "
                             f"comfy.model_sampling.{cls.__name__}) is not supported; supported kinds: EPS "
                             f"(ε-prediction), V_PREDICTION, CONST (flow: Wan, LTX-Video, HunyuanVideo)")
    raise ValueError(f"native model: model_sampling {type(model_sampling).__name__} is built on no known prediction "
                     f"kind (EPS, V_PREDICTION, CONST)")


def latent_layout(model) -> str:
    """``"frames_in_batch"`` or ``"5d"`` for a ComfyUI BaseModel (or ModelPatcher), from its latent format."""
    base = getattr(model, "model", model)
    dims = getattr(base.latent_format, "latent_dimensions", 2)
    if dims == 2:
        return "frames_in_batch"
    if dims == 3:
        return "5d"
    raise ValueError(f"native model: a latent with {dims} spatial dimensions ({type(base.latent_format).__name__}) "
                     f"is neither an image model's (2, frames in the batch) nor a video model's (3)")


# ---------------------------------------------------------------- pure conversions (no ComfyUI)

def to_comfy_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """Ours ``(B, C, F, h, w)`` → ComfyUI's: ``(B·F, C, h, w)`` (frames in the batch) or as it is (5-D)."""
    if layout == "5d":
        return x
    b, c, f, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def from_comfy_layout(x: torch.Tensor, layout: str, batch: int = 1) -> torch.Tensor:
    """ComfyUI's latent → ours ``(B, C, F, h, w)``; frames in the batch: ``(B·F, C, h, w)`` with ``batch`` = B."""
    if layout == "5d":
        if x.ndim != 5:
            raise ValueError(f"native model: a video model's latent must be 5-D (B, C, T, h, w), got {tuple(x.shape)}")
        return x
    if x.ndim != 4 or x.shape[0] % batch:
        raise ValueError(f"native model: an image model's latent must be (B·F, C, h, w) with B = {batch}, "
                         f"got {tuple(x.shape)}")
    n, c, h, w = x.shape
    return x.reshape(batch, n // batch, c, h, w).permute(0, 2, 1, 3, 4)


def sigma_to_model(sigma, kind: str):
    """Our σ (VE) → the model's level s (a float or a float64 tensor, as given)."""
    if kind != "flow":
        return sigma
    return sigma / (1.0 + sigma)


def sigma_from_model(s, kind: str):
    """The model's level s → our σ; a flow level s ≥ 1 − 1/(1 + FLOW_SIGMA_MAX) becomes :data:`FLOW_SIGMA_MAX`."""
    if kind != "flow":
        return s
    if torch.is_tensor(s):
        s = s.to(torch.float64)
        return torch.where(s >= 1.0, torch.full_like(s, FLOW_SIGMA_MAX), s / (1.0 - s).clamp_min(1e-300)
                           ).clamp_max(FLOW_SIGMA_MAX)
    s = float(s)
    return FLOW_SIGMA_MAX if s >= 1.0 else min(s / (1.0 - s), FLOW_SIGMA_MAX)


def x_to_model(x: torch.Tensor, sigma, kind: str) -> torch.Tensor:
    """Our x at σ → the model's x_c: ``x/(1 + σ)`` for flow, else x. σ a float or ``(B, 1, …)`` float64."""
    if kind != "flow":
        return x
    return (x.to(torch.float64) / (1.0 + sigma)).to(x.dtype)


def x_from_model(x: torch.Tensor, s, kind: str) -> torch.Tensor:
    """The model's x_c at level s → ours: ``x_c·(1 + σ)`` for flow (σ = s/(1 − s), held at FLOW_SIGMA_MAX)."""
    if kind != "flow":
        return x
    sigma = sigma_from_model(s, kind)
    return (x.to(torch.float64) * (1.0 + sigma)).to(x.dtype)


# ---------------------------------------------------------------- the denoiser

class NativeDenoiser:
    """A σ-space denoiser over ComfyUI's guider during its sampling run (made by :class:`NativeSampler`; see the
    module docstring). ``guider``: the ``model_wrap`` a ComfyUI sampler receives (a ``CFGGuider``: loaded model,
    processed conds, CFG scale); ``extra_args``: the sampler's ``extra_args`` (``model_options``, ``seed``,
    ``denoise_mask``); ``batch``: videos per ComfyUI latent in the frames-in-batch layout (1); ``around()``: a context
    entered around each model call (a second model's, :meth:`SecondGuider.active`).

    ``denoise(x, sigma, cond=None, timestep=None)``: ``x`` ``(B, C, F, h, w)``; σ a float or one level per sample
    ``(B,)``; ``cond`` ``None``/``"cfg"`` (the guider's CFG x0, at the guider's scale: use it with CFG scale 1 on our
    side) or ``"positive"``/``"negative"`` (one branch). σ may also be one level per frame ``(B, 1, F, 1, 1)`` (EPS
    and flow models) with ``timestep`` the timestep of the step level σ_t (see :meth:`__call__`); ``timestep`` left
    out needs one level per sample.
    """

    def __init__(self, guider, extra_args: Optional[dict] = None, inpaint=None, batch: int = 1,
                 around: Optional[Callable] = None):
        self.guider = guider
        self.around = around
        self.extra_args = dict(extra_args or {})
        self.inner_model = guider.inner_model
        self.model_sampling = self.inner_model.model_sampling
        self.kind = prediction_kind(self.model_sampling)
        self.layout = latent_layout(self.inner_model)
        self.batch = int(batch)
        self._call = inpaint if inpaint is not None else guider
        table = self.model_sampling.sigmas.detach().to("cpu", torch.float64)
        self.sigmas = sigma_from_model(table, self.kind) if self.kind == "flow" else table

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def model_sigma(self, sigma):
        """The model's own level s for our σ (what ComfyUI's sampler would pass)."""
        return sigma_to_model(sigma, self.kind)

    def timestep(self, sigma) -> torch.Tensor:
        """What the network is told at σ: ComfyUI's ``model_sampling.timestep`` of the model's level."""
        s = torch.as_tensor(sigma_to_model(torch.as_tensor(sigma, dtype=torch.float64), self.kind))
        return self.model_sampling.timestep(s.to(torch.float32)).cpu()

    def start(self, eps: torch.Tensor, sigma: float) -> torch.Tensor:
        """The seeded start of a sampler that draws its own ε (:func:`..samplers.sampling.initial_latent`): the
        σ-space point whose model input at σ is ``eps`` — ``ε·sqrt(1 + σ²)`` (ε, v), ``ε·(1 + σ)`` (flow)."""
        return eps * (1.0 + sigma) if self.kind == "flow" else eps * math.sqrt(1.0 + sigma ** 2)

    def _levels(self, sigma, b: int, f: int):
        """σ (a float, ``(B,)`` or ``(B, 1, F, 1, 1)``) as ``(B, 1, F, 1, 1)`` float64 on the CPU."""
        if not torch.is_tensor(sigma):
            return torch.full((b, 1, f, 1, 1), float(sigma), dtype=torch.float64)
        sig = sigma.detach().to("cpu", torch.float64)
        if sig.numel() == 1:
            sig = sig.reshape(1, 1, 1, 1, 1)
        elif sig.ndim == 1:
            if sig.shape[0] != b:
                raise ValueError(f"native denoiser: σ must be a float, one level per sample ({b},) or one per frame "
                                 f"({b}, 1, {f}, 1, 1), got shape {tuple(sigma.shape)}")
            sig = sig.reshape(b, 1, 1, 1, 1)
        elif sig.ndim != 5 or any(n not in (1, m) for n, m in zip(sig.shape, (b, 1, f, 1, 1))):
            raise ValueError(f"native denoiser: σ must be a float, one level per sample ({b},) or one per frame "
                             f"({b}, 1, {f}, 1, 1), got shape {tuple(sigma.shape)}")
        return sig.expand(b, 1, f, 1, 1).contiguous()

    def _step_levels(self, sig: torch.Tensor, timestep) -> torch.Tensor:
        """The step level σ_t of each sample ``(B,)``: the level whose timestep is the one told — of those among the
        sample's frame levels, the one most frames have (ties: the larger). Without ``timestep`` the sample's level
        must be one."""
        b = sig.shape[0]
        flat = sig.reshape(b, -1)
        if timestep is None:
            if (flat != flat[:, :1]).any():
                raise ValueError(f"native denoiser: σ varies within a sample (levels {flat.tolist()}); the network is "
                                 f"told one timestep per sample: pass timestep explicitly")
            return flat[:, 0].clone()
        told = torch.as_tensor(timestep, dtype=torch.float64).reshape(-1).cpu()
        if told.numel() not in (1, b):
            raise ValueError(f"native denoiser: timestep must be a scalar or one per sample ({b},), got shape "
                             f"{tuple(torch.as_tensor(timestep).shape)}")
        told = told.expand(b)
        out = torch.empty(b, dtype=torch.float64)
        for i in range(b):
            levels, counts = torch.unique(flat[i], return_counts=True)
            own = self.model_sampling.timestep(sigma_to_model(levels, self.kind).to(torch.float32)).to(torch.float64)
            match = torch.isclose(own.cpu(), told[i].expand_as(own), rtol=1e-6, atol=1e-6)
            if not match.any():
                raise ValueError(f"native denoiser: the timestep told ({float(told[i])}) is the timestep of none of the "
                                 f"sample's levels (σ {levels.tolist()}, timesteps {own.tolist()}); a native model is "
                                 f"told the timestep of the step level σ_t, which must be one of the frames' levels")
            cand = torch.nonzero(match).reshape(-1)
            best = max(cand.tolist(), key=lambda j: (int(counts[j]), float(levels[j])))
            out[i] = levels[best]
        return out

    def __call__(self, x: torch.Tensor, sigma, cond=None, timestep=None) -> torch.Tensor:
        """σ per frame (``(B, 1, F, 1, 1)``, with ``timestep`` told: the timestep of the step level σ_t, one of the
        sample's frame levels): ComfyUI applies one level per sample, so the sample goes to it at σ_t with each frame
        rescaled so that, after ComfyUI's own scaling at σ_t, the network sees that frame's input at its own σ_f —
        ε: ``x_f·sqrt(σ_t² + 1)/sqrt(σ_f² + 1)`` (ComfyUI divides by ``sqrt(σ_t² + 1)``); flow: the model's
        ``x_f/(1 + σ_f)`` (ComfyUI does not scale). The network's raw output is recovered from ComfyUI's x0 at σ_t
        (ε = (x_in − x0)/σ_t; flow v = (x_in − x0)/s_t) and x0 redone per frame at σ_f (ε: ``x_f − σ_f·ε``; flow:
        ``x_in,f − s_f·v``); frames at σ_t keep ComfyUI's x0 as it is. CFG, being affine in the raw outputs at one
        σ_t, carries over frame by frame. V-prediction and an inpainting mask with σ per frame are refused."""
        if cond not in BRANCHES:
            raise ValueError(f"native denoiser: cond must be one of {BRANCHES} (the conditioning is ComfyUI's, "
                             f"processed by its guider), got {cond!r}")
        if x.ndim != 5:
            raise ValueError(f"native denoiser: x must be (B, C, F, h, w), got {tuple(x.shape)}")
        b, f = x.shape[0], x.shape[2]
        sig = self._levels(sigma, b, f)
        step = self._step_levels(sig, timestep)                               # (B,) σ_t, ours
        per_frame = not bool((sig == step.reshape(b, 1, 1, 1, 1)).all())
        s = sigma_to_model(step, self.kind)                                   # (B,) the model's levels
        if per_frame:
            if self.kind not in ("eps", "flow"):
                raise ValueError(f"native denoiser: σ per frame (levels {sig.reshape(b, f).tolist()}, step level "
                                 f"{step.tolist()}) is supported for EPS and CONST (flow) models, not "
                                 f"{self.kind}; give every frame the step level")
            if self.extra_args.get("denoise_mask") is not None:
                raise ValueError("native denoiser: σ per frame cannot be combined with ComfyUI's inpainting mask "
                                 "(denoise_mask): it pastes the latent at the step level into every masked frame")
            if bool((step <= 0).any()):
                raise ValueError(f"native denoiser: σ per frame needs a step level σ_t > 0, got {step.tolist()}")
            st = step.reshape(b, 1, 1, 1, 1)
            if self.kind == "eps":
                sd2 = float(getattr(self.model_sampling, "sigma_data", 1.0)) ** 2
                xin = (x.to(torch.float64) * ((st ** 2 + sd2) / (sig ** 2 + sd2)).sqrt()).to(x.dtype)
            else:
                xin = (x.to(torch.float64) / (1.0 + sig)).to(x.dtype)
        else:
            xin = x_to_model(x, step.reshape(-1, 1, 1, 1, 1), self.kind)
        xc = to_comfy_layout(xin, self.layout)
        sc = s if self.layout == "5d" else s.repeat_interleave(f)
        sc = sc.to(device=xc.device, dtype=torch.float32)
        with self.around() if self.around is not None else _NOTHING:
            if cond in (None, "cfg"):
                x0 = self._call(xc, sc, **self.extra_args)
            else:
                branch = self.guider.conds.get(cond)
                if branch is None:
                    raise ValueError(f"native denoiser: the guider has no {cond!r} conditioning")
                options = self.extra_args.get("model_options", self.guider.model_options)
                x0 = _comfy_samplers().calc_cond_batch(self.inner_model, [branch], xc, sc, options)[0]
        x0 = from_comfy_layout(x0.to(x.dtype), self.layout, b)
        if not per_frame:
            return x0
        s_t = s.reshape(b, 1, 1, 1, 1).to(x.device)
        sig_d, step_d = sig.to(x.device), step.reshape(b, 1, 1, 1, 1).to(x.device)
        raw = (xin.to(torch.float64) - x0.to(torch.float64)) / s_t           # ε (ours = the model's σ) or flow v
        if self.kind == "eps":
            redo = x.to(torch.float64) - sig_d * raw
        else:
            redo = xin.to(torch.float64) - sigma_to_model(sig_d, "flow") * raw
        return torch.where(sig_d == step_d, x0, redo.to(x.dtype))


class NativeSampler:
    """A ComfyUI ``SAMPLER`` that runs one of our σ-space sampling loops: ``fn(denoise, x, sigmas, callback=...)
    -> x`` with ``denoise`` a :class:`NativeDenoiser`, ``x`` ``(B, C, F, h, w)`` at ``sigmas[0]`` (ours, VE) and
    ``sigmas`` the run's grid in σ (descending, float64); it returns x at ``sigmas[-1]``. ComfyUI's noise scaling
    makes the start from its NOISE and latent (as for a core sampler), and ``callback(i, x, x0, sigma)`` (ours)
    drives ComfyUI's previews and progress. Made by :func:`native_sampler` (the class is built on
    ``comfy.samplers.Sampler`` at first use)."""


_SAMPLER_CLASS = None


def native_sampler(fn: Callable, batch: int = 1):
    """A ComfyUI SAMPLER object running ``fn`` (see :class:`NativeSampler`)."""
    global _SAMPLER_CLASS
    if _SAMPLER_CLASS is None:
        base = _comfy_samplers().Sampler

        class _NativeSampler(NativeSampler, base):
            def __init__(self, fn, batch=1):
                self.fn = fn
                self.batch = batch

            def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
                       disable_pbar=False):
                samplers = _comfy_samplers()
                extra_args = dict(extra_args)
                extra_args["denoise_mask"] = denoise_mask
                inpaint = samplers.KSamplerX0Inpaint(model_wrap, sigmas)    # ComfyUI's own mask handling
                inpaint.latent_image = latent_image
                inpaint.noise = noise
                den = NativeDenoiser(model_wrap, extra_args, inpaint, self.batch)
                ms = den.model_sampling
                xc = ms.noise_scaling(sigmas[0], noise, latent_image, self.max_denoise(model_wrap, sigmas))
                s_model = sigmas.detach().to("cpu", torch.float64)
                ours = sigma_from_model(s_model, den.kind)
                x = from_comfy_layout(x_from_model(xc, float(s_model[0]), den.kind), den.layout, self.batch)
                total = len(sigmas) - 1

                def cb(i, x_, x0, sigma):
                    if callback is not None:
                        xs = to_comfy_layout(x_to_model(x_, float(sigma), den.kind), den.layout)
                        callback(i, to_comfy_layout(x0, den.layout), xs, total)

                out = self.fn(den, x, ours, callback=cb)
                out = to_comfy_layout(x_to_model(out, float(ours[-1]), den.kind), den.layout)
                return ms.inverse_noise_scaling(sigmas[-1], out)

        _NativeSampler.__name__ = _NativeSampler.__qualname__ = "NativeSampler"
        _NativeSampler.__module__ = __name__
        _SAMPLER_CLASS = _NativeSampler
    return _SAMPLER_CLASS(fn, batch)


class SecondGuider:
    """A second MODEL with its own CONDITIONING and CFG inside a running sampler (VideoGuide's guide): a
    ``comfy.samplers.CFGGuider`` run as ``CFGGuider.sample`` runs one — cond hooks registered,
    ``prepare_model_patcher``, then inside the model's own ``OUTER_SAMPLE`` wrappers (where AnimateDiff-Evolved sets up
    its motion models and sampling state for this guider) ``sampler_helpers.prepare_sampling`` (``load_models_gpu``
    with its additional models), ``pre_run`` and ``process_conds`` for the run's noise and latent. :meth:`run` calls
    ``body(extra_args)`` there, with which a :class:`NativeDenoiser` over ``.guider`` (``around=self.active``) calls it
    as the running guider is called; :meth:`release` (also at the end of :meth:`run`) undoes the loading
    (``ModelPatcher.cleanup``, ``sampler_helpers.cleanup_models``). ``match_with``: a ``model_sampling`` object patched
    onto a clone of the model (the other model's table and timesteps).

    ``running``: the ModelPatcher of the run's own guider. A guide on the same network (self-guidance, or the same
    checkpoint with another motion module) keeps that network's ``current_patcher`` the running one, and its
    injections (ADE's motion modules) are swapped in for each guide call only (:meth:`active`: ``eject_model`` /
    ``inject_model``, module moves, no weight copies); one on the same network with other weight patches (a LoRA) is
    refused — ComfyUI holds one set of weights per network."""

    def __init__(self, model, positive, negative, cfg, match_with=None, running=None):
        import comfy.samplers
        self.running = running
        self.shared = running is not None and model.model is running.model
        if self.shared and model is not running and model.patches_uuid != running.patches_uuid:
            raise ValueError("the guide is the main model's network with other weight patches (a LoRA or a merge): "
                             "ComfyUI holds one set of weights per network; load the guide as a model of its own")
        if self.shared:
            match_with = None             # one network: one table already
        self.mp = model.clone() if match_with is not None else model
        if match_with is not None:     # match_by timestep: the main model's table, timesteps and input scaling
            self.mp.add_object_patch("model_sampling", match_with)
        self.swap = self.shared and self.mp is not running
        self.own_wrappers = False          # set in run(): the guide has OUTER_SAMPLE wrappers of its own
        self.guider = comfy.samplers.CFGGuider(self.mp)
        self.guider.set_conds(positive, negative)
        self.guider.set_cfg(cfg)
        self.prepared = False

    def run(self, noise, latent_image, sigmas, denoise_mask, seed, latent_shapes, body: Callable):
        """``body(extra_args)`` with the guide prepared inside its ``OUTER_SAMPLE`` wrappers; returns what it
        returns. ``noise``, ``latent_image``, ``denoise_mask``, ``seed``: the running sampler's (ComfyUI's layout)."""
        import comfy.model_patcher as patcher
        import comfy.patcher_extension as ext
        import comfy.sampler_helpers as helpers
        import comfy.samplers as samplers
        g = self.guider
        g.conds = {k: [c.copy() for c in v] for k, v in g.original_conds.items()}
        samplers.preprocess_conds_hooks(g.conds)
        orig_options = g.model_options
        try:
            g.model_options = patcher.create_model_options_clone(orig_options)
            helpers.prepare_model_patcher(self.mp, g.conds, g.model_options)
            samplers.filter_registered_hooks_on_conds(g.conds, g.model_options)

            def outer(*_args, **_kwargs):      # CFGGuider.outer_sample's part, then body in place of the sampler
                try:
                    g.inner_model, g.conds, g.loaded_models = helpers.prepare_sampling(
                        self.mp, noise.shape, g.conds, g.model_options)
                    self.prepared = True
                    self.mp.pre_run()
                    self._keep_running()
                    g.inner_model.latent_shapes = latent_shapes
                    g.conds = samplers.process_conds(g.inner_model, noise, g.conds, noise.device, latent_image,
                                                     denoise_mask, seed, latent_shapes=latent_shapes)
                    return body({"model_options": patcher.create_model_options_clone(g.model_options), "seed": seed})
                finally:
                    self.release()
            wrappers = ext.get_all_wrappers(ext.WrappersMP.OUTER_SAMPLE, g.model_options, is_model_options=True)
            self.own_wrappers = bool(wrappers)
            executor = ext.WrapperExecutor.new_class_executor(outer, g, wrappers)
            return executor.execute(noise, latent_image, None, sigmas, denoise_mask, None, True, seed,
                                    latent_shapes=latent_shapes)
        finally:
            g.model_options = orig_options
            self.mp.restore_hook_patches()

    def active(self):
        """Context of one guide call: on a shared network, the running model's injections out and the guide's in
        (and back after); a guide without sampling wrappers of its own is called with ComfyUI's own
        ``sampling_function`` (the running model's pack may have replaced it for its run: ADE's needs its state)."""
        return _GuideCall(self.running if self.swap and self.prepared else None, self.mp,
                          None if self.own_wrappers else _CORE_SAMPLING_FUNCTION)

    def _keep_running(self):
        if self.shared and hasattr(self.running.model, "current_patcher"):
            self.running.model.current_patcher = self.running
        if self.swap:                  # loading the guide ejected the running model's injections: theirs back in
            self.mp.eject_model()
            self.running.inject_model()

    def release(self):
        if not self.prepared:
            return
        import comfy.sampler_helpers as helpers
        self.prepared = False
        g = self.guider
        if self.swap:
            self.mp.eject_model()
            self.running.inject_model()
        if not self.shared:
            self.mp.cleanup()          # a shared network is the running guider's: ComfyUI cleans it up at the end
        helpers.cleanup_models(g.conds, g.loaded_models)
        del g.inner_model, g.loaded_models


class _GuideCall:
    def __init__(self, running, guide, sampling_function):
        self.running, self.guide, self.fn, self.saved = running, guide, sampling_function, None

    def __enter__(self):
        if self.running is not None:
            self.running.eject_model()
            self.guide.inject_model()
        if self.fn is not None:
            samplers = _comfy_samplers()
            self.saved, samplers.sampling_function = samplers.sampling_function, self.fn

    def __exit__(self, *exc):
        if self.fn is not None:
            _comfy_samplers().sampling_function = self.saved
        if self.running is not None:
            self.guide.eject_model()
            self.running.inject_model()


_NOTHING = contextlib.nullcontext()


def run_native(model, positive, negative, cfg: float, latent_image: torch.Tensor, noise: torch.Tensor,
               sigmas: torch.Tensor, fn: Callable, seed: Optional[int] = None, denoise_mask=None,
               disable_pbar: bool = True) -> torch.Tensor:
    """``fn`` (see :class:`NativeSampler`) on a native ``MODEL`` with its ``CONDITIONING``, through
    ``comfy.samplers.sample`` (a CFGGuider at scale ``cfg``): ``latent_image`` and ``noise`` in ComfyUI's latent layout,
    ``sigmas`` the model's own grid (as ComfyUI's schedulers give it). Returns the ComfyUI latent."""
    samplers = _comfy_samplers()
    return samplers.sample(model, noise, positive, negative, cfg, model.load_device, native_sampler(fn), sigmas,
                           latent_image=latent_image, denoise_mask=denoise_mask, disable_pbar=disable_pbar, seed=seed)


SCHEDULERS = ("normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta", "linear_quadratic",
              "kl_optimal")    # ComfyUI 0.33's SCHEDULER_NAMES, listed so the pack's nodes import without ComfyUI


def scheduler_sigmas(model, scheduler: str, steps: int) -> torch.Tensor:
    """The model's own σ grid ``(steps + 1,)`` from a ComfyUI scheduler (``comfy.samplers.calculate_sigmas`` on its
    ``model_sampling``), in the model's σ (what :func:`run_native` takes)."""
    base = getattr(model, "model", model)
    return _comfy_samplers().calculate_sigmas(base.model_sampling, scheduler, steps)
