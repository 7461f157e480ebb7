"""I4VGen nodes: anchor candidates, anchor selection, NI-VSDS animation, regeneration."""
from __future__ import annotations

import torch

from .. import host
from ..samplers import i4vgen
from ..samplers.sampling import SAMPLERS, eta_for
from ..models.scorers import ExternalScores, PickIndex, ScoreError, Scorer, best_index, format_scores
from .common import (CATEGORY_ROOT, CVKInputError, VIDEO_MODEL, check_frames, check_images, check_latent, check_model,
                     check_size, latent_out, prompt_inputs, seed_input, sigmas_or_error, step_callback,
                     video_size_inputs)

CATEGORY = f"{CATEGORY_ROOT}/I4VGen"
SCORER = Scorer.TYPE
SELECTIONS = ("scorer", "external scores", "index")
SCHEDULE_CHOICES = {"animatediff (10, 10, 10, then 1)": "animatediff", "constant 1 (LaVie)": "constant"}


def _cfg_input() -> tuple:
    return ("FLOAT", {"default": 7.5, "min": 0.0, "max": 100.0, "step": 0.1,
                      "tooltip": "CFG scale (official: 7.5 for AnimateDiff, 7.0 for LaVie)."})


def _steps_input() -> tuple:
    return ("INT", {"default": 25, "min": 1, "max": 1000,
                    "tooltip": "The sampler's grid (official AnimateDiff: 25 DDIM steps); all stages walk it."})


LATENT_OUT = ("The video latent [1, C, frames, height/8, width/8].",)


class CVK_AnchorCandidates:
    DESCRIPTION = ("I4VGen stage 1: candidate anchor images from the video model itself (its network on 1-frame "
                   "clips), all sampled as one batch, so this costs `steps` model calls. Official: 16 candidates "
                   "(the frame count there; independent here), 25 DDIM steps, CFG 7.5 for AnimateDiff.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "LATENT")
    RETURN_NAMES = ("images", "latent")
    OUTPUT_TOOLTIPS = ("The candidates as an IMAGE batch.", "Their latents [candidates, C, 1, h, w].")
    FUNCTION = "generate"
    NODE = "CVK_AnchorCandidates"

    @classmethod
    def INPUT_TYPES(cls):
        sizes = video_size_inputs()
        return {"required": {
            "model": (VIDEO_MODEL, {"tooltip": "The video model; it draws the anchors itself."}),
            **prompt_inputs(negative_tip="The unconditional branch of guidance (official: none)."),
            "seed": seed_input(),
            "num_candidates": ("INT", {"default": 16, "min": 1, "max": 256,
                                       "tooltip": "How many anchor images to draw (official 16)."}),
            "steps": _steps_input(),
            "cfg": _cfg_input(),
            "width": sizes["width"], "height": sizes["height"],
        }}

    def generate(self, model, prompt, negative_prompt, seed, num_candidates, steps, cfg, width, height):
        node = self.NODE
        model = check_model(node, model)
        check_size(node, width, height, model.latent_format.spatial_factor)
        sigmas = sigmas_or_error(node, steps, lambda: model.sigmas(steps))
        cond, uncond = model.encode_prompt_pair(prompt, negative_prompt)
        shape = model.latent_shape(1, width, height, num_candidates)
        with model.loaded(shape) as device:
            z = i4vgen.anchor_candidates(model.denoiser(), shape, sigmas, cond, uncond, cfg, seed, device,
                                         step_callback(steps, node))
        z = z.to(host.intermediate_device())
        return (model.vae.decode(z), latent_out(z, model))


class CVK_AnchorSelector:
    DESCRIPTION = ("I4VGen stage 1b: picks the best candidate (argmax of its score). Scores from a scorer (Load "
                   "Anchor Scorer: ImageReward, the official selector, or CLIP score), from any other node as a "
                   "comma-separated list, or simply a chosen index.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "LATENT", "STRING")
    RETURN_NAMES = ("image", "latent", "scores")
    OUTPUT_TOOLTIPS = ("The chosen candidate.", "Its latent [1, C, 1, h, w].", "Every candidate's score, comma-separated.")
    FUNCTION = "select"
    NODE = "CVK_AnchorSelector"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The candidates (from Anchor Candidates)."}),
            "latent": ("LATENT", {"tooltip": "Their latents, in the same order."}),
            "prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "The prompt the scorer compares with."}),
            "selection": (list(SELECTIONS), {"default": "scorer", "tooltip": (
                "scorer: the connected scorer's argmax. external scores: the argmax of `external_scores`. index: "
                "take candidate `index`.")}),
            "external_scores": ("STRING", {"default": "", "tooltip": "Comma-separated scores, one per candidate "
                                                                     "(selection 'external scores')."}),
            "index": ("INT", {"default": 0, "min": 0, "max": 4095, "tooltip": "The candidate to take (selection 'index')."}),
        }, "optional": {
            "scorer": (SCORER, {"tooltip": "A scorer from Load Anchor Scorer (selection 'scorer')."}),
        }}

    def select(self, images, latent, prompt, selection, external_scores, index, scorer=None):
        node = self.NODE
        if not torch.is_tensor(images) or images.ndim != 4 or images.shape[0] == 0:
            raise CVKInputError(node, "images", images, "a non-empty IMAGE batch of candidates")
        z = check_latent(node, latent)
        n = images.shape[0]
        if z.shape[0] != n or z.shape[2] != 1:
            raise CVKInputError(node, "latent", z, f"{n} single-frame candidate latents [{n}, C, 1, h, w] (one per image)")
        if selection == "scorer" and not isinstance(scorer, Scorer):
            raise CVKInputError(node, "scorer", scorer, "a CVK_SCORER (from Load Anchor Scorer) for selection 'scorer'")
        field, value = {"scorer": ("scorer", getattr(scorer, "name", None)), "external scores": ("external_scores", external_scores),
                        "index": ("index", index)}[selection]
        try:
            chosen = {"scorer": lambda: scorer, "external scores": lambda: ExternalScores(external_scores),
                      "index": lambda: PickIndex(index)}[selection]()
            scores = chosen.score(prompt, images).float().cpu()
            best = best_index(scores)
        except ScoreError as e:
            raise CVKInputError(node, field, value, problem=str(e)) from None
        return (images[best:best + 1], dict(latent, samples=z[best:best + 1]), format_scores(scores))


