"""VideoGuide on native ComfyUI MODELs, as a ComfyUI ``SAMPLER`` for ``SamplerCustomAdvanced``.

VideoGuide's post-step filter needs the sampler's x, which a ``GUIDER`` never sees, so VideoGuide ships as a
SAMPLER: the main MODEL and its conditioning come through the GUIDER as usual (its CFG is the main CFG; the pack's
side runs at CFG scale 1), the guide MODEL comes with its own positive / negative and CFG on this node.

Inside the run (:func:`..models.native.native_sampler`), the guide gets a ``comfy.samplers.CFGGuider`` of its own,
prepared as ComfyUI prepares a guider (hooks, then inside the guide's own ``OUTER_SAMPLE`` wrappers — where
AnimateDiff-Evolved sets up its motion models — ``sampler_helpers.prepare_sampling`` → ``load_models_gpu``, ``pre_run``,
``process_conds`` for the run's latent; :class:`..models.native.SecondGuider`, which the rest of the loop runs inside)
and wrapped in a :class:`..models.native.NativeDenoiser`; it is released (``ModelPatcher.cleanup`` and
``sampler_helpers.cleanup_models``) as soon as the guided steps are done.

The loop is :mod:`..samplers.videoguide`'s — its x0 blend (:func:`guided_x0_blend`, the guide's sub-grids
:func:`guide_levels`) and its low-pass re-noise hook (:func:`lowpass_renoise`) — over a base step written in
ComfyUI's own ``euler`` form, ``x ← x + d·(σ' − σ) + (x̄0 − x0)`` with ``d = (x − x0)/σ`` (the sampler's
direction, float32 levels as ComfyUI's), which is VideoGuide's ``x' = x̄0 + σ'·d`` exactly in arithmetic; with guide
weight 0 and filter ``none`` the blend adds exactly 0, so the run is core ``euler`` bit for bit (ε and v models).
Flow models take VideoGuide's own form ``x̄0 + σ'·d`` in σ-space (x = x_c/(1 − s) reaches 1e9·x_c at the start, where
the euler form would cancel catastrophically in float32): core euler up to float rounding. ComfyUI's ``ddim`` is its
``euler`` (the deterministic DDIM step is Euler in σ), so both names give this step.
"""
from __future__ import annotations

import torch

from ..models.native import (NativeDenoiser, SecondGuider, latent_layout, native_sampler, prediction_kind,
                             sigma_to_model)
from ..samplers.filters import FILTER_KINDS, lowpass_mask
from ..samplers.guidance import guidance
from ..samplers.noise import generator
from ..samplers.videoguide import (MATCH_BY, GuideGridError, VideoGuideSettings, guide_levels, guided_x0_blend,
                                   lowpass_renoise)
from .common import CATEGORY_ROOT, CVKInputError
from .videoguide import CVK_VideoGuideSampler

CATEGORY = f"{CATEGORY_ROOT}/VideoGuide"
BASE_SAMPLERS = ("euler", "ddim")    # ComfyUI's names; ComfyUI's ddim is its euler: DDIM η = 0 in σ-space
NODE = "CVK_VideoGuideNativeSampler"


def _native_model(node: str, name: str, model):
    if not hasattr(model, "model") or not hasattr(model.model, "model_sampling"):
        raise CVKInputError(node, name, model, "a native MODEL (from Load Checkpoint, Load Diffusion Model, …)")
    try:
        prediction_kind(model.model.model_sampling)
        latent_layout(model)
    except ValueError as e:
        raise CVKInputError(node, name, model, problem=str(e)) from None
    return model


def _conditioning(node: str, name: str, cond):
    if not isinstance(cond, list) or not all(isinstance(c, (list, tuple)) and len(c) == 2 and torch.is_tensor(c[0])
                                             for c in cond):
        raise CVKInputError(node, name, cond, "a CONDITIONING (from CLIP Text Encode, …)")
    return cond


