"""Long-video nodes (LVDM, arXiv 2211.13221): extend a video window by window, fill the gaps between keyframes, and
the whole keyframe hierarchy in one node. The algorithms are in :mod:`..samplers.long_video`."""
from __future__ import annotations

from .. import host
from ..models.bundle import VideoModel
from ..models.lvdm.model import CONDITIONED
from ..samplers.long_video import (EXACT, REPLACE, Conditioning, extend, interpolate, long_video, plan_long_video,
                                   window_count)
from ..samplers.sampling import SAMPLERS, eta_for
from .common import (ANY, CATEGORY_ROOT, UNCONDITIONAL, VIDEO_MODEL, CVKInputError, check_latent, check_model,
                     check_size, latent_out, prompt_inputs, prompt_lines, sampler_sigmas, seed_input, step_callback)

CATEGORY = f"{CATEGORY_ROOT}/long video"
PRED, INTERP = "lvdm-pred", "lvdm-interp"
S_TRAINED = 250          # LVDM's max_noise_level: the pred/interp models saw s ∈ [0, 249]
KEYFRAME_STRIDE = 4      # latents between the pred model's keyframes (its training data's latent_frame_strde)


def mode_of(model: VideoModel) -> str:
    """``exact`` for LVDM's pred/interp models (mask channel and label s), ``replace`` for every other model."""
    return EXACT if model.family in CONDITIONED else REPLACE


def frames_per_latent(model: VideoModel) -> int:
    """Video frames one latent slot stands for: the AE's temporal factor, × the keyframe stride for the pred model."""
    return model.latent_format.temporal_factor * (KEYFRAME_STRIDE if model.family == PRED else 1)


# ---------------------------------------------------------------- the inputs the three nodes share

def s_input():
    return ("INT", {"default": 100, "min": 0, "max": 999, "tooltip": (
        "Conditional latent perturbation: the known latents are diffused once per window to this timestep of the "
        "model's own noise table (LVDM: 100, σ ≈ 0.41; its pred/interp models were trained on 0–249). Higher trusts "
        "the known frames less, which slows the drift of long chains; 0 pastes them almost clean.")})


def w_input():
    return ("FLOAT", {"default": 0.0, "min": 0.0, "max": 10.0, "step": 0.01, "tooltip": (
        "Unconditional guidance ε = (1+w)·ε_c − w·ε_u against error build-up (the official script: 0.1), ε_u from the "
        "model's frame-unconditional mode. Only LVDM's pred/interp models have one; 0 elsewhere. w ≠ 0 costs a batch "
        "of two per step.")})


def cfg_input():
    return ("FLOAT", {"default": 7.5, "min": 0.0, "max": 100.0, "step": 0.1, "tooltip": (
        "Text models only: classifier-free guidance scale with the negative prompt (7.5 typical). Unconditional "
        "models (LVDM) take no prompt and do not use it.")})


def steps_input():
    return ("INT", {"default": 50, "min": 1, "max": 1000, "tooltip": (
        "Denoising steps per window (official: DDIM 50). Cost: windows × steps network calls.")})


def sampler_inputs():
    return {"sampler": (list(SAMPLERS), {"default": "ddim", "tooltip": (
                "ddim: the model's DDIM grid, with eta. ddpm: ancestral (η = 1).")}),
            "eta": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": (
                "DDIM η: 1 as the official long-video script (stochastic), 0 deterministic. Sampler ddpm is η = 1.")})}


def window_inputs(cfg: bool = True) -> dict:
    """``s``, ``w``, ``cfg`` (text models), ``steps``, ``sampler``, ``eta``, ``seed``: how every window is sampled."""
    return {"s": s_input(), "w": w_input(), **({"cfg": cfg_input()} if cfg else {}), "steps": steps_input(),
            **sampler_inputs(), "seed": seed_input()}


def size_inputs():
    return {name: ("INT", {"default": 0, "min": 0, "max": 4096, "step": 8, "tooltip": (
        f"{name.capitalize()} in pixels (multiple of 8) when there is no latent so far; 0 = the model's native size. "
        f"With a latent it must be 0 or the latent's own {name}.")}) for name in ("width", "height")}


def fps_input():
    return ("INT", {"default": 0, "min": 0, "max": 240, "tooltip": (
        "Frames per second the model is told, for models conditioned on it (VideoCrafter2: 0 = its default 28). "
        "Leave 0 for other models.")})


# ---------------------------------------------------------------- checks

