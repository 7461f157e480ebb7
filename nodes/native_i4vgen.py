"""I4VGen's NI-VSDS animation on a native ComfyUI MODEL (Load Checkpoint + AnimateDiff-Evolved, with LoRAs and
patches): the pack's NI-VSDS loop (:func:`..samplers.i4vgen.ni_vsds`) run as a ComfyUI sampler through the native
adapter (:mod:`..models.native`), CFG through ComfyUI's own guider (scale 1 on the pack's side). Regeneration is core
KSampler with denoise = p_re on this node's output."""
from __future__ import annotations

import math

import torch

from ..models.native import SCHEDULERS, from_comfy_layout, latent_layout, prediction_kind, run_native, scheduler_sigmas
from ..samplers import i4vgen
from ..samplers.noise import generator, randn
from .common import CATEGORY_ROOT, CVKInputError, seed_input, step_callback
from .i4vgen import SCHEDULE_CHOICES, _cfg_input, _steps_input

CATEGORY = f"{CATEGORY_ROOT}/I4VGen"


def parse_step_sizes(text, iterations: int) -> list[float]:
    """η per NI-VSDS iteration from ``text``: a preset of :data:`..samplers.i4vgen.STEP_SIZES` (or the pack node's
    label of one), or comma-separated positive numbers, at least ``iterations`` of them (the first ``iterations`` are
    used, as the official 25-entry list is for 16 iterations). ValueError says what is wrong."""
    if not isinstance(text, str):
        raise ValueError("a preset name or a comma-separated list of numbers")
    name = SCHEDULE_CHOICES.get(text.strip(), text.strip().lower())
    if name in i4vgen.STEP_SIZES:
        return i4vgen.step_sizes(name, iterations)
    parts = [p.strip() for p in text.split(",")]
    try:
        etas = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"a preset ({', '.join(i4vgen.STEP_SIZES)}) or a comma-separated list of numbers such as "
                         f"'10, 10, 10, 1'") from None
    if not all(math.isfinite(e) and e > 0 for e in etas):
        raise ValueError("step sizes that are finite numbers above 0")
    if len(etas) < iterations:
        raise ValueError(f"at least {iterations} step sizes (one per NI-VSDS iteration: int(steps·p_ni_vsds) + 1 = "
                         f"{iterations}), got {len(etas)}")
    return etas[:iterations]


