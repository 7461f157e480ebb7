"""Shared pieces of the ComfyUI face: input validation with clear errors, the model-type check,
progress callbacks for the samplers."""
from __future__ import annotations

import functools
import inspect
import math
import os

import torch

from .. import host
from ..models.bundle import VideoModel
from ..samplers.noise import SEED_MAX
from ..samplers.schedules import ScheduleError

CATEGORY_ROOT = "Consistent Video Kit"  # nodes use f"{CATEGORY_ROOT}/<method>"
VIDEO_MODEL = VideoModel.TYPE


class CVKInputError(ValueError):
    """Bad node input: names the node, the input, the value given and what was expected.

    ComfyUI reports an error's type as ``<module>.<class>`` unless the module is ``builtins``, and it loads a
    pack under a module name made of the pack's filesystem path: the class claims ``builtins`` so the UI shows
    ``CVKInputError: CVK_<Node>: …`` rather than a path on the server."""

    def __init__(self, node: str, name: str, value, expected: str | None = None, problem: str | None = None):
        """Say what was ``expected``, or (for a value that was the right kind but did not work, such as a
        model file) what the ``problem`` with it is."""
        shown = repr(value) if isinstance(value, (int, float, str, bool, type(None))) else _describe(value)
        tail = f"; expected {expected}." if problem is None else f": {problem.rstrip('.')}."
        super().__init__(f"{node}: input '{name}' got {shown}{tail}")
        self.node, self.input, self.value = node, name, value


CVKInputError.__module__ = "builtins"


def _describe(value) -> str:
    if str(getattr(value, "TYPE", "")).startswith("CVK_"):      # the pack's own objects say what they are
        return repr(value)
    if torch.is_tensor(value):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(value)}"
    return f"a {type(value).__name__} object"


TEXT, UNCONDITIONAL, ANY = "text", "unconditional", "any"


def check_model(node: str, model, name: str = "model", kind: str = TEXT) -> VideoModel:
    """A ``CVK_VIDEO_MODEL`` of the ``kind`` the node works with: ``text`` (a text-conditioned model in SD's
    latent space: AnimateDiff, ModelScope, …), ``unconditional`` (LVDM's 3-D-AE family) or ``any``."""
    if not isinstance(model, VideoModel):
        raise CVKInputError(node, name, model, "a CVK_VIDEO_MODEL (from 'Load Video Model (CVK)' or 'Load LVDM "
                                               "Model (CVK)')")
    if kind == TEXT and not model.text_conditioned:
        raise CVKInputError(node, name, model, "a text-conditioned model in SD's latent space (from 'Load Video Model "
                                               "(CVK)'); LVDM's unconditional models, in their 3-D video AE's latent "
                                               "space, make videos with 'LVDM Unconditional Video (CVK)'")
    if kind == UNCONDITIONAL and model.text_conditioned:
        raise CVKInputError(node, name, model, "an unconditional LVDM model (from 'Load LVDM Model (CVK)'); a "
                                               "text-to-video model makes videos with 'Text to Video (CVK)'")
    return model


SPACE_KEY = "cvk_space"   # written beside "samples" by the pack's nodes: which latent space the samples are in


def latent_out(z: torch.Tensor, model: VideoModel) -> dict:
    """A LATENT for ``z`` in ``model``'s latent space, tagged with that space so a node of another space refuses it."""
    return {"samples": z, SPACE_KEY: model.latent_format.tag}


def check_latent(node: str, latent, model: VideoModel | None = None, name: str = "latent") -> torch.Tensor:
    """The 5-D ``(B, C, F, h, w)`` samples of a LATENT, checked against the model's latent format (its channels,
    and its space when the LATENT carries the pack's tag)."""
    if not isinstance(latent, dict) or not torch.is_tensor(latent.get("samples")):
        raise CVKInputError(node, name, latent, "a LATENT dict with a 'samples' tensor")
    x = latent["samples"]
    if x.ndim != 5:
        raise CVKInputError(node, name, x, "a 5-D video latent [batch, channels, frames, height/8, width/8] "
                                           "(a 4-D image latent is one frame per batch entry, not a video)")
    if model is not None:
        space = latent.get(SPACE_KEY)
        if isinstance(space, str) and space != model.latent_format.tag:
            raise CVKInputError(node, name, f"a {space}", f"a latent of {model.name}'s space ({model.latent_format.tag})"
                                                          f"; decode it with the model that made it")
        if x.shape[1] != model.latent_format.channels:
            raise CVKInputError(node, name, x, f"{model.latent_format.channels} latent channels for {model.name}")
    return x


def check_size(node: str, width: int, height: int, multiple: int = 8) -> None:
    for name, v in (("width", width), ("height", height)):
        if v < multiple or v % multiple:
            raise CVKInputError(node, name, v, f"a positive multiple of {multiple}")


