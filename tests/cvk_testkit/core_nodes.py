"""Minimal stand-ins for the core ComfyUI nodes our workflows use (same ids, inputs and outputs)."""
from __future__ import annotations

import os

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


CORE_NODES = {"SaveImage": SaveImage, "PreviewImage": PreviewImage, "LoadImage": LoadImage, "ImageScale": ImageScale,
              "EmptyLatentImage": EmptyLatentImage}
