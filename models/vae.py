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


# activations of LVDM's 3-D AE per output pixel per dtype byte (the decoder's widest full-resolution stage holds
# a few 64-channel maps at once); a rough upper estimate for the model manager's free-memory request
AE3D_BYTES = 64 * 6


class VideoAE3D:
    """LVDM's 3-D video autoencoder (×4 time, ×8 space, 4 channels) as the bundle's VAE.

    Latents are normalised per dataset: ``z = scaling_factor·(z_raw + shift)``; decoding inverts it. Frames are
    ``(N, H, W, C)`` float in [0, 1] (ComfyUI's IMAGE); latents ``(B, 4, F/4, H/8, W/8)``.
    """

    latent_kind = "lvdm-3d"
    temporal_factor = 4

    def __init__(self, ae: torch.nn.Module, scaling_factor: float, shift: float, spatial_factor: int = 8):
        self.part = host.ModelPart(ae, "vae", "LVDM 3-D video AE")
        self.scaling_factor = float(scaling_factor)
        self.shift = float(shift)
        self.spatial_factor = int(spatial_factor)

    @property
    def ae(self) -> torch.nn.Module:
        return self.part.module

    @property
    def latent_channels(self) -> int:
        return int(self.ae.embed_dim)

    def _load(self, frames: int, H: int, W: int) -> torch.device:
        host.load_models([self.part], frames * H * W * AE3D_BYTES * self.part.dtype.itemsize)
        return self.part.device

    def min_exact_overlap(self) -> int:
        """The least overlap (latents) at which windowed decoding equals the all-at-once decode: twice the decoder's
        temporal reach."""
        from .lvdm.autoencoder3d import decoder_temporal_margins
        return 2 * max(decoder_temporal_margins(self.ae))

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, window: int = 0, overlap: int = 0, seams: str = "exact") -> torch.Tensor:
        """``(B, 4, T, h, w)`` → IMAGE ``(B·4T, 8h, 8w, 3)`` in [0, 1] on the intermediate device. ``window`` latents
        at a time (0, or ≥ T: all at once), neighbouring windows sharing ``overlap`` latents; ``seams`` ``exact``
        (equal to the all-at-once decode) or ``plain`` (the official overlapped decode): see
        :func:`.lvdm.autoencoder3d.decode_overlapped`."""
        from .lvdm.autoencoder3d import decode_overlapped
        B, C, T, h, w = latents.shape
        whole = window <= 0 or window >= T
        span = T if whole else window
        device = self._load(span * self.temporal_factor, h * self.spatial_factor, w * self.spatial_factor)
        dtype, out = self.part.dtype, []
        for b in range(B):
            host.check_interrupt()
            z = latents[b:b + 1].to(device=device, dtype=dtype) / self.scaling_factor - self.shift
            if whole:
                x = self.ae.decode(z)
            else:
                x = decode_overlapped(self.ae, z, window, overlap, seams, host.intermediate_device(),
                                      lambda done, total: host.check_interrupt())
            out.append((x.float()[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).to(host.intermediate_device()))
        return torch.cat(out, dim=0)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor, clip: int = 16) -> torch.Tensor:
        """IMAGE ``(F, H, W, C≥3)`` → latent ``(1, 4, F/4, H/8, W/8)``, in clips of ``clip`` frames (a multiple of 4;
        each clip encoded on its own, as the AE was trained on 16-frame clips), from the posterior mean (so encoding
        is deterministic; the official training samples the posterior)."""
        F = images.shape[0]
        tf = self.temporal_factor
        if F % tf or clip % tf:
            raise ValueError(f"the 3-D AE encodes frames in groups of {tf}: got {F} frames in clips of {clip}")
        px = images[..., :3].permute(3, 0, 1, 2).unsqueeze(0) * 2 - 1
        device, dtype = self._load(min(clip, F), px.shape[3], px.shape[4]), self.part.dtype
        parts = []
        for i in range(0, F, clip):
            host.check_interrupt()
            mean, _ = self.ae.encode(px[:, :, i:i + clip].to(device=device, dtype=dtype))
            parts.append(mean.float().to(host.intermediate_device()))
        return self.scaling_factor * (torch.cat(parts, dim=2) + self.shift)
