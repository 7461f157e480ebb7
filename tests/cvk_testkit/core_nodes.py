"""Minimal stand-ins for the core ComfyUI nodes our workflows use (same ids, inputs and outputs)."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


class _Dirs:
    output = "output"
    temp = "temp"
    input = "input"


DIRS = _Dirs()


def _save(images: torch.Tensor, folder: str, prefix: str, kind: str) -> dict:
    os.makedirs(folder, exist_ok=True)
    existing = [f for f in os.listdir(folder) if f.startswith(prefix + "_") and f.endswith("_.png")]
    counter = len(existing) + 1
    saved = []
    for img in images:
        arr = (img.clamp(0, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
        name = f"{prefix}_{counter:05d}_.png"
        Image.fromarray(arr).save(os.path.join(folder, name))
        saved.append({"filename": name, "subfolder": "", "type": kind})
        counter += 1
    return {"ui": {"images": saved}, "result": ()}


class SaveImage:
    CATEGORY = "image"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_images(self, images, filename_prefix="ComfyUI"):
        return _save(images, DIRS.output, filename_prefix, "output")


class PreviewImage:
    CATEGORY = "image"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    def save_images(self, images):
        return _save(images, DIRS.temp, "ComfyUI_temp", "temp")


class LoadImage:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls):
        files = sorted(os.listdir(DIRS.input)) if os.path.isdir(DIRS.input) else []
        return {"required": {"image": (files, {"image_upload": True})}}

    def load_image(self, image):
        img = Image.open(os.path.join(DIRS.input, image))
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        t = torch.from_numpy(rgba)
        mask = 1.0 - t[..., 3] if "A" in img.getbands() else torch.zeros(t.shape[:2])
        return (t[None, ..., :3], mask[None])


class ImageScale:
    """Core ``ImageScale`` (inputs and widget order as in ComfyUI): resize, optionally centre-cropping to the
    target aspect first."""
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "upscale_method": (cls.METHODS,),
                             "width": ("INT", {"default": 512, "min": 0, "max": 16384, "step": 1}),
                             "height": ("INT", {"default": 512, "min": 0, "max": 16384, "step": 1}),
                             "crop": (["disabled", "center"],)}}

    def upscale(self, image, upscale_method, width, height, crop):
        x = image.permute(0, 3, 1, 2)
        if crop == "center":
            H, W = x.shape[-2:]
            if W / H > width / height:
                w = round(H * width / height)
                x = x[..., :, (W - w) // 2:(W - w) // 2 + w]
            else:
                h = round(W * height / width)
                x = x[..., (H - h) // 2:(H - h) // 2 + h, :]
        mode = {"nearest-exact": "nearest-exact", "lanczos": "bicubic"}.get(upscale_method, upscale_method)
        x = torch.nn.functional.interpolate(x, size=(height, width), mode=mode)
        return (x.clamp(0, 1).permute(0, 2, 3, 1),)


class EmptyLatentImage:
    """Core ``EmptyLatentImage``: a 4-D image latent ``{"samples": zeros[batch, 4, height/8, width/8]}``."""
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"width": ("INT", {"default": 512, "min": 16, "max": 16384, "step": 8}),
                             "height": ("INT", {"default": 512, "min": 16, "max": 16384, "step": 8}),
                             "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    def generate(self, width, height, batch_size=1):
        return ({"samples": torch.zeros(batch_size, 4, height // 8, width // 8)},)


@dataclass(frozen=True)
class Video:
    """What core ``CreateVideo`` outputs (a ``VIDEO``), reduced to what the stand-ins need: the frames
    ``[F, H, W, 3]`` in 0..1, the frame rate and the bit depth."""
    images: torch.Tensor
    fps: float
    bit_depth: int = 8

    def get_dimensions(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[1])


class CreateVideo:
    """Core ``CreateVideo`` (ComfyUI 0.33, comfy_extras/nodes_video.py): ``images``, ``fps`` (30, 1..120), optional
    ``audio`` and ``bit_depth`` (8, 8..10 step 2) → ``VIDEO``. Checks the frames are a video it can make."""
    CATEGORY = "video"
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",),
                             "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0, "step": 1.0})},
                "optional": {"audio": ("AUDIO",),
                             "bit_depth": ("INT", {"default": 8, "min": 8, "max": 10, "step": 2})}}

    def execute(self, images, fps, audio=None, bit_depth=8):
        if not (isinstance(images, torch.Tensor) and images.ndim == 4 and images.shape[-1] in (3, 4)):
            raise ValueError(f"CreateVideo: images must be an IMAGE batch [frames, height, width, 3], got "
                             f"{getattr(images, 'shape', type(images).__name__)}")
        if images.shape[0] < 1 or not math.isfinite(fps) or fps <= 0 or bit_depth not in (8, 10):
            raise ValueError(f"CreateVideo: {images.shape[0]} frames at {fps} fps, bit depth {bit_depth}")
        return (Video(images, float(fps), int(bit_depth)),)


class SaveVideo:
    """Core ``SaveVideo`` as the frontend (1.49) sends it: ``video``, ``filename_prefix`` ("video/ComfyUI"), and its
    dynamic combo ``format`` flattened into the widgets it shows: ``format`` (auto/mp4/mkv/webm), ``format.codec``
    (auto/h264/av1) and the hidden optional ``codec``. Widget values are stored in that order.

    Checks what ComfyUI's encoder needs (at least one frame, even width and height for yuv420p, values in 0..1,
    a positive frame rate; WebM only with AV1), then writes the frames as an animated PNG
    ``<prefix>_00001_.apng`` (PyAV is not a test dependency) and answers like ComfyUI's PreviewVideo."""
    CATEGORY = "video"
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "save_video"
    OUTPUT_NODE = True
    FORMATS = ["auto", "mp4", "mkv", "webm"]
    CODECS = ["auto", "h264", "av1"]

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"video": ("VIDEO",), "filename_prefix": ("STRING", {"default": "video/ComfyUI"}),
                             "format": (cls.FORMATS,), "format.codec": (cls.CODECS,)},
                "optional": {"codec": (cls.CODECS,)},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_video(self, video, filename_prefix, format, codec="auto", **dynamic):
        codec = dynamic.get("format.codec", codec)
        if format == "webm" and codec not in ("auto", "av1"):
            raise ValueError("SaveVideo: WebM output requires the AV1 codec")
        frames = video.images
        n, h, w = (int(x) for x in frames.shape[:3])
        if n < 1 or h % 2 or w % 2:
            raise ValueError(f"SaveVideo: {n} frames of {w}×{h}: yuv420p needs at least one frame and even sizes")
        if not torch.isfinite(frames).all() or frames.min() < 0 or frames.max() > 1:
            raise ValueError("SaveVideo: frame values must be finite and in 0..1")
        if not (math.isfinite(video.fps) and 0 < video.fps <= 1000):
            raise ValueError(f"SaveVideo: frame rate {video.fps}")
        subfolder, name = os.path.split(os.path.normpath(filename_prefix))
        folder = os.path.join(DIRS.output, subfolder)
        os.makedirs(folder, exist_ok=True)
        numbered = re.compile(re.escape(name) + r"_(\d{5})_\..+")
        taken = [int(m.group(1)) for f in os.listdir(folder) if (m := numbered.fullmatch(f))]
        file = f"{name}_{max(taken, default=0) + 1:05d}_.apng"
        arr = (frames[..., :3].cpu().numpy() * 255.0).round().astype(np.uint8)
        pics = [Image.fromarray(a) for a in arr]
        pics[0].save(os.path.join(folder, file), format="PNG", save_all=True, append_images=pics[1:],
                     duration=round(1000 / video.fps), loop=0)
        return {"ui": {"images": [{"filename": file, "subfolder": subfolder, "type": "output"}], "animated": (True,)},
                "result": (video,)}


