"""Loading real checkpoints, offline, into a ``CVK_VIDEO_MODEL``.

- **AnimateDiff**: an SD1.5 base — a single ``.safetensors`` / ``.ckpt`` (original LDM keys) read with the
  configs shipped in ``models/configs/sd15``, or a diffusers folder — plus a motion module file
  (``mm_sd_v15_v2``, ``v3_sd15_mm``; original or diffusers layout) → ``UNetMotionModel``. The noise
  schedule is AnimateDiff's own (``models/configs/animatediff/scheduler``: DDIM, linear betas), whatever
  the base's scheduler says, as the official inference configs do.
- **ModelScope / Zeroscope**: a diffusers folder (``UNet3DConditionModel``, VAE, text encoder, tokenizer,
  scheduler).

Every network is built from its config with parameters on the meta device and then strictly
matched (:mod:`.checkpoint`) — no hub, no diffusers/transformers download logic is ever called.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Optional

import torch

from .. import host
from . import convert
from .animatediff import match_original, motion_version
from .bundle import ScheduleDefaults, VideoModel
from .checkpoint import (CheckpointError, empty_params, file_role, load_into, match_state_dict, read_folder_weights,
                         read_shapes, read_state_dict)
from .text import TextEncoder
from .vae import VideoVAE
from ..samplers.vp import vp_alphas_cumprod

CONFIG_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
ATTENTIONS = ("sdpa", "xformers")
MOTION_FOLDER = "animatediff_models"
ANIMATEDIFF_UNETS = ("UNet2DConditionModel", "UNetMotionModel")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class LoadOptionError(ValueError):
    """A loader option (``precision`` or ``attention``) that cannot run here; ``input`` names it."""

    def __init__(self, input: str, message: str):
        super().__init__(message)
        self.input = input


@dataclass(frozen=True)
class Precision:
    unet: torch.dtype
    text: torch.dtype
    vae: torch.dtype


def resolve_precision(precision: str, device: torch.device, text_device: Optional[torch.device] = None,
                      vae_device: Optional[torch.device] = None) -> Precision:
    """``auto``, per part by the device it runs on (``device`` for the UNet; the text encoder's and VAE's
    default to it): fp32 on the CPU; on CUDA the UNet and text encoder in fp16 and the VAE in bf16 where
    supported (fp16 SD VAEs overflow), else fp32. An explicit choice applies to all three."""
    if precision not in PRECISIONS:
        raise LoadOptionError("precision", f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        text_device, vae_device = text_device or device, vae_device or device
        half = lambda d: torch.float16 if d.type == "cuda" else torch.float32  # noqa: E731
        vae = torch.bfloat16 if vae_device.type == "cuda" and host.bf16_native(vae_device) else torch.float32
        return Precision(half(device), half(text_device), vae)
    if precision == "fp16" and device.type == "cpu":
        raise LoadOptionError("precision", "fp16 does not run on the CPU; choose fp32 (or bf16)")
    d = _DTYPES[precision]
    return Precision(d, d, d)


def _precision(precision: str, device: Optional[torch.device]) -> tuple[torch.device, Precision]:
    """The UNet's device and the precision of every part: a given ``device`` for all of them, else each part's
    device from the host (inside ComfyUI its device for the part's role: ``--lowvram`` runs text encoders on
    the CPU, ``--cpu-vae`` the VAE)."""
    if device is not None:
        return device, resolve_precision(precision, device)
    device = host.load_device("diffusion")
    return device, resolve_precision(precision, device, host.load_device("text_encoder"), host.load_device("vae"))


def read_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"missing config file '{path}'")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"config file '{path}' is not valid JSON ({e})") from None


def _build(cls, config: dict):
    with empty_params():
        return cls.from_config(config)


# ---------------------------------------------------------------- components

def build_text_encoder(config_dir: str):
    from transformers import CLIPTextConfig, CLIPTextModel
    cfg = CLIPTextConfig.from_dict(read_json(os.path.join(config_dir, "config.json")))
    with empty_params():
        return CLIPTextModel(cfg)


def load_tokenizer(folders: list[Optional[str]], what: str):
    """A CLIP tokenizer from the first folder that has one (vocab.json + merges.txt, or tokenizer.json)."""
    from transformers import CLIPTokenizer
    for folder in folders:
        if folder and os.path.isdir(folder) and any(
                os.path.isfile(os.path.join(folder, f)) for f in ("vocab.json", "tokenizer.json")):
            return CLIPTokenizer.from_pretrained(folder, local_files_only=True, model_max_length=77)
    searched = "\n  ".join(f for f in folders if f) or "(none)"
    raise CheckpointError(
        f"{what}: no CLIP tokenizer found. A single model file carries none; inside ComfyUI the pack uses "
        f"ComfyUI's own comfy/sd1_tokenizer (the standard CLIP vocabulary). Otherwise put the tokenizer files "
        f"(vocab.json and merges.txt, or tokenizer.json) in one of:\n  {searched}")


def make_vae(vae: torch.nn.Module, config: dict) -> VideoVAE:
    """Frame-sliced decoding always; spatial tiling too, which only acts on frames larger than the
    VAE's native size (512 px for SD's), so native-size results are unchanged."""
    vae.enable_tiling()
    return VideoVAE(vae, config.get("scaling_factor", 0.18215))


def _strip_text_model(key: str) -> str:
    return key[len("text_model."):] if key.startswith("text_model.") else key


def detect_sd_file(shapes: dict[str, tuple], name: str, text_dim: int = 768) -> None:
    """Refuse files that are not SD1.x single-file checkpoints (key → shape), saying what they look like."""
    keys = list(shapes)
    if any(k.startswith("first_stage_model.encoder.conv_blocks.") or ".qkv_t." in k for k in keys):
        raise CheckpointError(f"'{name}' is an LVDM model of the 3-D video AE family (short, pred or interp): load it "
                              f"with Load LVDM Model (CVK)")
    if any(k.startswith("conditioner.") for k in keys):
        raise CheckpointError(f"'{name}' looks like an SDXL checkpoint; AnimateDiff v2/v3 need an SD1.5 base")
    if not any(k.startswith(convert.UNET_PREFIX) for k in keys):
        if any(".motion_modules." in k for k in keys):
            raise CheckpointError(
                f"'{name}' is an AnimateDiff motion module, not a base model: choose it as the motion module "
                f"(models/{MOTION_FOLDER}/) and an SD1.5 checkpoint as the base")
        raise CheckpointError(f"'{name}' is not an SD1.5 checkpoint: it has no '{convert.UNET_PREFIX}*' keys")
    widths = {shapes[k][-1] for k in keys if k.startswith(convert.UNET_PREFIX) and k.endswith("attn2.to_k.weight")}
    if widths and widths != {text_dim}:
        raise CheckpointError(f"'{name}' has cross-attention width {sorted(widths)[-1]} (SD2.x has 1024); AnimateDiff "
                              f"v2/v3 need an SD1.5 base ({text_dim})")


def split_sd_file(sd: dict, name: str) -> tuple[dict, dict, dict]:
    """UNet, VAE and text-encoder tensors of an SD1.x file, prefixes removed; anything that is in none of
    them and not on the documented ignore-list is an error."""
    import re
    parts = ({}, {}, {})
    stray = []
    ignored = [re.compile(p) for p in convert.SD_IGNORED]
    for k, v in sd.items():
        for i, prefix in enumerate(convert.SD_PREFIXES):
            if k.startswith(prefix):
                parts[i][k[len(prefix):]] = v
                break
        else:
            if not any(p.search(k) for p in ignored):
                stray.append(k)
    if stray:
        raise CheckpointError(f"'{name}': {len(stray)} unexpected keys outside the UNet, VAE and text encoder: "
                              f"{', '.join(sorted(stray)[:12])}")
    return parts


def match_motion_module(target: torch.nn.Module, sd: dict, name: str) -> dict:
    """Strictly match motion-module tensors (original AnimateDiff or diffusers layout) onto the motion
    keys of ``target`` (a ``MotionAdapter`` or a ``UNetMotionModel``). Returns ``{model_key: tensor}``."""
    if any(k.startswith(convert.SD_PREFIXES) for k in sd):
        raise CheckpointError(f"'{name}' is a full SD checkpoint, not a motion module: choose it as the base model")
    if not any(".motion_modules." in k for k in sd):
        raise CheckpointError(f"'{name}' is not an AnimateDiff motion module: it has no '*.motion_modules.*' keys")
    motion_keys = [k for k in target.state_dict() if ".motion_modules." in k]
    if any(".temporal_transformer." in k for k in sd):   # original layout
        rename = convert.invert(convert.motion_key_map(), motion_keys)
    else:
        known = set(motion_keys)
        rename = lambda k: k if k in known else None  # noqa: E731
    return match_state_dict(target, sd, f"motion module '{name}'", rename, ignore_file=convert.MOTION_IGNORED,
                            optional_model=(r"^(?!.*\.motion_modules\.)",) + convert.MOTION_OPTIONAL)


def motion_config(shapes: dict[str, tuple], config_root: str) -> dict:
    """The adapter config of a motion module with these key → shape entries: the shipped v2 (with a
    mid-block module) or v3 config, with what the shapes determine read from them — widths per level,
    modules per level, the positional table's length (v1 modules use 24 frames, v2/v3 32). Heads and
    norm groups, which shapes do not show, come from the shipped config."""
    version = "v2" if any(k.startswith("mid_block.motion_modules.") for k in shapes) else "v3"
    cfg = read_json(os.path.join(config_root, "animatediff", f"motion_adapter_{version}", "config.json"))
    widths, per_level = [], 0
    for i in range(16):
        proj = [v for k, v in shapes.items()
                if k.startswith(f"down_blocks.{i}.motion_modules.") and k.endswith(".proj_in.weight")]
        if not proj:
            break
        widths.append(proj[0][0])
        per_level = max(per_level, len(proj))
    pe = [v for k, v in shapes.items() if k.endswith((".pos_encoder.pe", ".pos_embed.pe"))]
    if widths:
        cfg = dict(cfg, block_out_channels=widths, motion_layers_per_block=per_level)
    if pe:
        cfg["motion_max_seq_length"] = pe[0][1]
    return cfg


# ---------------------------------------------------------------- whole models

def _alphas_from_scheduler(cfg: dict) -> tuple[torch.Tensor, str, ScheduleDefaults]:
    """Noise table, prediction type and grid defaults of a diffusers scheduler config; options this
    pack does not implement are refused, not ignored."""
    unsupported = [k for k in ("trained_betas", "rescale_betas_zero_snr", "thresholding", "clip_sample") if cfg.get(k)]
    if unsupported:
        raise CheckpointError(f"scheduler options not supported yet: {', '.join(unsupported)}")
    try:
        ac = vp_alphas_cumprod(cfg.get("beta_schedule", "linear"), cfg.get("beta_start", 0.00085),
                               cfg.get("beta_end", 0.012), cfg.get("num_train_timesteps", 1000))
    except ValueError as e:
        raise CheckpointError(f"scheduler: {e}") from None
    schedule = ScheduleDefaults(cfg.get("timestep_spacing", "leading"), int(cfg.get("steps_offset", 0)),
                                "zero" if cfg.get("set_alpha_to_one", True) else "sigma_min")
    return ac, cfg.get("prediction_type", "epsilon"), schedule


def _sd_base(base: str, config_root: str, prec: Precision):
    """UNet (meta, with its matched weights), VAE, text encoder and tokenizer of an SD1.5 base: a
    diffusers folder (its own configs and key names; its UNet a ``UNet2DConditionModel``, or a
    ``UNetMotionModel`` where a whole AnimateDiff pipeline was saved) or a single file (shipped configs,
    LDM key names)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    name = os.path.basename(base.rstrip(os.sep))
    folder = os.path.isdir(base)
    cfg_dir = base if folder else os.path.join(config_root, "sd15")
    unet_cfg = read_json(os.path.join(cfg_dir, "unet", "config.json"))
    vae_cfg = read_json(os.path.join(cfg_dir, "vae", "config.json"))
    unet_cls = UNet2DConditionModel
    if folder:
        if unet_cfg.get("_class_name") not in ANIMATEDIFF_UNETS:
            raise CheckpointError(f"'{name}' is a {unet_cfg.get('_class_name')} folder, not an SD1.5 / AnimateDiff base")
        if unet_cfg["_class_name"] == "UNetMotionModel":   # a saved AnimateDiffPipeline: motion modules included
            from diffusers import UNetMotionModel as unet_cls
        unet_sd = read_folder_weights(os.path.join(base, "unet"), "diffusion_pytorch_model")
        vae_sd = read_folder_weights(os.path.join(base, "vae"), "diffusion_pytorch_model")
        text_sd = read_folder_weights(os.path.join(base, "text_encoder"), "model", "pytorch_model")
        tokenizer_dirs = [os.path.join(base, "tokenizer")]
    else:
        detect_sd_file(read_shapes(base), name, unet_cfg["cross_attention_dim"])
        unet_sd, vae_sd, text_sd = split_sd_file(read_state_dict(base, skip=convert.SD_IGNORED), name)
        tokenizer_dirs = [os.path.join(cfg_dir, "tokenizer"), host.comfy_resource_dir("sd1_tokenizer")]
    unet = _build(unet_cls, unet_cfg)
    vae = _build(AutoencoderKL, vae_cfg)
    text = build_text_encoder(os.path.join(cfg_dir, "text_encoder"))
    if folder:
        unet_rename, vae_rename, text_rename = None, None, _strip_text_model
    else:
        unet_rename = convert.invert(convert.unet_key_map(unet_cfg), unet.state_dict())
        vae_rename = convert.invert(convert.vae_key_map(vae_cfg), vae.state_dict())
        text_rename = convert.invert(convert.clip_key_map(), text.state_dict())
    unet_m = match_state_dict(unet, unet_sd, f"'{name}' UNet", unet_rename)
    load_into(vae, match_state_dict(vae, vae_sd, f"'{name}' VAE", vae_rename, (r"^loss\.",)), prec.vae)
    load_into(text, match_state_dict(text, text_sd, f"'{name}' text encoder", text_rename,
                                     (r"embeddings\.position_ids$",)), prec.text)
    tok = load_tokenizer(tokenizer_dirs, f"'{name}'")
    return unet, unet_m, make_vae(vae, vae_cfg), TextEncoder(tok, text)


