"""Clips for LVDM training: frame folders and video files cut into fixed-length clips, a reproducible and resumable
data order, and a synthetic moving-shapes set.

Sources under a root (``ClipDataset``):

* frame folders, ``<root>/<video_id>/*.jpg|*.jpeg|*.png`` (the endoscopy fork's layout; any folder below the root
  that directly holds images is one video), frames in NATURAL order of their names (``frame_2`` before ``frame_10``);
* video files, ``<root>/**/*.mp4|*.avi|*.mov|*.mkv|*.webm``, decoded with PyAV (``av``, the ``[training]`` extra,
  imported only when a video file is met);
* HDF5 shards, ``<root>/**/*.hdf5|*.h5``, in the layout MCVD's and LGC-VD's converters write (``datasets/h5.py::
  HDF5Maker`` with ``video=True``: ``len/<k>`` the length of video k, ``<k>/<i>`` its frame i as uint8 ``(H, W, 3)``),
  read with h5py (the ``[training]`` extra, imported only when a shard is met); each video of a shard is one video.

Each video is cut into clips of ``frames`` frames taking every ``sample_every``-th frame, clip starts ``stride``
apart (default ``frames·sample_every``: non-overlapping clips, as the fork). A clip is a float32 tensor
``(3, frames, size, size)`` in [−1, 1] (the LVDM autoencoder's input range): each frame's shorter side resized to
``size`` (bilinear, antialiased, PIL), then a ``size × size`` crop, centred unless a generator picks it.

The fork's clips: short/AE models 16 frames (``ClipDataset(root, 16, 128)``); pred model 64 raw frames per clip,
interp 20 (reference notes §1.4).

Order (``step_indices``): the global batch of step k is positions ``k·G … (k+1)·G − 1`` of the concatenation of
per-epoch permutations (``epoch_permutation``), and process r of w reads the slice ``[r·b, (r+1)·b)``, b = G / w.
So one process, two processes and a run resumed at step k all read the same samples at the same step, and the
random crop/flip of a sample is drawn from its ``StepDraws`` generator (seed, step, global sample index), never
from a generator inside the dataset.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image

from .draws import StepDraws, process_indices, sample_generator, sample_seed

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
HDF5_EXTS = (".hdf5", ".h5")
AUGMENT_PURPOSE = "augment"


class DatasetError(ValueError):
    """A problem with the data on disk (missing root, no videos, videos too short, an unreadable file)."""


def natural_key(name: str) -> tuple:
    """Sort key that orders the digit runs of a name by value: ``frame_2`` before ``frame_10``. Text compares
    case-insensitively; the name itself breaks ties."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)) + (name,)


def _import_av(what: str):
    try:
        import av
    except ImportError:
        raise ImportError(f"Reading or writing video files ({what}) needs PyAV, which is not installed: install the "
                          f"training extra (the packages av and accelerate) with pip, or give the videos as frame "
                          f"folders (<root>/<video_id>/*.png).") from None
    return av


def _import_h5py(path: str):
    try:
        import h5py
    except ImportError:
        raise ImportError(f"Reading the HDF5 shard {path} needs h5py, which is not installed: install the training "
                          f"extra with pip, or give the videos as frame folders (<root>/<video_id>/*.png).") from None
    return h5py


# ---------------------------------------------------------------------------------------------------------------
# sources


@dataclass(frozen=True)
class Video:
    """One source video: a frame folder (``frames`` lists its image files in natural order), a video file
    (``frames`` is empty) or video ``key`` of an HDF5 shard. ``width × height`` are its frames' size (the first
    frame's), ``length`` its frame count."""
    path: str
    kind: str            # "frames" | "file" | "hdf5"
    length: int
    width: int
    height: int
    frames: tuple[str, ...] = ()
    key: str = ""


