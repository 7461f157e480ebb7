"""VideoGuide nodes: a guide-model loader and the VideoGuide sampler."""
from __future__ import annotations

from .. import host
from ..models.lvdm.t2v import VIDEOGUIDE_FPS
from ..samplers.filters import FILTER_KINDS
from ..samplers.guidance import GUIDANCE_MODES
from ..samplers.schedules import sigma_grid
from ..samplers.videoguide import (MATCH_BY, GuideGridError, VideoGuideSettings, default_timesteps, guide_denoiser,
                                   videoguide)
from .common import (CATEGORY_ROOT, CVKInputError, VIDEO_MODEL, check_frames, check_model, check_size, latent_out,
                     prompt_inputs, seed_input, sigmas_or_error, step_callback, video_size_inputs)
from .video import CVK_VideoModelLoader, load_video_model

CATEGORY = f"{CATEGORY_ROOT}/VideoGuide"
GRIDS = ("videoguide", "model default")


class CVK_GuideModelLoader(CVK_VideoModelLoader):
    DESCRIPTION = ("Loads a model to serve as VideoGuide's guide: any model the pack supports (the same loader "
                   "as Load Video Model). The guide must share the sampler's latent space (4 channels, SD VAE "
                   "scaling). Leave the sampler's guide input empty for self-guidance.")
    CATEGORY = CATEGORY
    RETURN_NAMES = ("guide",)
    OUTPUT_TOOLTIPS = ("The guide model; the sampler loads it together with its own model, under ComfyUI's model "
                       "management.",)

    def load(self, model_name, motion_module="none", precision="auto", attention="sdpa"):
        return (load_video_model("CVK_GuideModelLoader", model_name, motion_module, precision, attention),)


