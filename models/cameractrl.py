"""CameraCtrl (arXiv 2404.02101): AnimateDiff v3 that follows a camera path, conditioned on per-pixel Plücker rays.

- :class:`CameraPoseEncoder`: Plücker ``(B, 6, F, H, W)`` → PixelUnshuffle(8) → ``encoder_conv_in`` → per UNet
  level i, ``nums_rb`` × [ResNet block (the first of levels > 0 halves the size; a 1×1 ``in_conv`` where the
  width changes) → temporal self-attention over the frames of each pixel (LayerNorm + sinusoidal table, 8 heads,
  then a GEGLU feed-forward)] → one feature map ``(B, C_i, F, H/8/2^i, W/8/2^i)`` per level. State-dict keys are
  those of the released ``CameraCtrl.ckpt`` (``cameractrl/models/pose_adaptor.py``); the table has 16 rows, so
  at most 16 frames.
- Injection: the first temporal self-attention (``attn1``) of every v3 motion module — down block i takes
  feature i, up block i feature L−1−i — sees ``h' = h + s·(W_m(h + p) + b_m)`` instead of its input
  ``h = LN(x) + PE``, with ``p`` the feature tokens of its level and ``W_m`` the zero-initialised ``qkv_merge``
  (``attention_processor.py::PoseAdaptorAttnProcessor``); queries, keys and values all come from ``h'``.
  :class:`PoseMergeProcessor` does this as an attention processor, set on a clone of the UNet part as an object
  patch (diffusers' model code is not forked, and the model a node was given is not changed). diffusers passes
  no attention kwargs to motion modules, so the features of the call in progress reach the processors through
  a shared :class:`PoseFeatures` that the bundle fills for each network call (:meth:`CameraControl.features`).
- The encoder and the 20 merge layers live in their own module (:class:`CameraCtrl`), a host model part of their
  own that loads with the UNet.

Everything here is built with parameters that loaders fill (``checkpoint.empty_params``) or a tiny demo fills.
"""
from __future__ import annotations

import math
import os
import re
from contextlib import contextmanager
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointError, empty_params, load_into, match_state_dict, read_state_dict

POSE_CHANNELS = 6                 # Plücker: moment, then direction
DOWNSCALE = 8                     # PixelUnshuffle factor: the pose encoder works at latent resolution
MAX_FRAMES = 16                   # rows of the released positional tables
HEADS = 8                         # temporal_attention_nhead of the released config
FILE_IGNORED = (r"^epoch$", r"^global_step$", r"^optimizer_state_dict")   # training state in the released file
MERGE_KEY = re.compile(r"^(down|up)_blocks\.(\d+)\.motion_modules\.(\d+)\.temporal_transformer\.transformer_blocks\.0"
                       r"\.attention_blocks\.0\.processor\.qkv_merge\.(weight|bias)$")


def sinusoidal_table(rows: int, dim: int) -> torch.Tensor:
    """``(1, rows, dim)``: sin on even, cos on odd channels, AnimateDiff's / CameraCtrl's table."""
    position = torch.arange(rows).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, rows, dim)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term)
    return pe


class _PosEncoder(nn.Module):
    def __init__(self, dim: int, rows: int):
        super().__init__()
        self.register_buffer("pe", sinusoidal_table(rows, dim))   # in the released file (persistent)


