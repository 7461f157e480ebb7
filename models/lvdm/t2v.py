"""The text-to-video members of the LVDM family as ``CVK_VIDEO_MODEL``: LVDM's ``t2v.ckpt`` (the first VideoCrafter
base) and VideoCrafter2 (``base_512_v2`` ``model.ckpt``). Both work in SD's 2-D VAE latent space (KL-f8, 0.18215),
so they meet AnimateDiff and ModelScope in VideoGuide.

- **LVDM T2V**: :class:`.t2v_unet.T2VUNet`, CLIP-L (transformers' ``CLIPTextModel``; the file's old
  ``position_ids`` buffer is ignored), LDM "linear" betas 0.00085 → 0.012; 256×256, 16 frames.
- **VideoCrafter2**: :class:`.vc2_unet.VC2UNet` conditioned on the text and on ``fps`` (28 for its own
  text-to-video, 8 when it guides VideoGuide), OpenCLIP ViT-H/14's penultimate layer + final layer norm
  (:mod:`..openclip_text`), the same betas and ``scale_arr`` (the clean signal scaled by 1 → 0.7 over the first 400
  timesteps: ``z_t = √ᾱ_t·s_t·x0 + √(1 − ᾱ_t)·ε``, see :class:`...samplers.vp.VPDenoiser`); 320×512, 16 frames.

Files: a ``.ckpt`` with ``model.diffusion_model.*``, ``first_stage_model.*`` (SD's VAE, LDM names),
``cond_stage_model.*`` and schedule buffers, bare or ``{"state_dict": …}``.
"""
from __future__ import annotations

import os
from typing import Optional

import torch

from ... import host
from .. import convert
from ..bundle import ScheduleDefaults, VideoModel
from ..checkpoint import CheckpointError, empty_params, load_into, match_state_dict, read_state_dict
from ..loaders import (CONFIG_ROOT, _precision, _strip_text_model, build_text_encoder, load_tokenizer, make_vae,
                       read_json)
from ..text import TextEncoder
from .model import SCHEDULE_BUFFERS, UNET_PREFIX, ldm_alphas_cumprod, set_attention

T2V, VC2 = "lvdm-t2v", "videocrafter2"
TEXT_FAMILIES = (T2V, VC2)
VAE_PREFIX, T2V_TEXT_PREFIX, VC2_TEXT_PREFIX = "first_stage_model.", "cond_stage_model.transformer.", \
    "cond_stage_model.model."
VC2_FPS, VIDEOGUIDE_FPS = 28, 8
NATIVE = {T2V: (256, 256, 16), VC2: (512, 320, 16)}       # width, height, frames
UNET_CONFIGS = {T2V: "t2v_unet.json", VC2: "vc2_unet.json"}


def text_family(shapes: dict) -> Optional[str]:
    """``lvdm-t2v`` / ``videocrafter2`` for such a checkpoint's key → shape, else None."""
    if any(".temopral_conv." in k for k in shapes):
        return VC2
    if any(".attn1_tmp." in k for k in shapes):
        return T2V
    return None


def vc2_scale_arr(scale_a: float = 1.0, scale_b: float = 0.7, mid_step: int = 400, total: int = 1000) -> torch.Tensor:
    """VideoCrafter2's ``scale_arr`` (``use_scale: true``, ``scale_b: 0.7``): linspace(1, 0.7, 400) then 1000 × 0.7,
    1400 entries of which the first 1000 are indexed; float32 as its buffer, returned as float64."""
    import numpy as np
    arr = np.concatenate((np.linspace(scale_a, scale_b, mid_step), np.full(total, scale_b)))
    return torch.from_numpy(arr).to(torch.float32).to(torch.float64)


