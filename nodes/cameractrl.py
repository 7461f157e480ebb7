"""CameraCtrl nodes: condition an AnimateDiff v3 model on a camera path, and sample it."""
from __future__ import annotations

import os
import weakref

import torch

from .. import host
from ..camera.rays import plucker
from ..models.cameractrl import DOWNSCALE, TINY_NAME, load_cameractrl, patch_unet, tiny_cameractrl
from ..models.checkpoint import MODEL_EXTS, CheckpointError
from ..samplers.sampling import SAMPLERS, eta_for, sample
from .camera import CAMERA, check_camera
from .common import (CATEGORY_ROOT, CVKInputError, VIDEO_MODEL, check_file_name, check_model, latent_out,
                     prompt_inputs, seed_input, sigmas_or_error, step_callback)

CATEGORY = f"{CATEGORY_ROOT}/CameraCtrl"
FOLDER = "cameractrl"

host.register_model_folder(FOLDER, MODEL_EXTS)
_TINY = weakref.WeakKeyDictionary()   # the tiny demo CameraCtrl, built once per UNet


def cameractrl_choices() -> list[str]:
    return [TINY_NAME] + host.list_models(FOLDER, MODEL_EXTS)


class CVK_CameraCtrlLoader:
    DESCRIPTION = ("Adds CameraCtrl (arXiv 2404.02101) to an AnimateDiff v3 model: a pose encoder turns the camera "
                   "path's per-pixel Plücker rays into features that steer the first temporal attention of every "
                   "motion module. Returns a new model that shares the weights; the model given stays as it is. "
                   "CameraCtrl.ckpt (the released file, or AnimateDiff-Evolved's CameraCtrl_pruned) goes in "
                   "models/cameractrl. CameraCtrl was trained on SD1.5 with AnimateDiff's v3 domain adapter merged "
                   "in; CVD's demos use RealisticVision without it (see the README).")
    CATEGORY = CATEGORY
    RETURN_TYPES = (VIDEO_MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The model with CameraCtrl, for CameraCtrl Sampler.",)
    FUNCTION = "load"
    NODE = "CVK_CameraCtrlLoader"
    FILE_INPUTS = ("cameractrl",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (VIDEO_MODEL, {"tooltip": "An AnimateDiff model with a v3 motion module (v3_sd15_mm)."}),
            "cameractrl": (cameractrl_choices(), {"tooltip": (
                f"CameraCtrl.ckpt from models/{FOLDER}/ (the two-dict release or AnimateDiff-Evolved's flat file). "
                f"'{TINY_NAME}': built in code for the tiny AnimateDiff demo.")}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05, "tooltip": (
                "How strongly the camera path steers the motion: 1 as trained, 0 = plain AnimateDiff, above 1 "
                "exaggerates it.")}),
        }}

    def load(self, model, cameractrl, strength):
        node = self.NODE
        model = check_model(node, model)
        if model.family != "animatediff":
            raise CVKInputError(node, "model", model.name, "an AnimateDiff model (CameraCtrl steers AnimateDiff v3's "
                                                           "motion modules)")
        if model.camera is not None:
            raise CVKInputError(node, "model", model.name, "a model without CameraCtrl (this one has it already)")
        try:
            if cameractrl == TINY_NAME:
                if not model.untrained:
                    raise CheckpointError(f"the tiny demo CameraCtrl fits only the tiny demo AnimateDiff, not "
                                          f"{model.name}")
                cc = _TINY.get(model.unet) or _TINY.setdefault(model.unet, tiny_cameractrl(model.unet))
            else:
                path = host.find_model(FOLDER, check_file_name(node, "cameractrl", cameractrl))
                cc = load_cameractrl(path, model.unet, model.unet_part.dtype)
        except host.ModelFileNotFound as e:
            raise CVKInputError(node, "cameractrl", cameractrl, problem=str(e)) from None
        except CheckpointError as e:
            raise CVKInputError(node, "cameractrl", cameractrl, problem=str(e)) from None
        name = "tiny demo" if cameractrl == TINY_NAME else os.path.splitext(os.path.basename(cameractrl))[0]
        part, control = patch_unet(model.unet_part, host.ModelPart(cc, "diffusion", f"CameraCtrl {name}"), strength)
        out = model.with_camera(part, control)
        out.name = f"{model.name} + CameraCtrl {name}"
        return (out,)


