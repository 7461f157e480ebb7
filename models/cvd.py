"""CVD (arXiv 2405.17414): the cross-video synchronisation ("epi") modules on a CameraCtrl AnimateDiff.

One epi module sits right after every v3 motion module (20 in SD1.5, the motion modules' widths). It mirrors a
motion module but attends across videos: per frame, GroupNorm (32 groups) → tokens ``(h·w, C)`` → ``proj_in`` →
one block of two attentions in which each token of a video attends to the h·w tokens of the SAME frame of its
partner video (not to its own), with CVD's epipolar bias added to the logits, then a GEGLU feed-forward →
``proj_out`` → + the motion module's output. Keys are those of the released ``CVD.ckpt`` (``unet_trainable_dict``;
``animatediff/models/epi_module.py``).

Injection without forking diffusers: each motion module's ``forward`` is replaced, on a clone of the UNet part
(an object patch), by :class:`SyncedForward` — the motion module's own forward, then its epi module. Who pairs
with whom, and the biases, come from the sampler per network call through a shared :class:`SyncState`
(:meth:`SyncControl.call`); a call outside one (the plain model on the shared UNet) is the plain motion module.

The bias of a pairing is built once per UNet level (not per head, not per attention: the official code rebuilds
it in each of the 40 attentions of a call and copies it per head), on the run device in the model's dtype,
``(views, F, 1, N, N)``, broadcast over the heads (stride 0), and kept while the pairing repeats. The frame-0
pseudo-line angle is drawn once per pairing.
"""
from __future__ import annotations

import math
import os
import re
from contextlib import contextmanager
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..camera.epipolar import epipolar_bias
from ..samplers.epipolar_sync import Pairing
from .cameractrl import _FeedForward, motion_attention_slots
from .checkpoint import CheckpointError, empty_params, load_into, match_state_dict, read_state_dict

HEADS = 8
GROUPS = 32
FILE_ROOT = "unet_trainable_dict"
FILE_IGNORED = (r"^epoch$", r"^global_step$", r"^optimizer_state_dict", r"\.pos_encoder\.coords$")
TINY_NAME = "tiny CVD sync module (untrained demo)"


class _EpiAttention(nn.Module):
    """Queries from a video's tokens, keys and values from its partner's (same frame), plus a bias on the logits."""

    def __init__(self, dim: int, heads: int = HEADS):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])

    def forward(self, n: torch.Tensor, partner: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``n`` ``(H, V, F, N, C)`` (H = CFG halves in the call, V = videos), ``partner`` ``(V,)`` the position of
        each video's partner, ``bias`` ``(V, F, 1, N, N)``. Returns ``(H, V, F, N, C)``."""
        H, V, Fr, N, C = n.shape
        d = C // self.heads
        heads = lambda t: t.reshape(V * Fr, N, self.heads, d).transpose(1, 2)  # noqa: E731   (V·F, heads, N, d)
        out = []
        mask = bias.reshape(V * Fr, 1, N, N)                     # one bias for every head (broadcast, stride 0)
        for h in range(H):                                       # per CFG half: the same bias, never copied
            kv = n[h, partner]
            o = F.scaled_dot_product_attention(heads(self.to_q(n[h])), heads(self.to_k(kv)), heads(self.to_v(kv)),
                                               attn_mask=mask.expand(V * Fr, self.heads, N, N))
            out.append(o.transpose(1, 2).reshape(V, Fr, N, C))
        return self.to_out[0](torch.stack(out))


class _EpiBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList([_EpiAttention(dim), _EpiAttention(dim)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim), nn.LayerNorm(dim)])
        self.ff = _FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x, partner, bias):
        for attn, norm in zip(self.attention_blocks, self.norms):
            x = x + attn(norm(x), partner, bias)
        return x + self.ff(self.ff_norm(x))


