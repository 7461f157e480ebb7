"""Core video nodes: load a model, text → video, decode, encode."""
from __future__ import annotations

from .. import host
from ..models.checkpoint import MODEL_EXTS, CheckpointError, read_shapes
from ..models.loaders import (ATTENTIONS, MOTION_FOLDER, PRECISIONS, LoadOptionError, folder_family,
                              load_animatediff, load_modelscope)
from ..models.lvdm.t2v import load_text_lvdm, text_family
from ..models.tiny import TINY_MODELS, tiny_model
from ..samplers.guidance import GUIDANCE_MODES
from ..samplers.sampling import SAMPLERS, eta_for, sample
from .common import (ANY, CATEGORY_ROOT, CVKInputError, VIDEO_MODEL, check_file_name, check_frames, check_images,
                     check_latent, check_model, check_size, latent_out, prompt_inputs, seed_input, sigmas_or_error,
                     step_callback, video_size_inputs)

UNTRAINED = " (untrained demo)"
CATEGORY = f"{CATEGORY_ROOT}/video"
NONE = "none"
SEAMS = ("exact", "plain")
CHECKPOINTS, DIFFUSERS = "checkpoints/", "diffusers/"

host.register_model_folder(MOTION_FOLDER, MODEL_EXTS)


def frames_per_batch_input(verb: str):
    return ("INT", {"default": 8, "min": 1, "max": 256,
                    "tooltip": f"Frames {verb} at once; lower it if this runs out of memory."})


def model_choices() -> list[str]:
    """Tiny demos, then SD1.5 single files (models/checkpoints), then diffusers folders (models/diffusers)."""
    return ([n + UNTRAINED for n in TINY_MODELS]
            + [CHECKPOINTS + f for f in host.list_models("checkpoints", MODEL_EXTS)]
            + [DIFFUSERS + d for d in host.list_model_dirs("diffusers", "model_index.json")])


def motion_module_choices() -> list[str]:
    return [NONE] + host.list_models(MOTION_FOLDER, MODEL_EXTS)


def load_video_model(node: str, choice: str, motion_module: str = NONE, precision: str = "auto",
                     attention: str = "sdpa"):
    """The model behind a loader choice; every failure is a CVKInputError naming the input at fault."""
    name = choice[:-len(UNTRAINED)] if choice.endswith(UNTRAINED) else choice
    if name in TINY_MODELS:
        for field, value, ok in (("motion_module", motion_module, NONE), ("precision", precision, "auto"),
                                 ("attention", attention, "sdpa")):
            if value != ok and not (field == "precision" and value == "fp32"):
                raise CVKInputError(node, field, value, f"'{ok}' for the tiny demo models (they always run in fp32 "
                                                        f"with SDPA and carry their own motion layers)")
        return tiny_model(name)
    check_file_name(node, "model_name", choice)
    if motion_module != NONE:
        check_file_name(node, "motion_module", motion_module)
    try:
        if name.startswith(CHECKPOINTS):
            kind, rel = "checkpoints", name[len(CHECKPOINTS):]
        elif name.startswith(DIFFUSERS):
            kind, rel = "diffusers", name[len(DIFFUSERS):]
        else:
            raise CVKInputError(node, "model_name", choice, "a demo model, 'checkpoints/<file>' or 'diffusers/<folder>'")
        path = host.find_model(kind, rel)
        family = text_family(read_shapes(path)) if kind == "checkpoints" else None
        if family is not None:      # LVDM text-to-video or VideoCrafter2: their own UNet, VAE and text encoder
            if motion_module != NONE:
                raise CVKInputError(node, "motion_module", motion_module, f"'{NONE}': {rel} is a {family} model with "
                                                                          f"its own temporal layers")
            return load_text_lvdm(path, family, precision, attention)
        motion = None
        if motion_module != NONE:
            try:
                motion = host.find_model(MOTION_FOLDER, motion_module)
            except host.ModelFileNotFound as e:
                raise CVKInputError(node, "motion_module", motion_module, problem=str(e)) from None
        if kind == "diffusers" and folder_family(path) == "modelscope":
            if motion is not None:
                raise CVKInputError(node, "motion_module", motion_module,
                                    f"'{NONE}': {rel} is a ModelScope/Zeroscope model with its own temporal layers")
            return load_modelscope(path, precision, attention)
        return load_animatediff(path, motion, precision, attention)
    except host.ModelFileNotFound as e:
        raise CVKInputError(node, "model_name", choice, problem=str(e)) from None
    except CheckpointError as e:
        field = "motion_module" if e.role == "motion_module" else "model_name"
        raise CVKInputError(node, field, motion_module if field == "motion_module" else choice, problem=str(e)) from None
    except LoadOptionError as e:   # precision or attention that cannot run here
        raise CVKInputError(node, e.input, {"precision": precision, "attention": attention}[e.input],
                            problem=str(e)) from None


