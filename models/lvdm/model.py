"""LVDM's short unconditional model and its pred/interp variant as a ``CVK_VIDEO_MODEL``, and their loading.

- **Latent space**: the 3-D video autoencoder's (4 channels, ×4 time, ×8 space), normalised per dataset as
  ``z = scale·(z_raw + shift)`` (:class:`VideoAE3D`; presets in :data:`PRESETS`).
- **Network**: ``LVDMUNet`` called as the official ``DiffusionWrapper`` calls it — unconditional models take
  the noisy latent alone; the pred/interp models take it with a mask channel (1 = a given slot; all zeros = the
  unconditional branch) and, for the given slots' noise level s, the label ``y = s`` (omitted in the
  unconditional branch, as the official sampler omits it).
- **Noise table**: LDM "linear" betas 0.0015 → 0.0155 over 1000 steps (the file's own ``alphas_cumprod`` when it
  carries one); ε-prediction; DDIM on uniform timesteps + 1 ending at ᾱ₀, as ``lvdm/samplers/ddim.py``.
- **Files**: a Lightning ``.ckpt`` with ``model.diffusion_model.*`` (the UNet), ``model_ema.*`` (its EMA copy, keys
  with every dot removed), ``first_stage_model.*`` (the 3-D AE, its convolution weights stored twice) and schedule
  buffers; a separate ``ae_*.ckpt`` (``encoder.*``, ``decoder.*``, ``quant_conv.*``, ``post_quant_conv.*`` and the
  training losses ``loss.*``) may replace the bundled AE.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Optional

import torch

from ... import host
from ..bundle import ScheduleDefaults, VideoModel
from ..checkpoint import (CheckpointError, empty_params, file_role, load_into, match_state_dict, read_metadata,
                          read_shapes, read_state_dict)
from ..loaders import CONFIG_ROOT, LoadOptionError, _precision, read_json
from ..vae import VideoAE3D

LVDM_FOLDER = "lvdm"
UNET_PREFIX = "model.diffusion_model."
AE_PREFIX = "first_stage_model."
EMA_PREFIX = "model_ema."
WEIGHTS = ("ema", "raw")
FAMILIES = {"lvdm-short": "unet_short.json", "lvdm-pred": "unet_pred.json", "lvdm-interp": "unet_interp.json"}
CONDITIONED = ("lvdm-pred", "lvdm-interp")
# the schedule buffers every LatentDiffusion checkpoint carries (registered from the config, not trained)
SCHEDULE_BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                    "posterior_mean_coef1", "posterior_mean_coef2", "logvar")
AE_IGNORED = (r"^loss\.",)   # LPIPS + discriminator of AE training


@dataclass(frozen=True)
class Preset:
    """The latent normalisation ``z = scale·(z_raw + shift)`` of one dataset's AE, and its native size."""
    scale: float
    shift: float
    size: int          # native width = height in pixels
    note: str = ""


PRESETS = {
    "sky": Preset(0.33422927, 1.4606637, 256, "Sky Time-lapse (configs/lvdm_short/sky.yaml)"),
    "taichi": Preset(0.175733933, 0.03291025, 256, "Taichi-HD (configs/lvdm_short/taichi.yaml)"),
    "ucf": Preset(0.220142075, 0.5837740898, 256, "UCF-101 (configs/lvdm_short/ucf.yaml; no released weights)"),
    # Endora's endoscopy fork (Other-Methods/LVDM): its configs keep the sky values (never recomputed for these
    # AEs) and train at 128×128; its sampler's image_size 32 makes 256×256 videos by mistake — not copied.
    "col": Preset(0.33422927, 1.4606637, 128, "Colonoscopic (endoscopy fork; the sky values its config uses)"),
    "kvasir": Preset(0.33422927, 1.4606637, 128, "Kvasir-Capsule (endoscopy fork; the sky values its config uses)"),
    "cholec": Preset(0.33422927, 1.4606637, 128, "CholecT45 (endoscopy fork; the sky values its config uses)"),
}
CUSTOM = "custom"
FROM_FILE = "from the file"      # a checkpoint of the pack's trainer carries its own (training/tasks.py)
#: safetensors metadata the pack's trainer writes (training/tasks.py): family, network configs (JSON), the latent
#: normalisation computed on the training data, the frame size, the step
META_FAMILY, META_UNET, META_AE, META_SCALE, META_SHIFT, META_SIZE, META_STEP = (
    "cvk_family", "cvk_unet_config", "cvk_ae_config", "cvk_scale", "cvk_shift", "cvk_size", "cvk_step")