def videoguide_native_step(den, guide_den, x, sigmas, table, settings, seed, callback=None, on_guided_done=None):
    """VideoGuide (:mod:`..samplers.videoguide`) with ComfyUI's euler step (see the module docstring). ``den``: the
    main :class:`NativeDenoiser` (the GUIDER's CFG); ``guide_den``: the guide's (its own CFG) or None when no step is
    guided; ``table``: the σ table of the guide's sub-grids; ``on_guided_done()`` runs once the guided steps are
    done. Returns x at ``sigmas[-1]``."""
    st = settings
    mask = None if st.filter == "none" else lowpass_mask(st.filter, *x.shape[-3:], st.filter_n, st.filter_d_s,
                                                          st.filter_d_t)
    sig = [float(s) for s in sigmas]
    levels = {sig[i]: guide_levels(table, sig[i], st.guide_grid) for i in range(st.guided_steps)}
    main = guidance(den, None)                  # the GUIDER's CFG: scale 1 on our side
    guide = guidance(guide_den, None) if guide_den is not None else None
    now = {}                                    # the main model's prediction of this step, evaluated once
    blended = guided_x0_blend(lambda x_, s_, **e: now["main"], guide, levels, st.guide_steps, st.weight,
                              generator(seed, "videoguide-renoise"))
    hook = lowpass_renoise(mask, st.guided_steps, generator(seed, "videoguide-filter"))
    flow = den.kind == "flow"
    s32 = torch.tensor(sig, dtype=torch.float64).to(torch.float32).to(x.device)     # ComfyUI's own float32 levels
    if st.guided_steps == 0 and on_guided_done is not None:
        on_guided_done()
    for i in range(len(sig) - 1):
        now["main"] = main(x, sig[i])
        x0_s = now["main"].x0
        x0 = blended(x, sig[i]).x0 if i < st.guided_steps else x0_s
        if callback is not None:
            callback(i, x, x0, sig[i])
        if flow:                                # x is x_c·(1 + σ), up to 1e9·x_c: VideoGuide's own form
            x = x0 if sig[i + 1] == 0 else x0 + sig[i + 1] * now["main"].eps
        else:                                   # ComfyUI's euler, as sample_euler computes it
            d = (x - x0_s) / s32[i].reshape(1, 1, 1, 1, 1)
            x = x + d * (s32[i + 1] - s32[i])
            if i < st.guided_steps:
                x = x + (x0 - x0_s)
        if i < st.guided_steps:
            x = hook(i, x, sig[i + 1])
            if i == st.guided_steps - 1 and on_guided_done is not None:
                on_guided_done()
    return x