# ---------------------------------------------------------------- type-only stand-ins
# For prompts that only have to validate (the bad-input suite): inputs, outputs and category as ComfyUI 0.33
# declares them (nodes.py, comfy_extras/nodes_custom_sampler.py; its V3 combos written as lists, as /object_info's V1
# form reads), the function names its legacy aliases. Run, they raise.

STAND_IN_ONLY = "type-only stand-in: runs only in a real ComfyUI"


def _not_here(self, **_inputs):
    raise NotImplementedError(STAND_IN_ONLY)


class CheckpointLoaderSimple:
    """Core ``CheckpointLoaderSimple``: ``ckpt_name`` (the files in ``$CVK_MODELS_DIR/checkpoints``, else none) →
    MODEL, CLIP, VAE."""
    CATEGORY = "model/loaders"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load_checkpoint"
    load_checkpoint = _not_here

    @classmethod
    def INPUT_TYPES(cls):
        folder = os.path.join(os.environ["CVK_MODELS_DIR"], "checkpoints") if os.environ.get("CVK_MODELS_DIR") else None
        files = sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f))) \
            if folder and os.path.isdir(folder) else []
        return {"required": {"ckpt_name": (files,)}}


class CLIPTextEncode:
    CATEGORY = "model/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    encode = _not_here

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"multiline": True, "dynamicPrompts": True}), "clip": ("CLIP",)}}


class VAEDecode:
    CATEGORY = "model/latent"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"
    decode = _not_here

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "vae": ("VAE",)}}


class RandomNoise:
    CATEGORY = "model/sampling/noise"
    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"
    get_noise = _not_here

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"noise_seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff,
                                                    "control_after_generate": True})}}