def load_animatediff(base: str, motion_module: Optional[str], precision: str = "auto", attention: str = "sdpa",
                     config_root: str = CONFIG_ROOT, device: Optional[torch.device] = None) -> VideoModel:
    """SD1.5 base (file or diffusers folder) + motion module → ``CVK_VIDEO_MODEL`` on the offload device.
    A saved AnimateDiff pipeline folder (``UNetMotionModel``) carries its motion modules and takes none."""
    from diffusers import MotionAdapter, UNetMotionModel
    device, prec = _precision(precision, device)
    folder = os.path.isdir(base)
    whole = folder and read_json(os.path.join(base, "unet", "config.json")).get("_class_name") == "UNetMotionModel"
    if whole and motion_module is not None:
        raise _motion_error(f"'{os.path.basename(base)}' is a saved AnimateDiff pipeline with its own motion modules; "
                            f"choose none")
    if not whole and motion_module is None and os.path.isdir(os.path.join(base, "motion_adapter")):
        motion_module = os.path.join(base, "motion_adapter", "diffusion_pytorch_model.safetensors")
    if not whole and motion_module is None:   # say so before reading gigabytes, once the base is known to be one
        if not folder:
            width = read_json(os.path.join(config_root, "sd15", "unet", "config.json"))["cross_attention_dim"]
            detect_sd_file(read_shapes(base), os.path.basename(base), width)
        raise _motion_error(f"'{os.path.basename(base)}' is an SD1.5 base: AnimateDiff also needs a motion module "
                            f"(mm_sd_v15_v2 or v3_sd15_mm in models/{MOTION_FOLDER}/)")
    unet, unet_m, vae, text = _sd_base(base, config_root, prec)
    mm_name, motion_m = "motion modules included", {}
    if not whole:
        in_folder = os.path.basename(os.path.dirname(motion_module)) == "motion_adapter"
        mm_name = "motion_adapter" if in_folder else os.path.basename(motion_module)
        with file_role("motion_module"):
            mm_sd = read_state_dict(motion_module)
            adapter_cfg = (read_json(os.path.join(os.path.dirname(motion_module), "config.json")) if in_folder
                           else motion_config({k: tuple(v.shape) for k, v in mm_sd.items()}, config_root))
            adapter = _build(MotionAdapter, adapter_cfg)
            try:
                with empty_params():
                    unet = UNetMotionModel.from_unet2d(unet, adapter, load_weights=False)
            except ValueError as e:   # diffusers: levels or layers per block differ
                raise CheckpointError(f"motion module '{mm_name}' does not fit the base UNet: {e}") from None
            motion_m = match_motion_module(unet, mm_sd, mm_name)
            table = [v.shape[1] for k, v in mm_sd.items() if k.endswith((".pos_encoder.pe", ".pos_embed.pe"))]
            version = motion_version(adapter_cfg.get("use_motion_mid_block", True), table[0] if table else None)
            match_original(unet, adapter_cfg.get("motion_norm_num_groups", 32), version)
    else:   # a saved pipeline keeps no adapter config: its motion norms take the UNet's group count (SD1.5: 32)
        match_original(unet, unet.config.norm_num_groups, motion_version(unet.config.use_motion_mid_block, None))
    load_into(unet, {**unet_m, **motion_m}, prec.unet)
    set_attention(unet, attention, device)
    ac, pred, schedule = _alphas_from_scheduler(
        read_json(os.path.join(config_root, "animatediff", "scheduler", "scheduler_config.json")))
    return VideoModel(f"AnimateDiff {os.path.basename(base.rstrip(os.sep))} + {mm_name}", "animatediff", unet, vae,
                      text, ac, pred, schedule, (512, 512, 16), max_frames=int(unet.config.motion_max_seq_length))


