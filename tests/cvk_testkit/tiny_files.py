"""Tiny model FILES in the released layouts, written by tests (nothing is downloaded or committed):
an SD1.5-layout single-file checkpoint with original LDM key names, AnimateDiff motion modules in the
original and the diffusers layout, an SD1.5 diffusers folder, a ModelScope-style diffusers folder, and a
tiny config root laid out like ``models/configs``.

The tiny SD1.5 layout keeps SD1.5's structure (4 levels, 2 layers per block, 3 cross-attention levels,
the 49408-token CLIP vocabulary) with tiny widths, so the same key maps apply.
"""
from __future__ import annotations

import json
import math
import os
import shutil

import torch

TINY_SD_UNET = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[32, 32, 64, 64],
                    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                    cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)
TINY_SD_VAE = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                   up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 8, 16, 16], layers_per_block=2,
                   norm_num_groups=4, latent_channels=4, sample_size=64, scaling_factor=0.18215)
TINY_SD_TEXT = dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                    max_position_embeddings=77, projection_dim=32, hidden_act="quick_gelu",
                    bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
# heads and norm groups as in the shipped v2/v3 configs (a file's shapes do not show them)
TINY_MOTION = dict(block_out_channels=[32, 32, 64, 64], motion_layers_per_block=2, motion_num_attention_heads=8,
                   motion_norm_num_groups=32, motion_max_seq_length=32)
TINY_UNET3D = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=[32, 64], layers_per_block=1,
                   down_block_types=["CrossAttnDownBlock3D", "DownBlock3D"], up_block_types=["UpBlock3D", "CrossAttnUpBlock3D"],
                   cross_attention_dim=32, attention_head_dim=8, norm_num_groups=4)
SCHEDULE_BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "posterior_variance")


def _seeded(seed, build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        m = build()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():   # zero-initialised layers get values too, so every tensor is checkable
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    return m.eval()


def tiny_sd_models(seed=0):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    unet = _seeded(seed, lambda: UNet2DConditionModel(**TINY_SD_UNET))
    vae = _seeded(seed + 1, lambda: AutoencoderKL(**TINY_SD_VAE))
    text = _seeded(seed + 2, lambda: CLIPTextModel(CLIPTextConfig(**TINY_SD_TEXT)))
    return unet, vae, text


def tiny_motion_adapter(mid_block: bool, seed=10, **overrides):
    from diffusers import MotionAdapter
    return _seeded(seed, lambda: MotionAdapter(**dict(TINY_MOTION, use_motion_mid_block=mid_block, **overrides)))


def save(sd: dict, path: str) -> str:
    sd = {k: v.contiguous() for k, v in sd.items()}
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file
        save_file(sd, path)
    else:
        torch.save(sd, path)
    return path


def write_sd_single_file(path: str, seed=0, extras=True):
    """An SD1.5-layout single file in original LDM key names (UNet, VAE with 1×1-conv attention, CLIP),
    plus, with ``extras``, the schedule buffers and old position_ids an SD file carries. Returns the models."""
    from consistent_video_kit.models import convert
    unet, vae, text = tiny_sd_models(seed)
    sd = {}
    sd.update(convert.to_original_state_dict(unet.state_dict(), convert.unet_key_map(TINY_SD_UNET), convert.UNET_PREFIX))
    sd.update(convert.to_original_state_dict(vae.state_dict(), convert.vae_key_map(TINY_SD_VAE), convert.VAE_PREFIX,
                                             reshape_attention_to_conv=True))
    sd.update(convert.to_original_state_dict(text.state_dict(), convert.clip_key_map(), convert.CLIP_PREFIX))
    if extras:
        for name in SCHEDULE_BUFFERS:
            sd[name] = torch.linspace(0.1, 0.9, 1000)
        sd[convert.CLIP_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(77)[None]
    save(sd, path)
    return unet, vae, text


def write_motion_module(path: str, mid_block=True, layout="original", seed=10, table=32):
    """A motion module file; ``original`` adds the per-attention ``pos_encoder.pe`` tables the released
    files carry (``table`` rows: 24 for v1 modules, 32 for v2/v3). Returns the adapter."""
    from consistent_video_kit.models import convert
    adapter = tiny_motion_adapter(mid_block, seed)
    sd = adapter.state_dict()
    if layout == "original":
        sd = {convert.motion_key_map()(k): v for k, v in sd.items() if not k.endswith(".pos_embed.pe")}
        for k in [k for k in sd if k.endswith("attention_blocks.0.to_q.weight")]:
            for a in (0, 1):
                c = sd[k].shape[0]
                sd[k.replace("attention_blocks.0.to_q.weight", f"attention_blocks.{a}.pos_encoder.pe")] = torch.randn(1, table, c)
    save(sd, path)
    return adapter


def write_tokenizer(folder: str) -> None:
    from consistent_video_kit.models.text import char_clip_tokenizer
    char_clip_tokenizer().save_pretrained(folder)


def write_config_root(root: str) -> str:
    """A config root laid out like ``models/configs``, for the tiny SD1.5 layout (+ a tokenizer, which
    the shipped root leaves to ComfyUI)."""
    from consistent_video_kit.models.loaders import CONFIG_ROOT
    shutil.copytree(os.path.join(CONFIG_ROOT, "animatediff"), os.path.join(root, "animatediff"))
    unet, vae, text = tiny_sd_models()
    unet.save_config(os.path.join(root, "sd15", "unet"))
    vae.save_config(os.path.join(root, "sd15", "vae"))
    text.config.save_pretrained(os.path.join(root, "sd15", "text_encoder"))
    write_tokenizer(os.path.join(root, "sd15", "tokenizer"))
    return root


def _scheduler(folder: str, beta_schedule: str) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "scheduler_config.json"), "w") as f:
        json.dump({"_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": beta_schedule,
                   "num_train_timesteps": 1000, "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1,
                   "prediction_type": "epsilon", "timestep_spacing": "leading"}, f)


