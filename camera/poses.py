"""Pose files and pose lists: RealEstate10K / CameraCtrl text files and AnimateDiff-Evolved's
``CAMERACTRL_POSES``, to and from :class:`~.path.CameraPath`.

Pose file: line 1 a URL (skipped), then one line per frame with 19 numbers:
``timestamp fx fy cx cy s1 s2 r11 r12 r13 t1 r21 r22 r23 t2 r31 r32 r33 t3`` — intrinsics normalised
(fx, cx by the original width; fy, cy by the original height), two free slots, a row-major 3×4 **w2c**.
``CAMERACTRL_POSES`` (one view) is the list of those rows, its slots holding the original pose
width and height.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import torch

from .path import CameraPath

COLUMNS = 19
DEFAULT_POSE_SIZE = (1280, 720)   # CameraCtrl's --original_pose_width/height


class PoseFileError(ValueError):
    pass


@dataclass(frozen=True)
class Poses:
    """One view's poses as stored: ``timestamps`` ``(F,)``, normalised ``intrinsics`` ``(F, 4)``
    (fx, fy, cx, cy), the two free ``slots`` ``(F, 2)`` and ``w2c`` ``(F, 4, 4)``, all float64."""
    timestamps: torch.Tensor
    intrinsics: torch.Tensor
    slots: torch.Tensor
    w2c: torch.Tensor
    url: str = ""

    @property
    def frames(self) -> int:
        return self.w2c.shape[0]


def _rows_to_poses(rows: Sequence[Sequence[float]], where: Sequence[str], url: str = "") -> Poses:
    """Validate numeric rows (each ``COLUMNS`` long; ``where[i]`` names row i in errors)."""
    if len(rows) == 0:
        raise PoseFileError("no pose lines: a pose file needs at least one frame after the URL line")
    t = torch.tensor(rows, dtype=torch.float64)
    for i in range(t.shape[0]):
        if not torch.isfinite(t[i]).all():
            raise PoseFileError(f"{where[i]}: NaN or infinite value")
    w2c = torch.eye(4, dtype=torch.float64).repeat(t.shape[0], 1, 1)
    w2c[:, :3, :] = t[:, 7:].reshape(-1, 3, 4)
    det = torch.linalg.det(w2c[:, :3, :3])
    for i in range(t.shape[0]):
        if abs(float(det[i])) < 1e-8:
            raise PoseFileError(f"{where[i]}: the 3×4 world-to-camera matrix is not invertible (det {float(det[i]):.3g})")
        if (t[i, 1:3] <= 0).any():
            raise PoseFileError(f"{where[i]}: focal lengths must be positive, got fx={float(t[i, 1])}, fy={float(t[i, 2])}")
    return Poses(t[:, 0], t[:, 1:5], t[:, 5:7], w2c, url)


def parse_pose_text(text: str, name: str = "pose file") -> Poses:
    """Parse a RealEstate10K / CameraCtrl pose file's text. Errors name the file and line."""
    lines = text.splitlines()
    if not lines:
        raise PoseFileError(f"{name}: empty file")
    rows, where = [], []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != COLUMNS:
            raise PoseFileError(f"{name}, line {n}: {len(parts)} columns, expected {COLUMNS} "
                                f"(timestamp fx fy cx cy 0 0 and a 3×4 world-to-camera matrix)")
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            bad = next(p for p in parts if not _is_float(p))
            raise PoseFileError(f"{name}, line {n}: {bad!r} is not a number") from None
        where.append(f"{name}, line {n}")
    try:
        return _rows_to_poses(rows, where, lines[0].strip())
    except PoseFileError as e:
        raise PoseFileError(str(e) if str(e).startswith(name) else f"{name}: {e}") from None


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def format_pose_text(poses: Poses) -> str:
    """The pose-file text of :class:`Poses` (full float precision, so a read gives the same numbers)."""
    out = [poses.url or "https://example.invalid/consistent-video-kit"]
    for i in range(poses.frames):
        vals = [poses.timestamps[i]] + list(poses.intrinsics[i]) + list(poses.slots[i]) + list(poses.w2c[i, :3, :].reshape(-1))
        out.append(" ".join(_fmt(float(v)) for v in vals))
    return "\n".join(out) + "\n"


def _fmt(v: float) -> str:
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def poses_from_cameractrl(rows: Iterable[Sequence[float]]) -> Poses:
    """``CAMERACTRL_POSES`` (one view: rows of 19 numbers) → :class:`Poses`."""
    rows = [list(r) for r in rows]
    for i, r in enumerate(rows):
        if len(r) != COLUMNS:
            raise PoseFileError(f"CAMERACTRL_POSES row {i}: {len(r)} values, expected {COLUMNS}")
    return _rows_to_poses(rows, [f"CAMERACTRL_POSES row {i}" for i in range(len(rows))])


