"""Procedural camera trajectories: CVD's multi-view patterns and the single-view moves artists expect.

All paths start at the identity (frame 0 = the world frame, OpenCV axes: x right, y down, z forward).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .path import CameraPath
from .poses import fov_intrinsics

PATTERNS = ("circle", "upper_hemi", "interpolate")
MOVES = ("static", "pan left", "pan right", "tilt up", "tilt down", "zoom in", "zoom out", "dolly in", "dolly out",
         "orbit left", "orbit right", "roll left", "roll right")
CVD_FOCAL, CVD_CENTRE, CVD_SIZE = 223.578, 128.0, 256   # CVD's fixed K at 256 px (§1.3)
BASE_STEP = 0.5 / 15      # scene units per frame at speed 1 (0.5 over 16 frames, CVD's distance)
BASE_DEGREES = 2.0        # degrees per frame at speed 1 (30° over 16 frames)
BASE_ZOOM = 0.04          # focal-length growth per frame at speed 1


def cvd_intrinsics(width: int, height: int) -> torch.Tensor:
    """CVD's fixed K ``(3, 3)``: fx = fy = 223.578, cx = cy = 128 at 256 px, x row scaled by W/256, y row by H/256."""
    sx, sy = width / CVD_SIZE, height / CVD_SIZE
    return torch.tensor([[CVD_FOCAL * sx, 0, CVD_CENTRE * sx], [0, CVD_FOCAL * sy, CVD_CENTRE * sy], [0, 0, 1]],
                        dtype=torch.float64)


def look_at(centre: torch.Tensor, target: torch.Tensor, reference: Sequence[float] = (1.0, 0.0, 0.0)) -> torch.Tensor:
    """Rotation c2w ``(…, 3, 3)`` of cameras at ``centre`` ``(…, 3)`` looking at ``target`` ``(…, 3)``, as CVD
    builds it: z = normalize(target − centre), y = normalize(z × ref), x = normalize(y × z), with the world
    x axis as reference (CVD's; z is normalised here, which scipy's ``from_matrix`` did implicitly there)."""
    z = torch.nn.functional.normalize(target - centre, dim=-1)
    ref = torch.tensor(reference, dtype=z.dtype, device=z.device).expand_as(z)
    y = torch.nn.functional.normalize(torch.linalg.cross(z, ref), dim=-1)
    x = torch.nn.functional.normalize(torch.linalg.cross(y, z), dim=-1)
    return torch.stack([x, y, z], dim=-1)