def check_guidance(node: str, model: VideoModel, s: int, w: float, sampler: str, eta: float) -> None:
    if mode_of(model) == EXACT:
        if s >= S_TRAINED:
            raise CVKInputError(node, "s", s, f"a level from 0 to {S_TRAINED - 1}: {model.name} ({model.family}) was "
                                              f"trained with the known latents at those levels (its label)")
    else:
        if s >= model.num_train_timesteps:
            raise CVKInputError(node, "s", s, f"a timestep from 0 to {model.num_train_timesteps - 1} of "
                                              f"{model.name}'s noise table")
        if w != 0:
            raise CVKInputError(node, "w", w, f"0 for {model.name}: unconditional guidance needs a model with a "
                                              f"frame-unconditional mode (LVDM's pred/interp models); {model.family} "
                                              f"is conditioned on its known frames by replacement only")
    if sampler == "ddpm" and eta != 1.0:
        raise CVKInputError(node, "eta", eta, "1 with sampler ddpm (ddpm is η = 1); choose sampler ddim for other η")


def window_conds(node: str, model: VideoModel, prompt: str, negative_prompt: str, cfg: float, count: int,
                 fps: int) -> tuple[list, float]:
    """Per-window (cond, uncond) pairs and the CFG scale: text models encode one prompt line per window (the last
    repeating; equal lines encoded once); unconditional models take none."""
    if fps and not model.takes_fps:
        raise CVKInputError(node, "fps", fps, f"0 for {model.name}, which is not conditioned on fps (only "
                                              f"VideoCrafter2 is)")
    if not model.text_conditioned:
        for name, text in (("prompt", prompt), ("negative_prompt", negative_prompt)):
            if text.strip():
                raise CVKInputError(node, name, text if len(text) <= 60 else text[:57] + "…",
                                    f"an empty prompt: {model.name} is an unconditional model and takes no text")
        return [({}, None)], 1.0
    lines, encoded = prompt_lines(node, "prompt", prompt, count), {}
    for line in lines:
        if line not in encoded:
            encoded[line] = (model.encode_prompt_pair(line, negative_prompt, fps=fps or None) if model.takes_fps
                             else model.encode_prompt_pair(line, negative_prompt))
    return [encoded[line] for line in lines], float(cfg)


def window_plan(node: str, model: VideoModel, prompt: str, negative_prompt: str, s: int, w: float, cfg: float,
                steps: int, sampler: str, count: int, fps: int) -> tuple:
    """(σ grid, :class:`Conditioning`) for ``count`` windows of ``model``: its mode, s, w and per-window prompts."""
    conds, scale = window_conds(node, model, prompt, negative_prompt, cfg, count, fps)
    return sampler_sigmas(node, model, sampler, steps), Conditioning(mode_of(model), s, w, conds, scale)


def latent_size(node: str, model: VideoModel, x, width: int, height: int) -> tuple[int, int]:
    """The latent's (h, w): the given latent's, else from width/height (0: native)."""
    f = model.latent_format.spatial_factor
    if x is not None:
        for name, v, own in (("width", width, x.shape[4] * f), ("height", height, x.shape[3] * f)):
            if v not in (0, own):
                raise CVKInputError(node, name, v, f"0 or {own} (the latent so far is {own} pixels {name}); the "
                                                   f"size comes from the latent")
        return x.shape[3], x.shape[4]
    width, height = width or model.native_width, height or model.native_height
    check_size(node, width, height, f)
    return height // f, width // f


def run_windows(model: VideoModel, shape, windows: int, steps: int, node: str, work, also=()):
    """``work(device, store, callback)`` with the model (and ``also``) loaded for windows of ``shape``, the video
    stored on the host's intermediate device; progress over all steps (Cancel stops the node, no partial output)."""
    callback = step_callback(windows * steps, node)
    with model.loaded(shape, also=also) as device:
        return work(device, host.intermediate_device(), callback)


# ---------------------------------------------------------------- nodes