class CFGGuider:
    CATEGORY = "model/sampling/guiders"
    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"
    get_guider = _not_here

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01})}}


class BasicScheduler:
    CATEGORY = "model/sampling/schedulers"
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"
    get_sigmas = _not_here
    SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                  "linear_quadratic", "kl_optimal"]                   # comfy.samplers.SCHEDULER_NAMES

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "scheduler": (cls.SCHEDULERS,),
                             "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}


class SamplerCustomAdvanced:
    """Core ``SamplerCustomAdvanced``: NOISE, GUIDER, SAMPLER, SIGMAS, LATENT → ``output``, ``denoised_output``."""
    CATEGORY = "model/sampling/custom"
    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("output", "denoised_output")
    FUNCTION = "sample"
    sample = _not_here

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"noise": ("NOISE",), "guider": ("GUIDER",), "sampler": ("SAMPLER",),
                             "sigmas": ("SIGMAS",), "latent_image": ("LATENT",)}}


class KSampler:
    """Core ``KSampler`` (type only)."""
    CATEGORY = "model/sampling"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    sample = _not_here
    SAMPLERS = ["euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
                "exp_heun_2_x0", "exp_heun_2_x0_sde", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive",
                "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m",
                "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu",
                "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis", "res_multistep",
                "res_multistep_cfg_pp", "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp",
                "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2", "seeds_3", "sa_solver",
                "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2"]          # comfy.samplers.SAMPLER_NAMES

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            "sampler_name": (cls.SAMPLERS,), "scheduler": (BasicScheduler.SCHEDULERS,),
            "positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "latent_image": ("LATENT",),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}


class ADE_AnimateDiffLoaderGen1:
    """AnimateDiff-Evolved's ``AnimateDiff Loader 🎭🅐🅓①`` (type only): MODEL + motion module file (the files in
    ``$CVK_MODELS_DIR/animatediff_models``) + beta schedule → MODEL; its optional inputs left out."""
    CATEGORY = "Animate Diff 🎭🅐🅓"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_mm_and_inject_params"
    load_mm_and_inject_params = _not_here
    BETA_SCHEDULES = ["autoselect", "use existing", "sqrt_linear (AnimateDiff)", "linear (AnimateDiff-SDXL)",
                      "linear (HotshotXL/default)", "avg(sqrt_linear,linear)", "lcm avg(sqrt_linear,linear)", "lcm",
                      "lcm[100_ots]", "lcm >> sqrt_linear", "sqrt", "cosine", "squaredcos_cap_v2"]

    @classmethod
    def INPUT_TYPES(cls):
        folder = os.path.join(os.environ.get("CVK_MODELS_DIR", ""), "animatediff_models")
        files = sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f))) \
            if os.environ.get("CVK_MODELS_DIR") and os.path.isdir(folder) else []
        return {"required": {"model": ("MODEL",), "model_name": (files,),
                             "beta_schedule": (cls.BETA_SCHEDULES, {"default": "autoselect"})}}


CORE_NODES = {"SaveImage": SaveImage, "PreviewImage": PreviewImage, "LoadImage": LoadImage, "ImageScale": ImageScale,
              "EmptyLatentImage": EmptyLatentImage, "CreateVideo": CreateVideo, "SaveVideo": SaveVideo,
              "CheckpointLoaderSimple": CheckpointLoaderSimple, "CLIPTextEncode": CLIPTextEncode,
              "VAEDecode": VAEDecode, "RandomNoise": RandomNoise, "CFGGuider": CFGGuider,
              "BasicScheduler": BasicScheduler, "SamplerCustomAdvanced": SamplerCustomAdvanced, "KSampler": KSampler,
              "ADE_AnimateDiffLoaderGen1": ADE_AnimateDiffLoaderGen1}
#: Their titles in the frontend (ComfyUI's display names; a node without one is titled by its id).
CORE_DISPLAY_NAMES = {"SaveImage": "Save Image", "PreviewImage": "Preview Image", "LoadImage": "Load Image",
                      "ImageScale": "Upscale Image", "EmptyLatentImage": "Empty Latent Image",
                      "CreateVideo": "Create Video", "SaveVideo": "Save Video",
                      "CheckpointLoaderSimple": "Load Checkpoint", "CLIPTextEncode": "CLIP Text Encode (Prompt)",
                      "VAEDecode": "VAE Decode", "RandomNoise": "RandomNoise", "CFGGuider": "CFG Guider",
                      "BasicScheduler": "BasicScheduler", "SamplerCustomAdvanced": "SamplerCustomAdvanced",
                      "KSampler": "KSampler", "ADE_AnimateDiffLoaderGen1": "AnimateDiff Loader 🎭🅐🅓①"}