def _motion_error(message: str) -> CheckpointError:
    err = CheckpointError(message)
    err.role = "motion_module"
    return err


def load_modelscope(folder: str, precision: str = "auto", attention: str = "sdpa",
                    device: Optional[torch.device] = None) -> VideoModel:
    """A ModelScope / Zeroscope diffusers folder → ``CVK_VIDEO_MODEL`` on the offload device."""
    from diffusers import AutoencoderKL, UNet3DConditionModel
    device, prec = _precision(precision, device)
    name = os.path.basename(folder.rstrip(os.sep))
    unet_cfg = read_json(os.path.join(folder, "unet", "config.json"))
    vae_cfg = read_json(os.path.join(folder, "vae", "config.json"))
    unet = _build(UNet3DConditionModel, unet_cfg)
    vae = _build(AutoencoderKL, vae_cfg)
    text = build_text_encoder(os.path.join(folder, "text_encoder"))
    load_into(unet, match_state_dict(unet, read_folder_weights(os.path.join(folder, "unet"), "diffusion_pytorch_model"),
                                     f"'{name}' UNet"), prec.unet)
    load_into(vae, match_state_dict(vae, read_folder_weights(os.path.join(folder, "vae"), "diffusion_pytorch_model"),
                                    f"'{name}' VAE"), prec.vae)
    load_into(text, match_state_dict(text, read_folder_weights(os.path.join(folder, "text_encoder"), "model", "pytorch_model"),
                                     f"'{name}' text encoder", _strip_text_model, (r"embeddings\.position_ids$",)),
              prec.text)
    set_attention(unet, attention, device)
    tok = load_tokenizer([os.path.join(folder, "tokenizer")], f"'{name}'")
    ac, pred, schedule = _alphas_from_scheduler(read_json(os.path.join(folder, "scheduler", "scheduler_config.json")))
    size = 8 * int(unet_cfg.get("sample_size", 64))
    return VideoModel(f"ModelScope {name}", "modelscope", unet, make_vae(vae, vae_cfg),
                      TextEncoder(tok, text), ac, pred, schedule, (size, size, 16))