class LVDMTextModel(VideoModel):
    """A ``CVK_VIDEO_MODEL`` whose UNet is LVDM's T2V or VideoCrafter2's: ``unet(z, t, context[, fps])``. ``cond``
    holds ``text`` and, for VideoCrafter2, ``fps`` (an int; :meth:`encode_prompt_pair` sets the default)."""

    def __init__(self, name: str, family: str, unet, vae, text: TextEncoder, alphas_cumprod: torch.Tensor,
                 signal_scale: Optional[torch.Tensor] = None, native_size: Optional[tuple[int, int, int]] = None,
                 untrained: bool = False):
        if family not in TEXT_FAMILIES:
            raise ValueError(f"family must be one of {TEXT_FAMILIES}, got {family!r}")
        super().__init__(name, family, unet, vae, text, alphas_cumprod, "epsilon",
                         ScheduleDefaults("leading", 1, "sigma_min"), native_size or NATIVE[family], max_frames=None,
                         untrained=untrained)
        self.signal_scale = None if signal_scale is None else signal_scale.to(torch.float64)
        self.default_fps = VC2_FPS if family == VC2 else None

    @property
    def takes_fps(self) -> bool:
        return self.default_fps is not None

    def encode_prompt_pair(self, prompt: str, negative_prompt: str, fps: Optional[int] = None):
        cond, uncond = super().encode_prompt_pair(prompt, negative_prompt)
        if self.takes_fps:
            f = self.default_fps if fps is None else int(fps)
            cond, uncond = dict(cond, fps=f), dict(uncond, fps=f)
        return cond, uncond

    def network(self, z: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        wanted = {"text"} | ({"fps"} if self.takes_fps else set())
        if set(cond) != wanted:
            odd = set(cond) ^ wanted
            raise ValueError(f"{self.name} is conditioned on {' and '.join(sorted(wanted))}; "
                             + ", ".join(f"{'missing' if k in wanted else 'it cannot take'} {k!r}" for k in sorted(odd)))
        device, dtype = self.unet_part.device, self.unet_part.dtype
        B = z.shape[0]
        text = cond["text"].to(device=device, dtype=dtype)
        t = t.to(device=device, dtype=torch.float32 if t.is_floating_point() else t.dtype)
        t = t.reshape(-1).expand(B) if t.numel() == 1 else t.reshape(B)
        extra = {}
        if self.takes_fps:
            extra["fps"] = torch.as_tensor(cond["fps"], device=device).reshape(-1).expand(B)
        out = self.unet(z.to(device=device, dtype=dtype), t, context=text, **extra)
        return out.to(device=z.device, dtype=torch.float32)


def build_unet(family: str, config_root: str = CONFIG_ROOT) -> torch.nn.Module:
    cfg = read_json(os.path.join(config_root, "lvdm", UNET_CONFIGS[family]))
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    if family == T2V:
        from .t2v_unet import T2VUNet as cls
    else:
        from .vc2_unet import VC2UNet as cls
    with empty_params():
        return cls(**cfg)


def _split(sd: dict, family: str, name: str) -> tuple[dict, dict, dict]:
    """UNet, VAE and text-encoder tensors, prefixes removed; anything else must be a schedule buffer."""
    text_prefix = T2V_TEXT_PREFIX if family == T2V else VC2_TEXT_PREFIX
    parts, stray = ({}, {}, {}), []
    for k, v in sd.items():
        for i, prefix in enumerate((UNET_PREFIX, VAE_PREFIX, text_prefix)):
            if k.startswith(prefix):
                parts[i][k[len(prefix):]] = v
                break
        else:
            if k not in SCHEDULE_BUFFERS + ("scale_arr",):
                stray.append(k)
    if stray:
        raise CheckpointError(f"'{name}': {len(stray)} unexpected keys outside the UNet, VAE and text encoder: "
                              f"{', '.join(sorted(stray)[:12])}")
    return parts


def load_text_lvdm(path: str, family: str, precision: str = "auto", attention: str = "sdpa",
                   config_root: str = CONFIG_ROOT, device: Optional[torch.device] = None) -> LVDMTextModel:
    """LVDM's ``t2v.ckpt`` or VideoCrafter2's ``model.ckpt`` → ``CVK_VIDEO_MODEL``, strictly (ignored: the schedule
    buffers, whose ``alphas_cumprod`` and ``scale_arr`` are read; CLIP's old ``position_ids``; OpenCLIP's unused
    ``text_projection`` and ``logit_scale``), memory-mapped."""
    from diffusers import AutoencoderKL
    name = os.path.basename(path)
    device, prec = _precision(precision, device)
    sd = read_state_dict(path)
    unet_sd, vae_sd, text_sd = _split(sd, family, name)
    unet = build_unet(family, config_root)
    load_into(unet, match_state_dict(unet, unet_sd, f"'{name}' UNet"), prec.unet)
    vae_cfg = read_json(os.path.join(config_root, "sd15", "vae", "config.json"))
    with empty_params():
        vae = AutoencoderKL.from_config(vae_cfg)
    load_into(vae, match_state_dict(vae, vae_sd, f"'{name}' VAE", convert.invert(convert.vae_key_map(vae_cfg),
                                                                                vae.state_dict()), (r"^loss\.",)),
              prec.vae)
    tokenizer_dirs = [os.path.join(config_root, "sd15", "tokenizer"), host.comfy_resource_dir("sd1_tokenizer")]
    if family == T2V:
        text = build_text_encoder(os.path.join(config_root, "sd15", "text_encoder"))
        load_into(text, match_state_dict(text, text_sd, f"'{name}' text encoder", _strip_text_model,
                                         (r"embeddings\.position_ids$",)), prec.text)
        encoder = TextEncoder(load_tokenizer(tokenizer_dirs, f"'{name}'"), text)
    else:
        from ..openclip_text import OpenCLIPTextEncoder, build_openclip_text_model, match_openclip_text
        text_cfg = {k: v for k, v in read_json(os.path.join(config_root, "lvdm", "vc2_text.json")).items()
                    if not k.startswith("_")}
        with empty_params():
            text = build_openclip_text_model(**text_cfg)
        load_into(text, match_openclip_text(text, text_sd, f"'{name}' text encoder"), prec.text)
        encoder = OpenCLIPTextEncoder(load_tokenizer(tokenizer_dirs, f"'{name}'"), text)
    set_attention(unet, attention, device)
    ac = sd["alphas_cumprod"].to(torch.float64) if "alphas_cumprod" in sd else ldm_alphas_cumprod(0.00085, 0.012)
    scale = None
    if family == VC2:
        scale = sd["scale_arr"].to(torch.float64) if "scale_arr" in sd else vc2_scale_arr()
    label = "LVDM T2V" if family == T2V else "VideoCrafter2"
    return LVDMTextModel(f"{label} {name}", family, unet, make_vae(vae, vae_cfg), encoder, ac, scale)