class CVK_ExtendVideo:
    DESCRIPTION = ("Makes a video longer window by window (LVDM's autoregressive extension): each window of the "
                   "model's own length holds the last 'context' latents so far, perturbed once to the level s, and "
                   "generates the rest. LVDM's pred model is conditioned exactly (mask channel + label s) and makes "
                   "keyframes 16 frames apart (fill them with Interpolate Video); every other model (AnimateDiff, "
                   "ModelScope, VideoCrafter2, LVDM T2V and short) is conditioned by replacement. Cost: windows × "
                   "steps network calls (a batch of two with CFG or w ≠ 0).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The longer video latent: the latent so far unchanged, then the new frames (for LVDM's pred "
                       "model: keyframe latents).",)
    FUNCTION = "extend"
    NODE = "CVK_ExtendVideo"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (VIDEO_MODEL, {"tooltip": (
                "Any video model of the pack except LVDM's interp model: a text model (Load Video Model) or LVDM's "
                "short or pred model (Load LVDM Model).")}),
            **prompt_inputs("One line per window (the first window is the first line); with fewer lines than "
                            "windows the last line repeats. Leave empty for LVDM's unconditional models.",
                            "The unconditional branch of CFG, for every window (text models)."),
            "new_frames": ("INT", {"default": 48, "min": 1, "max": 16384, "tooltip": (
                "Frames to add (without a latent so far: the video's length). A multiple of the frames one latent "
                "makes: 4 for LVDM's 3-D AE, 16 for LVDM's pred model (one keyframe per 16 frames), 1 otherwise.")}),
            "context": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip": (
                "Known latents each window takes from the end of the video so far. 0 = auto: 1 for LVDM's pred model "
                "(the official T_cond), a quarter of the window for other models.")}),
            **window_inputs(),
            **size_inputs(),
        }, "optional": {
            "latent": ("LATENT", {"tooltip": (
                "The video so far (from Text to Video, Encode Video, another Extend Video…); unconnected: the first "
                "window starts from nothing.")}),
            "fps": fps_input(),
        }}

    def extend(self, model, prompt, negative_prompt, new_frames, context, s, w, cfg, steps, sampler, eta, seed,
               width, height, latent=None, fps=0):
        node = self.NODE
        model = check_model(node, model, kind=ANY)
        if model.family == INTERP:
            raise CVKInputError(node, "model", model, "a model that extends (LVDM's pred or short model, or a text "
                                                      "model); an interp model fills gaps: use Interpolate Video")
        check_guidance(node, model, s, w, sampler, eta)
        unit = frames_per_latent(model)
        if new_frames % unit:
            raise CVKInputError(node, "new_frames", new_frames, f"a multiple of {unit} for {model.name} "
                                                                f"({unit} frames per latent" +
                                (", keyframes 16 frames apart)" if model.family == PRED else ")"))
        x = None if latent is None else check_latent(node, latent, model)
        h, w_ = latent_size(node, model, x, width, height)
        length = model.window
        if length < 2:
            raise CVKInputError(node, "model", model, "a model whose clip has at least 2 latents")
        context = context or (1 if model.family == PRED else max(1, length // 4))
        if context >= length:
            raise CVKInputError(node, "context", context, f"fewer than the window of {length} latents of {model.name}")
        have = 0 if x is None else x.shape[2]
        if x is not None and have < context:
            raise CVKInputError(node, "latent", f"{have} latents", f"at least the context ({context} latents)")
        new = new_frames // unit
        windows = window_count(have, new, length, context)
        sigmas, how = window_plan(node, model, prompt, negative_prompt, s, w, cfg, steps, sampler, windows, fps)
        shape = (1 if x is None else x.shape[0], model.latent_format.channels, length, h, w_)

        def work(device, store, callback):
            return extend(model.denoiser(), x, new, length, context, sigmas, how, shape, eta_for(sampler, eta), seed,
                          device, store, callback)
        return (latent_out(run_windows(model, shape, windows, steps, node, work), model),)


class CVK_InterpolateVideo:
    DESCRIPTION = ("Fills every gap between neighbouring keyframe latents (LVDM's interpolation stage): each gap is a "
                   "window with the two keyframes, perturbed to the level s, at its ends, generating the latents "
                   "between; the keyframes stay as they are. LVDM's interp model is conditioned exactly (5-latent "
                   "windows: 3 new latents per gap, the keyframes of its pred model); other models by replacement "
                   "at both ends (window − 2 new latents per gap). Cost: gaps × steps network calls.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The filled latent: (keyframes − 1)·(window − 1) + 1 latents, the keyframes at every "
                       "(window − 1)-th place.",)
    FUNCTION = "interpolate"
    NODE = "CVK_InterpolateVideo"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (VIDEO_MODEL, {"tooltip": (
                "LVDM's interp model (Load LVDM Model), or any other model except LVDM's pred model (replacement at "
                "both ends).")}),
            "latent": ("LATENT", {"tooltip": "The keyframe latents (e.g. Extend Video with LVDM's pred model)."}),
            **prompt_inputs("One line per gap (the last repeating). Leave empty for LVDM's unconditional models.",
                            "The unconditional branch of CFG, for every gap (text models)."),
            **window_inputs(),
        }, "optional": {
            "fps": fps_input(),
        }}

    def interpolate(self, model, latent, prompt, negative_prompt, s, w, cfg, steps, sampler, eta, seed, fps=0):
        node = self.NODE
        model = check_model(node, model, kind=ANY)
        if model.family == PRED:
            raise CVKInputError(node, "model", model, "a model that interpolates (LVDM's interp or short model, or a "
                                                      "text model); a pred model makes keyframes: use Extend Video")
        check_guidance(node, model, s, w, sampler, eta)
        x = check_latent(node, latent, model)
        if x.shape[2] < 2:
            raise CVKInputError(node, "latent", f"{x.shape[2]} latent", "at least 2 keyframe latents")
        length = model.window
        if length < 3:
            raise CVKInputError(node, "model", model, "a model whose clip has at least 3 latents")
        gaps = x.shape[2] - 1
        sigmas, how = window_plan(node, model, prompt, negative_prompt, s, w, cfg, steps, sampler, gaps, fps)
        shape = (x.shape[0], x.shape[1], length, x.shape[3], x.shape[4])

        def work(device, store, callback):
            return interpolate(model.denoiser(), x, length, sigmas, how, eta_for(sampler, eta), seed, device, store,
                               callback)
        return (latent_out(run_windows(model, shape, gaps, steps, node, work), model),)