class CVK_NIVSDSAnimator:
    DESCRIPTION = ("I4VGen stage 2 (NI-VSDS): turns an anchor into a static video (the anchor on every frame) and "
                   "animates it: each iteration pulls the video toward the model's one-step CFG prediction with one "
                   "fixed noise sample, walking the sampler's grid for int(steps·p_ni_vsds)+1 iterations. The anchor is "
                   "a latent from the selector, or any picture (image-to-video, which the official release never "
                   "shipped).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = LATENT_OUT
    FUNCTION = "animate"
    NODE = "CVK_NIVSDSAnimator"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (VIDEO_MODEL, {"tooltip": "The video model."}),
            **prompt_inputs(negative_tip="The unconditional branch of guidance (official: none)."),
            "frames": video_size_inputs()["frames"],
            "steps": _steps_input(),
            "p_ni_vsds": ("FLOAT", {"default": 0.6, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": (
                "Share of the grid NI-VSDS walks: int(steps·p)+1 iterations (official 0.6: 16 of 25 steps).")}),
            "step_sizes": (list(SCHEDULE_CHOICES), {"tooltip": (
                "η per iteration: AnimateDiff's 10, 10, 10, then 1 (official, for any step count), or LaVie's 1.")}),
            "cfg": _cfg_input(),
            "seed": seed_input(tooltip="Seeds the one fixed NI-VSDS noise sample ε*."),
        }, "optional": {
            "anchor_latent": ("LATENT", {"tooltip": "The anchor latent [1, C, 1, h, w] (from Anchor Selector)."}),
            "anchor_image": ("IMAGE", {"tooltip": "Or a picture as the anchor (image-to-video); it is VAE-encoded. "
                                                  "Width and height must be multiples of 8."}),
        }}

    def animate(self, model, prompt, negative_prompt, frames, steps, p_ni_vsds, step_sizes, cfg, seed,
                anchor_latent=None, anchor_image=None):
        node = self.NODE
        model = check_model(node, model)
        check_frames(node, frames, model)
        if (anchor_latent is None) == (anchor_image is None):
            raise CVKInputError(node, "anchor_latent", "both" if anchor_latent is not None else None,
                                "exactly one anchor: anchor_latent or anchor_image")
        if anchor_image is not None:
            check_images(node, anchor_image, model, "anchor_image", single=True)
            anchor = model.vae.encode(anchor_image)
        else:
            anchor = check_latent(node, anchor_latent, model, "anchor_latent")
            if anchor.shape[0] != 1 or anchor.shape[2] != 1:
                raise CVKInputError(node, "anchor_latent", anchor, "one single-frame latent [1, C, 1, h, w]")
        sigmas = sigmas_or_error(node, steps, lambda: model.sigmas(steps))
        cond, uncond = model.encode_prompt_pair(prompt, negative_prompt)
        iters = i4vgen.ni_vsds_iterations(steps, p_ni_vsds)
        with model.loaded((1, anchor.shape[1], frames, *anchor.shape[-2:])) as device:
            z = i4vgen.animate(model.denoiser(), anchor.to(device), frames, sigmas, cond, uncond, cfg, p_ni_vsds,
                               SCHEDULE_CHOICES[step_sizes], seed, step_callback(iters, node))
        return (latent_out(z.to(host.intermediate_device()), model),)


