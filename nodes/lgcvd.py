"""LGC-VD nodes (arXiv 2306.02562): load the pixel-space model, and its tasks — prediction (and one-picture
animation), unconditional generation, interpolation and infilling. The algorithms are in :mod:`..samplers.lgcvd`."""
from __future__ import annotations

import torch

from .. import host
from ..models.checkpoint import MODEL_EXTS, CheckpointError
from ..models.lgcvd import DATASETS, LGCVD_FOLDER, WEIGHTS, LGCVDModel, load_lgcvd
from ..models.loaders import PRECISIONS, LoadOptionError
from ..models.tiny import TINY_LGCVD, tiny_lgcvd
from ..samplers import lgcvd as lg
from .common import CATEGORY_ROOT, CVKInputError, check_file_name, seed_input, step_callback

CATEGORY = f"{CATEGORY_ROOT}/LGC-VD"
LGCVD_MODEL = LGCVDModel.TYPE
UNTRAINED = " (untrained demo)"
AUTO = "auto (from the file name)"

host.register_model_folder(LGCVD_FOLDER, MODEL_EXTS)


def model_choices() -> list[str]:
    return [TINY_LGCVD + UNTRAINED] + host.list_models(LGCVD_FOLDER, MODEL_EXTS)


def check_lgcvd(node: str, model, name: str = "model") -> LGCVDModel:
    if not isinstance(model, LGCVDModel):
        raise CVKInputError(node, name, model, f"a {LGCVD_MODEL} (from 'Load LGC-VD Model (CVK)')")
    return model


def video_in(node: str, model: LGCVDModel, images, name: str = "images", at_least: int = 1) -> torch.Tensor:
    """An IMAGE batch ``[frames, H, W, 3]`` in [0, 1] at the model's native size → a video ``(1, 3, frames, H, W)`` in
    [−1, 1] (the official ``normalize_img``)."""
    what = f"an IMAGE batch [frames, {model.size}, {model.size}, 3]"
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[-1] < 3:
        raise CVKInputError(node, name, images, what)
    if images.shape[0] < at_least:
        raise CVKInputError(node, name, images, f"{what} of at least {at_least} frame{'s' if at_least > 1 else ''}")
    if tuple(images.shape[1:3]) != (model.size, model.size):
        raise CVKInputError(node, name, images, f"{model.size}×{model.size} pictures, {model.name}'s native size; "
                                                f"resize them first (e.g. Upscale Image)")
    x = images[..., :3].to(torch.float32).permute(3, 0, 1, 2).unsqueeze(0)
    return x * 2.0 - 1.0


def video_out(video: torch.Tensor) -> torch.Tensor:
    """A video ``(1, 3, F, H, W)`` in [−1, 1] → an IMAGE batch ``[F, H, W, 3]`` in [0, 1]."""
    return ((video[0].permute(1, 2, 3, 0) + 1.0) / 2.0).clamp(0, 1).to(host.intermediate_device())


class CVK_LGCVDLoader:
    DESCRIPTION = ("Loads LGC-VD (arXiv 2306.02562), a pixel-space video diffusion model for prediction, generation, "
                   "interpolation and infilling with local and global context: cityscapes.pt (128×128) or bair.pt "
                   "(64×64) from models/lgcvd (the authors' Google Drive folder, linked from exisas/LGC-VD). The tiny "
                   "demo is untrained, built in code (32×32); its output is noise-like.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (LGCVD_MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The LGC-VD model (denoiser and context encoder), for the LGC-VD task nodes.",)
    FUNCTION = "load"
    NODE = "CVK_LGCVDLoader"
    FILE_INPUTS = ("model_name",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_name": (model_choices(), {"tooltip": (
                f"cityscapes.pt or bair.pt from models/{LGCVD_FOLDER}/ (or a model trained with the pack's training/), "
                f"or the tiny untrained demo.")}),
            "dataset": ([AUTO, *DATASETS], {"default": AUTO, "tooltip": (
                "What the file was trained on, which sets its native size and attention placement: cityscapes "
                "128 px, bair 64 px. The two files share one layout; auto reads it from the file name (a model trained with "
                "the pack's training/ carries its own).")}),
            "weights": (list(WEIGHTS), {"default": "ema", "tooltip": (
                "ema: the EMA weights, as the official test samples with them. model: the raw trained weights.")}),
            "precision": (list(PRECISIONS), {"default": "auto", "tooltip": (
                "auto: fp32 on CPU, fp16 on a GPU (bf16 where fp16 is missing).")}),
        }}

    def load(self, model_name, dataset, weights, precision):
        node = self.NODE
        if model_name == TINY_LGCVD + UNTRAINED:
            for field, value, ok in (("dataset", dataset, AUTO), ("weights", weights, "ema"),
                                     ("precision", precision, "auto")):
                if value != ok and not (field == "precision" and value == "fp32"):
                    raise CVKInputError(node, field, value, f"'{ok}' for the tiny demo (built in code, fp32)")
            return (tiny_lgcvd(),)
        check_file_name(node, "model_name", model_name)
        try:
            path = host.find_model(LGCVD_FOLDER, model_name)
            return (load_lgcvd(path, None if dataset == AUTO else dataset, weights, precision),)
        except host.ModelFileNotFound as e:
            raise CVKInputError(node, "model_name", model_name, problem=str(e)) from None
        except CheckpointError as e:
            raise CVKInputError(node, "model_name", model_name, problem=str(e)) from None
        except LoadOptionError as e:
            value = {"dataset": dataset, "weights": weights, "precision": precision}.get(e.input, model_name)
            raise CVKInputError(node, e.input, value, problem=str(e)) from None