def ldm_alphas_cumprod(linear_start: float = 0.0015, linear_end: float = 0.0155, timesteps: int = 1000
                       ) -> torch.Tensor:
    """ᾱ ``(T,)`` as LDM's ``make_beta_schedule("linear")`` and ``register_schedule`` build it: β =
    linspace(√start, √end)² and the cumulative product in float64, stored as a float32 buffer (returned as float64).
    diffusers' ``scaled_linear`` is the same curve computed in float32 (differences ~1e-7)."""
    betas = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32).to(torch.float64)


def ema_key(unet_key: str) -> str:
    """LitEma's name for ``model.diffusion_model.<k>``: ``model_ema.`` + the key after ``model.`` with every dot
    removed (``model.diffusion_model.out.2.weight`` → ``model_ema.diffusion_modelout2weight``)."""
    return EMA_PREFIX + unet_key[len("model."):].replace(".", "")


def detect_family(shapes: dict[str, tuple], name: str) -> str:
    """``lvdm-short`` / ``lvdm-pred`` / ``lvdm-interp`` for an LVDM 3-D-AE checkpoint (key → shape); anything
    else is refused with an error that names what the file is and which loader takes it."""
    keys = shapes.keys()
    text_family = ("a VideoCrafter2" if any(".temopral_conv." in k for k in keys) else
                   "an LVDM text-to-video" if any(".attn1_tmp." in k for k in keys) else None)
    if text_family:
        raise CheckpointError(f"'{name}' is {text_family} checkpoint (text-conditioned, SD's 2-D VAE): Load LVDM Model "
                              f"takes the unconditional 3-D-AE models (short, pred, interp); text-to-video models "
                              f"belong in Load Video Model, which does not read this family yet")
    if any(k.startswith("cond_stage_model.") or k.endswith(".attn2.to_k.weight") for k in keys):
        raise CheckpointError(f"'{name}' is a Stable Diffusion checkpoint: load it with Load Video Model (CVK), with an "
                              f"AnimateDiff motion module")
    if f"{UNET_PREFIX}input_blocks.0.0.weight" not in keys:
        if any(k.startswith(("encoder.conv_blocks.", AE_PREFIX + "encoder.")) for k in keys):
            raise CheckpointError(f"'{name}' is an LVDM video autoencoder alone: choose it as the 'ae' file and the "
                                  f"model checkpoint (short_*.ckpt) as the model")
        raise CheckpointError(f"'{name}' is not an LVDM checkpoint: it has no '{UNET_PREFIX}*' keys")
    if f"{UNET_PREFIX}label_emb.weight" not in keys:
        return "lvdm-short"
    table = [v[0] for k, v in shapes.items() if k.endswith("relative_position_k.embeddings_table")]
    # pred works on 4 keyframe latents (tables of 2·4+1 rows), interp on 5 consecutive latents (2·5+1)
    return "lvdm-interp" if table and table[0] == 11 else "lvdm-pred"


