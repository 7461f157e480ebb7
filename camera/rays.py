"""Plücker ray embedding, as CameraCtrl computes it (§1.4)."""
from __future__ import annotations

import torch


def plucker(K: torch.Tensor, c2w: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Per-pixel Plücker coordinates ``(F, 6, H, W)`` for cameras ``K`` ``(F, 3, 3)`` (pixels) and ``c2w``
    ``(F, 4, 4)``: ``[o × d, d]`` — the moment first, then the unit world direction d of the ray through the
    pixel centre (u + 0.5, v + 0.5); o is the camera centre. Computed in K's dtype (use float64 for checks), on
    K's device."""
    if K.ndim != 3 or K.shape[-2:] != (3, 3) or c2w.ndim != 3 or c2w.shape[-2:] != (4, 4) or K.shape[0] != c2w.shape[0]:
        raise ValueError(f"plucker needs K (F, 3, 3) and c2w (F, 4, 4), got {tuple(K.shape)} and {tuple(c2w.shape)}")
    dtype, device = K.dtype, K.device
    v, u = torch.meshgrid(torch.arange(height, dtype=dtype, device=device) + 0.5,
                          torch.arange(width, dtype=dtype, device=device) + 0.5, indexing="ij")
    fx, fy, cx, cy = (K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2])
    x = (u[None] - cx[:, None, None]) / fx[:, None, None]
    y = (v[None] - cy[:, None, None]) / fy[:, None, None]
    dirs = torch.nn.functional.normalize(torch.stack([x, y, torch.ones_like(x)], -1), dim=-1)       # (F, H, W, 3)
    d = torch.einsum("fij,fhwj->fhwi", c2w[:, :3, :3].to(dtype), dirs)
    o = c2w[:, None, None, :3, 3].to(dtype).expand_as(d)
    return torch.cat([torch.linalg.cross(o, d), d], dim=-1).permute(0, 3, 1, 2)