# ---------------------------------------------------------------- the tasks

def task_inputs() -> dict:
    """``steps``, ``sampler``, ``seed``: how every window is sampled."""
    return {"steps": ("INT", {"default": 100, "min": 1, "max": 1000, "tooltip": (
                "Denoising steps per window (official: 100, respaced from 1000; the network is told the original "
                "timesteps). Cost: windows × steps network calls.")}),
            "sampler": (list(lg.SAMPLERS), {"default": "ddpm", "tooltip": (
                "ddpm: respaced ancestral sampling, as the official test. ddim: the same timesteps, deterministic "
                "(η = 0).")}),
            "seed": seed_input()}


def model_input():
    return (LGCVD_MODEL, {"tooltip": "The LGC-VD model (from Load LGC-VD Model)."})


def run_task(node: str, model: LGCVDModel, steps: int, calls: int, task, given: dict):
    """``task(denoise, encode, sigmas, device, store, callback)`` with the model loaded; progress over ``calls``
    network calls (Cancel stops the node, no partial output); returns the IMAGE batch with the ``given`` frames
    (index → IMAGE frame) put back as they came in (the [0, 1] ↔ [−1, 1] round trip is not exact in float)."""
    try:
        sigmas = lg.sampling_sigmas(model.alphas_cumprod, steps)
    except ValueError as e:
        raise CVKInputError(node, "steps", steps, problem=str(e)) from None
    callback = step_callback(calls, node)
    with model.loaded((1, model.channels, model.frames, model.size, model.size)) as device:
        video = task(model.denoiser(), model.encode, sigmas, device, host.intermediate_device(), callback)
    images = video_out(video)
    for i, frame in given.items():
        images[i] = frame[..., :3].to(images)
    return (images,)


class CVK_LGCVDPredict:
    DESCRIPTION = ("LGC-VD video prediction: continues the given frames window by window (8-frame windows, the last "
                   "two frames so far as local context, a running average of the previous windows' encodings as global "
                   "context). One picture animates it ('live photo'). The given frames are returned unchanged, then "
                   "the new ones. Cost: ⌈new/6⌉ windows × steps network calls (28 new frames at 100 steps: 500).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The given frames followed by the new ones, [frames, size, size, 3].",)
    FUNCTION = "predict"
    NODE = "CVK_LGCVDPredict"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": model_input(),
            "images": ("IMAGE", {"tooltip": (
                "The frames to continue, at the model's native size (Cityscapes 128, BAIR 64, the demo 32): one "
                "picture (live photo) or a clip, whose last two frames are the local context.")}),
            "new_frames": ("INT", {"default": 28, "min": 1, "max": 4096, "tooltip": (
                "Frames to add (official test: 28 after 2 given).")}),
            **task_inputs(),
        }}

    def predict(self, model, images, new_frames, steps, sampler, seed):
        node = self.NODE
        model = check_lgcvd(node, model)
        x = video_in(node, model, images)
        G = x.shape[2]
        calls = steps * lg.window_count(G + new_frames, G)
        return run_task(node, model, steps, calls, lambda den, enc, sig, dev, store, cb: lg.predict(
            den, enc, x, new_frames, sig, sampler, seed, dev, store, cb), dict(enumerate(images)))


class CVK_LGCVDGenerate:
    DESCRIPTION = ("LGC-VD unconditional generation: a video from nothing, window by window (the first window without "
                   "local context and with the blank clip's encoding, then as prediction). Cost: ⌈(frames − 2)/6⌉ "
                   "windows × steps network calls.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The video, [frames, size, size, 3].",)
    FUNCTION = "generate"
    NODE = "CVK_LGCVDGenerate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": model_input(),
            "frames": ("INT", {"default": 30, "min": 8, "max": 4096, "tooltip": "Frames of the video (at least one "
                                                                                 "window of 8)."}),
            **task_inputs(),
        }}

    def generate(self, model, frames, steps, sampler, seed):
        node = self.NODE
        model = check_lgcvd(node, model)
        shape = (1, model.channels, frames, model.size, model.size)
        return run_task(node, model, steps, steps * lg.window_count(frames, 0),
                        lambda den, enc, sig, dev, store, cb: lg.generate(den, enc, shape, sig, sampler, seed, dev,
                                                                          store, cb), {})