def _unet_tensors(sd: dict, weights: str, unet_keys: list[str], name: str) -> dict:
    """The UNet's tensors keyed as the model's ``state_dict`` (prefix removed): the EMA copy (the mangled keys
    mapped back) or the raw weights."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    if weights == "raw":
        return {k[len(UNET_PREFIX):]: v for k, v in sd.items() if k.startswith(UNET_PREFIX)}
    back = {ema_key(UNET_PREFIX + k): k for k in unet_keys}
    ema = {k: v for k, v in sd.items() if k.startswith(EMA_PREFIX) and k not in (EMA_PREFIX + "decay",
                                                                                  EMA_PREFIX + "num_updates")}
    if not ema:
        raise CheckpointError(f"'{name}' holds no EMA weights (no '{EMA_PREFIX}*' keys); choose weights 'raw'")
    stray = sorted(k for k in ema if k not in back)
    if stray:
        raise CheckpointError(f"'{name}': {len(stray)} EMA keys match no UNet parameter: {', '.join(stray[:12])}")
    return {back[k]: v for k, v in ema.items()}


def _ae_tensors(sd: dict, prefix: str) -> dict:
    """The AE's tensors without ``prefix``, each SamePadConv3d weight taken once: the file stores ``<m>.weight``
    beside ``<m>.conv.weight`` (``.convt.weight``) as one tensor; the alias is dropped after a shape check."""
    ae = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    out = {}
    for k, v in ae.items():
        if k.endswith(".weight"):
            stem = k[:-len(".weight")]
            twin = next((ae[stem + s] for s in (".conv.weight", ".convt.weight") if stem + s in ae), None)
            if twin is not None:
                if twin.shape != v.shape:
                    raise CheckpointError(f"AE key '{prefix}{k}' {tuple(v.shape)} should alias its inner conv "
                                          f"weight {tuple(twin.shape)}")
                continue
        out[k] = v
    return out


def build_unet(family: str, config_root: str = CONFIG_ROOT, config: Optional[dict] = None) -> torch.nn.Module:
    """The UNet of ``family`` from its shipped config (or ``config``, a trained file's), parameters on the meta
    device."""
    from .unet3d import build_unet as from_config
    with empty_params():
        return from_config(config if config is not None else read_json(os.path.join(config_root, "lvdm",
                                                                                     FAMILIES[family])))


def build_ae(config_root: str = CONFIG_ROOT, config: Optional[dict] = None) -> torch.nn.Module:
    from .autoencoder3d import VideoAutoencoderKL
    cfg = config if config is not None else read_json(os.path.join(config_root, "lvdm", "videoae.json"))
    with empty_params():
        return VideoAutoencoderKL(cfg["ddconfig"], cfg["embed_dim"])


def file_normalisation(meta: dict, name: str) -> Preset:
    """The latent normalisation a trained file carries (preset 'from the file')."""
    if META_SCALE not in meta or META_SHIFT not in meta:
        raise CheckpointError(f"'{name}' carries no latent normalisation (only the pack's trainer writes one): choose "
                              f"a named preset, or '{CUSTOM}' with the scale and shift of its AE")
    return Preset(float(meta[META_SCALE]), float(meta[META_SHIFT]), int(meta.get(META_SIZE, 256)),
                  "computed on the training data")


def resolve_normalisation(preset: str, scale: Optional[float] = None, shift: Optional[float] = None) -> Preset:
    """A preset's values, or ``custom`` with ``scale`` and ``shift`` given (both required)."""
    if preset == CUSTOM:
        if scale is None or shift is None or not scale > 0:
            raise ValueError(f"preset 'custom' needs scale > 0 and shift, got scale={scale!r}, shift={shift!r}")
        return Preset(float(scale), float(shift), 256, "set by hand")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {(*PRESETS, CUSTOM)}, got {preset!r}")
    return PRESETS[preset]


def load_lvdm(path: str, ae_path: Optional[str] = None, preset: str = "sky", scale: Optional[float] = None,
              shift: Optional[float] = None, weights: str = "ema", precision: str = "auto", attention: str = "sdpa",
              config_root: str = CONFIG_ROOT, device: Optional[torch.device] = None) -> "LVDMModel":
    """An LVDM short / pred / interp checkpoint (+ an optional separate AE file) → ``CVK_VIDEO_MODEL``, strictly:
    every tensor maps to a parameter or is on the documented ignore-list (the unused weight copy — raw when
    ``weights='ema'``, EMA when ``'raw'`` —, ``model_ema.decay``/``num_updates``, the schedule buffers, the AE's
    aliases and ``loss.*``)."""
    name = os.path.basename(path)
    meta = read_metadata(path)
    norm = file_normalisation(meta, name) if preset == FROM_FILE else resolve_normalisation(preset, scale, shift)
    device, prec = _precision(precision, device)
    family = meta.get(META_FAMILY) or detect_family(read_shapes(path), name)
    if family not in FAMILIES:
        raise CheckpointError(f"'{name}': its metadata names family {family!r}; expected one of {tuple(FAMILIES)}")
    skip = [r"^model_ema\."] if weights == "raw" else [r"^model\.diffusion_model\."]
    if ae_path is not None:
        skip.append("^" + re.escape(AE_PREFIX))
    sd = read_state_dict(path, skip=skip)
    unet = build_unet(family, config_root, json.loads(meta[META_UNET]) if META_UNET in meta else None)
    unet_sd = _unet_tensors(sd, weights, list(unet.state_dict()), name)
    load_into(unet, match_state_dict(unet, unet_sd, f"'{name}' UNet ({weights} weights)"), prec.unet)
    stray = sorted(k for k in sd if not k.startswith((UNET_PREFIX, EMA_PREFIX, AE_PREFIX)) and k not in SCHEDULE_BUFFERS)
    if stray:
        raise CheckpointError(f"'{name}': {len(stray)} unexpected keys outside the UNet, its EMA copy and the AE: "
                              f"{', '.join(stray[:12])}")
    if ae_path is None and not any(k.startswith(AE_PREFIX) for k in sd):
        raise CheckpointError(f"'{name}' carries no video autoencoder ('{AE_PREFIX}*'): choose its ae_*.ckpt as the "
                              f"'ae' file")
    with file_role("ae" if ae_path is not None else "base"):    # errors name the file (and input) at fault
        if ae_path is not None:
            ae_name, ae_sd, ae_prefix = os.path.basename(ae_path), read_state_dict(ae_path), ""
            if any(k.startswith(UNET_PREFIX) for k in ae_sd):
                raise CheckpointError(f"'{ae_name}' is a whole LVDM model, not an AE file: choose it as the model")
        else:
            ae_name, ae_sd, ae_prefix = name, sd, AE_PREFIX
        ae_meta = read_metadata(ae_path) if ae_path is not None else meta
        ae = build_ae(config_root, json.loads(ae_meta[META_AE]) if META_AE in ae_meta else None)
        load_into(ae, match_state_dict(ae, _ae_tensors(ae_sd, ae_prefix), f"'{ae_name}' video autoencoder",
                                       ignore_file=AE_IGNORED), prec.vae)
    set_attention(unet, attention, device)
    ac = sd["alphas_cumprod"].to(torch.float64) if "alphas_cumprod" in sd else ldm_alphas_cumprod()
    size = norm.size
    return LVDMModel(f"LVDM {name}", family, unet, VideoAE3D(ae, norm.scale, norm.shift), ac, (size, size, 16))


def set_attention(unet: torch.nn.Module, attention: str, device: torch.device) -> None:
    """SDPA (default) or xformers on the UNet; xformers that cannot run on ``device`` is a clear error."""
    if attention == "sdpa":
        return
    if device.type != "cuda":
        raise LoadOptionError("attention", f"xformers needs a CUDA GPU and this model runs on {device.type}; choose sdpa")
    try:
        unet.set_attention(attention)
    except (ImportError, ValueError, RuntimeError) as e:
        raise LoadOptionError("attention", f"xformers is not usable here ({e}); choose sdpa") from None


class LVDMModel(VideoModel):
    """A ``CVK_VIDEO_MODEL`` of the LVDM 3-D-AE family: no text encoder; ``cond`` is ``{}`` for the short model
    and may hold ``mask`` ``(B, 1, T, h, w)`` (or ``(B, 1, T, 1, 1)``, expanded) and ``label`` ``(B,)`` (the given
    slots' noise level s; −1: none, the unconditional branch) for the pred/interp models."""

    text_conditioned = False

    def __init__(self, name: str, family: str, unet, ae: VideoAE3D, alphas_cumprod: torch.Tensor,
                 native_size: tuple[int, int, int], untrained: bool = False):
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {tuple(FAMILIES)}, got {family!r}")
        super().__init__(name, family, unet, ae, None, alphas_cumprod, "epsilon",
                         ScheduleDefaults("leading", 1, "sigma_min"), native_size, untrained=untrained)

    @property
    def conditions(self) -> frozenset:
        return frozenset({"mask", "label"}) if self.family in CONDITIONED else frozenset()

    @property
    def window(self) -> int:
        """The clip the UNet's position tables were made for: 4 latents (short, pred's keyframes), 5 (interp)."""
        return int(getattr(self.unet, "temporal_length", None) or super().window)

    def network(self, z: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        odd = set(cond) - self.conditions
        if odd:
            takes = f"only {' and '.join(sorted(self.conditions))}" if self.conditions else "no conditioning"
            raise ValueError(f"{self.name} ({self.family}) takes {takes}; it cannot take {sorted(odd)}")
        device, dtype = self.unet_part.device, self.unet_part.dtype
        B, _, T, h, w = z.shape
        x = z.to(device=device, dtype=dtype)
        if self.family in CONDITIONED:
            mask = cond.get("mask")
            mask = (torch.zeros(B, 1, T, h, w, device=device, dtype=dtype) if mask is None
                    else mask.expand(B, 1, T, h, w).to(device=device, dtype=dtype))
            x = torch.cat([x, mask], dim=1)
        t = t.to(device=device, dtype=torch.float32 if t.is_floating_point() else t.dtype)
        t = t.reshape(-1).expand(B) if t.numel() == 1 else t.reshape(B)
        label = cond.get("label")   # −1 entries: no label for that sample (the unconditional branch)
        if label is not None:
            label = torch.as_tensor(label, device=device).long().reshape(-1).expand(B)
            if (label < 0).all():
                label = None
        out = self.unet(x, t, y=label)
        return out.to(device=z.device, dtype=torch.float32)

    def encode_prompt_pair(self, prompt: str, negative_prompt: str):
        raise ValueError(f"{self.name} is an unconditional model: it takes no prompt")

    def latent_shape(self, frames: int, width: int, height: int, batch: int = 1) -> tuple[int, ...]:
        f = self.latent_format
        if frames % f.temporal_factor:
            raise ValueError(f"frames must be a multiple of {f.temporal_factor} for {self.name}, got {frames}")
        return (batch, f.channels, frames // f.temporal_factor, height // f.spatial_factor, width // f.spatial_factor)