class CVK_VideoModelLoader:
    DESCRIPTION = ("Loads a video diffusion model as a CVK_VIDEO_MODEL: its denoiser, noise table, VAE and text "
                   "encoder. AnimateDiff: an SD1.5 checkpoint (models/checkpoints) or diffusers folder "
                   "(models/diffusers) plus a motion module (models/animatediff_models). ModelScope/Zeroscope: a "
                   "diffusers folder. LVDM text-to-video (t2v.ckpt) and VideoCrafter2 (model.ckpt): the file in "
                   "models/checkpoints. The 'tiny' models are untrained demos built in code, for trying workflows "
                   "without weights; their output is noise-like. Nothing is ever downloaded.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (VIDEO_MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The loaded model bundle (network, noise table, VAE, text encoder). Each part waits on its "
                       "offload device until a node needs it, then stays on the GPU under ComfyUI's model "
                       "management, which unloads it when it needs the room or on 'Unload models'.",)
    FUNCTION = "load"
    FILE_INPUTS = ("model_name", "motion_module")   # checked by load_video_model (missing files named)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_name": (model_choices(), {"tooltip": "The base model: a tiny demo, a single file (checkpoints/…: "
                                                        "SD1.5, LVDM t2v.ckpt or VideoCrafter2 model.ckpt) or a "
                                                        "diffusers folder (diffusers/…; SD1.5 or "
                                                        "ModelScope/Zeroscope)."}),
        }, "optional": {  # optional: API prompts written before these inputs existed still validate
            "motion_module": (motion_module_choices(), {"default": NONE, "tooltip": (
                "AnimateDiff motion module from models/animatediff_models (mm_sd_v15_v2, v3_sd15_mm; original or "
                "diffusers layout). 'none' for ModelScope/Zeroscope, the tiny demos, or an AnimateDiff diffusers "
                "folder that has its own motion_adapter/.")}),
            "precision": (list(PRECISIONS), {"default": "auto", "tooltip": (
                "auto: fp32 on CPU; on a GPU fp16 UNet and text encoder, bf16 VAE (fp32 where bf16 is missing); each "
                "part by the device ComfyUI runs it on (--lowvram: text encoder on the CPU, fp32).")}),
            "attention": (list(ATTENTIONS), {"default": "sdpa", "tooltip": (
                "sdpa: PyTorch's attention (default). xformers: only when installed and on a CUDA GPU.")}),
        }}

    def load(self, model_name, motion_module=NONE, precision="auto", attention="sdpa"):
        return (load_video_model("CVK_VideoModelLoader", model_name, motion_module, precision, attention),)


class CVK_TextToVideo:
    DESCRIPTION = ("Text-to-video with the model's own sampler: DDIM (η = 0 deterministic, η > 0 stochastic) or "
                   "DDPM (ancestral, η = 1), with CFG or CFG++ guidance, on the model's default timestep grid.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The video latent [1, C, frames, height/8, width/8].",)
    FUNCTION = "generate"
    NODE = "CVK_TextToVideo"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (VIDEO_MODEL, {"tooltip": "The video model (from Load Video Model)."}),
            **prompt_inputs(),
            "seed": seed_input(),
            "steps": ("INT", {"default": 25, "min": 1, "max": 1000, "tooltip": "Denoising steps (model calls)."}),
            "guidance": (list(GUIDANCE_MODES), {"default": "cfg",
                                                "tooltip": "cfg: classifier-free guidance. cfg++: x0 from the guided "
                                                           "prediction, re-noised along the unconditional one "
                                                           "(use scales in [0, 1])."}),
            "guidance_scale": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 100.0, "step": 0.1,
                                         "tooltip": "CFG scale (7.5 typical) or CFG++ λ (0.4–1.0)."}),
            "sampler": (list(SAMPLERS), {"default": "ddim",
                                         "tooltip": "ddim: uses eta (0 = deterministic). ddpm: ancestral, η = 1."}),
            "eta": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                              "tooltip": "DDIM η: 0 deterministic, 1 = DDPM-like. Only for sampler ddim."}),
            **video_size_inputs(),
        }, "optional": {
            "fps": ("INT", {"default": 0, "min": 0, "max": 240, "tooltip": (
                "Frames per second the model is told, for models conditioned on it (VideoCrafter2: 0 = its default "
                "28, as its official script). Leave 0 for other models.")}),
        }}

    def generate(self, model, prompt, negative_prompt, seed, steps, guidance, guidance_scale, sampler, eta,
                 frames, width, height, fps=0):
        node = self.NODE
        model = check_model(node, model)
        if fps and not model.takes_fps:
            raise CVKInputError(node, "fps", fps, f"0 for {model.name}, which is not conditioned on fps (only "
                                                  f"VideoCrafter2 is)")
        check_size(node, width, height, model.latent_format.spatial_factor)
        check_frames(node, frames, model)
        if sampler == "ddpm" and eta not in (0.0, 1.0):
            raise CVKInputError(node, "eta", eta, "0 or 1 with sampler ddpm (ddpm is η = 1); choose sampler ddim "
                                                  "for other η")
        sigmas = sigmas_or_error(node, steps, lambda: model.sigmas(steps))
        cond, uncond = (model.encode_prompt_pair(prompt, negative_prompt, fps=fps or None) if model.takes_fps
                        else model.encode_prompt_pair(prompt, negative_prompt))
        shape = model.latent_shape(frames, width, height)
        with model.loaded(shape) as device:
            z = sample(model.denoiser(), shape, sigmas, cond, uncond, guidance_scale, guidance,
                       eta_for(sampler, eta), seed, device, step_callback(steps, node))
        return (latent_out(z.to(host.intermediate_device()), model),)