class CVK_CameraCtrlSampler:
    DESCRIPTION = ("Text-to-video that follows one view of a camera path (CameraCtrl): size and frame count come from "
                   "the path (at most 16 frames, CameraCtrl's limit; width and height multiples of 64 for SD1.5). "
                   "The pose features are computed once and steer both CFG branches, as the official code does. "
                   "Official defaults: 25 DDIM steps, CFG 7.5, 256×384.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The video latent [1, C, frames, height/8, width/8].",)
    FUNCTION = "sample"
    NODE = "CVK_CameraCtrlSampler"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (VIDEO_MODEL, {"tooltip": "A model with CameraCtrl (from Load CameraCtrl)."}),
            "camera": (CAMERA, {"tooltip": "The camera path (Camera Trajectory, Load Camera Poses, …); its size and "
                                           "frame count are the video's."}),
            "view": ("INT", {"default": 0, "min": 0, "max": 63, "tooltip": "Which view of the path to film."}),
            **prompt_inputs(),
            "seed": seed_input(),
            "steps": ("INT", {"default": 25, "min": 1, "max": 1000, "tooltip": "Denoising steps (official 25)."}),
            "cfg": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 100.0, "step": 0.1,
                              "tooltip": "CFG scale (official 7.5)."}),
            "sampler": (list(SAMPLERS), {"default": "ddim", "tooltip": "ddim (η = 0, official) or ddpm (ancestral)."}),
        }}

    def sample(self, model, camera, view, prompt, negative_prompt, seed, steps, cfg, sampler):
        node = self.NODE
        model = check_model(node, model)
        if model.camera is None:
            raise CVKInputError(node, "model", model.name, "a model with CameraCtrl (from Load CameraCtrl)")
        camera = check_camera(node, camera)
        if view >= camera.views:
            raise CVKInputError(node, "view", view, f"a view index below {camera.views}")
        encoder = model.camera.module.pose_encoder
        multiple = DOWNSCALE * 2 ** (encoder.levels - 1)
        if camera.width % multiple or camera.height % multiple:
            raise CVKInputError(node, "camera", camera, f"a path whose width and height are multiples of {multiple} "
                                                        f"for this model (set them in the camera node)")
        limit = min(encoder.rows, model.max_frames or encoder.rows)
        if camera.frames > limit:
            raise CVKInputError(node, "camera", camera, f"a path of at most {limit} frames, CameraCtrl's limit (set "
                                                        f"frames in the camera node)")
        sigmas = sigmas_or_error(node, steps, lambda: model.sigmas(steps))
        cond, uncond = model.encode_prompt_pair(prompt, negative_prompt)
        rays = plucker(camera.K[view], camera.c2w[view], camera.height, camera.width)      # (F, 6, H, W)
        shape = model.latent_shape(camera.frames, camera.width, camera.height)
        with model.loaded(shape) as device:
            features = model.camera.encode(rays.transpose(0, 1)[None].to(torch.float32))
            cond, uncond = dict(cond, camera=features), dict(uncond, camera=features)
            z = sample(model.denoiser(), shape, sigmas, cond, uncond, cfg, "cfg", eta_for(sampler, 0.0), seed, device,
                       step_callback(steps, node))
        return (latent_out(z.to(host.intermediate_device()), model),)


NODE_CLASS_MAPPINGS = {"CVK_CameraCtrlLoader": CVK_CameraCtrlLoader, "CVK_CameraCtrlSampler": CVK_CameraCtrlSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"CVK_CameraCtrlLoader": "Load CameraCtrl (CVK)",
                              "CVK_CameraCtrlSampler": "CameraCtrl Sampler (CVK)"}
