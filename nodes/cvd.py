"""CVD nodes: add the synchronisation modules to a CameraCtrl model, sample several views of one scene, and show
the views side by side."""
from __future__ import annotations

import os
import weakref

import torch

from .. import host
from ..camera.rays import plucker
from ..models.checkpoint import MODEL_EXTS, CheckpointError
from ..models.cvd import TINY_NAME, load_sync, patch_unet, tiny_sync
from ..samplers.epipolar_sync import nfe, official_settings, sample_sync
from ..samplers.guidance import guidance
from ..samplers.sampling import initial_latent
from ..samplers.vp import to_vp
from .camera import CAMERA, check_camera
from .cameractrl import DOWNSCALE
from .common import (CATEGORY_ROOT, CVKInputError, VIDEO_MODEL, check_file_name, check_model, latent_out,
                     prompt_lines, seed_input, sigmas_or_error)

CATEGORY = f"{CATEGORY_ROOT}/CVD"
FOLDER = "cvd"

host.register_model_folder(FOLDER, MODEL_EXTS)
_TINY = weakref.WeakKeyDictionary()


def sync_choices() -> list[str]:
    return [TINY_NAME] + host.list_models(FOLDER, MODEL_EXTS)


class CVK_CVDSyncLoader:
    DESCRIPTION = ("Adds CVD's synchronisation modules (arXiv 2405.17414) to a model with CameraCtrl: after every "
                   "motion module, each frame of a video attends to the same frame of a partner video, favouring the "
                   "tokens near its epipolar line, so several videos of one scene agree. Returns a new model sharing "
                   "the weights. CVD.ckpt goes in models/cvd.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (VIDEO_MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The model with CameraCtrl and CVD, for the Epipolar Sync Sampler.",)
    FUNCTION = "load"
    NODE = "CVK_CVDSyncLoader"
    FILE_INPUTS = ("sync_module",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (VIDEO_MODEL, {"tooltip": "An AnimateDiff v3 model with CameraCtrl (from Load CameraCtrl)."}),
            "sync_module": (sync_choices(), {"tooltip": (
                f"CVD.ckpt from models/{FOLDER}/. '{TINY_NAME}': built in code for the tiny AnimateDiff demo.")}),
        }}

    def load(self, model, sync_module):
        node = self.NODE
        model = check_model(node, model)
        if model.camera is None:
            raise CVKInputError(node, "model", model.name, "a model with CameraCtrl (from Load CameraCtrl): CVD runs on "
                                                           "CameraCtrl")
        if model.sync is not None:
            raise CVKInputError(node, "model", model.name, "a model without CVD sync modules (this one has them)")
        try:
            if sync_module == TINY_NAME:
                if not model.untrained:
                    raise CheckpointError(f"the tiny demo sync module fits only the tiny demo AnimateDiff, not {model.name}")
                sync = _TINY.get(model.unet) or _TINY.setdefault(model.unet, tiny_sync(model.unet))
            else:
                path = host.find_model(FOLDER, check_file_name(node, "sync_module", sync_module))
                sync = load_sync(path, model.unet, model.unet_part.dtype)
        except host.ModelFileNotFound as e:
            raise CVKInputError(node, "sync_module", sync_module, problem=str(e)) from None
        except CheckpointError as e:
            raise CVKInputError(node, "sync_module", sync_module, problem=str(e)) from None
        name = "tiny demo" if sync_module == TINY_NAME else os.path.splitext(os.path.basename(sync_module))[0]
        part, control = patch_unet(model.unet_part, host.ModelPart(sync, "diffusion", f"CVD {name}"))
        out = model.with_sync(part, control)
        out.name = f"{model.name} + CVD {name}"
        return (out,)


AUTO = "0 = the official value for this number of views"