def _write_folder(folder: str, unet, vae, text, pipeline: str) -> None:
    """What ``save_pretrained`` of a diffusers pipeline writes: one sub-folder per component."""
    unet.save_pretrained(os.path.join(folder, "unet"))
    vae.save_pretrained(os.path.join(folder, "vae"))
    text.save_pretrained(os.path.join(folder, "text_encoder"))
    write_tokenizer(os.path.join(folder, "tokenizer"))
    _scheduler(os.path.join(folder, "scheduler"), "scaled_linear")
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump({"_class_name": pipeline}, f)


def write_sd_folder(folder: str, seed=0, motion_adapter_mid_block=None):
    """An SD1.5 diffusers folder, optionally with a ``motion_adapter/``."""
    unet, vae, text = tiny_sd_models(seed)
    _write_folder(folder, unet, vae, text, "StableDiffusionPipeline")
    adapter = None
    if motion_adapter_mid_block is not None:
        adapter = tiny_motion_adapter(motion_adapter_mid_block)
        adapter.save_pretrained(os.path.join(folder, "motion_adapter"))
    return unet, vae, text, adapter


def write_modelscope_folder(folder: str, seed=20):
    """A ModelScope/Zeroscope-style diffusers folder: UNet3DConditionModel, VAE, CLIP text encoder, tokenizer."""
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    unet = _seeded(seed, lambda: UNet3DConditionModel(**TINY_UNET3D))
    vae = _seeded(seed + 1, lambda: AutoencoderKL(**TINY_SD_VAE))
    text = _seeded(seed + 2, lambda: CLIPTextModel(CLIPTextConfig(**TINY_SD_TEXT)))
    _write_folder(folder, unet, vae, text, "TextToVideoSDPipeline")
    return unet, vae, text


def cameractrl_state(cc) -> tuple[dict, dict]:
    """(pose encoder, attention merges) of a CameraCtrl module in the released file's key names."""
    from consistent_video_kit.models.cameractrl import _file_key
    merges = {}
    for slot, _ in cc.slots:
        m = cc.merge(slot)
        merges[f"{_file_key(slot)}.weight"], merges[f"{_file_key(slot)}.bias"] = m.weight, m.bias
    return dict(cc.pose_encoder.state_dict()), merges


