"""Two tiny, UNTRAINED demo models built in code from fixed seeds (no files, no hub).

They exist so every workflow can be smoke-tested without weights, and so two models with different
noise tables exist for the guide tests. Their output is noise-like pictures, not video content.

- ``tiny-animatediff``: SD1.5-layout UNet + a v3-layout AnimateDiff motion adapter (``UNetMotionModel`` with the
  original per-frame motion norms, :mod:`.animatediff`), "linear" betas 0.00085–0.012, leading spacing
  with ``steps_offset=1``, final level σ = 0 (the official AnimateDiff DDIM configuration).
- ``tiny-modelscope``: ``UNet3DConditionModel`` (ModelScope / Zeroscope layout), "scaled_linear"
  betas 0.00085–0.012.

Both share one tiny VAE (same weights, so one latent space: 4 channels, ×8, scaling 0.18215) and a
character-level CLIP tokenizer; each has its own tiny CLIP text encoder.
"""
from __future__ import annotations

import functools

import torch

from ..samplers.vp import vp_alphas_cumprod
from .animatediff import match_original
from .bundle import ScheduleDefaults, VideoModel
from .text import TextEncoder, char_clip_tokenizer
from .vae import VideoVAE

TINY_MODELS = ("tiny-animatediff", "tiny-modelscope", "tiny-lvdm-t2v", "tiny-videocrafter2")
TINY_NATIVE = (64, 64, 8)          # width, height, frames
SCALING_FACTOR = 0.18215

TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                 max_position_embeddings=77, projection_dim=32)
TINY_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 16, 16), layers_per_block=1,
                norm_num_groups=4, latent_channels=4, sample_size=64, scaling_factor=SCALING_FACTOR)