def folder_family(folder: str) -> str:
    """``modelscope`` or ``animatediff`` (an SD1.5 base) for a diffusers folder, by its UNet class."""
    cls = read_json(os.path.join(folder, "unet", "config.json")).get("_class_name")
    if cls == "UNet3DConditionModel":
        return "modelscope"
    if cls in ANIMATEDIFF_UNETS:
        return "animatediff"
    raise CheckpointError(f"'{os.path.basename(folder)}': unsupported UNet class {cls!r} (expected UNet3DConditionModel "
                          f"for ModelScope/Zeroscope, UNet2DConditionModel for an SD1.5 base, or UNetMotionModel for "
                          f"a saved AnimateDiff pipeline)")


def set_attention(unet: torch.nn.Module, attention: str, device: torch.device) -> None:
    """SDPA (diffusers' default processors) or xformers; xformers that cannot run on ``device`` (the
    device the model will run on) raises a clear error."""
    if attention == "sdpa":
        return
    if attention != "xformers":
        raise LoadOptionError("attention", f"attention must be one of {ATTENTIONS}, got {attention!r}")
    if device.type != "cuda":
        raise LoadOptionError("attention", f"xformers needs a CUDA GPU and this model runs on {device.type}; choose sdpa")
    try:
        import xformers.ops  # noqa: F401
        unet.enable_xformers_memory_efficient_attention()
    except Exception as e:  # not installed, built for another torch, no kernel for this GPU ...
        reason = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        raise LoadOptionError("attention", f"xformers is not usable here ({reason}); choose sdpa") from None