class CVK_VideoGuideNativeSampler:
    DESCRIPTION = ("VideoGuide (arXiv 2410.04364) as a SAMPLER for SamplerCustomAdvanced on native models: for the "
                   "first guided steps the guide MODEL denoises the sampler's prediction for a few steps and the two "
                   "clean estimates are interpolated, then a low-pass filter keeps the result's low frequencies. The "
                   "main MODEL, its prompts and CFG come through the GUIDER; the guide has its own prompts and CFG "
                   "here. Both models load under ComfyUI's model management; the guide is released after the guided "
                   "steps. Cost: steps + guided·guide steps model evaluations (CFG batched).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SAMPLER",)
    RETURN_NAMES = ("sampler",)
    OUTPUT_TOOLTIPS = ("A SAMPLER for SamplerCustomAdvanced (with any GUIDER over the main model, NOISE and SIGMAS).",)
    FUNCTION = "get_sampler"
    NODE = NODE

    @classmethod
    def INPUT_TYPES(cls):
        own = CVK_VideoGuideSampler.INPUT_TYPES()["required"]
        pick = lambda *names: {n: own[n] for n in names}  # noqa: E731
        return {"required": {
            "sampler_name": (list(BASE_SAMPLERS), {"default": "euler", "tooltip": (
                "The base sampler: euler, or ddim (ComfyUI's ddim is its euler: deterministic DDIM is Euler in σ).")}),
            "guide": ("MODEL", {"tooltip": "The guide model (official: VideoCrafter2), a native MODEL in the main "
                                           "model's latent space; it may be the main model itself (self-guidance)."}),
            "guide_positive": ("CONDITIONING", {"tooltip": "The prompt, encoded with the guide's own text encoder."}),
            "guide_negative": ("CONDITIONING", {"tooltip": "The guide's negative prompt (its CFG's unconditional "
                                                           "branch)."}),
            **pick("guided_steps", "guide_steps", "guide_grid", "guide_weight"),
            "guide_cfg": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                                    "tooltip": "The guide's CFG scale (ComfyUI's CFG)."}),
            **pick("filter", "filter_n", "filter_d_s", "filter_d_t", "match_by"),
            "seed": ("INT", {"default": 42, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                             "tooltip": "Seed of the guide's re-noise and the filter's noise (their own generators); "
                                        "the start noise is the NOISE input's."}),
        }}

    def get_sampler(self, sampler_name, guide, guide_positive, guide_negative, guided_steps, guide_steps, guide_grid,
                    guide_weight, guide_cfg, filter, filter_n, filter_d_s, filter_d_t, match_by, seed):
        node = self.NODE
        if sampler_name not in BASE_SAMPLERS:
            raise CVKInputError(node, "sampler_name", sampler_name, f"one of {', '.join(BASE_SAMPLERS)}")
        guide = _native_model(node, "guide", guide)
        _conditioning(node, "guide_positive", guide_positive)
        _conditioning(node, "guide_negative", guide_negative)
        if match_by not in MATCH_BY:
            raise CVKInputError(node, "match_by", match_by, f"one of {', '.join(MATCH_BY)}")
        if filter not in FILTER_KINDS:
            raise CVKInputError(node, "filter", filter, f"one of {', '.join(FILTER_KINDS)}")
        if guide_steps > guide_grid:
            raise CVKInputError(node, "guide_steps", guide_steps, f"at most guide_grid ({guide_grid})")
        settings = VideoGuideSettings(guided_steps, guide_steps, guide_grid, guide_weight, filter, filter_n,
                                      filter_d_s, filter_d_t)

        def fn(den, x, sigmas, callback=None):
            steps = len(sigmas) - 1
            if guided_steps > steps:
                raise CVKInputError(node, "guided_steps", guided_steps, f"at most the SIGMAS' steps ({steps})")
            main_ms = den.model_sampling
            if latent_layout(guide) != den.layout or type(guide.model.latent_format) is not type(
                    den.inner_model.latent_format):
                raise CVKInputError(node, "guide", guide, (
                    f"a model in the main model's latent space ({type(den.inner_model.latent_format).__name__}); the "
                    f"guide's is {type(guide.model.latent_format).__name__}"))
            if match_by == "timestep" and prediction_kind(guide.model.model_sampling) != den.kind:
                raise CVKInputError(node, "match_by", match_by, problem=(
                    f"timestep gives the guide the main model's levels, which needs the same prediction kind; the "
                    f"guide is {prediction_kind(guide.model.model_sampling)}, the main model {den.kind}: use sigma"))
            if guided_steps == 0:
                return videoguide_native_step(den, None, x, sigmas, den.sigmas, settings, seed, callback)
            try:
                g = SecondGuider(guide, guide_positive, guide_negative, guide_cfg,
                                 main_ms if match_by == "timestep" else None, den.guider.model_patcher)
            except ValueError as e:
                raise CVKInputError(node, "guide", guide, problem=str(e)) from None
            inpaint = den._call      # ComfyUI's KSamplerX0Inpaint: the run's noise and latent

            def body(extra):         # inside the guide's own sampling wrappers (ADE's motion models set up there)
                guide_den = NativeDenoiser(g.guider, extra, None, den.batch, around=g.active)
                table = den.sigmas if match_by == "timestep" else guide_den.sigmas
                try:
                    return videoguide_native_step(den, guide_den, x, sigmas, table, settings, seed, callback,
                                                  g.release)
                except GuideGridError as e:
                    raise CVKInputError(node, "guided_steps", guided_steps, problem=str(e)) from None
            return g.run(inpaint.noise, inpaint.latent_image, sigma_to_model(sigmas, den.kind), den.extra_args.get("denoise_mask"),
                         den.extra_args.get("seed"), getattr(den.inner_model, "latent_shapes", None), body)
        return (native_sampler(fn),)


NODE_CLASS_MAPPINGS = {NODE: CVK_VideoGuideNativeSampler}
NODE_DISPLAY_NAME_MAPPINGS = {NODE: "VideoGuide Sampler (CVK native)"}
