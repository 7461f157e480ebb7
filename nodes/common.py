"""Shared pieces of the ComfyUI face: input validation with clear errors, the model-type check,
progress callbacks for the samplers."""
from __future__ import annotations

import torch

from .. import host
from ..models.bundle import VideoModel
from ..samplers.noise import SEED_MAX
from ..samplers.schedules import ScheduleError

CATEGORY_ROOT = "Consistent Video Kit"  # nodes use f"{CATEGORY_ROOT}/<method>"
VIDEO_MODEL = VideoModel.TYPE


class CVKInputError(ValueError):
    """Bad node input: names the node, the input, the value given and what was expected."""

    def __init__(self, node: str, name: str, value, expected: str | None = None, problem: str | None = None):
        """Say what was ``expected``, or (for a value that was the right kind but did not work, such as a
        model file) what the ``problem`` with it is."""
        shown = repr(value) if isinstance(value, (int, float, str, bool, type(None))) else _describe(value)
        tail = f"; expected {expected}." if problem is None else f": {problem.rstrip('.')}."
        super().__init__(f"{node}: input '{name}' got {shown}{tail}")
        self.node, self.input, self.value = node, name, value


def _describe(value) -> str:
    if torch.is_tensor(value):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(value)}"
    return f"a {type(value).__name__} object"


def check_model(node: str, model, name: str = "model") -> VideoModel:
    if not isinstance(model, VideoModel):
        raise CVKInputError(node, name, model, "a CVK_VIDEO_MODEL (from 'Load Video Model (CVK)')")
    return model


def check_latent(node: str, latent, model: VideoModel | None = None, name: str = "latent") -> torch.Tensor:
    """The 5-D ``(B, C, F, h, w)`` samples of a LATENT, checked against the model's latent format."""
    if not isinstance(latent, dict) or not torch.is_tensor(latent.get("samples")):
        raise CVKInputError(node, name, latent, "a LATENT dict with a 'samples' tensor")
    x = latent["samples"]
    if x.ndim != 5:
        raise CVKInputError(node, name, x, "a 5-D video latent [batch, channels, frames, height/8, width/8] "
                                           "(a 4-D image latent is one frame per batch entry, not a video)")
    if model is not None and x.shape[1] != model.latent_format.channels:
        raise CVKInputError(node, name, x, f"{model.latent_format.channels} latent channels for {model.name}")
    return x


def check_size(node: str, width: int, height: int, multiple: int = 8) -> None:
    for name, v in (("width", width), ("height", height)):
        if v < multiple or v % multiple:
            raise CVKInputError(node, name, v, f"a positive multiple of {multiple}")


def check_frames(node: str, frames: int, model: VideoModel, name: str = "frames") -> None:
    if frames < 1:
        raise CVKInputError(node, name, frames, "at least 1 frame")
    if model.max_frames is not None and frames > model.max_frames:
        raise CVKInputError(node, name, frames, f"at most {model.max_frames} frames for {model.name} "
                                                f"(its motion module's position table)")


def prompt_inputs(prompt_tip: str = "What the video shows.",
                  negative_tip: str = "What to steer away from (the unconditional branch).") -> dict:
    """The ``prompt`` and ``negative_prompt`` inputs of the generating nodes."""
    return {"prompt": ("STRING", {"multiline": True, "default": "a red panda walking through a bamboo forest",
                                  "tooltip": prompt_tip}),
            "negative_prompt": ("STRING", {"multiline": True, "default": "", "tooltip": negative_tip})}


def sigmas_or_error(node: str, steps: int, make):
    """``make()`` (a σ grid for ``steps``), with a grid the noise table cannot provide reported on ``steps``."""
    try:
        return make()
    except ScheduleError as e:
        raise CVKInputError(node, "steps", steps, problem=str(e)) from None


def seed_input(default: int = 0, tooltip: str = "Noise seed; noise is drawn on the CPU, so a seed gives the same "
                                                "video on any device."):
    return ("INT", {"default": default, "min": 0, "max": SEED_MAX, "control_after_generate": True, "tooltip": tooltip})


def video_size_inputs(frames: int = 16, width: int = 512, height: int = 512, note: str = "") -> dict:
    """The ``frames``, ``width``, ``height`` inputs every generating node has (pixels, multiples of 8)."""
    return {
        "frames": ("INT", {"default": frames, "min": 1, "max": 1024, "tooltip": f"Number of video frames{note}."}),
        "width": ("INT", {"default": width, "min": 8, "max": 4096, "step": 8,
                          "tooltip": f"Width in pixels (multiple of 8){note}."}),
        "height": ("INT", {"default": height, "min": 8, "max": 4096, "step": 8,
                           "tooltip": f"Height in pixels (multiple of 8){note}."}),
    }


def step_callback(total: int, desc: str):
    """A sampler callback that reports progress (ComfyUI's bar when present) and honours Cancel."""
    bar = host.Progress(total, desc)

    def callback(i, x, x0, sigma):
        bar.update(1)
        if i + 1 >= total:
            bar.close()
    return callback