class CVK_Regenerate:
    DESCRIPTION = ("I4VGen stage 3: fresh noise to the level of p_re on the sampler's grid (p_re 1 = the first "
                   "step, as official), then the normal sampler from there. Also useful on its own as video-to-"
                   "video at strength p_re.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = LATENT_OUT
    FUNCTION = "regenerate"
    NODE = "CVK_Regenerate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (VIDEO_MODEL, {"tooltip": "The video model."}),
            "latent": ("LATENT", {"tooltip": "The video to regenerate (from the NI-VSDS Animator)."}),
            **prompt_inputs(negative_tip="The unconditional branch of guidance (official: none)."),
            "p_re": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 1.0, "step": 0.01, "tooltip": (
                "Strength: the sampler starts int(steps·p_re) steps before the end (official AnimateDiff 1.0, "
                "LaVie 0.8).")}),
            "steps": _steps_input(),
            "sampler": (list(SAMPLERS), {"default": "ddim", "tooltip": "ddim (η = 0, official AnimateDiff) or ddpm "
                                                                       "(ancestral, official LaVie)."}),
            "cfg": _cfg_input(),
            "seed": seed_input(tooltip="Seeds the fresh regeneration noise (and ddpm's ancestral noise)."),
        }}

    def regenerate(self, model, latent, prompt, negative_prompt, p_re, steps, sampler, cfg, seed):
        node = self.NODE
        model = check_model(node, model)
        z = check_latent(node, latent, model)
        sigmas = sigmas_or_error(node, steps, lambda: model.sigmas(steps))
        try:
            start = i4vgen.regeneration_start(steps, p_re)
        except ValueError as e:
            raise CVKInputError(node, "p_re", p_re, problem=str(e)) from None
        cond, uncond = model.encode_prompt_pair(prompt, negative_prompt)
        with model.loaded(z.shape) as device:
            out = i4vgen.regenerate(model.denoiser(), z.to(device), sigmas, cond, uncond, cfg, p_re, eta_for(sampler, 0.0),
                                    seed, step_callback(steps - start, node))
        return (latent_out(out.to(host.intermediate_device()), model),)


NODE_CLASS_MAPPINGS = {c.__name__: c for c in (CVK_AnchorCandidates, CVK_AnchorSelector, CVK_NIVSDSAnimator, CVK_Regenerate)}
NODE_DISPLAY_NAME_MAPPINGS = {"CVK_AnchorCandidates": "Anchor Candidates (CVK I4VGen)",
                              "CVK_AnchorSelector": "Anchor Selector (CVK I4VGen)",
                              "CVK_NIVSDSAnimator": "NI-VSDS Animator (CVK I4VGen)",
                              "CVK_Regenerate": "Regenerate (CVK I4VGen)"}
