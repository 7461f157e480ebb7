"""Epipolar geometry between two views and CVD's epipolar attention bias (§4.3)."""
from __future__ import annotations

import math
from typing import Optional

import torch

PIXEL_BAND = 3.0    # CVD's decay_alpha: the band is 3 / (S/2) of the largest distance; the slope 3 / (band + 1e-6)


def relative_pose(c2w_a: torch.Tensor, c2w_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``R`` ``(F, 3, 3)``, ``t`` ``(F, 3)`` of ``T_ab = w2c_b · c2w_a`` (camera-a coordinates → camera-b)."""
    T = torch.linalg.inv(c2w_b) @ c2w_a
    return T[:, :3, :3], T[:, :3, 3]


def fundamental(K_a: torch.Tensor, c2w_a: torch.Tensor, K_b: torch.Tensor, c2w_b: torch.Tensor) -> torch.Tensor:
    """Fundamental matrices ``(F, 3, 3)`` with ``x_bᵀ F x_a = 0`` for pixels x_a of view a and x_b of view b
    (same frame), from ``K`` ``(F, 3, 3)`` and ``c2w`` ``(F, 4, 4)``: ``F = K_b^{−T} [t]ₓ R K_a^{−1}``
    (kornia's essential/fundamental construction)."""
    from kornia.geometry.epipolar import essential_from_Rt, fundamental_from_essential
    eye = torch.eye(3, dtype=K_a.dtype, device=K_a.device).expand(K_a.shape[0], 3, 3)
    zero = torch.zeros(K_a.shape[0], 3, 1, dtype=K_a.dtype, device=K_a.device)
    R, t = relative_pose(c2w_a.to(K_a.dtype), c2w_b.to(K_a.dtype))
    E = essential_from_Rt(eye, zero, R, t[..., None])        # camera a at the origin, camera b = T_ab
    return fundamental_from_essential(E, K_a, K_b)


def token_centres(height: int, width: int, image_size: tuple[int, int], dtype=torch.float64,
                  device=None) -> torch.Tensor:
    """Homogeneous pixel positions ``(h·w, 3)`` of a ``height × width`` token grid over an image of
    ``image_size = (H, W)``, per axis as CVD places them: ``s·index + (s − 1)/2`` with s = pixels per token."""
    H, W = image_size
    sy, sx = H / height, W / width
    r, c = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                          torch.arange(width, dtype=dtype, device=device), indexing="ij")
    return torch.stack([sx * c + (sx - 1) / 2, sy * r + (sy - 1) / 2, torch.ones_like(r)], -1).reshape(-1, 3)


def epipolar_bias(K_a: torch.Tensor, c2w_a: torch.Tensor, K_b: torch.Tensor, c2w_b: torch.Tensor, height: int,
                  width: int, image_size: tuple[int, int], generator: Optional[torch.Generator] = None,
                  dtype: torch.dtype = torch.float32, theta: Optional[float] = None) -> torch.Tensor:
    """CVD's attention bias ``(F, h·w, h·w)``: rows are view a's query tokens, columns view b's key tokens
    of the same frame. For query token i, l_i = F·p_i is its epipolar line in view b;
    ``D_ij = |l_i·p_j| / (‖l_i[:2]‖ + 1e−6)``; ``band = (3 / (S/2))·max_ij D_ij`` (S = image height, CVD's
    ``F_mat_size``); ``bias_ij = −max(D_ij − band, 0)·3/(band + 1e−6)`` (0 inside the band, −125 at the farthest
    token at S = 256). A frame whose cameras share their centre (F = 0, e.g. frame 0 of views with a common
    first camera) uses CVD's pseudo-line through each query token instead, ``(cos θ, sin θ, −(cos θ·x + sin θ·y))``,
    with one θ ~ U(0, π) per call from ``generator`` (horizontal, θ = π/2, when None), or the given ``theta``
    (a sampler that draws one angle per pairing for every level). One batched pass;
    F and the lines in float64, the (F, N, N) distances in ``dtype`` (float32 for other dtypes), so float16
    halves the memory; never NaN. Runs on the cameras' device; on the ``meta`` device (shapes only) the
    degenerate-frame test cannot be read, so the pseudo-line branch is always traced, with θ = π/2 and no draw."""
    Fm = fundamental(K_a.to(torch.float64), c2w_a.to(torch.float64), K_b.to(torch.float64), c2w_b.to(torch.float64))
    p = token_centres(height, width, image_size, device=K_a.device)               # (N, 3)
    lines = torch.einsum("fij,nj->fni", Fm, p)                                    # (F, N, 3)
    _, t = relative_pose(c2w_a.to(torch.float64), c2w_b.to(torch.float64))
    degenerate = t.norm(dim=-1) <= 1e-9 * (1 + c2w_a[:, :3, 3].to(torch.float64).norm(dim=-1))      # (F,)
    meta = degenerate.is_meta
    if meta or degenerate.any():
        if theta is None:
            theta = math.pi / 2 if generator is None or meta else \
                float(torch.rand((), generator=generator, dtype=torch.float64)) * math.pi
        c, s = math.cos(theta), math.sin(theta)
        pseudo = torch.stack([torch.full_like(p[:, 0], c), torch.full_like(p[:, 0], s), -(c * p[:, 0] + s * p[:, 1])], -1)
        lines = torch.where(degenerate[:, None, None], pseudo[None], lines)
    lines = lines / (lines[..., :2].norm(dim=-1, keepdim=True) + 1e-6)            # |l·p| is now a distance
    # the (F, N, N) distances are the one big tensor: computed directly in the output's precision (float32 for
    # float32/float64-free requests, the half types as they are), in coordinates centred on the image so that
    # |p| ≤ S/2 keeps half precision within ~0.06 px; float64 when float64 is asked for
    cx, cy = image_size[1] / 2, image_size[0] / 2
    q = p - torch.tensor([cx, cy, 0.0], dtype=torch.float64, device=p.device)     # (x − cx, y − cy, 1)
    lines = torch.cat([lines[..., :2], lines[..., :1] * cx + lines[..., 1:2] * cy + lines[..., 2:]], -1)
    work = dtype if dtype in (torch.float64, torch.float16, torch.bfloat16) else torch.float32
    D = torch.bmm(lines.to(work), q.T.to(work).expand(lines.shape[0], 3, -1)).abs_()   # (F, N, N)
    band = (PIXEL_BAND / (image_size[0] / 2)) * D.amax(dim=(1, 2), keepdim=True)  # (F, 1, 1)
    slope = PIXEL_BAND / (band + 1e-6)      # CVD's get_attn_map: 3 / (band + 1e-6), its epsilon kept for parity
    return D.sub_(band).clamp_(min=0).mul_(-slope).to(dtype)   # 0 where the band is 0 (one token): D ≤ band