def poses_to_cameractrl(poses: Poses) -> list[list[float]]:
    """:class:`Poses` → ``CAMERACTRL_POSES`` rows."""
    return [[float(poses.timestamps[i])] + poses.intrinsics[i].tolist() + poses.slots[i].tolist()
            + poses.w2c[i, :3, :].reshape(-1).tolist() for i in range(poses.frames)]


def crop_intrinsics(intrinsics: torch.Tensor, width: int, height: int, pose_width: float, pose_height: float
                    ) -> torch.Tensor:
    """Pixel K ``(F, 3, 3)`` for a ``width × height`` sample from normalised ``(F, 4)`` intrinsics of a
    ``pose_width × pose_height`` video, under "resize the short side, then centre-crop" as CameraCtrl's
    inference does: only the focal length of the cropped axis is rescaled; the principal point stays at
    (cx·W, cy·H). 1280×720 → 384×256 gives fx = fy = 214.35 px, cx = 192, cy = 128 for fx=0.4710, fy=0.8373."""
    fx, fy, cx, cy = (intrinsics[:, i].clone() for i in range(4))
    r_s, r_p = width / height, pose_width / pose_height
    if r_p > r_s:
        fx = fx * (height * r_p) / width
    else:
        fy = fy * (width / r_p) / height
    K = torch.zeros(intrinsics.shape[0], 3, 3, dtype=torch.float64, device=intrinsics.device)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = fx * width, fy * height, cx * width, cy * height, 1
    return K


def anchor(c2w: torch.Tensor) -> torch.Tensor:
    """Re-anchor ``(…, F, 4, 4)`` so frame 0 is the identity: ``c2w_rel[k] = w2c[0]·c2w[k]``."""
    return torch.linalg.inv(c2w[..., :1, :, :]) @ c2w


def camera_from_poses(views: Sequence[Poses], width: int, height: int, pose_size: Optional[tuple] = None,
                      relative: bool = True) -> CameraPath:
    """Views of poses → :class:`CameraPath` for a ``width × height`` sample. ``pose_size``: the original
    video size the intrinsics are normalised by; None takes it from each frame's slots when they hold a
    positive size (AnimateDiff-Evolved's convention), else 1280×720. ``relative``: re-anchor each view so
    its frame 0 is the identity (CameraCtrl and CVD do)."""
    frames = {p.frames for p in views}
    if len(frames) != 1:
        raise PoseFileError(f"all views need the same number of frames, got {sorted(frames)}")
    Ks, c2ws = [], []
    for p in views:
        if pose_size is not None:
            size = pose_size
        elif (p.slots[0] > 0).all():
            size = (float(p.slots[0, 0]), float(p.slots[0, 1]))
        else:
            size = DEFAULT_POSE_SIZE
        Ks.append(crop_intrinsics(p.intrinsics, width, height, *size))
        c2w = torch.linalg.inv(p.w2c)
        c2ws.append(anchor(c2w) if relative else c2w)
    return CameraPath(torch.stack(Ks), torch.stack(c2ws), width, height)


def poses_from_camera(path: CameraPath, view: int = 0, slots: str = "size") -> Poses:
    """One view of a :class:`CameraPath` as :class:`Poses`: intrinsics normalised by the path's own size
    (so reading them back for the same size gives the same K), w2c, timestamps 0, 1, …; ``slots``:
    ``"size"`` writes the path's width/height (AnimateDiff-Evolved's convention), ``"zero"`` the official zeros."""
    if not 0 <= view < path.views:
        raise PoseFileError(f"view {view} does not exist; the camera has {path.views} view(s)")
    K = path.K[view]
    W, H = path.width, path.height
    intr = torch.stack([K[:, 0, 0] / W, K[:, 1, 1] / H, K[:, 0, 2] / W, K[:, 1, 2] / H], dim=-1)
    F = path.frames
    f64 = dict(dtype=torch.float64, device=K.device)
    sl = torch.tensor([[W, H]] * F, **f64) if slots == "size" else torch.zeros(F, 2, **f64)
    return Poses(torch.arange(F, **f64), intr, sl, torch.linalg.inv(path.c2w[view]))


def fov_intrinsics(fov_deg: float, width: int, height: int) -> torch.Tensor:
    """Pixel K ``(3, 3)`` for a vertical field of view in degrees, square pixels, centred principal point."""
    if not 0 < fov_deg < 180:
        raise ValueError(f"fov must be in (0, 180) degrees, got {fov_deg}")
    f = (height / 2) / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float64)