def _open_image(path: str) -> Image.Image:
    """The image at ``path`` as RGB, fully decoded; a clear ``DatasetError`` if it cannot be read."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DatasetError(f"cannot read the image {path}: it is corrupt or not an image ({e})") from None


def _image_size(path: str) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, SyntaxError) as e:
        raise DatasetError(f"cannot read the image {path}: it is corrupt or not an image ({e})") from None


def _probe_video(path: str) -> tuple[int, int, int]:
    """(frame count, width, height) of a video file: the count from the container's header where it has one (MP4,
    MOV, AVI), else by demuxing its packets (no decoding; MKV, WebM)."""
    av = _import_av(path)
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise DatasetError(f"the video file {path} holds no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            n = int(stream.frames or 0)
            if n <= 0:
                n = sum(1 for p in container.demux(stream) if p.size > 0)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read the video file {path}: it is corrupt or not a video ({e})") from None
    if width <= 0 or height <= 0:
        raise DatasetError(f"cannot read the video file {path}: its video stream has no frame size")
    return n, width, height


def _probe_hdf5(path: str) -> list[tuple[str, int, int, int]]:
    """(key, frame count, width, height) of each video of an HDF5 shard, in the order of their integer keys."""
    h5py = _import_h5py(path)
    try:
        with h5py.File(path, "r") as f:
            if "len" not in f:
                raise DatasetError(f"the HDF5 file {path} is not a video shard: no 'len' group (expected the layout "
                                   f"of MCVD's / LGC-VD's converters: len/<k>, <k>/<frame>)")
            out = []
            for key in sorted(f["len"].keys(), key=natural_key):
                n = int(f["len"][key][()])
                first = f[key]["0"].shape if n > 0 else (0, 0, 3)
                if len(first) != 3 or first[2] != 3:
                    raise DatasetError(f"video {key} of {path}: frames must be (H, W, 3) uint8, got {first}")
                out.append((key, n, int(first[1]), int(first[0])))
            return out
    except OSError as e:
        raise DatasetError(f"cannot read the HDF5 file {path}: it is corrupt or not HDF5 ({e})") from None
    except KeyError as e:
        raise DatasetError(f"the HDF5 file {path} misses an entry its 'len' group names ({e})") from None


def find_videos(root: str, exts: Sequence[str] = IMAGE_EXTS + VIDEO_EXTS + HDF5_EXTS) -> list[Video]:
    """Every video under ``root`` (frame folders, video files and the videos of HDF5 shards, hidden folders skipped),
    sorted by natural order of their paths relative to the root (then their keys in a shard), so every process lists
    them in the same order."""
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in exts)
    image_exts = tuple(e for e in exts if e in IMAGE_EXTS)
    video_exts = tuple(e for e in exts if e in VIDEO_EXTS)
    hdf5_exts = tuple(e for e in exts if e in HDF5_EXTS)
    unknown = [e for e in exts if e not in IMAGE_EXTS + VIDEO_EXTS + HDF5_EXTS]
    if unknown:
        raise ValueError(f"unknown extensions {unknown}: images {list(IMAGE_EXTS)}, videos {list(VIDEO_EXTS)}, "
                         f"HDF5 shards {list(HDF5_EXTS)}")
    if not os.path.isdir(root):
        raise DatasetError(f"the data root {root} does not exist or is not a folder")
    found: list[tuple[tuple, Video]] = []
    loose_images = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        filenames = [f for f in filenames if not f.startswith(".")]
        images = sorted((f for f in filenames if f.lower().endswith(image_exts)), key=natural_key)
        if images and os.path.samefile(dirpath, root):
            loose_images += len(images)
        elif images:
            paths = tuple(os.path.join(dirpath, f) for f in images)
            w, h = _image_size(paths[0])
            video = Video(dirpath, "frames", len(paths), w, h, paths)
            found.append((natural_key(os.path.relpath(dirpath, root)), video))
        for f in filenames:
            path = os.path.join(dirpath, f)
            if video_exts and f.lower().endswith(video_exts):
                n, w, h = _probe_video(path)
                found.append((natural_key(os.path.relpath(path, root)), Video(path, "file", n, w, h)))
            elif hdf5_exts and f.lower().endswith(hdf5_exts):
                for key, n, w, h in _probe_hdf5(path):
                    found.append((natural_key(os.path.relpath(path, root)) + natural_key(key),
                                  Video(path, "hdf5", n, w, h, key=key)))
    if not found:
        hint = (f"; {loose_images} images lie directly in the root: put each video's frames in a folder of its own"
                if loose_images else "")
        kinds = [f"{what} ({pattern}*{'|*'.join(e)})" for what, pattern, e in (
            ("frame folders", "<root>/<video_id>/", image_exts), ("video files", "", video_exts),
            ("HDF5 shards", "", hdf5_exts)) if e]
        looked = ", ".join(kinds[:-1]) + (" and " if len(kinds) > 1 else "") + kinds[-1]
        raise DatasetError(f"no videos found under {root}: looked for {looked}{hint}")
    return [v for _, v in sorted(found, key=lambda kv: kv[0])]


# ---------------------------------------------------------------------------------------------------------------
# the dataset


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to ``size`` (the longer one rounded half up)."""
    if width <= height:
        return size, max(size, math.floor(height * size / width + 0.5))
    return max(size, math.floor(width * size / height + 0.5)), size