class _TemporalAttention(nn.Module):
    """Self-attention over frames, no bias on q/k/v (keys ``to_q``, ``to_k``, ``to_v``, ``to_out.0``,
    ``pos_encoder.pe``)."""

    def __init__(self, dim: int, heads: int, rows: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])
        self.pos_encoder = _PosEncoder(dim, rows)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``h`` ``(N, F, C)``, already layer-normed; the table is added here, as the official attention does."""
        h = h + self.pos_encoder.pe[:, :h.shape[1]].to(h.dtype)
        n, f, c = h.shape
        q, k, v = (p(h).reshape(n, f, self.heads, c // self.heads).transpose(1, 2) for p in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, f, c)
        return self.to_out[0](out)


class _GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class _FeedForward(nn.Module):
    """diffusers' GEGLU ``FeedForward`` (keys ``net.0.proj``, ``net.2``), hidden width 4·dim."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.ModuleList([_GEGLU(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class _TemporalBlock(nn.Module):
    """``x ← x + attn(LN(x)) ; x ← x + FF(LN(x))`` over the frames of each pixel, ``(N, F, C)``."""

    def __init__(self, dim: int, heads: int, rows: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList([_TemporalAttention(dim, heads, rows)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim)])
        self.ff = _FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention_blocks[0](self.norms[0](x)) + x
        return self.ff(self.ff_norm(x)) + x