_UNET_COMMON = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                    cross_attention_dim=32, attention_head_dim=8, norm_num_groups=4)
TINY_UNET2D = dict(_UNET_COMMON, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
TINY_MOTION = dict(block_out_channels=(32, 64), motion_layers_per_block=1, motion_norm_num_groups=4,
                   use_motion_mid_block=False,     # the v3 layout (no mid-block module), as CameraCtrl and CVD need
                   motion_num_attention_heads=4, motion_max_seq_length=32)
TINY_UNET3D = dict(_UNET_COMMON, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                   up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"))


def _finish(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Eval mode, no grads, and small random values in parameters that init left at exactly zero
    (zero-initialised output projections, e.g. the motion modules'), so every weight matters."""
    gen = torch.Generator().manual_seed(seed + 7919)
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    return module.eval().requires_grad_(False)


def _seeded(seed: int, build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _finish(build(), seed)


@functools.lru_cache(maxsize=None)
def tiny_vae() -> VideoVAE:
    from diffusers import AutoencoderKL
    return VideoVAE(_seeded(1001, lambda: AutoencoderKL(**TINY_VAE)), SCALING_FACTOR)


@functools.lru_cache(maxsize=None)
def tiny_tokenizer():
    return char_clip_tokenizer()


def tiny_text_encoder(seed: int) -> TextEncoder:
    from transformers import CLIPTextConfig, CLIPTextModel
    tok = tiny_tokenizer()
    cfg = CLIPTextConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **TINY_TEXT)
    return TextEncoder(tok, _seeded(seed, lambda: CLIPTextModel(cfg)))


def _tiny_animatediff_unet(seed: int) -> torch.nn.Module:
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
    unet = UNet2DConditionModel(**TINY_UNET2D)
    adapter = MotionAdapter(**TINY_MOTION)
    return match_original(UNetMotionModel.from_unet2d(unet, adapter), TINY_MOTION["motion_norm_num_groups"])


def _tiny_modelscope_unet(seed: int) -> torch.nn.Module:
    from diffusers import UNet3DConditionModel
    return UNet3DConditionModel(**TINY_UNET3D)


@functools.lru_cache(maxsize=None)
def tiny_model(name: str) -> VideoModel:
    """One of :data:`TINY_MODELS`, built once per process from fixed seeds."""
    if name == "tiny-animatediff":
        unet = _seeded(2001, lambda: _tiny_animatediff_unet(2001))
        return VideoModel(name, "animatediff", unet, tiny_vae(), tiny_text_encoder(3001),
                          vp_alphas_cumprod("linear", 0.00085, 0.012), "epsilon",
                          ScheduleDefaults("leading", 1, "zero"), TINY_NATIVE,
                          max_frames=TINY_MOTION["motion_max_seq_length"], untrained=True)
    if name == "tiny-modelscope":
        unet = _seeded(2002, lambda: _tiny_modelscope_unet(2002))
        return VideoModel(name, "modelscope", unet, tiny_vae(), tiny_text_encoder(3002),
                          vp_alphas_cumprod("scaled_linear", 0.00085, 0.012), "epsilon",
                          ScheduleDefaults("leading", 1, "sigma_min"), TINY_NATIVE, untrained=True)
    if name in ("tiny-lvdm-t2v", "tiny-videocrafter2"):
        return _tiny_text_lvdm(name)
    raise ValueError(f"unknown tiny model {name!r}; expected one of {TINY_MODELS}")


# the official configs' classes with smaller numbers (GroupNorm(32): widths are multiples of 32; context 32 = the
# tiny text encoders' width)
TINY_T2V_UNET = dict(image_size=8, in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[1, 2],
                     num_res_blocks=1, channel_mult=[1, 2], num_heads=2, transformer_depth=1, context_dim=32,
                     use_checkpoint=False, legacy=False, kernel_size_t=1, padding_t=0, use_temporal_transformer=True,
                     temporal_length=16, use_relative_position=True)
TINY_VC2_UNET = dict(in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[1, 2], num_res_blocks=1,
                     channel_mult=[1, 2], num_head_channels=16, transformer_depth=1, context_dim=32, use_linear=True,
                     use_checkpoint=False, temporal_conv=True, temporal_attention=True, temporal_selfatt_only=True,
                     use_relative_position=False, use_causal_attention=False, temporal_length=16,
                     addition_attention=True, fps_cond=True)


def _tiny_text_lvdm(name: str):
    """Tiny LVDM T2V (CLIP-style text) and tiny VideoCrafter2 (OpenCLIP-style text, fps, scale_arr) on the shared
    tiny VAE, with LDM's linear betas 0.00085–0.012."""
    from .lvdm.model import ldm_alphas_cumprod
    from .lvdm.t2v import T2V, VC2, LVDMTextModel, vc2_scale_arr
    ac = ldm_alphas_cumprod(0.00085, 0.012)
    if name == "tiny-lvdm-t2v":
        from .lvdm.t2v_unet import T2VUNet
        unet = _seeded(2003, lambda: T2VUNet(**TINY_T2V_UNET))
        return LVDMTextModel(name, T2V, unet, tiny_vae(), tiny_text_encoder(3003), ac,
                             native_size=TINY_NATIVE, untrained=True)
    from .lvdm.vc2_unet import VC2UNet
    from .openclip_text import tiny_openclip_text_encoder
    unet = _seeded(2004, lambda: VC2UNet(**TINY_VC2_UNET))
    text = tiny_openclip_text_encoder(3004, tiny_tokenizer())
    _finish(text.model, 3004)
    return LVDMTextModel(name, VC2, unet, tiny_vae(), text, ac, vc2_scale_arr(), TINY_NATIVE, untrained=True)


# ---------------------------------------------------------------- LVDM (3-D video AE family)

TINY_LVDM = "tiny-lvdm"
TINY_LVDM_NATIVE = (64, 64, 16)
# the official configs' classes with smaller numbers (GroupNorm(32) everywhere: widths are multiples of 32)
TINY_LVDM_UNET = dict(image_size=8, in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[2],
                      num_res_blocks=1, channel_mult=[1, 2], num_heads=2, use_temporal_transformer=False,
                      use_checkpoint=False, legacy=False, kernel_size_t=1, padding_t=0, temporal_length=4,
                      use_relative_position=True, use_scale_shift_norm=True)
TINY_VIDEOAE = dict(embed_dim=4, ddconfig=dict(
    double_z=True, z_channels=4,
    encoder=dict(n_hiddens=16, downsample=[4, 8, 8], image_channel=3, norm_type="group", padding_type="replicate",
                 double_z=True, z_channels=4),
    decoder=dict(n_hiddens=16, upsample=[4, 8, 8], z_channels=4, image_channel=3, norm_type="group")))


# the pred / interp variants: the official configs' extra inputs (mask channel, label_emb of 251 levels s) and position
# tables (pred: 4 keyframe latents, interp: 5 consecutive latents)
TINY_LVDM_FAMILIES = {TINY_LVDM: ("lvdm-short", {}),
                      TINY_LVDM + "-pred": ("lvdm-pred", dict(in_channels=5, num_classes=251)),
                      TINY_LVDM + "-interp": ("lvdm-interp", dict(in_channels=5, num_classes=251, temporal_length=5))}
TINY_LVDM_SEEDS = {TINY_LVDM: 2101, TINY_LVDM + "-pred": 2102, TINY_LVDM + "-interp": 2103}


@functools.lru_cache(maxsize=None)
def _tiny_lvdm_ae() -> torch.nn.Module:
    from .lvdm.autoencoder3d import VideoAutoencoderKL
    return _seeded(1101, lambda: VideoAutoencoderKL(TINY_VIDEOAE["ddconfig"], TINY_VIDEOAE["embed_dim"]))


@functools.lru_cache(maxsize=None)
def _tiny_lvdm_unet(name: str) -> torch.nn.Module:
    from .lvdm.unet3d import LVDMFrameInterpPredUNet, LVDMUNet
    family, extra = TINY_LVDM_FAMILIES[name]
    cls = LVDMUNet if family == "lvdm-short" else LVDMFrameInterpPredUNet
    return _seeded(TINY_LVDM_SEEDS[name], lambda: cls(**dict(TINY_LVDM_UNET, **extra)))


def _tiny_lvdm_networks(name: str = TINY_LVDM) -> tuple[torch.nn.Module, torch.nn.Module]:
    return _tiny_lvdm_unet(name), _tiny_lvdm_ae()


@functools.lru_cache(maxsize=None)
def tiny_lvdm(preset: str = "sky", scale: float | None = None, shift: float | None = None, name: str = TINY_LVDM):
    """An untrained tiny LVDM model — ``tiny-lvdm`` (short), ``tiny-lvdm-pred`` or ``tiny-lvdm-interp`` — with the
    tiny 3-D AE (one set of weights, shared by every model and preset, so all three share a latent space), the latent
    normalised as ``preset`` says (``custom``: ``scale``, ``shift``); native 64×64, 16 frames."""
    from .lvdm.model import LVDMModel, ldm_alphas_cumprod, resolve_normalisation
    from .vae import VideoAE3D
    if name not in TINY_LVDM_FAMILIES:
        raise ValueError(f"unknown tiny LVDM model {name!r}; expected one of {tuple(TINY_LVDM_FAMILIES)}")
    norm = resolve_normalisation(preset, scale, shift)
    unet, ae = _tiny_lvdm_networks(name)
    return LVDMModel(name, TINY_LVDM_FAMILIES[name][0], unet, VideoAE3D(ae, norm.scale, norm.shift),
                     ldm_alphas_cumprod(), TINY_LVDM_NATIVE, untrained=True)


# ---------------------------------------------------------------- LGC-VD (pixel space)

TINY_LGCVD = "tiny-lgcvd"
# the official classes with smaller numbers: widths 16·[1, 2, 3, 4], heads of 16 channels (1–4 heads), 32 px, 8 frames
# (2 given); attention at 8 px in the down path, so the up path's quirk puts it at 16 px. The up level of width 48
# after a 128-wide concat exercises the ResBlock's GroupNorm_1 group-count quirk (8 groups, not 12).
TINY_LGCVD_CONFIG = dict(
    dataset="custom", size=32, frames=8, cond_frames=2,
    unet=dict(dim=16, dim_mults=[1, 2, 3, 4], channels=3, cond_frames=2, new_frames=6, img_size=32,
              attn_resolutions=[8], n_head_channels=16),
    encoder=dict(dim=16, dim_mults=[1, 2, 3, 4], channels=3, num_frames=8, img_size=32, attn_resolutions=[8],
                 n_head_channels=16))


@functools.lru_cache(maxsize=None)
def tiny_lgcvd():
    """An untrained tiny LGC-VD model (the real classes, :data:`TINY_LGCVD_CONFIG`), built once per process from
    fixed seeds: native 32×32, 8 frames, 2 conditioning frames, the cosine ᾱ table, v-prediction."""
    from .lgcvd import LGCVDEncoder, LGCVDModel, LGCVDUNet
    c = TINY_LGCVD_CONFIG
    unet = _seeded(2201, lambda: LGCVDUNet.from_config(c["unet"]))
    encoder = _seeded(2202, lambda: LGCVDEncoder.from_config(c["encoder"]))
    return LGCVDModel(TINY_LGCVD, c["dataset"], unet, encoder, c["size"], c["frames"], c["cond_frames"],
                      untrained=True)