class ClipDataset(torch.utils.data.Dataset):
    """Clips of ``frames`` frames from the videos under ``root`` (module docstring: layout, order of frames).

    ``clips[i] = (video index, start frame)``: clip i holds frames ``start + k·sample_every``, k < frames, of
    ``videos[video index]``; starts are ``0, stride, 2·stride, …`` while the clip fits (a video shorter than
    ``(frames − 1)·sample_every + 1`` frames gives none). The list is made once, here.

    ``dataset[i]`` is clip i, centre-cropped, not flipped: float32 ``(3, frames, size, size)`` in [−1, 1].
    ``get(i, gen)`` draws the crop offset (if ``random_crop``) and the flip (if ``hflip``, probability ½) from
    ``gen``; ``load_clip(i, crop_xy, flip)`` takes them given.
    """

    def __init__(self, root: str, frames: int, size: int, stride: int | None = None, sample_every: int = 1,
                 exts: Sequence[str] = IMAGE_EXTS + VIDEO_EXTS + HDF5_EXTS, random_crop: bool = False,
                 hflip: bool = False):
        for name, value in (("frames", frames), ("size", size), ("sample_every", sample_every)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")
        self.root, self.frames, self.size, self.sample_every = str(root), frames, size, sample_every
        self.span = (frames - 1) * sample_every + 1            # raw frames one clip covers
        self.stride = frames * sample_every if stride is None else stride
        if not isinstance(self.stride, int) or self.stride < 1:
            raise ValueError(f"stride must be an integer ≥ 1, got {stride!r}")
        self.random_crop, self.hflip = bool(random_crop), bool(hflip)
        self.videos = find_videos(self.root, exts)
        self.clips: list[tuple[int, int]] = [(v, s) for v, video in enumerate(self.videos)
                                             for s in range(0, video.length - self.span + 1, self.stride)]
        if not self.clips:
            longest = max(self.videos, key=lambda v: v.length)
            raise DatasetError(
                f"every video under {self.root} is shorter than one clip: a clip of {frames} frames taken every "
                f"{sample_every} frame(s) needs {self.span} frames, the longest video found ({longest.path}) has "
                f"{longest.length} ({len(self.videos)} videos)")

    def __len__(self) -> int:
        return len(self.clips)

    def __repr__(self) -> str:
        return (f"ClipDataset({self.root!r}: {len(self.videos)} videos, {len(self)} clips of {self.frames} frames "
                f"every {self.sample_every}, stride {self.stride}, {self.size}²)")

    def __getitem__(self, i: int) -> torch.Tensor:
        """Clip i, centre crop, no flip: float32 ``(3, frames, size, size)`` in [−1, 1]."""
        return self.load_clip(i)

    def frame_indices(self, i: int) -> list[int]:
        """The frame numbers (in the video) of clip i."""
        _, start = self.clips[i]
        return [start + k * self.sample_every for k in range(self.frames)]

    def resized(self, i: int) -> tuple[int, int]:
        """(width, height) of clip i's frames after the resize, before the crop."""
        video = self.videos[self.clips[i][0]]
        return resized_size(video.width, video.height, self.size)

    def augment_params(self, i: int, gen: torch.Generator | None) -> tuple[tuple[int, int], bool]:
        """((x, y), flip) for clip i: x, y the crop's top-left corner in the resized frame. Always draws from ``gen``
        x, then y, then the flip (three draws), so switching ``random_crop`` or ``hflip`` on or off does not change
        the other's draw; without ``gen``, or with the option off, the centre crop and no flip."""
        w, h = self.resized(i)
        cx, cy = (w - self.size) // 2, (h - self.size) // 2
        if gen is None:
            return (cx, cy), False
        x = int(torch.randint(0, w - self.size + 1, (), generator=gen))
        y = int(torch.randint(0, h - self.size + 1, (), generator=gen))
        flip = bool(torch.rand((), generator=gen) < 0.5)
        return ((x, y) if self.random_crop else (cx, cy)), (flip and self.hflip)

    def get(self, i: int, gen: torch.Generator | None = None) -> torch.Tensor:
        """Clip i with the crop and flip drawn from ``gen`` (``augment_params``): ``(3, frames, size, size)``."""
        crop_xy, flip = self.augment_params(i, gen)
        return self.load_clip(i, crop_xy, flip)

    def load_clip(self, i: int, crop_xy: tuple[int, int] | None = None, flip: bool = False) -> torch.Tensor:
        """Clip i: each frame's shorter side resized to ``size`` (bilinear, antialiased), the ``size × size`` crop at
        ``crop_xy`` (top-left corner in the resized frame; None: centred), flipped left-right if ``flip``.
        Returns float32 ``(3, frames, size, size)`` in [−1, 1]."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"clip {i} out of range: the dataset has {len(self)} clips")
        i = i % len(self)
        w, h = self.resized(i)
        if crop_xy is None:
            crop_xy = ((w - self.size) // 2, (h - self.size) // 2)
        x, y = int(crop_xy[0]), int(crop_xy[1])
        if not (0 <= x <= w - self.size and 0 <= y <= h - self.size):
            raise ValueError(f"crop corner {(x, y)} outside the resized {w}×{h} frame of clip {i} "
                             f"(crop {self.size}²)")
        box = (x, y, x + self.size, y + self.size)
        out = np.empty((self.frames, self.size, self.size, 3), np.uint8)
        video = self.videos[self.clips[i][0]]
        for k, (name, im) in enumerate(self._frames(i)):
            if im.size != (video.width, video.height):
                raise DatasetError(f"frame {name} is {im.size[0]}×{im.size[1]}, the video's first frame "
                                   f"{video.width}×{video.height}: all frames of a video must have one size")
            im = im.resize((w, h), Image.BILINEAR).crop(box)
            out[k] = np.asarray(im)
        clip = torch.from_numpy(out).permute(3, 0, 1, 2).float().div_(127.5).sub_(1.0)
        return clip.flip(-1) if flip else clip

    def _frames(self, i: int):
        """(name, RGB PIL image) of each frame of clip i, in order."""
        v, _ = self.clips[i]
        return read_frames(self.videos[v], self.frame_indices(i))


def read_frames(video: Video, wanted: Sequence[int]):
    """(name, RGB PIL image) of frames ``wanted`` (increasing) of a video of any kind, in order."""
    if video.kind == "frames":
        return ((video.frames[n], _open_image(video.frames[n])) for n in wanted)
    if video.kind == "hdf5":
        return _hdf5_frames(video.path, video.key, wanted)
    return _decode_frames(video.path, wanted)


def _hdf5_frames(path: str, key: str, wanted: Sequence[int]):
    """(name, RGB image) of frames ``wanted`` of video ``key`` of an HDF5 shard."""
    h5py = _import_h5py(path)
    try:
        with h5py.File(path, "r") as f:
            for n in wanted:
                yield f"{path} video {key} frame {n}", Image.fromarray(np.asarray(f[key][str(n)][()], np.uint8))
    except (OSError, KeyError) as e:
        raise DatasetError(f"cannot read video {key} of the HDF5 file {path} ({e})") from None


def _decode_frames(path: str, wanted: Sequence[int]):
    """Decode a video file from its start and yield (name, RGB image) of frames ``wanted`` (increasing). Decoding
    runs from the first frame, so a late clip of a long video costs its start; frame folders read only their clip."""
    av = _import_av(path)
    wanted_set, last, n = set(wanted), max(wanted), -1
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for n, frame in enumerate(container.decode(stream)):
                if n in wanted_set:
                    yield f"{path} frame {n}", frame.to_image().convert("RGB")
                if n >= last:
                    return
    except (av.FFmpegError, OSError) as e:
        raise DatasetError(f"cannot decode the video file {path}: it is corrupt or not a video ({e})") from None
    raise DatasetError(f"the video file {path} ended after {n + 1} frames, before frame {last}"
                       f" (its header promised more)")


# ---------------------------------------------------------------------------------------------------------------
# order


@lru_cache(maxsize=8)
def _permutation(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    g = torch.Generator(device="cpu").manual_seed(sample_seed(seed, epoch, 0, "data/epoch_order"))
    return tuple(torch.randperm(n, generator=g).tolist())


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the n clips in ``epoch``: ``torch.randperm(n)`` from a CPU generator seeded from (seed, epoch)
    (``draws.sample_seed(seed, epoch, 0, "data/epoch_order")``). ``(n,)`` int64."""
    if n < 1 or epoch < 0:
        raise ValueError(f"need n ≥ 1 and epoch ≥ 0, got n {n}, epoch {epoch}")
    return torch.tensor(_permutation(int(n), int(seed), int(epoch)), dtype=torch.int64)


def step_indices(n: int, step: int, global_batch: int, seed: int, shuffle: bool = True) -> list[int]:
    """Dataset indices of the global batch of ``step``: positions ``step·G … (step+1)·G − 1`` of the concatenation
    of the per-epoch permutations (G = ``global_batch``; ``shuffle=False``: of ``0 … n−1`` repeated). A batch that
    crosses an epoch's end takes the rest of that epoch and the start of the next."""
    if n < 1 or step < 0 or global_batch < 1:
        raise ValueError(f"need n ≥ 1, step ≥ 0, global_batch ≥ 1, got n {n}, step {step}, "
                         f"global_batch {global_batch}")
    out = []
    for pos in range(step * global_batch, (step + 1) * global_batch):
        epoch, k = divmod(pos, n)
        out.append(_permutation(n, int(seed), epoch)[k] if shuffle else k)
    return out


def per_process_batch(global_batch: int, world: int) -> int:
    """b = global_batch / world; an error if it does not divide."""
    if world < 1 or global_batch < 1 or global_batch % world:
        raise ValueError(f"the global batch ({global_batch}) must be a positive multiple of the number of processes "
                         f"({world})")
    return global_batch // world


class Batch(NamedTuple):
    """One process's share of a step's batch. ``clips`` ``(b, 3, frames, size, size)`` float32 in [−1, 1];
    ``sample_indices`` the global indices of its samples in the step's batch (``range(r·b, (r+1)·b)``, what
    ``StepDraws`` takes); ``clip_indices`` their dataset indices; ``step`` the step."""
    clips: torch.Tensor
    sample_indices: list[int]
    clip_indices: list[int]
    step: int


def batch_at(dataset: ClipDataset, step: int, global_batch: int, rank: int = 0, world: int = 1, seed: int = 0,
             augment: bool = True, shuffle: bool = True) -> Batch:
    """Process ``rank`` of ``world``'s share of the global batch of ``step``: the slice ``[r·b, (r+1)·b)`` of
    ``step_indices``. With ``augment``, sample j's crop/flip come from its ``StepDraws(seed, step, ...)`` generator
    for purpose ``"augment"`` (used as the dataset's ``random_crop``/``hflip`` allow); else centre crop, no flip."""
    b = per_process_batch(global_batch, world)
    samples = list(process_indices(rank, world, b))
    order = step_indices(len(dataset), step, global_batch, seed, shuffle)
    clip_indices = [order[j] for j in samples]
    gens = StepDraws(seed, step, samples).generators(AUGMENT_PURPOSE) if augment else [None] * b
    clips = torch.stack([dataset.get(c, g) for c, g in zip(clip_indices, gens)])
    return Batch(clips, samples, clip_indices, int(step))


class _Steps(torch.utils.data.Dataset):
    """Item k: ``batch_at(start_step + k)``; a map-style dataset so a DataLoader's workers keep the order."""

    def __init__(self, dataset, start_step, end_step, global_batch, rank, world, seed, augment, shuffle):
        per_process_batch(global_batch, world)
        process_indices(rank, world, 1)
        if not 0 <= start_step <= end_step:
            raise ValueError(f"need 0 ≤ start_step ≤ end_step, got {start_step}, {end_step}")
        self.args = (dataset, start_step, end_step, global_batch, rank, world, seed, augment, shuffle)

    def __len__(self):
        return self.args[2] - self.args[1]

    def __getitem__(self, k):
        dataset, start, _, global_batch, rank, world, seed, augment, shuffle = self.args
        return batch_at(dataset, start + k, global_batch, rank, world, seed, augment, shuffle)


def clip_loader(dataset: ClipDataset, global_batch: int, rank: int, world: int, seed: int, start_step: int = 0,
                end_step: int | None = None, augment: bool = True, shuffle: bool = True, num_workers: int = 0,
                pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader yielding ``Batch``es of steps ``start_step … end_step − 1`` in order (default end: one epoch
    past the start, ⌈n / G⌉ steps) for process ``rank`` of ``world``. A run resumed at step k passes
    ``start_step=k`` and reads exactly what the uninterrupted run reads from step k on."""
    if end_step is None:
        end_step = start_step + math.ceil(len(dataset) / global_batch)
    steps = _Steps(dataset, start_step, end_step, global_batch, rank, world, seed, augment, shuffle)
    return torch.utils.data.DataLoader(steps, batch_size=None, shuffle=False, num_workers=num_workers,
                                       pin_memory=pin_memory, persistent_workers=False)


# ---------------------------------------------------------------------------------------------------------------
# synthetic moving shapes


def moving_shapes(frames: int = 32, size: int = 64, seed: int = 0, index: int = 0) -> np.ndarray:
    """Video ``index`` of the moving-shapes set of ``seed``: one or two coloured squares/discs moving linearly and
    bouncing at the borders, on a plain or gradient background. ``(frames, size, size, 3)`` uint8; deterministic in
    (seed, index) (a CPU generator seeded from both), independent of how many videos are made."""
    g = sample_generator(seed, index, 0, "data/moving_shapes")

    def u(lo=0.0, hi=1.0):
        return lo + (hi - lo) * float(torch.rand((), generator=g))

    def colour():
        return np.array([u(0, 255) for _ in range(3)], np.float32)

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    c0 = colour()
    if u() < 0.5:
        bg = np.broadcast_to(c0, (size, size, 3))
    else:
        angle = u(0, 2 * math.pi)
        ramp = ((xx - size / 2) * math.cos(angle) + (yy - size / 2) * math.sin(angle)) / size + 0.5
        bg = c0 + (colour() - c0) * np.clip(ramp, 0, 1)[..., None]
    shapes = []
    for _ in range(1 + int(u() < 0.5)):
        r = u(0.08, 0.18) * size
        pos = np.array([u(r, size - r), u(r, size - r)])
        speed, heading = u(0.02, 0.06) * size, u(0, 2 * math.pi)
        vel = speed * np.array([math.cos(heading), math.sin(heading)])
        shapes.append([u() < 0.5, r, pos, vel, colour()])
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        img = bg.copy()
        for disc, r, pos, vel, col in shapes:
            dx, dy = xx - pos[0], yy - pos[1]
            mask = (dx * dx + dy * dy <= r * r) if disc else (np.abs(dx) <= r) & (np.abs(dy) <= r)
            img[mask] = col
            pos += vel                                         # move, then bounce off the borders
            for a in range(2):
                if pos[a] < r:
                    pos[a], vel[a] = 2 * r - pos[a], -vel[a]
                elif pos[a] > size - r:
                    pos[a], vel[a] = 2 * (size - r) - pos[a], -vel[a]
        out[t] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return out


def write_moving_shapes(root: str, videos: int = 8, frames: int = 32, size: int = 64, seed: int = 0) -> list[str]:
    """Write the moving-shapes set as frame folders ``<root>/shapes_<k>/frame_<n>.png`` (n from 0, unpadded) and
    return the folders. Video k is ``moving_shapes(frames, size, seed, k)``."""
    out = []
    for k in range(videos):
        folder = os.path.join(root, f"shapes_{k}")
        os.makedirs(folder, exist_ok=True)
        for n, frame in enumerate(moving_shapes(frames, size, seed, k)):
            Image.fromarray(frame).save(os.path.join(folder, f"frame_{n}.png"))
        out.append(folder)
    return out


def write_moving_shapes_video(path: str, frames: int = 32, size: int = 64, seed: int = 0, index: int = 0,
                              fps: int = 8, crf: int = 12) -> np.ndarray:
    """Write ``moving_shapes(frames, size, seed, index)`` as one video file with PyAV (H.264 yuv420p where the
    build has it, else MPEG-4 Part 2; VP9/VP8 for ``.webm``; ``size`` even) and return the frames written
    ``(frames, size, size, 3)`` uint8. Needs the ``[training]`` extra."""
    av = _import_av(path)
    if size % 2:
        raise ValueError(f"size must be even for yuv420p video, got {size}")
    video = moving_shapes(frames, size, seed, index)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.lower().endswith(".webm"):
        codec = next((c for c in ("libvpx-vp9", "libvpx") if c in av.codecs_available), None)
        if codec is None:
            raise ValueError(f"this PyAV build has no VP8/VP9 encoder to write {path}")
    else:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        if codec != "mpeg4":
            stream.options = {"crf": str(crf)} if codec == "libx264" else {"crf": str(crf), "b": "0"}
        else:
            stream.bit_rate = 4_000_000
        for frame in video:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return video