class CVK_VideoGuideSampler:
    DESCRIPTION = ("VideoGuide (arXiv 2410.04364): for the first guided steps, the guide model denoises the "
                   "sampler's prediction for a few steps and the two clean estimates are interpolated, then a "
                   "low-pass filter keeps the result's low frequencies. Temporal consistency from the guide, "
                   "no training. Defaults are the official ones (50 steps, 5 guided, 10 guide steps on a "
                   "24-point grid, weight 0.2, CFG++ 0.8, Butterworth 0.125). Cost: steps + guided·guide steps "
                   "model evaluations (2× the plain sampler at the defaults).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The video latent [1, C, frames, height/8, width/8].",)
    FUNCTION = "sample"
    NODE = "CVK_VideoGuideSampler"

    @classmethod
    def INPUT_TYPES(cls):
        mode = lambda who: (list(GUIDANCE_MODES), {"default": "cfg++", "tooltip": (  # noqa: E731
            f"{who}'s guidance: cfg++ (official: x0 from the guided prediction, direction from the unconditional "
            f"one; scale in [0, 1]) or cfg.")})
        scale = lambda who: ("FLOAT", {"default": 0.8, "min": 0.0, "max": 100.0, "step": 0.05, "tooltip": (  # noqa: E731
            f"{who}'s guidance scale: CFG++ λ (official 0.8) or CFG scale (7.5 typical).")})
        return {"required": {
            "model": (VIDEO_MODEL, {"tooltip": "The sampler model (official: AnimateDiff)."}),
            **prompt_inputs("What the video shows; each model encodes it with its own text encoder.",
                            "The unconditional branch for both models (official: empty)."),
            "seed": seed_input(42, "Noise seed (official 42), as in Text to Video; the guide's re-noise and the "
                                   "filter have their own generators derived from it."),
            "steps": ("INT", {"default": 50, "min": 1, "max": 1000, "tooltip": "Sampler steps N (official 50)."}),
            "guided_steps": ("INT", {"default": 5, "min": 0, "max": 1000,
                                     "tooltip": "I: the first I steps are guided (official 5, the first 10%)."}),
            "guide_steps": ("INT", {"default": 10, "min": 1, "max": 1000,
                                    "tooltip": "τ: guide evaluations per guided step (official 10)."}),
            "guide_grid": ("INT", {"default": 24, "min": 1, "max": 1000,
                                   "tooltip": "Points of the guide's sub-grid from the current level to 0 (official 24); "
                                              "the guide runs the first guide_steps of them."}),
            "guide_weight": ("FLOAT", {"default": 0.2, "min": 0.0, "max": 1.0, "step": 0.01,
                                       "tooltip": "w: x̄0 = x0_sampler + w·(x0_guide − x0_sampler) (official 0.2)."}),
            "guidance": mode("The sampler"),
            "guidance_scale": scale("The sampler"),
            "guide_guidance": mode("The guide"),
            "guide_guidance_scale": scale("The guide"),
            "filter": (list(FILTER_KINDS), {"default": "butterworth", "tooltip": (
                "Low-pass filter applied after each guided step: the latent keeps its low frequencies and takes "
                "fresh noise's high ones (official butterworth); none switches it off.")}),
            "filter_n": ("INT", {"default": 4, "min": 1, "max": 16, "tooltip": "Butterworth order (official 4)."}),
            "filter_d_s": ("FLOAT", {"default": 0.125, "min": 0.0, "max": 1.0, "step": 0.005,
                                     "tooltip": "Spatial cut-off d_s (official 0.125)."}),
            "filter_d_t": ("FLOAT", {"default": 0.125, "min": 0.0, "max": 1.0, "step": 0.005,
                                     "tooltip": "Temporal cut-off d_t (official 0.125)."}),
            "match_by": (list(MATCH_BY), {"default": "sigma", "tooltip": (
                "How the two models meet. sigma: at the same noise level, each through its own noise table. "
                "timestep (official code): the guide gets the sampler's integer timesteps and inputs built with "
                "the sampler's table.")}),
            **video_size_inputs(note="; official 16 frames at 512×512"),
            "grid": (list(GRIDS), {"default": "videoguide", "tooltip": (
                "videoguide: the official round(linspace(0, 999, steps + 1)) timesteps, output the last x0. "
                "model default: the sampler model's own scheduler grid (as Text to Video uses).")}),
        }, "optional": {
            "guide": (VIDEO_MODEL, {"tooltip": "The guide model (official: VideoCrafter2). Empty: self-guidance, the "
                                               "sampler guides itself."}),
        }}

    def sample(self, model, prompt, negative_prompt, seed, steps, guided_steps, guide_steps, guide_grid, guide_weight,
               guidance, guidance_scale, guide_guidance, guide_guidance_scale, filter, filter_n, filter_d_s, filter_d_t,
               match_by, frames, width, height, grid, guide=None):
        node = self.NODE
        model = check_model(node, model)
        guide = model if guide is None else check_model(node, guide, "guide")
        if not model.latent_format.same_space(guide.latent_format):
            a, b = model.latent_format, guide.latent_format
            raise CVKInputError(node, "guide", guide.name, (
                f"a model in the sampler's latent space ({a.channels} channels, scaling {a.scaling_factor}, ×"
                f"{a.spatial_factor}); {guide.name} has {b.channels} channels, scaling {b.scaling_factor}, ×{b.spatial_factor}"))
        check_size(node, width, height, model.latent_format.spatial_factor)
        check_frames(node, frames, model)
        check_frames(node, frames, guide)
        if guided_steps > steps:
            raise CVKInputError(node, "guided_steps", guided_steps, f"at most steps ({steps})")
        if guide_steps > guide_grid:
            raise CVKInputError(node, "guide_steps", guide_steps, f"at most guide_grid ({guide_grid})")
        sigmas = sigmas_or_error(node, steps, lambda: (
            sigma_grid(model.alphas_cumprod, default_timesteps(steps, model.num_train_timesteps), "zero")
            if grid == "videoguide" else model.sigmas(steps)))
        settings = VideoGuideSettings(guided_steps, guide_steps, guide_grid, guide_weight, filter, filter_n,
                                      filter_d_s, filter_d_t)
        cond, uncond = model.encode_prompt_pair(prompt, negative_prompt)
        if guide is model:
            g_cond, g_uncond = cond, uncond
        elif guide.takes_fps:    # VideoCrafter2: told fps 8, as VideoGuide's code does
            g_cond, g_uncond = guide.encode_prompt_pair(prompt, negative_prompt, fps=VIDEOGUIDE_FPS)
        else:
            g_cond, g_uncond = guide.encode_prompt_pair(prompt, negative_prompt)
        g_den = guide_denoiser(match_by, guide.network, guide.alphas_cumprod, guide.prediction_type, model.alphas_cumprod,
                               guide.signal_scale)
        shape = model.latent_shape(frames, width, height)
        with model.loaded(shape, also=[guide] if guided_steps > 0 else []) as device:   # one load for both
            try:
                z = videoguide(model.denoiser(), g_den, shape, sigmas, cond, uncond, g_cond, g_uncond, guidance_scale,
                               guidance, guide_guidance_scale, guide_guidance, settings, seed, device,
                               step_callback(steps, node))
            except GuideGridError as e:   # a guided step too close to t = 0 for the guide's sub-grid
                raise CVKInputError(node, "guided_steps", guided_steps, problem=str(e)) from None
        return (latent_out(z.to(host.intermediate_device()), model),)


NODE_CLASS_MAPPINGS = {"CVK_GuideModelLoader": CVK_GuideModelLoader, "CVK_VideoGuideSampler": CVK_VideoGuideSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"CVK_GuideModelLoader": "Load Guide Model (CVK VideoGuide)",
                              "CVK_VideoGuideSampler": "VideoGuide Sampler (CVK)"}