class CVK_EpipolarSyncSampler:
    DESCRIPTION = ("CVD: several videos of one scene, one per view of the camera path, kept consistent by epipolar "
                   "attention between views. Size and frames come from the path (at most 16 frames). Each step, the "
                   "views are paired (at random for more than 2, averaged over accumulate_step pairings) and, for 3 or "
                   "more views, repeated multistep times with re-noising. Cost: (steps − 1)·multistep·accumulate + "
                   "accumulate network calls over all views. Official: 25 DDIM steps; 2 views CFG 8.5; 4 views CFG 14, "
                   "multistep 3; 6 views CFG 14, multistep 6, accumulate 2.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The V videos' latents [views, C, frames, height/8, width/8], in view order.",)
    FUNCTION = "sample"
    NODE = "CVK_EpipolarSyncSampler"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (VIDEO_MODEL, {"tooltip": "A model with CameraCtrl and CVD (from Load CVD Sync Module)."}),
            "camera": (CAMERA, {"tooltip": "V ≥ 2 camera paths sharing their first camera (Camera Trajectory's "
                                           "patterns); size and frame count are the videos'."}),
            "prompt": ("STRING", {"multiline": True, "default": "a red panda walking through a bamboo forest",
                                  "tooltip": "One line per view (line 1 for view 0, …); with fewer lines than views "
                                             "the last line repeats, so a single line serves every view. Do not wrap "
                                             "one long prompt over several lines."}),
            "negative_prompt": ("STRING", {"multiline": True, "default": "",
                                           "tooltip": "The unconditional branch, for every view."}),
            "seed": seed_input(tooltip="Seeds the videos' noise, the pairings, the re-noising and the frame-0 line "
                                       "angles; a seed gives the same videos on any device."),
            "steps": ("INT", {"default": 25, "min": 1, "max": 1000, "tooltip": "Denoising steps (official 25)."}),
            "cfg": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 100.0, "step": 0.1,
                              "tooltip": f"CFG scale; {AUTO} (8.5 for 2 views, 14 for more)."}),
            "multistep": ("INT", {"default": 0, "min": 0, "max": 32, "tooltip": (
                f"Times each step is done, re-noising in between, so that views paired differently agree; {AUTO} "
                f"(1 for 2 views, 3 for 3–4, 6 for more).")}),
            "accumulate_step": ("INT", {"default": 0, "min": 0, "max": 32, "tooltip": (
                f"Pairings averaged per step; {AUTO} (1 up to 4 views, 2 for more).")}),
            "views_per_batch": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip": (
                "Views per network call when memory is short (each view with its partner); 0 = all views at once. "
                "The result does not change.")}),
        }}

    def sample(self, model, camera, prompt, negative_prompt, seed, steps, cfg, multistep, accumulate_step,
               views_per_batch):
        node = self.NODE
        model = check_model(node, model)
        if model.sync is None or model.camera is None:
            raise CVKInputError(node, "model", model.name, "a model with CameraCtrl and CVD (Load CameraCtrl, then "
                                                           "Load CVD Sync Module)")
        camera = check_camera(node, camera)
        V = camera.views
        if V < 2:
            raise CVKInputError(node, "camera", camera, "a path of at least 2 views (Camera Trajectory's circle, "
                                                        "upper_hemi or interpolate)")
        encoder = model.camera.module.pose_encoder
        multiple = DOWNSCALE * 2 ** (encoder.levels - 1)
        if camera.width % multiple or camera.height % multiple:
            raise CVKInputError(node, "camera", camera, f"a path whose width and height are multiples of {multiple} "
                                                        f"for this model (set them in the camera node)")
        if camera.frames > encoder.rows:
            raise CVKInputError(node, "camera", camera, f"a path of at most {encoder.rows} frames, CameraCtrl's limit "
                                                        f"(set frames in the camera node)")
        auto_cfg, auto_m, auto_a = official_settings(V)
        cfg, M, A = cfg or auto_cfg, multistep or auto_m, accumulate_step or auto_a
        if views_per_batch and 0 < views_per_batch < (3 if V % 2 else 2):
            raise CVKInputError(node, "views_per_batch", views_per_batch,
                                f"0 or at least {3 if V % 2 else 2} for {V} views (each view needs its partner in "
                                f"the same call{'; with an odd count three views form a cycle' if V % 2 else ''})")
        sigmas = sigmas_or_error(node, steps, lambda: model.sigmas(steps))
        prompts = prompt_lines(node, "prompt", prompt, V)
        text = model.text.encode(prompts + [negative_prompt])
        cond_text, uncond_text = text[:V], text[V:].expand(V, *text.shape[1:])
        rays = torch.stack([plucker(camera.K[v], camera.c2w[v], camera.height, camera.width) for v in range(V)])
        shape = model.latent_shape(camera.frames, camera.width, camera.height, batch=V)
        bar = host.Progress(nfe(steps, M, A), node)
        with model.loaded(shape) as device, model.sync.cameras(camera.K, camera.c2w, (camera.height, camera.width),
                                                               device):
            features = model.camera.encode(rays.transpose(1, 2).to(torch.float32))     # (V, 6, F, H, W)
            denoise = model.denoiser()

            def model_for(pairing, theta):
                def call(x, sigma, views):
                    host.check_interrupt()
                    cond = {"text": cond_text[views], "camera": [f[views] for f in features]}
                    uncond = {"text": uncond_text[views], "camera": cond["camera"]}
                    with model.sync.call(pairing, theta, views):
                        return guidance(denoise, cond, uncond, cfg, "cfg")(x, sigma)
                return call

            x = initial_latent(shape, sigmas, seed, device)
            x = sample_sync(model_for, x, sigmas, M, A, views_per_batch, seed, lambda *a: bar.update(1))
        bar.close()
        return (latent_out(to_vp(x, float(sigmas[-1])).to(host.intermediate_device()), model),)


class CVK_ViewGrid:
    DESCRIPTION = ("Shows the views of a multi-view result side by side: V videos' frames, decoded one video after "
                   "another (Decode Video of a multi-view latent), become one IMAGE per frame with the views left to "
                   "right, so consistency shows at a glance.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("[frames, height, views·width, 3]: frame f of every view in a row.",)
    FUNCTION = "grid"
    NODE = "CVK_ViewGrid"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "V·F frames: all frames of view 0, then view 1, …"}),
            "views": ("INT", {"default": 2, "min": 1, "max": 64, "tooltip": (
                "How many videos the frames hold: the camera path's view count (it must match, or the panels mix "
                "views).")}),
        }}

    def grid(self, images, views):
        node = self.NODE
        if not torch.is_tensor(images) or images.ndim != 4:
            raise CVKInputError(node, "images", images, "an IMAGE batch [frames, height, width, channels]")
        if images.shape[0] % views:
            raise CVKInputError(node, "views", views, f"a number that divides the {images.shape[0]} frames given")
        v, f = views, images.shape[0] // views
        return (images.reshape(v, f, *images.shape[1:]).permute(1, 2, 0, 3, 4).reshape(f, images.shape[1],
                                                                                       v * images.shape[2], -1),)


NODE_CLASS_MAPPINGS = {c.__name__: c for c in (CVK_CVDSyncLoader, CVK_EpipolarSyncSampler, CVK_ViewGrid)}
NODE_DISPLAY_NAME_MAPPINGS = {"CVK_CVDSyncLoader": "Load CVD Sync Module (CVK)",
                              "CVK_EpipolarSyncSampler": "Epipolar Sync Sampler (CVK CVD)",
                              "CVK_ViewGrid": "View Grid (CVK CVD)"}
