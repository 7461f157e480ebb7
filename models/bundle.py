"""``CVK_VIDEO_MODEL``: one loaded video diffusion model, everything a sampler node needs.

A network wrapped as a σ-space denoiser (through its own noise table and prediction type), its VAE,
its text encoder + tokenizer, its latent format (channels, scaling factor, 5-D ``(B, C, F, h, w)``
layout) and its native size and frame count.
"""
from __future__ import annotations

import copy
import math
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import torch

from .. import host
from ..samplers.schedules import sigma_grid, spaced_timesteps
from ..samplers.vp import VPDenoiser
from .text import TextEncoder
from .vae import VideoVAE


@dataclass(frozen=True)
class LatentFormat:
    """A latent space: ``kind`` ``"sd"`` (SD's 2-D KL-f8 VAE applied per frame) or ``"lvdm-3d"`` (LVDM's 3-D video
    AE, ``temporal_factor`` frames per latent), normalised as ``z = scaling_factor·(z_raw + shift)``."""
    channels: int
    scaling_factor: float
    spatial_factor: int = 8
    kind: str = "sd"
    temporal_factor: int = 1
    shift: float = 0.0

    def same_space(self, other: "LatentFormat") -> bool:
        return (self.channels, self.spatial_factor, self.kind, self.temporal_factor) == \
            (other.channels, other.spatial_factor, other.kind, other.temporal_factor) and \
            abs(self.scaling_factor - other.scaling_factor) < 1e-9 and abs(self.shift - other.shift) < 1e-9

    @property
    def tag(self) -> str:
        """What a LATENT in this space is, for the ``cvk_space`` entry the pack's nodes write beside ``samples``."""
        if self.kind == "sd":
            return f"SD VAE latent (scale {self.scaling_factor:g})"
        return (f"{self.kind} latent (x{self.temporal_factor} time, scale {self.scaling_factor:g}, "
                f"shift {self.shift:g})")


@dataclass(frozen=True)
class ScheduleDefaults:
    """How the model's own scheduler spaces its grid: diffusers' ``timestep_spacing``, ``steps_offset``,
    and the final level (``sigma_min`` for ``set_alpha_to_one=False``, else ``zero``)."""
    spacing: str = "leading"
    steps_offset: int = 1
    final: str = "sigma_min"


# activation memory of one network call, as ComfyUI estimates it for SD1.x (``BaseModel.memory_required`` with
# SDPA: batch · frames · h · w · dtype bytes · 0.01 MiB, memory_usage_factor 1.0)
UNET_MEMORY_FACTOR = 1.0