class _EpiTransformer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(GROUPS, dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim)
        self.transformer_blocks = nn.ModuleList([_EpiBlock(dim)])
        self.proj_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, halves: int, frames: int, partner, bias) -> torch.Tensor:
        """``x`` ``(H·V·F, C, h, w)`` — a motion module's output, frames of each video consecutive — → the same
        shape: per frame norm, tokens, the block, projection, + x."""
        R, C, h, w = x.shape
        t = F.group_norm(x, self.norm.num_groups, self.norm.weight, self.norm.bias, self.norm.eps)   # per frame
        t = self.proj_in(t.permute(0, 2, 3, 1).reshape(halves, R // (halves * frames), frames, h * w, C))
        t = self.transformer_blocks[0](t, partner, bias)
        t = self.proj_out(t).reshape(R, h, w, C).permute(0, 3, 1, 2)
        return t + x


class EpiModule(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.epi_transformer = _EpiTransformer(dim)


def motion_module_slots(unet: nn.Module) -> list[tuple[str, int]]:
    """``(motion module path, level)`` in the released order (down blocks, then up blocks)."""
    return [(name.rsplit(".transformer_blocks.", 1)[0], level) for name, level in motion_attention_slots(unet)]


def _epi_key(slot: str) -> str:
    """``down_blocks.0.motion_modules.1`` → the released key stem ``down_blocks.0.epi_modules.1``."""
    return slot.replace(".motion_modules.", ".epi_modules.")


class SyncModules(nn.Module):
    """The 20 epi modules (``epi``, keyed by their released stem with ``.`` → ``_``), one per motion module."""

    def __init__(self, slots: list[tuple[str, int]], widths: dict[int, int]):
        super().__init__()
        self.slots = slots
        self.epi = nn.ModuleDict({_epi_key(s).replace(".", "_"): EpiModule(widths[lv]) for s, lv in slots})

    def module(self, slot: str) -> EpiModule:
        return self.epi[_epi_key(slot).replace(".", "_")]


# ---------------------------------------------------------------- who attends to whom, per network call

class SyncState:
    """The pairing in force and its biases per UNet level, ``(V, F, 1, N, N)`` in view order; the views of the
    call in progress. ``builds`` counts bias builds (one per level and pairing)."""

    def __init__(self):
        self.call_views: Optional[list[int]] = None
        self.pairing: Optional[Pairing] = None
        self.biases: dict[int, torch.Tensor] = {}
        self.builds = 0
        self.cameras = None          # (K (V, F, 3, 3), c2w (V, F, 4, 4), (H, W)) float64 on the run device
        self.theta = math.pi / 2

    def set_pairing(self, pairing: Pairing, theta: float) -> None:
        if pairing != self.pairing:
            self.pairing, self.biases, self.theta = pairing, {}, float(theta)

    def bias(self, level: int, h: int, w: int, dtype: torch.dtype, device) -> torch.Tensor:
        """The level's bias for every view (built on first use for this pairing)."""
        b = self.biases.get(level)
        if b is None:
            K, c2w, size = self.cameras
            p = self.pairing.partner
            b = torch.stack([epipolar_bias(K[v], c2w[v], K[p[v]], c2w[p[v]], h, w, size, dtype=dtype, theta=self.theta)
                             for v in range(len(p))]).to(device)[:, :, None]
            self.biases[level] = b
            self.builds += 1
        return b

    def held_bytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.biases.values())


class SyncedForward:
    """A motion module's forward followed by its epi module (the object patch on ``<motion module>.forward``)."""

    def __init__(self, motion_module: nn.Module, epi: EpiModule, level: int, state: SyncState):
        self.motion_module, self.epi, self.level, self.state = motion_module, epi, level, state

    def __call__(self, hidden_states, encoder_hidden_states=None, timestep=None, class_labels=None, num_frames: int = 1,
                 cross_attention_kwargs=None):    # AnimateDiffTransformer3D.forward's signature
        out = type(self.motion_module).forward(self.motion_module, hidden_states, encoder_hidden_states, timestep,
                                               class_labels, num_frames, cross_attention_kwargs)
        st = self.state
        if st.call_views is None:
            return out
        views = st.call_views
        halves = out.shape[0] // (len(views) * num_frames)
        bias = st.bias(self.level, out.shape[-2], out.shape[-1], out.dtype, out.device)
        if len(views) != bias.shape[0] or views != list(range(len(views))):
            bias = bias[views]                                   # a split call: these views' rows only
        position = {v: i for i, v in enumerate(views)}
        partner = torch.tensor([position[st.pairing.partner[v]] for v in views], device=out.device)
        return self.epi.epi_transformer(out, halves, num_frames, partner, bias)


class SyncControl:
    """What a CVD bundle carries: the sync part, the shared :class:`SyncState`."""

    def __init__(self, part, state: SyncState):
        self.part, self.state = part, state

    @property
    def module(self) -> SyncModules:
        return self.part.module

    @contextmanager
    def cameras(self, K: torch.Tensor, c2w: torch.Tensor, size: tuple[int, int], device):
        """The V views' cameras ``K`` ``(V, F, 3, 3)``, ``c2w`` ``(V, F, 4, 4)`` for a sampling run (biases are
        built from them); the cache is dropped afterwards."""
        st = self.state
        st.cameras = (K.to(device=device, dtype=torch.float64), c2w.to(device=device, dtype=torch.float64), size)
        st.pairing, st.biases, st.builds = None, {}, 0
        try:
            yield st
        finally:
            st.cameras, st.pairing, st.biases = None, None, {}

    @contextmanager
    def call(self, pairing: Pairing, theta: float, views: Sequence[int]):
        """One network call on ``views`` (in batch order, every view's partner among them) under ``pairing``."""
        st = self.state
        missing = [v for v in views if pairing.partner[v] not in views]
        if missing:
            raise ValueError(f"views {missing} have their partners outside this call")
        st.set_pairing(pairing, theta)
        st.call_views = list(views)
        try:
            yield
        finally:
            st.call_views = None


def patch_unet(unet_part, sync_part) -> tuple:
    """A clone of ``unet_part`` whose motion modules are followed by their epi modules, and its
    :class:`SyncControl`; the given part is left as it is."""
    unet, sync = unet_part.module, sync_part.module
    state = SyncState()
    part = unet_part
    for slot, level in sync.slots:
        part = part.with_object_patch(f"{slot}.forward", SyncedForward(unet.get_submodule(slot), sync.module(slot),
                                                                       level, state))
    return part, SyncControl(sync_part, state)


# ---------------------------------------------------------------- the released file

def _widths(unet: nn.Module, slots) -> dict[int, int]:
    return {lv: unet.get_submodule(s).proj_in.in_features for s, lv in slots}


def match_file(sd: dict[str, torch.Tensor], unet: nn.Module, name: str) -> tuple[SyncModules, dict]:
    """:class:`SyncModules` (meta parameters) for ``unet`` and the file's tensors on its keys, strictly. ``sd``
    holds the ``unet_trainable_dict`` entries (``<root>/<key>`` as the nested reader gives them, or bare keys)."""
    try:
        slots = motion_module_slots(unet)
    except ValueError as e:
        raise CheckpointError(str(e).replace("CameraCtrl", "CVD")) from None
    keys = {(k.split("/", 1)[1] if k.startswith(FILE_ROOT + "/") else k): v for k, v in sd.items()}
    if not any(".epi_modules." in k for k in keys):
        raise CheckpointError(f"'{name}' is not a CVD sync module: it has no '*.epi_modules.*' keys")
    with empty_params():
        sync = SyncModules(slots, _widths(unet, slots))
    rename = lambda k: (re.sub(r"^((?:down|up)_blocks)\.(\d+)\.epi_modules\.(\d+)\.", r"epi.\1_\2_epi_modules_\3.", k)  # noqa: E731
                        if ".epi_modules." in k else None)
    return sync, match_state_dict(sync, keys, f"'{name}' sync module", rename, ignore_file=FILE_IGNORED)


def load_sync(path: str, unet: nn.Module, dtype: Optional[torch.dtype] = None) -> SyncModules:
    """``CVD.ckpt`` (``unet_trainable_dict``; the training state and the rebuilt ``coords`` buffers are never used),
    strictly, memory-mapped, ``weights_only``."""
    name = os.path.basename(path)
    sync, matched = match_file(read_state_dict(path, skip=FILE_IGNORED, nested=True), unet, name)
    return load_into(sync, matched, dtype)


def tiny_sync(unet: nn.Module, seed: int = 5001) -> SyncModules:
    """Untrained epi modules built in code for ``unet`` (the tiny AnimateDiff); every weight random and small,
    ``proj_out`` too, so the views do interact."""
    slots = motion_module_slots(unet)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sync = SyncModules(slots, _widths(unet, slots))
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for epi in sync.epi.values():
                out = epi.epi_transformer.proj_out
                out.weight.copy_(torch.randn(out.weight.shape, generator=gen) * 0.05)
                out.bias.copy_(torch.randn(out.bias.shape, generator=gen) * 0.05)
    p = next(unet.parameters())
    return sync.to(dtype=p.dtype).eval().requires_grad_(False)
