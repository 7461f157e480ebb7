"""LVDM nodes: load an LVDM 3-D-AE model (short unconditional, pred, interp) and sample unconditional videos."""
from __future__ import annotations

from .. import host
from ..models.checkpoint import MODEL_EXTS, CheckpointError
from ..models.loaders import ATTENTIONS, PRECISIONS, LoadOptionError
from ..models.lvdm.model import CUSTOM, FROM_FILE, LVDM_FOLDER, PRESETS, WEIGHTS, load_lvdm
from ..models.tiny import TINY_LVDM_FAMILIES, tiny_lvdm
from ..samplers.sampling import SAMPLERS, eta_for, sample
from .common import (CATEGORY_ROOT, UNCONDITIONAL, VIDEO_MODEL, CVKInputError, check_file_name, check_model,
                     check_size, latent_out, sampler_sigmas, seed_input, step_callback, video_size_inputs)

CATEGORY = f"{CATEGORY_ROOT}/LVDM"
UNTRAINED = " (untrained demo)"
LVDM_PREFIX, CHECKPOINTS = f"{LVDM_FOLDER}/", "checkpoints/"
NONE = "none"
NATIVE = " (native: 256 for sky and taichi, 128 for the endoscopy presets)"

host.register_model_folder(LVDM_FOLDER, MODEL_EXTS)


def model_choices() -> list[str]:
    """The tiny demos (short, pred, interp), then files in models/lvdm, then files in models/checkpoints (the released
    short models carry their AE, so they may sit with other checkpoints)."""
    return ([n + UNTRAINED for n in TINY_LVDM_FAMILIES] + [LVDM_PREFIX + f for f in host.list_models(LVDM_FOLDER, MODEL_EXTS)]
            + [CHECKPOINTS + f for f in host.list_models("checkpoints", MODEL_EXTS)])


def ae_choices() -> list[str]:
    return [NONE] + host.list_models(LVDM_FOLDER, MODEL_EXTS)


class CVK_LVDMLoader:
    DESCRIPTION = ("Loads an LVDM model (arXiv 2211.13221) of the 3-D video autoencoder family: the short "
                   "unconditional model (short_sky.ckpt, short_taichi.ckpt, the endoscopy fork's models) or the "
                   "long-video pred/interp models, with its 3-D video AE (bundled in the checkpoint, or a separate "
                   "ae_*.ckpt) and the latent normalisation of its dataset. Files go in models/lvdm (or "
                   "models/checkpoints). The tiny demos (short, pred, interp) are untrained, built in code; their "
                   "output is noise-like.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (VIDEO_MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The LVDM model bundle (UNet, noise table, 3-D video AE), for LVDM Unconditional Video and Decode "
                       "Video.",)
    FUNCTION = "load"
    NODE = "CVK_LVDMLoader"
    FILE_INPUTS = ("model_name", "ae")

    @classmethod
    def INPUT_TYPES(cls):
        presets = "; ".join(f"{k}: scale {p.scale:g}, shift {p.shift:g}, {p.size} px" for k, p in PRESETS.items())
        return {"required": {
            "model_name": (model_choices(), {"tooltip": (
                f"An LVDM checkpoint: lvdm/… (models/{LVDM_FOLDER}) or checkpoints/… (short, pred or interp; the kind "
                f"is read from the file), or a tiny untrained demo (short, pred or interp).")}),
            "ae": (ae_choices(), {"default": NONE, "tooltip": (
                f"A separate video AE (ae_*.ckpt from models/{LVDM_FOLDER}) replacing the one inside the checkpoint; "
                f"'{NONE}': the checkpoint's own.")}),
            "preset": (list(PRESETS) + [CUSTOM, FROM_FILE], {"default": "sky", "tooltip": (
                f"The dataset whose latent normalisation z = scale·(z_raw + shift) the model was trained with. "
                f"{presets}. The endoscopy presets (col, kvasir, cholec) use the sky values, as the fork's configs "
                f"do. '{CUSTOM}': scale and shift below, for your own AE. '{FROM_FILE}': the values a model trained "
                f"with the pack's trainer carries (computed on its training data).")}),
            "scale": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 100.0, "step": 0.0001, "tooltip": (
                f"Latent scale for preset '{CUSTOM}' (> 0; a trained AE's 1/std of its shifted latents). Leave 0 with "
                f"the named presets.")}),
            "shift": ("FLOAT", {"default": 0.0, "min": -100.0, "max": 100.0, "step": 0.0001, "tooltip": (
                f"Latent shift for preset '{CUSTOM}' (−mean of the raw latents). Leave 0 with the named presets.")}),
            "weights": (list(WEIGHTS), {"default": "ema", "tooltip": (
                "ema: the EMA weights, as the official sampler uses them. raw: the trained weights as they are.")}),
            "precision": (list(PRECISIONS), {"default": "auto", "tooltip": (
                "auto: fp32 on CPU; on a GPU fp16 UNet and bf16 AE (fp32 where bf16 is missing).")}),
            "attention": (list(ATTENTIONS), {"default": "sdpa", "tooltip": (
                "sdpa: PyTorch's attention (default). xformers: only when installed and on a CUDA GPU.")}),
        }}

    def load(self, model_name, ae, preset, scale, shift, weights, precision, attention):
        node = self.NODE
        if preset != CUSTOM and (scale, shift) != (0.0, 0.0):
            raise CVKInputError(node, "preset", preset, f"'{CUSTOM}' to use your own scale and shift (or scale and "
                                                        f"shift left at 0 for the {preset} values)")
        if preset == CUSTOM and not scale > 0:
            raise CVKInputError(node, "scale", scale, f"a scale > 0 with preset '{CUSTOM}'")
        tiny = model_name[:-len(UNTRAINED)] if model_name.endswith(UNTRAINED) else None
        if tiny in TINY_LVDM_FAMILIES and preset == FROM_FILE:
            raise CVKInputError(node, "preset", preset, "a named preset or 'custom' for the tiny demo (it comes from no "
                                                        "file)")
        if tiny in TINY_LVDM_FAMILIES:
            for field, value, ok in (("ae", ae, NONE), ("weights", weights, "ema"), ("precision", precision, "auto"),
                                     ("attention", attention, "sdpa")):
                if value != ok and not (field == "precision" and value == "fp32"):
                    raise CVKInputError(node, field, value, f"'{ok}' for the tiny demo (it is built in code, in "
                                                            f"fp32, with SDPA)")
            return (tiny_lvdm(preset, scale or None, shift if preset == CUSTOM else None, tiny),)
        check_file_name(node, "model_name", model_name)
        if ae != NONE:
            check_file_name(node, "ae", ae)
        if model_name.startswith(LVDM_PREFIX):
            kind, rel = LVDM_FOLDER, model_name[len(LVDM_PREFIX):]
        elif model_name.startswith(CHECKPOINTS):
            kind, rel = "checkpoints", model_name[len(CHECKPOINTS):]
        else:
            raise CVKInputError(node, "model_name", model_name, f"the demo, '{LVDM_PREFIX}<file>' or "
                                                                f"'{CHECKPOINTS}<file>'")
        field, value = "model_name", model_name
        try:
            path = host.find_model(kind, rel)
            ae_path = None
            if ae != NONE:
                field, value = "ae", ae
                ae_path = host.find_model(LVDM_FOLDER, ae)
                field, value = "model_name", model_name
            return (load_lvdm(path, ae_path, preset, scale if preset == CUSTOM else None,
                              shift if preset == CUSTOM else None, weights, precision, attention),)
        except host.ModelFileNotFound as e:
            raise CVKInputError(node, field, value, problem=str(e)) from None
        except CheckpointError as e:
            field = "ae" if e.role == "ae" else "model_name"
            raise CVKInputError(node, field, ae if field == "ae" else model_name, problem=str(e)) from None
        except LoadOptionError as e:
            raise CVKInputError(node, e.input, {"precision": precision, "attention": attention}[e.input],
                                problem=str(e)) from None


