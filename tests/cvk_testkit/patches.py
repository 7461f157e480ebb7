"""A stand-in for the patches later nodes put into a network (CameraCtrl's, CVD's): a module that wraps a layer
of the network and changes its output, for testing that a patched clone and its source share weights and
compute their own functions."""
from __future__ import annotations

import torch


class Doubled(torch.nn.Module):
    """``2 · inner(x)``; ``inner`` stays the network's own layer (its weights are not copied)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs):
        return 2 * self.inner(*args, **kwargs)