def _skew(v: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(v[..., 0])
    return torch.stack([torch.stack([z, -v[..., 2], v[..., 1]], -1), torch.stack([v[..., 2], z, -v[..., 0]], -1),
                        torch.stack([-v[..., 1], v[..., 0], z], -1)], -2)


def axis_angle(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues: rotation ``(…, 3, 3)`` by ``angle`` ``(…)`` (radians) about unit ``axis`` ``(…, 3)``."""
    K = _skew(axis)
    a = angle[..., None, None]
    eye = torch.eye(3, dtype=K.dtype, device=K.device).expand_as(K)
    return eye + torch.sin(a) * K + (1 - torch.cos(a)) * (K @ K)


def slerp_from_identity(R: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Geodesic interpolation I → R: ``R^α`` for rotations ``(V, 3, 3)`` and fractions ``(F,)`` → ``(V, F, 3, 3)``
    (what scipy's ``Slerp`` between the identity and R gives)."""
    cos = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    angle = torch.acos(cos)                                            # (V,)
    w = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    small = angle < 1e-9
    axis = torch.where(small[..., None], torch.tensor([1.0, 0, 0], dtype=R.dtype, device=R.device),
                       w / (2 * torch.sin(angle)[..., None]))
    axis = torch.nn.functional.normalize(axis, dim=-1)
    return axis_angle(axis[:, None, :].expand(-1, alpha.shape[0], -1), angle[:, None] * alpha[None, :])


def pattern_centres(pattern: str, views: int, distance: float = 0.5, device=None) -> torch.Tensor:
    """CVD's target camera centres ``(V, 3)`` float64 (§2.1), for any V ≥ 2, on ``device``."""
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, got {pattern!r}")
    if views < 2:
        raise ValueError(f"a multi-view pattern needs at least 2 views, got {views}")
    i = torch.arange(views, dtype=torch.float64, device=device)
    if pattern == "circle":
        a = 2 * math.pi * i / views
        return distance * torch.stack([a.cos(), a.sin(), torch.zeros_like(a)], -1)
    if pattern == "upper_hemi":
        a = math.pi + math.pi * i / (views - 1)
        return distance * torch.stack([a.cos(), a.sin(), torch.zeros_like(a)], -1)
    a = math.pi * i / (views - 1)
    return distance * torch.stack([a.cos(), 0.3 * (a + 0.5).cos(), -0.2 * a.sin()], -1)


def pattern(name: str, views: int, frames: int, width: int, height: int, distance: float = 0.5,
            K: torch.Tensor | None = None) -> CameraPath:
    """A CVD pattern: every view goes from the shared identity camera (frame 0) to its target, looking at
    (0, 0, 1); translation lerp and rotation slerp with α_k = k/(F−1). K: CVD's fixed intrinsics unless given
    (then the path is built on K's device, in float64)."""
    if frames < 1:
        raise ValueError(f"frames must be ≥ 1, got {frames}")
    f64 = dict(dtype=torch.float64, device=None if K is None else K.device)
    centres = pattern_centres(name, views, distance, f64["device"])                 # (V, 3)
    R_end = look_at(centres, torch.tensor([0.0, 0.0, 1.0], **f64).expand_as(centres))
    alpha = torch.linspace(0, 1, frames, **f64) if frames > 1 else torch.zeros(1, **f64)
    c2w = torch.eye(4, **f64).repeat(views, frames, 1, 1)
    c2w[:, :, :3, :3] = slerp_from_identity(R_end, alpha)
    c2w[:, :, :3, 3] = centres[:, None, :] * alpha[None, :, None]
    K = cvd_intrinsics(width, height) if K is None else K
    return CameraPath(K.expand(views, frames, 3, 3).clone(), c2w, width, height)


def move(name: str, frames: int, width: int, height: int, speed: float = 1.0, fov: float = 60.0,
         distance: float = 0.5) -> CameraPath:
    """One view doing one move for ``frames`` frames from the identity. At speed 1: pan/dolly
    ``BASE_STEP`` units per frame (pan along the camera x axis, dolly along z); tilt/roll/orbit
    ``BASE_DEGREES`` per frame (tilt about x, roll about z, orbit around the point ``distance`` ahead,
    keeping that distance and looking at it); zoom scales the focal length by 1 + ``BASE_ZOOM``·k."""
    if name not in MOVES:
        raise ValueError(f"move must be one of {MOVES}, got {name!r}")
    if frames < 1:
        raise ValueError(f"frames must be ≥ 1, got {frames}")
    k = torch.arange(frames, dtype=torch.float64)
    sign = -1.0 if name.endswith(("left", "up", "out")) else 1.0
    c2w = torch.eye(4, dtype=torch.float64).repeat(frames, 1, 1)
    K = fov_intrinsics(fov, width, height).repeat(frames, 1, 1)
    step, angle = BASE_STEP * speed * k, math.radians(BASE_DEGREES) * speed * k
    kind = name.split()[0]
    if kind == "pan":
        c2w[:, 0, 3] = sign * step
    elif kind == "dolly":
        c2w[:, 2, 3] = sign * step                              # in: +z (forward), out: −z
    elif kind == "tilt":
        c2w[:, :3, :3] = axis_angle(torch.tensor([1.0, 0, 0], dtype=torch.float64).expand(frames, 3), -sign * angle)
    elif kind == "roll":
        c2w[:, :3, :3] = axis_angle(torch.tensor([0, 0, 1.0], dtype=torch.float64).expand(frames, 3), sign * angle)
    elif kind == "orbit":
        # around the target (0, 0, distance): centre on the circle of radius `distance` in the x–z plane
        a = sign * angle
        centre = torch.stack([distance * torch.sin(a), torch.zeros_like(a), distance * (1 - torch.cos(a))], -1)
        c2w[:, :3, :3] = look_at(centre, torch.tensor([0, 0, distance], dtype=torch.float64).expand_as(centre))
        c2w[:, :3, 3] = centre
    elif kind == "zoom":
        scale = (1 + BASE_ZOOM * speed * k) ** (1.0 if sign > 0 else -1.0)
        K[:, 0, 0] *= scale
        K[:, 1, 1] *= scale
    return CameraPath(K[None], c2w[None], width, height)


class ConcatError(ValueError):
    """Paths that cannot be played one after another; ``index`` is the path at fault."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


def concat(paths: Sequence[CameraPath]) -> CameraPath:
    """Paths one after another in time: each next path is re-anchored at the previous path's last camera
    (its frame 0 coincides with that camera and is dropped), so F = ΣF_i − (n − 1). Views and image size
    must agree."""
    if not paths:
        raise ValueError("nothing to concatenate")
    out = paths[0]
    for i, p in enumerate(paths[1:], 1):
        if p.views != out.views:
            raise ConcatError(f"paths to concatenate need the same number of views, got {out.views} and {p.views}", i)
        if (p.width, p.height) != (out.width, out.height):
            raise ConcatError(f"paths to concatenate need the same image size, got {out.width}×{out.height} and "
                              f"{p.width}×{p.height}", i)
        rel = torch.linalg.inv(p.c2w[:, :1]) @ p.c2w                  # p anchored at its own frame 0
        placed = out.c2w[:, -1:] @ rel
        out = CameraPath(torch.cat([out.K, p.K[:, 1:]], 1), torch.cat([out.c2w, placed[:, 1:]], 1), out.width, out.height)
    return out