class CVK_UnconditionalVideo:
    DESCRIPTION = ("Samples videos from an unconditional LVDM model (no prompt): DDIM (50 steps, η = 1 by default, "
                   "as the official long-video script samples) or DDPM (1000 ancestral steps, the official short-video "
                   "script's default). Decode the latent with Decode Video (CVK).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The video latent [1, 4, frames/4, height/8, width/8] in the model's 3-D AE space.",)
    FUNCTION = "generate"
    NODE = "CVK_UnconditionalVideo"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (VIDEO_MODEL, {"tooltip": "An unconditional LVDM model (from Load LVDM Model)."}),
            "seed": seed_input(),
            "steps": ("INT", {"default": 50, "min": 1, "max": 1000, "tooltip": (
                "Denoising steps (model calls). ddim: 50 as the official script; ddpm: 1000 is the official "
                "sampler, fewer steps are respaced.")}),
            "sampler": (list(SAMPLERS), {"default": "ddim", "tooltip": (
                "ddim: timesteps 1 + k·(1000/steps), ending at ᾱ₀ (lvdm/samplers/ddim.py). ddpm: ancestral "
                "(η = 1) on timesteps k·(1000/steps), ending at the clean sample (steps 1000: the official DDPM "
                "loop).")}),
            "eta": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": (
                "DDIM η: 1 as the official scripts (stochastic), 0 deterministic. Sampler ddpm is η = 1.")}),
            "frames": ("INT", {"default": 16, "min": 4, "max": 1024, "step": 4, "tooltip": (
                "Video frames, a multiple of 4 (4 frames per latent). The models were trained on 16; more frames run "
                "as one clip whose temporal attention sees farther latents at the clipped distance of its position "
                "table (quality drops): use the long-video nodes for long videos.")}),
            **{k: v for k, v in video_size_inputs(16, 256, 256, NATIVE).items() if k != "frames"},
        }}

    def generate(self, model, seed, steps, sampler, eta, frames, width, height):
        node = self.NODE
        model = check_model(node, model, kind=UNCONDITIONAL)
        check_size(node, width, height, model.latent_format.spatial_factor)
        tf = model.latent_format.temporal_factor
        if frames % tf:
            raise CVKInputError(node, "frames", frames, f"a multiple of {tf} ({model.name}'s AE makes {tf} frames per "
                                                        f"latent)")
        if sampler == "ddpm" and eta != 1.0:
            raise CVKInputError(node, "eta", eta, "1 with sampler ddpm (ddpm is η = 1); choose sampler ddim for other η")
        sigmas = sampler_sigmas(node, model, sampler, steps)
        shape = model.latent_shape(frames, width, height)
        with model.loaded(shape) as device:
            z = sample(model.denoiser(), shape, sigmas, {}, None, 1.0, "cfg", eta_for(sampler, eta), seed, device,
                       step_callback(steps, node))
        return (latent_out(z.to(host.intermediate_device()), model),)


NODE_CLASS_MAPPINGS = {
    "CVK_LVDMLoader": CVK_LVDMLoader,
    "CVK_UnconditionalVideo": CVK_UnconditionalVideo,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "CVK_LVDMLoader": "Load LVDM Model (CVK)",
    "CVK_UnconditionalVideo": "LVDM Unconditional Video (CVK)",
}