def check_images(node: str, images, model: VideoModel, name: str = "images", single: bool = False) -> torch.Tensor:
    """An IMAGE batch ``[frames, height, width, 3]`` the model's VAE can encode (sides multiples of its factor);
    ``single``: exactly one picture."""
    what = "one picture, an IMAGE [1, height, width, 3]" if single else "an IMAGE batch [frames, height, width, 3]"
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[-1] < 3 or images.shape[0] < 1:
        raise CVKInputError(node, name, images, what)
    if single and images.shape[0] != 1:
        raise CVKInputError(node, name, images, f"{what} (a batch of {images.shape[0]} pictures would keep only one; "
                                                f"pick one with an image-batch node first)")
    f = model.latent_format.spatial_factor
    if images.shape[1] % f or images.shape[2] % f:
        raise CVKInputError(node, name, images, f"width and height that are multiples of {f} (resize it, e.g. with "
                                                f"Upscale Image)")
    return images


def check_frames(node: str, frames: int, model: VideoModel, name: str = "frames") -> None:
    """At most the model's frame limit (the declared minimum of 1 is checked before the node runs)."""
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


def sampler_sigmas(node: str, model: VideoModel, sampler: str, steps: int):
    """The σ grid of a named sampler on ``model``: its default grid; with ``ddpm`` on an unconditional (LVDM 3-D-AE)
    model, the official DDPM loop's timesteps ``k·(1000/steps)`` ending at the clean sample."""
    if sampler == "ddpm" and not model.text_conditioned:
        return sigmas_or_error(node, steps, lambda: model.sigmas(steps, "leading", "zero", offset=0))
    return sigmas_or_error(node, steps, lambda: model.sigmas(steps))


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


# ---------------------------------------------------------------- checks every node gets

FILE_NAME_MAX = 255   # characters per path component, the common filesystem limit


def check_file_name(node: str, name: str, value, subfolders: bool = True) -> str:
    """A file name input: a non-empty string without NUL, not absolute, no ``..`` part, at most
    :data:`FILE_NAME_MAX` characters per part; with ``subfolders=False`` no separator at all."""
    expected = (f"a file name{' (sub/folder/name allowed)' if subfolders else ' without folders'}: no NUL, not "
                f"absolute, no '..', at most {FILE_NAME_MAX} characters per part")
    if not isinstance(value, str) or not value or "\0" in value:
        raise CVKInputError(node, name, value, expected)
    parts = value.replace("\\", "/").split("/")
    if (os.path.isabs(value) or value.startswith(("/", "\\")) or ".." in parts or (not subfolders and len(parts) > 1)
            or any(len(p) > FILE_NAME_MAX for p in parts)):
        raise CVKInputError(node, name, value if len(value) <= 80 else f"{value[:40]}…({len(value)} characters)",
                            expected)
    return value


def check_declared(node: str, spec: dict, values: dict, file_inputs: tuple = ()) -> None:
    """Every widget input against its declaration: a combo value in its list, a STRING a string, a BOOLEAN a
    bool, an INT / FLOAT a number (FLOAT: finite) within ``min``/``max``. ComfyUI checks typed-in values
    itself, but not linked values, not NaN, and not calls from other code; this is the one place all of those
    are refused, so nodes need not repeat these checks. ``file_inputs``: combos listing files, which the node
    checks itself (a missing file gets the folders searched, not the list)."""
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            kind, opts = entry[0], (entry[1] if len(entry) > 1 else {})
            if name not in values or values[name] is None:
                continue
            v = values[name]
            if isinstance(kind, list):
                if v not in kind and name not in file_inputs:
                    shown = f"one of {kind}" if len(kind) <= 20 else f"one of the {len(kind)} listed choices"
                    raise CVKInputError(node, name, v, shown)
            elif kind == "STRING" and not isinstance(v, str):
                raise CVKInputError(node, name, v, "a string")
            elif kind == "BOOLEAN" and not isinstance(v, bool):
                raise CVKInputError(node, name, v, "true or false")
            elif kind in ("INT", "FLOAT"):
                if kind == "FLOAT":
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                        raise CVKInputError(node, name, v, "a finite number")
                    bounds = "a number"
                elif isinstance(v, bool) or not isinstance(v, int):
                    raise CVKInputError(node, name, v, "an integer")
                else:
                    bounds = "an integer"
                lo, hi = opts.get("min"), opts.get("max")
                if (lo is not None and v < lo) or (hi is not None and v > hi):
                    raise CVKInputError(node, name, v, f"{bounds} from {lo} to {hi}")


def checked(cls):
    """Wrap a node class's ``FUNCTION`` so :func:`check_declared` runs before it (once per class)."""
    func = getattr(cls, cls.FUNCTION)
    if getattr(func, "_cvk_checked", False):
        return cls
    signature = inspect.signature(func)
    node = getattr(cls, "NODE", cls.__name__)

    @functools.wraps(func)
    def run(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        check_declared(node, cls.INPUT_TYPES(), bound.arguments, getattr(cls, "FILE_INPUTS", ()))
        return func(self, *args, **kwargs)
    run._cvk_checked = True
    setattr(cls, cls.FUNCTION, run)
    return cls


def prompt_lines(node: str, name: str, text: str, count: int) -> list[str]:
    """One prompt per item (view, window, …) from a multiline input: one non-empty line each; with fewer lines
    than items the last line repeats; more lines than items is refused."""
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [""]
    if len(lines) > count:
        raise CVKInputError(node, name, f"{len(lines)} lines", f"at most {count} lines, one per item (fewer: the last "
                                                               f"line repeats)")
    return lines + [lines[-1]] * (count - len(lines))
