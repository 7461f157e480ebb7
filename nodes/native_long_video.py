"""Long-video extension on a native ComfyUI MODEL (core loaders, AnimateDiff-Evolved, Wan, LTX-Video…): the pack's
window-by-window replacement extension (:func:`..samplers.long_video.extend`) run as a ComfyUI sampler through the
native adapter (:mod:`..models.native`), CFG through ComfyUI's own guider."""
from __future__ import annotations

import torch

from ..models.native import SCHEDULERS, from_comfy_layout, latent_layout, run_native, scheduler_sigmas
from ..samplers.long_video import REPLACE, Conditioning, extend, window_count
from .common import CATEGORY_ROOT, CVKInputError, seed_input, step_callback
from .long_video import s_input

CATEGORY = f"{CATEGORY_ROOT}/long video"
SAMPLERS = {"euler": 0.0, "euler_ancestral": 1.0}   # ComfyUI's names; in σ-space exactly DDIM with η = 0 / 1


class CVK_ExtendVideoNative:
    DESCRIPTION = ("Makes a video longer window by window on a native MODEL (Load Checkpoint + AnimateDiff-Evolved, "
                   "Load Diffusion Model for Wan / LTX-Video / HunyuanVideo, with LoRAs and patches): each window holds "
                   "the last 'context' latents so far, perturbed once to the level s, re-noised to each step's level "
                   "above s and held at s below it (LVDM's rule adapted to models without a conditioning input); "
                   "CFG through ComfyUI's own conditioning. Cost: windows × steps model calls (CFG batched).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The longer latent in the model's own layout: the latent so far unchanged, then the new frames.",)
    FUNCTION = "extend"
    NODE = "CVK_ExtendVideoNative"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "A native model (ε, v or flow prediction)."}),
            "positive": ("CONDITIONING", {"tooltip": "The prompt for every window."}),
            "negative": ("CONDITIONING", {"tooltip": "The negative prompt (CFG's unconditional branch)."}),
            "latent": ("LATENT", {"tooltip": (
                "The video so far: an image-model video with its frames in the batch (AnimateDiff: [frames, 4, h, w]) "
                "or a video model's 5-D latent [1, C, T, h, w].")}),
            "new_frames": ("INT", {"default": 16, "min": 1, "max": 4096, "tooltip": (
                "Latent frames to add (for video models with temporal compression, latent frames, not pictures).")}),
            "window": ("INT", {"default": 16, "min": 2, "max": 1024, "tooltip": (
                "Latent frames per window: the length the model was trained on (AnimateDiff 16; Wan 2.1 at 81 "
                "pictures: 21).")}),
            "context": ("INT", {"default": 0, "min": 0, "max": 1023, "tooltip": (
                "Known latent frames each window takes from the end of the video so far; 0 = a quarter of the "
                "window.")}),
            "s": s_input(),
            "cfg": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 100.0, "step": 0.1, "tooltip": "CFG scale."}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 1000, "tooltip": "Steps per window."}),
            "sampler_name": (list(SAMPLERS), {"default": "euler", "tooltip": (
                "euler (deterministic) or euler_ancestral, as ComfyUI's samplers of those names.")}),
            "scheduler": (list(SCHEDULERS), {"default": "normal", "tooltip": "ComfyUI's scheduler for each window's "
                                                                              "σ grid."}),
            "seed": seed_input(),
        }}

    def extend(self, model, positive, negative, latent, new_frames, window, context, s, cfg, steps, sampler_name,
               scheduler, seed):
        node = self.NODE
        if not hasattr(model, "model") or not hasattr(model.model, "model_sampling"):
            raise CVKInputError(node, "model", model, "a native MODEL (from Load Checkpoint, Load Diffusion Model, …)")
        try:
            layout = latent_layout(model)
        except ValueError as e:
            raise CVKInputError(node, "model", model, problem=str(e)) from None
        if not isinstance(latent, dict) or not torch.is_tensor(latent.get("samples")):
            raise CVKInputError(node, "latent", latent, "a LATENT dict with a 'samples' tensor")
        z = latent["samples"]
        want = 4 if layout == "frames_in_batch" else 5
        if z.ndim != want or (layout == "5d" and z.shape[0] != 1):
            raise CVKInputError(node, "latent", z, "[frames, C, h, w] (frames in the batch) for this image model" if
                                want == 4 else "one 5-D video latent [1, C, T, h, w] for this video model")
        # the sampler works in the model's own latent space (SD: × 0.18215; Wan: normalised per channel), as
        # ComfyUI's sample() hands it the latent after process_latent_in and returns process_latent_out of the result
        video = from_comfy_layout(model.model.process_latent_in(z.to(torch.float32)), layout)   # (1, C, F, h, w)
        context = context or max(1, window // 4)
        if context >= window:
            raise CVKInputError(node, "context", context, f"fewer than the window ({window} latent frames)")
        if video.shape[2] < context:
            raise CVKInputError(node, "latent", f"{video.shape[2]} frames", f"at least the context ({context} frames)")
        windows = window_count(video.shape[2], new_frames, window, context)
        try:
            sigmas = scheduler_sigmas(model, scheduler, steps)
        except Exception as e:       # an unknown scheduler name from a linked value, or a model without a table
            raise CVKInputError(node, "scheduler", scheduler, problem=str(e)) from None
        table = len(model.model.model_sampling.sigmas)
        if s >= table:
            raise CVKInputError(node, "s", s, f"a timestep from 0 to {table - 1} of the model's noise table")
        how = Conditioning(REPLACE, s, 0.0, ((None, None),), 1.0)     # CFG is the guider's (one batched call)
        B, C, _, h, w = video.shape
        eta = SAMPLERS[sampler_name]
        progress = step_callback(windows * steps, node)

        def fn(den, x, grid, callback=None):
            return extend(den, video, new_frames, window, context, grid, how, (B, C, window, h, w), eta, seed,
                          x.device, video.device, progress)
        # ComfyUI prepares the conditioning for one window's latent; the windows draw their own seeded noise
        shape = (window, C, h, w) if layout == "frames_in_batch" else (1, C, window, h, w)
        start = torch.zeros(shape, dtype=z.dtype)
        out = run_native(model, positive, negative, cfg, start, torch.zeros_like(start), sigmas, fn, seed=seed)
        out = out.to(device=z.device, dtype=z.dtype)
        have = z.shape[0] if layout == "frames_in_batch" else z.shape[2]
        if layout == "frames_in_batch":      # the given frames exactly as they came (no latent-format round trip)
            out[:have] = z
        else:
            out[:, :, :have] = z
        return ({**{k: v for k, v in latent.items() if k != "noise_mask"}, "samples": out},)


NODE_CLASS_MAPPINGS = {"CVK_ExtendVideoNative": CVK_ExtendVideoNative}
NODE_DISPLAY_NAME_MAPPINGS = {"CVK_ExtendVideoNative": "Extend Video (CVK native)"}
