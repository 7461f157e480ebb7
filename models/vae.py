"""Frame-wise image VAEs (SD's KL-f8 family) applied to 5-D video latents ``(B, C, F, h, w)``."""
from __future__ import annotations

import torch

from .. import host

# ComfyUI's activation estimates for SD's AutoencoderKL (comfy/sd.py), bytes per latent pixel per dtype byte
DECODE_BYTES = 2178 * 64
ENCODE_BYTES = 1767 * 64


class VideoVAE:
    """Encode/decode video frames through a diffusers ``AutoencoderKL`` in slices of ``chunk`` frames,
    so memory stays bounded however long the video is.

    IMAGE frames are ComfyUI's ``(N, H, W, C)`` float in [0, 1]; latents are ``(B, C, F, h, w)`` already
    multiplied by the scaling factor (what the denoiser works on).
    """

    def __init__(self, vae: torch.nn.Module, scaling_factor: float, spatial_factor: int = 8):
        self.part = host.ModelPart(vae, "vae", f"{type(vae).__name__} VAE")
        self.scaling_factor = float(scaling_factor)
        self.spatial_factor = int(spatial_factor)

    @property
    def vae(self) -> torch.nn.Module:
        return self.part.module

    def _load(self, frames: int, h: int, w: int, per_pixel: int) -> torch.device:
        """The VAE ready on its device with room for ``frames`` frames of ``h`` × ``w`` latent pixels (ComfyUI's
        estimate for SD's AutoencoderKL: ``per_pixel`` bytes per latent pixel per dtype byte; a tiling VAE works on
        one tile at a time); its device."""
        if getattr(self.vae, "use_tiling", False):
            tile = int(self.vae.tile_latent_min_size)
            h, w = min(h, tile), min(w, tile)
        host.load_models([self.part], frames * h * w * per_pixel * self.part.dtype.itemsize)
        return self.part.device

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        """``(B, C, F, h, w)`` → IMAGE ``(B·F, h·8, w·8, 3)`` in [0, 1], on the intermediate device."""
        B, C, F, h, w = latents.shape
        flat = latents.permute(0, 2, 1, 3, 4).reshape(B * F, C, h, w)
        frames = []
        device, dtype = self._load(min(chunk, B * F), h, w, DECODE_BYTES), self.part.dtype
        for i in range(0, B * F, chunk):
            host.check_interrupt()
            part = flat[i:i + chunk].to(device=device, dtype=dtype) / self.scaling_factor
            img = self.vae.decode(part).sample.float()
            frames.append((img / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).to(host.intermediate_device()))
        return torch.cat(frames, dim=0)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        """IMAGE ``(F, H, W, C≥3)`` in [0, 1] → latent ``(1, C, F, H/8, W/8)`` (the posterior mean, so
        encoding is deterministic), on the intermediate device."""
        px = images[..., :3].permute(0, 3, 1, 2) * 2 - 1
        parts = []
        f = self.spatial_factor
        device = self._load(min(chunk, px.shape[0]), px.shape[2] // f, px.shape[3] // f, ENCODE_BYTES)
        dtype = self.part.dtype
        for i in range(0, px.shape[0], chunk):
            host.check_interrupt()
            dist = self.vae.encode(px[i:i + chunk].to(device=device, dtype=dtype)).latent_dist
            parts.append(dist.mode().float().to(host.intermediate_device()) * self.scaling_factor)
        lat = torch.cat(parts, dim=0)
        return lat.permute(1, 0, 2, 3).unsqueeze(0)