class CVK_LongVideo:
    DESCRIPTION = ("LVDM's long-video hierarchy in one node: keyframes 'stride' latents apart by extension with the "
                   "pred model (conditioned on the last keyframe), then every gap filled by the interp model, trimmed "
                   "to the target (1024 frames: 67 keyframes, 22 + 66 windows, 1060 frames made). Equals Extend Video "
                   "(pred) followed by Interpolate Video with the same seed. The paper's own pred/interp weights were "
                   "never released: this runs on models you trained or on the tiny demos.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The video latent of target_frames / 4 latents, in the models' 3-D AE space (decode with "
                       "Decode Video: its overlapping windows keep memory bounded).",)
    FUNCTION = "generate"
    NODE = "CVK_LongVideo"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "pred_model": (VIDEO_MODEL, {"tooltip": "LVDM's pred model: the keyframes (Load LVDM Model)."}),
            "interp_model": (VIDEO_MODEL, {"tooltip": (
                "LVDM's interp model: the gaps (Load LVDM Model), in the pred model's latent space.")}),
            "target_frames": ("INT", {"default": 256, "min": 4, "max": 65536, "step": 4, "tooltip": (
                "Frames of the result, a multiple of 4 (one latent per 4 frames); the hierarchy makes a little more "
                "and the end is trimmed (1024 ← 1060).")}),
            "stride": ("INT", {"default": 4, "min": 2, "max": 1024, "tooltip": (
                "Latents between keyframes: 4 (16 frames), the official pred model's training stride and what one "
                "pass of the 5-latent interp model fills. A power of (interp window − 1): 16 runs two passes.")}),
            **window_inputs(cfg=False),
            **size_inputs(),
        }}

    def generate(self, pred_model, interp_model, target_frames, stride, s, w, steps, sampler, eta, seed, width,
                 height):
        node = self.NODE
        pred = check_model(node, pred_model, "pred_model", kind=UNCONDITIONAL)
        interp = check_model(node, interp_model, "interp_model", kind=UNCONDITIONAL)
        for name, m, family, other in (("pred_model", pred, PRED, "Extend Video"),
                                       ("interp_model", interp, INTERP, "Interpolate Video")):
            if m.family != family:
                raise CVKInputError(node, name, m, f"LVDM's {family[5:]} model (Load LVDM Model; the tiny demo "
                                                   f"'tiny-lvdm-{family[5:]}' to try it); other models extend and "
                                                   f"interpolate by replacement with {other}")
        if not pred.latent_format.same_space(interp.latent_format):
            raise CVKInputError(node, "interp_model", interp, f"a model in the pred model's latent space "
                                                              f"({pred.latent_format.tag})")
        for m in (pred, interp):
            check_guidance(node, m, s, w, sampler, eta)
        tf = pred.latent_format.temporal_factor
        if target_frames % tf:
            raise CVKInputError(node, "target_frames", target_frames, f"a multiple of {tf}")
        h, w_ = latent_size(node, pred, None, width, height)
        try:
            plan = plan_long_video(target_frames // tf, pred.window, 1, stride, interp.window)
        except ValueError as e:
            raise CVKInputError(node, "stride", stride, problem=str(e)) from None
        p_sig = sampler_sigmas(node, pred, sampler, steps)
        i_sig = sampler_sigmas(node, interp, sampler, steps)
        shape = (1, pred.latent_format.channels, max(pred.window, interp.window), h, w_)
        p_how = Conditioning(mode_of(pred), s, w)
        i_how = Conditioning(mode_of(interp), s, w)

        def work(device, store, callback):
            return long_video(pred.denoiser(), interp.denoiser(), plan.target, pred.window, interp.window, 1, stride,
                              shape, p_sig, i_sig, p_how, i_how, eta_for(sampler, eta), seed, device, store, callback)
        return (latent_out(run_windows(pred, shape, plan.windows, steps, node, work, also=[interp]), pred),)


NODE_CLASS_MAPPINGS = {
    "CVK_ExtendVideo": CVK_ExtendVideo,
    "CVK_InterpolateVideo": CVK_InterpolateVideo,
    "CVK_LongVideo": CVK_LongVideo,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "CVK_ExtendVideo": "Extend Video (CVK)",
    "CVK_InterpolateVideo": "Interpolate Video (CVK)",
    "CVK_LongVideo": "Long Video (CVK LVDM)",
}