class _ResBlock(nn.Module):
    """``[AvgPool 2×2] → [in_conv 1×1 where the width changes] → x + block2(ReLU(block1(x)))`` (``sk``: identity skip)."""

    def __init__(self, c_in: int, c_out: int, down: bool):
        super().__init__()
        self.down = down
        self.in_conv = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None
        self.block1 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.block2 = nn.Conv2d(c_out, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = F.avg_pool2d(x, 2, 2)
        if self.in_conv is not None:
            x = self.in_conv(x)
        return x + self.block2(F.relu(self.block1(x)))


class CameraPoseEncoder(nn.Module):
    """Plücker rays → one feature map per UNet level (see the module docstring). ``channels`` per level,
    ``nums_rb`` ResNet + temporal blocks per level, ``rows`` in the positional tables."""

    def __init__(self, channels=(320, 640, 1280, 1280), nums_rb: int = 2, heads: int = HEADS, rows: int = MAX_FRAMES):
        super().__init__()
        self.channels, self.rows = tuple(channels), rows
        self.unshuffle = nn.PixelUnshuffle(DOWNSCALE)
        self.encoder_conv_in = nn.Conv2d(POSE_CHANNELS * DOWNSCALE**2, channels[0], 3, 1, 1)
        self.encoder_down_conv_blocks = nn.ModuleList()
        self.encoder_down_attention_blocks = nn.ModuleList()
        for i, c in enumerate(channels):
            c_prev = channels[max(i - 1, 0)]
            self.encoder_down_conv_blocks.append(nn.ModuleList(
                [_ResBlock(c_prev if j == 0 else c, c, down=(j == 0 and i > 0)) for j in range(nums_rb)]))
            self.encoder_down_attention_blocks.append(nn.ModuleList(
                [_TemporalBlock(c, heads, rows) for _ in range(nums_rb)]))

    @property
    def levels(self) -> int:
        return len(self.channels)

    def forward(self, plucker: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 6, F, H, W)`` → per level ``(B, C_i, F, H/8/2^i, W/8/2^i)``; H and W multiples of
        ``8·2^(levels−1)``, F at most the table's rows."""
        b, c, f, H, W = plucker.shape
        if f > self.rows:
            raise ValueError(f"CameraCtrl's pose encoder takes at most {self.rows} frames (its positional table); "
                             f"got {f}")
        x = self.encoder_conv_in(self.unshuffle(plucker.transpose(1, 2).reshape(b * f, c, H, W)))
        features = []
        for convs, attns in zip(self.encoder_down_conv_blocks, self.encoder_down_attention_blocks):
            for conv, attn in zip(convs, attns):
                x = conv(x)
                ch, h, w = x.shape[1:]
                tokens = x.reshape(b, f, ch, h, w).permute(0, 3, 4, 1, 2).reshape(b * h * w, f, ch)
                x = attn(tokens).reshape(b, h, w, f, ch).permute(0, 3, 4, 1, 2).reshape(b * f, ch, h, w)
            features.append(x.reshape(b, f, *x.shape[1:]).transpose(1, 2))
        return features


def motion_attention_slots(unet: nn.Module) -> list[tuple[str, int]]:
    """``(name, level)`` of the first temporal attention of every motion module of a ``UNetMotionModel``, in
    the released file's order: ``down_blocks.i.motion_modules.j`` (level i), then ``up_blocks.i…`` (level
    L−1−i). ``name`` is the diffusers module path (``…transformer_blocks.0.attn1``). A mid-block module (v2
    layout) is refused: CameraCtrl was trained on AnimateDiff v3."""
    if getattr(unet, "mid_block", None) is not None and getattr(unet.mid_block, "motion_modules", None):
        raise ValueError("CameraCtrl needs an AnimateDiff v3-layout motion module (no mid-block motion module); "
                         "this model has one (a v2 module): load v3_sd15_mm")
    levels = len(unet.down_blocks)
    slots = []
    for kind in ("down_blocks", "up_blocks"):
        for i, block in enumerate(getattr(unet, kind)):
            for j, _ in enumerate(getattr(block, "motion_modules", [])):
                slots.append((f"{kind}.{i}.motion_modules.{j}.transformer_blocks.0.attn1",
                              i if kind == "down_blocks" else levels - 1 - i))
    if not slots:
        raise ValueError("CameraCtrl needs an AnimateDiff model (motion modules); this model has none")
    return slots


def _file_key(slot: str) -> str:
    """diffusers path of a motion module's attn1 → the released file's key stem."""
    kind, i, _, j = slot.split(".")[:4]
    return (f"{kind}.{i}.motion_modules.{j}.temporal_transformer.transformer_blocks.0.attention_blocks.0"
            f".processor.qkv_merge")


class CameraCtrl(nn.Module):
    """The CameraCtrl weights: ``pose_encoder`` and one ``qkv_merge`` Linear per motion module (``merges``,
    keyed by the motion module's path with ``.`` → ``_``)."""

    def __init__(self, encoder: CameraPoseEncoder, slots: list[tuple[str, int]]):
        super().__init__()
        self.pose_encoder = encoder
        self.slots = slots
        self.merges = nn.ModuleDict({name.replace(".", "_"): nn.Linear(encoder.channels[level], encoder.channels[level])
                                     for name, level in slots})

    def merge(self, slot: str) -> nn.Linear:
        return self.merges[slot.replace(".", "_")]


class PoseFeatures:
    """The pose-feature tokens of the network call in progress, per level ``(B·h·w, F, C)``, shared by the
    processors (set by :meth:`CameraControl.features` around each UNet call; None outside one)."""

    def __init__(self):
        self.tokens: Optional[list[torch.Tensor]] = None


class PoseMergeProcessor:
    """Attention processor of a motion module's first temporal attention with CameraCtrl's merge:
    ``h' = h + s·(W_m(h + p) + b_m)``, then ``inner`` (the attention's own processor) on ``h'``. Not an
    ``nn.Module``: the merge layer belongs to the CameraCtrl part, not to the UNet. Outside a camera-conditioned
    call (no features: the shared UNet called for the plain model while this patch is still in force) it is the
    plain attention."""

    def __init__(self, inner, merge: nn.Linear, level: int, features: PoseFeatures, scale: float):
        self.inner, self.merge, self.level, self.features, self.scale = inner, merge, level, features, float(scale)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if self.features.tokens is not None:
            p = self.features.tokens[self.level].to(hidden_states.dtype)
            hidden_states = self.merge(hidden_states + p) * self.scale + hidden_states
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)