def write_cameractrl(path: str, unet, layout: str = "released", seed: int = 50):
    """A CameraCtrl file for ``unet``: ``released`` = the two dicts plus the training state the released file
    carries (epoch, global_step, an AdamW-shaped optimizer state); ``flat`` = AnimateDiff-Evolved's single dict
    (``.safetensors`` or a pickle). Every weight random. Returns the CameraCtrl module."""
    from consistent_video_kit.models.cameractrl import tiny_cameractrl
    cc = tiny_cameractrl(unet, seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in cc.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    enc, merges = cameractrl_state(cc)
    if layout == "flat":
        save({**enc, **merges}, path)
    else:
        trainable = [v for k, v in {**enc, **merges}.items() if not k.endswith("pos_encoder.pe")]
        optim = {"state": {i: {"step": torch.tensor(7.0), "exp_avg": torch.zeros_like(v), "exp_avg_sq": torch.zeros_like(v)}
                           for i, v in enumerate(trainable)}, "param_groups": [{"lr": 1e-4, "params": list(range(len(trainable)))}]}
        torch.save({"epoch": 3, "global_step": 1200, "pose_encoder_state_dict": {k: v.contiguous() for k, v in enc.items()},
                    "attention_processor_state_dict": {k: v.contiguous() for k, v in merges.items()},
                    "optimizer_state_dict": optim}, path)
    return cc


# ImageReward: the pack's BlipVisionModel names → the released file's timm-style ViT names (written here on its own,
# the reverse of the pack's rename table, so a file written with it tests that table)
IMAGEREWARD_VISION_TO_FILE = (("embeddings.class_embedding", "cls_token"), ("embeddings.position_embedding", "pos_embed"),
                              ("embeddings.patch_embedding.", "patch_embed.proj."), ("encoder.layers.", "blocks."),
                              ("layer_norm1.", "norm1."), ("layer_norm2.", "norm2."), ("self_attn.qkv.", "attn.qkv."),
                              ("self_attn.projection.", "attn.proj."), ("post_layernorm.", "norm."))


def imagereward_file_state(model, prefix: str = "") -> dict:
    """An ImageReward model's tensors under the released file's names (cloned), with med.py's persistent
    ``blip.text_encoder.embeddings.position_ids`` buffer (``arange``), as ``torch.save(model.state_dict())``."""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("blip.visual_encoder."):
            rest = k[len("blip.visual_encoder."):]
            for ours, theirs in IMAGEREWARD_VISION_TO_FILE:
                rest = rest.replace(ours, theirs)
            k = "blip.visual_encoder." + rest
        out[prefix + k] = v.detach().clone().contiguous()
    n = model.blip.text_encoder.config.max_position_embeddings
    out[prefix + "blip.text_encoder.embeddings.position_ids"] = torch.arange(n)[None]
    return out


def write_imagereward(folder: str, model=None, vocab=True, prefix: str = "", name: str = "ImageReward.pt") -> str:
    """A folder like ``models/scorers/ImageReward``: the tiny ImageReward as ``ImageReward.pt`` (a plain
    ``torch.save`` of the state dict) and, with ``vocab``, its WordPiece vocabulary as ``vocab.txt``."""
    from consistent_video_kit.models import imagereward as IR
    model = model if model is not None else IR.tiny_imagereward_scorer().model
    os.makedirs(folder, exist_ok=True)
    torch.save(imagereward_file_state(model, prefix), os.path.join(folder, name))
    if vocab:
        with open(os.path.join(folder, "vocab.txt"), "w") as f:
            f.write("\n".join(IR.TINY_VOCAB) + "\n")
    return folder


# ---------------------------------------------------------------- real-size files (ComfyUI and ADE take no other)
# ComfyUI recognises an SD1.5 file only at model_channels 320 / context 768, and AnimateDiff-Evolved builds a motion
# module at SD1.5's widths (320, 640, 1280, 1280) and injects it by SD1.5's block layout, so interop with ADE needs the
# real sizes. The networks are built on the meta device from the shipped configs (nothing allocated), and their
# weights are slices of one seeded random pool, scaled per tensor (weights 1/√fan-in, norm scales 1 + small, biases
# small): seconds for a billion values, where drawing each one would take a minute.

def _pool_fill(shapes: dict, seed: int, dtype: torch.dtype, keep_float32=()) -> dict:
    pool_size = 4_194_301                   # a prime: no weight row lines up with the pool's period
    gen = torch.Generator().manual_seed(seed)
    pool = torch.randn(pool_size, generator=gen)
    starts = torch.randint(0, pool_size, (len(shapes),), generator=gen).tolist()
    out = {}
    for (key, shape), start in zip(shapes.items(), starts):
        n = math.prod(shape)
        reps = (start + n) // pool_size + 1
        v = (pool.repeat(reps)[start:start + n] if reps > 1 else pool[start:start + n]).reshape(shape)
        if len(shape) >= 2:
            v = v / math.sqrt(math.prod(shape[1:]))
        elif key.endswith("weight"):                     # norm scales
            v = 1.0 + 0.1 * v
        else:
            v = 0.02 * v
        out[key] = v.to(torch.float32 if key in keep_float32 else dtype).contiguous()
    return out


def _meta_state_shapes(build) -> dict:
    with torch.device("meta"):
        m = build()
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def write_sd15_real_size(path: str, seed: int = 0, dtype: torch.dtype = torch.float16) -> str:
    """An SD1.5 single file at SD1.5's real sizes (UNet 860 M, VAE 84 M, CLIP ViT-L text 123 M parameters) in original
    LDM key names, weights from :func:`_pool_fill`, stored as ``dtype`` (float16: 2.1 GB, as the released
    ``-fp16`` files). Loads in ComfyUI's Load Checkpoint and in the pack's loader."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    from consistent_video_kit.models import convert
    from consistent_video_kit.models.loaders import CONFIG_ROOT, read_json
    cfg = {p: read_json(os.path.join(CONFIG_ROOT, "sd15", p, "config.json")) for p in ("unet", "vae", "text_encoder")}
    clean = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    shapes = {}
    unet = _meta_state_shapes(lambda: UNet2DConditionModel(**clean(cfg["unet"])))
    vae = _meta_state_shapes(lambda: AutoencoderKL(**clean(cfg["vae"])))
    text = _meta_state_shapes(lambda: CLIPTextModel(CLIPTextConfig(**clean(cfg["text_encoder"]))))
    for part, key_map, prefix, conv in ((unet, convert.unet_key_map(cfg["unet"]), convert.UNET_PREFIX, False),
                                        (vae, convert.vae_key_map(cfg["vae"]), convert.VAE_PREFIX, True),
                                        (text, convert.clip_key_map(), convert.CLIP_PREFIX, False)):
        meta = {k: torch.empty(s, device="meta") for k, s in part.items() if not k.endswith("position_ids")}
        shapes.update({k: tuple(v.shape) for k, v in convert.to_original_state_dict(
            meta, key_map, prefix, reshape_attention_to_conv=conv).items()})
    sd = _pool_fill(shapes, seed, dtype)
    sd[convert.CLIP_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(77)[None]
    return save(sd, path)


def sinusoid_table(length: int, width: int) -> torch.Tensor:
    """AnimateDiff's positional table ``(1, length, width)`` (sin on even channels, cos on odd), float32."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    pe = torch.zeros(1, length, width)
    pe[0, :, 0::2] = torch.sin(pos * div)
    pe[0, :, 1::2] = torch.cos(pos * div)
    return pe


def write_motion_module_real_size(path: str, version: str = "v2", seed: int = 10) -> str:
    """A motion module at SD1.5's widths in the original key layout (``v2``: with the mid-block module, 453 M
    parameters; ``v3``: without), float32 as the released ``mm_sd_v15_v2.ckpt`` (1.8 GB), the positional tables
    AnimateDiff's sinusoids (32 rows) as the released files carry them."""
    from diffusers import MotionAdapter
    from consistent_video_kit.models import convert
    from consistent_video_kit.models.loaders import CONFIG_ROOT, read_json
    cfg = read_json(os.path.join(CONFIG_ROOT, "animatediff", "motion_adapter_v2", "config.json"))
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg["use_motion_mid_block"] = version == "v2"
    shapes = _meta_state_shapes(lambda: MotionAdapter(**cfg))
    key = convert.motion_key_map()
    shapes = {key(k): s for k, s in shapes.items() if not k.endswith(".pos_embed.pe")}
    sd = _pool_fill(shapes, seed, torch.float32)
    for k in [k for k in sd if k.endswith("attention_blocks.0.to_q.weight")]:
        for a in (0, 1):
            sd[k.replace("attention_blocks.0.to_q.weight", f"attention_blocks.{a}.pos_encoder.pe")] = sinusoid_table(
                cfg["motion_max_seq_length"], sd[k].shape[0])
    return save(sd, path)


#: The real-size test files' names (in ``checkpoints/`` and ``animatediff_models/``); the native examples' API copies
#: name them in place of the real files the examples name.
REAL_SIZE_FILES = {"checkpoint": "cvk_test_sd15_real_size.safetensors", "motion_module": "cvk_test_mm_v2_real_size.ckpt"}


def write_real_size_files(models: str) -> dict:
    """:data:`REAL_SIZE_FILES` into ``models/checkpoints`` and ``models/animatediff_models`` (kept when there)."""
    paths = {"checkpoint": os.path.join(models, "checkpoints", REAL_SIZE_FILES["checkpoint"]),
             "motion_module": os.path.join(models, "animatediff_models", REAL_SIZE_FILES["motion_module"])}
    for what, path in paths.items():
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            base, ext = os.path.splitext(path)               # save() picks the format by the extension
            (write_sd15_real_size if what == "checkpoint" else write_motion_module_real_size)(base + ".part" + ext)
            os.replace(base + ".part" + ext, path)
    return paths