class CVK_DecodeVideo:
    DESCRIPTION = ("Decodes a video latent to IMAGE frames with the model's VAE: SD's VAE a few frames at a time; "
                   "LVDM's 3-D video AE in overlapping windows of latents (window, overlap, seams).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The frames as an IMAGE batch [frames, height, width, 3] (all videos of the batch in turn).",)
    FUNCTION = "decode"
    NODE = "CVK_DecodeVideo"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (VIDEO_MODEL, {"tooltip": "The model whose VAE decodes the latent."}),
            "latent": ("LATENT", {"tooltip": "A 5-D video latent [batch, channels, frames, h, w]."}),
            "frames_per_batch": frames_per_batch_input("decoded"),
        }, "optional": {   # LVDM's 3-D video AE only (SD's VAE decodes frame by frame)
            "window": ("INT", {"default": 32, "min": 0, "max": 4096, "tooltip": (
                "3-D video AE (LVDM) only: latents decoded at once (4 frames each; 0 = all at once). Memory stays "
                "bounded by the window however long the video; lower it if decoding runs out of memory.")}),
            "overlap": ("INT", {"default": 12, "min": 0, "max": 4096, "step": 2, "tooltip": (
                "3-D video AE (LVDM) only: latents that neighbouring windows share (even; half is dropped on each "
                "side of a seam). Seams 'exact' need at least 12 (twice the released decoder's temporal reach).")}),
            "seams": (list(SEAMS), {"default": "exact", "tooltip": (
                "3-D video AE (LVDM) only. exact: the result equals the all-at-once decode (the decoder's "
                "GroupNorms get the whole video's statistics in extra passes; about 6× the compute of plain). "
                "plain: each window on its own, as the official overlapped decode (faster; the windows' colours "
                "can differ slightly).")}),
        }}

    def decode(self, model, latent, frames_per_batch, window=32, overlap=12, seams="exact"):
        node = self.NODE
        model = check_model(node, model, kind=ANY)
        x = check_latent(node, latent, model)
        if model.latent_format.temporal_factor == 1:
            return (model.vae.decode(x, frames_per_batch),)
        if 0 < window < x.shape[2]:       # windows at all
            if overlap % 2:
                raise CVKInputError(node, "overlap", overlap, "an even number of latents (half of it is dropped on "
                                                              "each side of a seam)")
            if overlap >= window:
                raise CVKInputError(node, "overlap", overlap, f"fewer latents than the window ({window})")
            need = model.vae.min_exact_overlap()
            if seams == "exact" and overlap < need:
                raise CVKInputError(node, "overlap", overlap, f"at least {need} latents with seams 'exact' (twice the "
                                                              f"decoder's temporal reach), or seams 'plain'")
        return (model.vae.decode(x, window, overlap, seams),)


class CVK_EncodeVideo:
    DESCRIPTION = "Encodes IMAGE frames (one video) to a 5-D video latent with the model's VAE."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The video latent [1, C, frames, height/8, width/8].",)
    FUNCTION = "encode"
    NODE = "CVK_EncodeVideo"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (VIDEO_MODEL, {"tooltip": "The model whose VAE encodes the frames."}),
            "images": ("IMAGE", {"tooltip": "Frames [frames, height, width, channels], height and width multiples "
                                            "of 8."}),
            "frames_per_batch": frames_per_batch_input("encoded"),
        }}

    def encode(self, model, images, frames_per_batch):
        model = check_model(self.NODE, model, kind=ANY)
        check_images(self.NODE, images, model)
        tf = model.latent_format.temporal_factor
        if tf > 1:
            for name, v in (("images", images.shape[0]), ("frames_per_batch", frames_per_batch)):
                if v % tf:
                    raise CVKInputError(self.NODE, name, f"{v} frames" if name == "images" else v,
                                        f"a multiple of {tf} frames for {model.name}'s 3-D video AE (it encodes {tf} "
                                        f"frames into one latent; clips of 16 frames, as it was trained)")
        return (latent_out(model.vae.encode(images, frames_per_batch), model),)


NODE_CLASS_MAPPINGS = {
    "CVK_VideoModelLoader": CVK_VideoModelLoader,
    "CVK_TextToVideo": CVK_TextToVideo,
    "CVK_DecodeVideo": CVK_DecodeVideo,
    "CVK_EncodeVideo": CVK_EncodeVideo,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "CVK_VideoModelLoader": "Load Video Model (CVK)",
    "CVK_TextToVideo": "Text to Video (CVK)",
    "CVK_DecodeVideo": "Decode Video (CVK)",
    "CVK_EncodeVideo": "Encode Video (CVK)",
}