class CameraControl:
    """What a CameraCtrl-conditioned bundle carries: the CameraCtrl part (encoder + merges), the shared
    :class:`PoseFeatures`, and the strength."""

    def __init__(self, part, features: PoseFeatures, strength: float):
        self.part, self.features_state, self.strength = part, features, float(strength)

    @property
    def module(self) -> CameraCtrl:
        return self.part.module

    def encode(self, plucker: torch.Tensor) -> list[torch.Tensor]:
        """Pose features ``[(B, C_i, F, h_i, w_i)]`` for Plücker rays ``(B, 6, F, H, W)`` (load the part first)."""
        enc = self.module.pose_encoder
        device, dtype = self.part.device, self.part.dtype
        return enc(plucker.to(device=device, dtype=dtype))

    @contextmanager
    def features(self, per_level: list[torch.Tensor], batch: int):
        """Make ``per_level`` features (batch ``batch``, the UNet call's) the processors' for one call."""
        if len(per_level) != self.module.pose_encoder.levels or any(f.shape[0] != batch for f in per_level):
            raise ValueError(f"pose features for a batch of {batch} at {self.module.pose_encoder.levels} levels "
                             f"expected, got {[tuple(f.shape) for f in per_level]}")
        self.features_state.tokens = [f.permute(0, 3, 4, 2, 1).reshape(-1, f.shape[2], f.shape[1]) for f in per_level]
        try:
            yield
        finally:
            self.features_state.tokens = None


def patch_unet(unet_part, camera_part, strength: float):
    """A clone of ``unet_part`` whose motion modules' first temporal attentions use CameraCtrl's merge, and the
    :class:`CameraControl` that feeds them. The given part is left as it is."""
    unet, cc = unet_part.module, camera_part.module
    features = PoseFeatures()
    part = unet_part
    for name, level in cc.slots:
        inner = unet.get_submodule(name).processor
        while isinstance(inner, PoseMergeProcessor):    # another CameraCtrl clone's patch is in force right now
            inner = inner.inner
        processor = PoseMergeProcessor(inner, cc.merge(name), level, features, strength)
        part = part.with_object_patch(f"{name}.processor", processor)
    return part, CameraControl(camera_part, features, strength)


# ---------------------------------------------------------------- the released file

def split_file(sd: dict[str, torch.Tensor], name: str) -> tuple[dict, dict]:
    """``(pose encoder tensors, merge tensors)`` of a CameraCtrl file: the released two-dict layout
    (``pose_encoder_state_dict`` / ``attention_processor_state_dict``, already flattened with their names as
    prefixes by the reader) or AnimateDiff-Evolved's flat layout (``encoder*`` and ``*qkv_merge*`` keys)."""
    enc, merges, stray = {}, {}, []
    for k, v in sd.items():
        key = k.split("/", 1)[1] if "/" in k else k
        if k.startswith("pose_encoder_state_dict/") or (("/" not in k) and key.startswith("encoder")):
            enc[key] = v
        elif (k.startswith("attention_processor_state_dict/") or "/" not in k) and "qkv_merge" in key:
            merges[key] = v
        else:
            stray.append(k)
    if stray:
        raise CheckpointError(f"'{name}': {len(stray)} unexpected keys for a CameraCtrl file: "
                              f"{', '.join(sorted(stray)[:12])}")
    if not enc or not merges:
        raise CheckpointError(f"'{name}' is not a CameraCtrl file: it has no pose encoder ('encoder*' keys) or no "
                              f"attention merges ('*qkv_merge*' keys)")
    return enc, merges


def encoder_config(shapes: dict[str, tuple]) -> dict:
    """``channels``, ``nums_rb`` and ``rows`` of a pose encoder from its tensors' shapes."""
    channels, nums_rb = [], 0
    for i in range(16):
        blocks = {int(m.group(1)) for k in shapes
                  if (m := re.match(rf"encoder_down_conv_blocks\.{i}\.(\d+)\.block1\.weight$", k))}
        if not blocks:
            break
        channels.append(shapes[f"encoder_down_conv_blocks.{i}.0.block1.weight"][0])
        nums_rb = max(nums_rb, len(blocks))
    pe = [v for k, v in shapes.items() if k.endswith("pos_encoder.pe")]
    if not channels:
        raise CheckpointError("the pose encoder has no 'encoder_down_conv_blocks.*.block1' layers")
    return {"channels": tuple(channels), "nums_rb": nums_rb, "rows": pe[0][1] if pe else MAX_FRAMES}