class CVK_LGCVDInterpolate:
    DESCRIPTION = ("LGC-VD interpolation: the 6 frames between two pictures, one window with the pictures at its first "
                   "and last place, as the model was trained (the official test code has no branch for this task and "
                   "crashes). Chain it for longer gaps. Cost: steps network calls.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("8 frames: the first picture, the 6 between, the last picture.",)
    FUNCTION = "interpolate"
    NODE = "CVK_LGCVDInterpolate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": model_input(),
            "first": ("IMAGE", {"tooltip": "The first picture, at the model's native size."}),
            "last": ("IMAGE", {"tooltip": "The last picture, at the model's native size."}),
            **task_inputs(),
        }}

    def interpolate(self, model, first, last, steps, sampler, seed):
        node = self.NODE
        model = check_lgcvd(node, model)
        ends = []
        for name, images in (("first", first), ("last", last)):
            v = video_in(node, model, images, name)
            if v.shape[2] != 1:
                raise CVKInputError(node, name, images, "one picture, an IMAGE [1, size, size, 3] (pick one with an "
                                                        "image-batch node first)")
            ends.append(v)
        x = torch.cat(ends, dim=2)
        return run_task(node, model, steps, steps, lambda den, enc, sig, dev, store, cb: lg.interpolate(
            den, enc, x, sig, sampler, seed, dev, store, cb), {0: first[0], model.frames - 1: last[0]})


def parse_indices(node: str, name: str, text: str, frames: int) -> list[int]:
    """Frame indices from ``"0, 1, 7"`` or ranges ``"0-3, 10"`` (inclusive), each in [0, frames)."""
    out = set()
    for part in (p.strip() for p in text.replace(";", ",").split(",")):
        if not part:
            continue
        try:
            lo, _, hi = part.partition("-")
            lo, hi = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise CVKInputError(node, name, text, "frame indices such as '0, 1, 7' or ranges such as '0-3, 10'") \
                from None
        if not 0 <= lo <= hi < frames:
            raise CVKInputError(node, name, text, f"indices from 0 to {frames - 1} (the video has {frames} frames), "
                                                  f"ranges low-high")
        out.update(range(lo, hi + 1))
    if not out:
        raise CVKInputError(node, name, text, "at least one known frame (e.g. '0, 1, 7')")
    return sorted(out)


class CVK_LGCVDInfill:
    DESCRIPTION = ("LGC-VD infilling (RePaint style): regenerates every frame of a video except the known ones, which "
                   "are re-noised to each step's level and pasted, so the result agrees with them (the official "
                   "infilling calls a function defined nowhere; ours runs). Optional resampling jumps trade time for "
                   "coherence. Cost: windows × (steps + (jump_n_sample − 1)·jump_length·⌈(steps − jump_length)/"
                   "jump_length⌉) network calls (the last factor 0 when steps ≤ jump_length).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The video with the unknown frames filled, the known ones unchanged.",)
    FUNCTION = "infill"
    NODE = "CVK_LGCVDInfill"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": model_input(),
            "images": ("IMAGE", {"tooltip": (
                "The video, at the model's native size (at least 8 frames); only the known frames' content is used.")}),
            "known": ("STRING", {"default": "0, 1, 7", "tooltip": (
                "Indices of the frames to keep (from 0): '0, 1, 7', ranges '0-3, 12'. Every other frame is "
                "generated.")}),
            **task_inputs(),
            "jump_length": ("INT", {"default": 10, "min": 1, "max": 1000, "tooltip": (
                "RePaint resampling: levels each jump goes back up (10 as RePaint). Used when jump_n_sample > 1.")}),
            "jump_n_sample": ("INT", {"default": 1, "min": 1, "max": 100, "tooltip": (
                "RePaint resampling: times each stretch is sampled; 1 = no jumps (default, steps calls per window), "
                "10 as RePaint (about 9× the calls).")}),
        }}

    def infill(self, model, images, known, steps, sampler, seed, jump_length, jump_n_sample):
        node = self.NODE
        model = check_lgcvd(node, model)
        x = video_in(node, model, images, at_least=model.frames)
        idx = parse_indices(node, "known", known, x.shape[2])
        calls = lg.window_count(x.shape[2], 0) * lg.infill_nfe_per_window(steps, jump_length, jump_n_sample)
        return run_task(node, model, steps, calls, lambda den, enc, sig, dev, store, cb: lg.infill(
            den, enc, x, idx, sig, sampler, seed, jump_length, jump_n_sample, dev, store, cb),
            {i: images[i] for i in idx})


NODE_CLASS_MAPPINGS = {"CVK_LGCVDLoader": CVK_LGCVDLoader, "CVK_LGCVDPredict": CVK_LGCVDPredict,
                       "CVK_LGCVDGenerate": CVK_LGCVDGenerate, "CVK_LGCVDInterpolate": CVK_LGCVDInterpolate,
                       "CVK_LGCVDInfill": CVK_LGCVDInfill}
NODE_DISPLAY_NAME_MAPPINGS = {"CVK_LGCVDLoader": "Load LGC-VD Model (CVK)", "CVK_LGCVDPredict": "LGC-VD Predict (CVK)",
                              "CVK_LGCVDGenerate": "LGC-VD Generate (CVK)",
                              "CVK_LGCVDInterpolate": "LGC-VD Interpolate (CVK)",
                              "CVK_LGCVDInfill": "LGC-VD Infill (CVK)"}