class CVK_NIVSDSNative:
    DESCRIPTION = ("I4VGen stage 2 (NI-VSDS) on a native MODEL (Load Checkpoint + AnimateDiff-Evolved, with LoRAs and "
                   "patches): the anchor picture's latent repeated over the frames is pulled toward the model's "
                   "one-step CFG prediction with one fixed noise sample, walking the scheduler's grid for "
                   "int(steps·p_ni_vsds)+1 iterations, one model call each (CFG batched by ComfyUI's guider). "
                   "For stage 3, regenerate with a core KSampler at denoise = p_re (official 1.0 for AnimateDiff).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The video latent with its frames in the batch [frames, C, h, w] (AnimateDiff's layout).",)
    FUNCTION = "animate"
    NODE = "CVK_NIVSDSNative"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "A native image model that takes a video's frames as its batch (SD1.5 with "
                                           "AnimateDiff-Evolved); ε or v prediction."}),
            "positive": ("CONDITIONING", {"tooltip": "The prompt."}),
            "negative": ("CONDITIONING", {"tooltip": "The negative prompt (CFG's unconditional branch)."}),
            "anchor_latent": ("LATENT", {"tooltip": "The anchor: ONE picture's latent [1, C, h, w] (VAE Encode, or "
                                                    "the chosen one of a batch of candidates)."}),
            "frames": ("INT", {"default": 16, "min": 1, "max": 1024, "tooltip": "Number of video frames."}),
            "steps": _steps_input(),
            "p_ni_vsds": ("FLOAT", {"default": 0.6, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": (
                "Share of the grid NI-VSDS walks: int(steps·p)+1 iterations (official 0.6: 16 of 25 steps).")}),
            "step_sizes": ("STRING", {"default": "animatediff", "tooltip": (
                "η per iteration: 'animatediff' (10, 10, 10, then 1; official), 'constant' (1, LaVie's), or a "
                "comma-separated list with at least one value per iteration (extra values are ignored).")}),
            "cfg": _cfg_input(),
            "scheduler": (list(SCHEDULERS), {"default": "ddim_uniform", "tooltip": (
                "ComfyUI's scheduler for the σ grid; ddim_uniform is AnimateDiff's DDIM grid (leading spacing, "
                "offset 1), as official.")}),
            "seed": seed_input(tooltip="Seeds the one fixed NI-VSDS noise sample ε* (the pack's own NI-VSDS noise)."),
        }}

    def animate(self, model, positive, negative, anchor_latent, frames, steps, p_ni_vsds, step_sizes, cfg, scheduler,
                seed):
        node = self.NODE
        if not hasattr(model, "model") or not hasattr(model.model, "model_sampling"):
            raise CVKInputError(node, "model", model, "a native MODEL (from Load Checkpoint, Load Diffusion Model, …)")
        try:
            layout = latent_layout(model)
            prediction_kind(model.model.model_sampling)
        except ValueError as e:
            raise CVKInputError(node, "model", model, problem=str(e)) from None
        if layout != "frames_in_batch":
            raise CVKInputError(node, "model", type(model.model).__name__,
                                problem="a video model with its own 5-D latent (Wan, LTX-Video, HunyuanVideo) is not "
                                        "supported: NI-VSDS repeats one picture's latent over the frames, which its "
                                        "temporally compressed latent does not hold; use an image model that takes "
                                        "the frames as its batch (SD1.5 + AnimateDiff-Evolved)")
        if not isinstance(anchor_latent, dict) or not torch.is_tensor(anchor_latent.get("samples")):
            raise CVKInputError(node, "anchor_latent", anchor_latent, "a LATENT dict with a 'samples' tensor")
        a = anchor_latent["samples"]
        channels = getattr(model.model.latent_format, "latent_channels", a.shape[1] if a.ndim > 1 else None)
        if a.ndim != 4 or a.shape[0] != 1 or a.shape[1] != channels:
            raise CVKInputError(node, "anchor_latent", a, f"one picture's latent [1, {channels}, h, w] (a batch of "
                                                          f"pictures or a 5-D video latent is not an anchor)")
        try:
            iterations = i4vgen.ni_vsds_iterations(steps, p_ni_vsds)
        except ValueError as e:
            raise CVKInputError(node, "p_ni_vsds", p_ni_vsds, problem=str(e)) from None
        try:
            etas = parse_step_sizes(step_sizes, iterations)
        except ValueError as e:
            raise CVKInputError(node, "step_sizes", step_sizes, str(e)) from None
        try:
            sigmas = scheduler_sigmas(model, scheduler, steps)
        except Exception as e:       # an unknown scheduler name from a linked value, or a model without a table
            raise CVKInputError(node, "scheduler", scheduler, problem=str(e)) from None
        if len(etas) > len(sigmas) - 1:
            raise CVKInputError(node, "steps", steps, problem=f"the {scheduler} grid has {len(sigmas) - 1} levels for "
                                                              f"{len(etas)} NI-VSDS iterations")
        # the loop works in the model's own latent space (SD: × 0.18215), as ComfyUI's sample() hands a sampler the
        # latent after process_latent_in and returns process_latent_out of the result
        anchor = from_comfy_layout(model.model.process_latent_in(a.to(torch.float32)), layout)    # (1, C, 1, h, w)
        progress = step_callback(iterations, node)

        def fn(den, x, grid, callback=None):
            z = anchor.to(device=x.device, dtype=x.dtype).expand(1, anchor.shape[1], frames, *anchor.shape[3:])
            z = z.clone()
            eps_star = randn(z.shape, generator(seed, "ni-vsds"), z.device, z.dtype)

            def cb(i, x_, x0, sigma):
                progress(i, x_, x0, sigma)
                if callback is not None:
                    callback(i, x_, x0, sigma)
            return i4vgen.ni_vsds(den, z, grid, None, None, 1.0, etas, eps_star, cb)   # CFG: ComfyUI's guider
        # ComfyUI prepares the conditioning for a latent of the video's shape; the loop draws its own seeded noise.
        # The grid ends at 0, where the adapter's conversions and the model's inverse noise scaling are the identity
        start = torch.zeros((frames, a.shape[1], *a.shape[-2:]), dtype=torch.float32)
        out = run_native(model, positive, negative, cfg, start, torch.zeros_like(start), sigmas, fn, seed=seed)
        return ({"samples": out.to(device=a.device, dtype=a.dtype)},)


NODE_CLASS_MAPPINGS = {"CVK_NIVSDSNative": CVK_NIVSDSNative}
NODE_DISPLAY_NAME_MAPPINGS = {"CVK_NIVSDSNative": "NI-VSDS Animator (CVK native)"}