def merge_state(cc: CameraCtrl, merges: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """The file's ``qkv_merge`` tensors as ``merges.*`` keys of ``cc``; every motion module of the model
    needs one and every one in the file must have a motion module (else an error naming them)."""
    wanted = {f"{_file_key(slot)}.{p}": f"merges.{slot.replace('.', '_')}.{p}" for slot, _ in cc.slots
              for p in ("weight", "bias")}
    missing = sorted(set(wanted) - set(merges))
    unexpected = sorted(k for k in merges if k not in wanted)
    if missing or unexpected:
        parts = [f"'{name}' does not fit this model's motion modules"]
        if missing:
            parts.append(f"{len(missing)} missing keys: {', '.join(missing[:8])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {', '.join(unexpected[:8])}")
        raise CheckpointError(". ".join(parts))
    return {wanted[k]: v for k, v in merges.items()}


def load_cameractrl(path: str, unet: nn.Module, dtype: Optional[torch.dtype] = None) -> CameraCtrl:
    """``CameraCtrl.ckpt`` (the released two-dict layout; its training state ``epoch``, ``global_step`` and
    ``optimizer_state_dict`` — two thirds of the file — is never read) or AnimateDiff-Evolved's flat file,
    strictly, for ``unet`` (a v3-layout ``UNetMotionModel``). Pickles are memory-mapped and read with
    ``weights_only=True``."""
    name = os.path.basename(path)
    cc, matched = match_file(read_state_dict(path, skip=FILE_IGNORED, nested=True), unet, name)
    return load_into(cc, matched, dtype)


def match_file(sd: dict[str, torch.Tensor], unet: nn.Module, name: str) -> tuple[CameraCtrl, dict]:
    """A :class:`CameraCtrl` (parameters on the meta device) for ``unet`` and the file's tensors matched onto
    its keys, strictly: every pose-encoder parameter and one merge per motion module, nothing else."""
    try:
        slots = motion_attention_slots(unet)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    enc_sd, merges = split_file(sd, name)
    config = encoder_config({k: tuple(v.shape) for k, v in enc_sd.items()})
    widths = {level: unet.get_submodule(slot).to_q.in_features for slot, level in slots}
    if len(config["channels"]) != len(unet.down_blocks) or any(config["channels"][lv] != c for lv, c in widths.items()):
        raise CheckpointError(f"'{name}' has pose features of widths {list(config['channels'])}; this model's motion "
                              f"modules need {[widths[i] for i in sorted(widths)]} (a CameraCtrl for another base?)")
    with empty_params():
        cc = CameraCtrl(CameraPoseEncoder(**config), slots)
    matched = {f"pose_encoder.{k}": v for k, v in
               match_state_dict(cc.pose_encoder, enc_sd, f"'{name}' pose encoder").items()}
    matched.update(merge_state(cc, merges, name))
    return cc, matched


TINY_NAME = "tiny CameraCtrl (untrained demo)"


def tiny_cameractrl(unet: nn.Module, seed: int = 4001) -> CameraCtrl:
    """An untrained CameraCtrl built in code for ``unet`` (the tiny v3-layout AnimateDiff): the released
    architecture at the UNet's widths, every weight random and small (the merges too, so the camera acts)."""
    slots = motion_attention_slots(unet)
    levels = len(unet.down_blocks)
    widths = [next(unet.get_submodule(s).to_q.in_features for s, lv in slots if lv == i) for i in range(levels)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cc = CameraCtrl(CameraPoseEncoder(widths), slots)
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for merge in cc.merges.values():
                merge.weight.copy_(torch.randn(merge.weight.shape, generator=gen) * 0.05)
                merge.bias.copy_(torch.randn(merge.bias.shape, generator=gen) * 0.05)
    p = next(unet.parameters())
    return cc.to(dtype=p.dtype).eval().requires_grad_(False)
