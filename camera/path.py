"""``CVK_CAMERA``: V camera paths (views) × F frames, each frame a pinhole camera.

OpenCV convention: x right, y down, z forward (the camera looks along +z); ``c2w`` maps camera to world
coordinates. Intrinsics ``K`` are in pixels of a ``width × height`` image, pixel centres at +0.5.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CameraPath:
    """``K`` ``(V, F, 3, 3)`` and ``c2w`` ``(V, F, 4, 4)``, float64, for a ``width × height`` image."""
    K: torch.Tensor
    c2w: torch.Tensor
    width: int
    height: int

    TYPE = "CVK_CAMERA"

    def __post_init__(self):
        K, c2w = self.K, self.c2w
        if K.ndim != 4 or K.shape[-2:] != (3, 3) or c2w.ndim != 4 or c2w.shape[-2:] != (4, 4) \
                or K.shape[:2] != c2w.shape[:2]:
            raise ValueError(f"a camera path needs K (V, F, 3, 3) and c2w (V, F, 4, 4); got {tuple(K.shape)} and "
                             f"{tuple(c2w.shape)}")
        if K.shape[0] < 1 or K.shape[1] < 1:
            raise ValueError(f"a camera path needs at least one view and one frame, got {tuple(K.shape[:2])}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"image size must be positive, got {self.width}×{self.height}")
        object.__setattr__(self, "K", K.to(torch.float64))
        object.__setattr__(self, "c2w", c2w.to(torch.float64))

    @property
    def views(self) -> int:
        return self.K.shape[0]

    @property
    def frames(self) -> int:
        return self.K.shape[1]

    def w2c(self) -> torch.Tensor:
        """``(V, F, 4, 4)``: world → camera."""
        return torch.linalg.inv(self.c2w)

    def view(self, i: int) -> "CameraPath":
        """One view as a single-view path."""
        return CameraPath(self.K[i:i + 1], self.c2w[i:i + 1], self.width, self.height)

    def to_json(self) -> dict:
        """Plain lists for the frontend (3-D preview): per view, per frame, K and c2w."""
        return {"width": self.width, "height": self.height, "K": self.K.tolist(), "c2w": self.c2w.tolist()}

    def __repr__(self) -> str:
        return f"<CVK_CAMERA {self.views} view(s) × {self.frames} frame(s), {self.width}×{self.height}>"