class VideoModel:
    """The ``CVK_VIDEO_MODEL`` bundle. ``unet(z, t, encoder_hidden_states=...)`` takes ``(B, C, F, h, w)``.

    Its networks are host ModelParts (``unet_part``, ``vae.part``, ``text.part``) under the host's
    model management. A node that changes the model (a patch) returns a new bundle from :meth:`clone` /
    :meth:`with_unet`, sharing the weights; it never changes the bundle it was given."""

    TYPE = "CVK_VIDEO_MODEL"
    text_conditioned = True   # False: an unconditional model (LVDM's 3-D-AE family), ``text`` is None
    signal_scale = None       # (T,) for a model trained on z = √ᾱ·s·x0 + √(1−ᾱ)·ε (VideoCrafter2's scale_arr)
    takes_fps = False         # conditioned on fps too (VideoCrafter2): encode_prompt_pair takes ``fps``
    camera = None   # a cameractrl.CameraControl when CameraCtrl conditions the UNet (see with_camera)
    sync = None     # a cvd.SyncControl when CVD's synchronisation modules follow the motion modules (with_sync)

    def __init__(self, name: str, family: str, unet, vae: VideoVAE, text: TextEncoder,
                 alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon",
                 schedule: ScheduleDefaults = ScheduleDefaults(), native_size: tuple[int, int, int] = (512, 512, 16),
                 max_frames: Optional[int] = None, untrained: bool = False):
        self.name = name
        self.family = family
        self.unet_part = unet if isinstance(unet, host.ModelPart) else host.ModelPart(unet, "diffusion", f"{name} UNet")
        self.vae = vae
        self.text = text
        self.alphas_cumprod = alphas_cumprod.to(torch.float64)
        self.prediction_type = prediction_type
        self.schedule = schedule
        self.native_width, self.native_height, self.native_frames = native_size
        self.max_frames = max_frames
        self.untrained = untrained
        self.latent_format = LatentFormat(vae.latent_channels, vae.scaling_factor, vae.spatial_factor,
                                          getattr(vae, "latent_kind", "sd"), getattr(vae, "temporal_factor", 1),
                                          getattr(vae, "shift", 0.0))

    def __repr__(self) -> str:
        tag = " (untrained demo)" if self.untrained else ""
        return f"<CVK_VIDEO_MODEL {self.name}{tag}: {self.family}, {self.prediction_type}>"

    @property
    def unet(self) -> torch.nn.Module:
        """The network itself (shared by every clone of this bundle)."""
        return self.unet_part.module

    def clone(self) -> "VideoModel":
        """A new bundle sharing every weight, with a clone of the UNet part (VAE and text encoder shared as
        they are)."""
        n = copy.copy(self)
        n.unet_part = self.unet_part.clone()
        return n

    def with_unet(self, part: "host.ModelPart") -> "VideoModel":
        """A new bundle with ``part`` (e.g. ``self.unet_part.with_object_patch(...)``) as its UNet."""
        if not isinstance(part, host.ModelPart) or part.role != "diffusion":
            raise TypeError(f"expected a diffusion ModelPart, got {part!r}")
        n = copy.copy(self)
        n.unet_part = part
        return n

    def with_camera(self, part: "host.ModelPart", camera) -> "VideoModel":
        """A new bundle whose UNet ``part`` is conditioned by ``camera`` (a ``cameractrl.CameraControl``): its
        network then takes ``cond["camera"]``, the pose features per UNet level."""
        n = self.with_unet(part)
        n.camera = camera
        return n

    def with_sync(self, part: "host.ModelPart", sync) -> "VideoModel":
        """A new bundle whose UNet ``part`` carries CVD's synchronisation modules, fed by ``sync`` (a
        ``cvd.SyncControl``) during a multi-view sampling run."""
        n = self.with_unet(part)
        n.sync = sync
        return n

    @property
    def window(self) -> int:
        """Latent frames of one clip as the model was trained: a long video's window (its native frames in latents)."""
        return max(1, self.native_frames // self.latent_format.temporal_factor)

    @property
    def num_train_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    # -- the denoiser
    def network(self, z: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        """Raw network output for VP input ``z`` ``(B, C, F, h, w)`` at timestep(s) ``t`` (a scalar or ``(B,)``),
        as float32. ``cond`` holds ``text`` (and ``camera``, the pose features per level, for a CameraCtrl
        bundle); an entry this model cannot take, or a missing one, is refused."""
        wanted = {"text"} | ({"camera"} if self.camera is not None else set())
        if set(cond) != wanted:
            odd = set(cond) ^ wanted
            raise ValueError(f"{self.name} is conditioned on {' and '.join(sorted(wanted))}; "
                             + ", ".join(f"{'missing' if k in wanted else 'it cannot take'} {k!r}" for k in sorted(odd)))
        device, dtype = self.unet_part.device, self.unet_part.dtype
        text = cond["text"].to(device=device, dtype=dtype)
        if self.family == "animatediff":  # UNetMotionModel wants the text repeated per frame; UNet3D repeats itself
            text = text.repeat_interleave(z.shape[2], dim=0)
        t = t.to(device=device, dtype=torch.float32 if t.is_floating_point() else t.dtype)  # no float64 on MPS
        with self.camera.features(cond["camera"], z.shape[0]) if self.camera is not None else nullcontext():
            out = self.unet(z.to(device=device, dtype=dtype), t, encoder_hidden_states=text).sample
        return out.to(device=z.device, dtype=torch.float32)

    def denoiser(self, timestep_mode: str = "nearest") -> VPDenoiser:
        return VPDenoiser(self.network, self.alphas_cumprod, self.prediction_type, timestep_mode, self.signal_scale)

    def memory_required(self, shape: Sequence[int], batch_factor: int = 2) -> int:
        """Bytes of activations one network call on latents ``shape`` ``(B, C, F, h, w)`` needs, the batch
        multiplied by ``batch_factor`` (2: CFG's cond and uncond halves in one call)."""
        area = batch_factor * shape[0] * math.prod(shape[2:])
        return int(area * self.unet_part.dtype.itemsize * 0.01 * UNET_MEMORY_FACTOR * 1024 * 1024)

    @contextmanager
    def loaded(self, shape: Optional[Sequence[int]] = None, also: Iterable["VideoModel"] = ()):
        """Inference mode with the UNet (and the UNets of ``also``, loaded in the same call) ready on its
        device, room made for sampling latents of ``shape``; yields the device. Nothing is unloaded after the
        block: the host's model manager keeps the UNet loaded until it needs the memory."""
        parts = [self.unet_part] + [m.unet_part for m in also if m.unet_part is not self.unet_part]
        parts += [c.part for m in (self, *also) for c in (m.camera, m.sync) if c is not None]
        need = self.memory_required(shape) if shape is not None else 0
        with torch.inference_mode():
            host.load_models(parts, need)
            yield self.unet_part.device

    # -- grids and prompts
    def sigmas(self, steps: int, spacing: Optional[str] = None, final: Optional[str] = None,
               offset: Optional[int] = None) -> torch.Tensor:
        """The model's default σ grid ``(steps+1,)`` (its scheduler's spacing, offset and final level; each may be
        overridden)."""
        s = self.schedule
        ts = spaced_timesteps(spacing or s.spacing, steps, self.num_train_timesteps,
                              s.steps_offset if offset is None else offset)
        return sigma_grid(self.alphas_cumprod, ts, final or s.final)

    def encode_prompt_pair(self, prompt: str, negative_prompt: str) -> tuple[dict, dict]:
        """(cond, uncond) for one prompt and its negative, in one text-encoder call."""
        text = self.text.encode([prompt, negative_prompt])
        return {"text": text[:1]}, {"text": text[1:]}

    def latent_shape(self, frames: int, width: int, height: int, batch: int = 1) -> tuple[int, ...]:
        f = self.latent_format
        return (batch, f.channels, frames, height // f.spatial_factor, width // f.spatial_factor)
