"""Evaluate a folder of generated videos against a folder of real ones (``scripts/evaluate.py``).

Videos are read with :mod:`..data` (frame folders ``<root>/<video>/*.png|jpg`` in natural order, video files via
PyAV, or the videos of MCVD/LGC-VD HDF5 shards), both folders listed in natural order of their paths. With ``samples = N`` the generated folder holds N samples
per real video, consecutive in that order (generated ``i·N … i·N+N−1`` belong to real video i: MCVD's
``reshape(-1, preds_per_test)``); PSNR/SSIM/LPIPS take the best of the N per real video (:func:`.metrics.best_of_n`).
FVD/KVD compare the I3D features of every generated video with those of every real video (each once); FID/IS work on
frames (every frame after ``skip`` of every video).
"""
from __future__ import annotations

import json
import math
from typing import Optional

import numpy as np
import torch

from ..data import DatasetError, Video, find_videos, read_frames
from . import metrics as M


def read_video(video: Video, frames: Optional[int] = None) -> torch.Tensor:
    """A whole video (or its first ``frames`` frames) as float32 ``(3, T, H, W)`` in [0, 1], at its own size."""
    n = video.length if frames is None else frames
    if n > video.length:
        raise DatasetError(f"{video.path} has {video.length} frames, fewer than the {n} asked for (--frames)")
    out = []
    for name, im in read_frames(video, range(n)):
        if im.size != (video.width, video.height):
            raise DatasetError(f"frame {name} is {im.size[0]}×{im.size[1]}, the video's first frame "
                               f"{video.width}×{video.height}: all frames of a video must have one size")
        out.append(np.asarray(im))
    return torch.from_numpy(np.stack(out)).permute(3, 0, 1, 2).float().div_(255.0)


def _summary(values: torch.Tensor) -> dict:
    v = values.double()
    return {"mean": float(v.mean()), "std": float(v.std(unbiased=False)), "per_video": [float(x) for x in v]}


def evaluate_folders(generated: str, real: str, *, psnr: bool = False, ssim: bool = False,
                     lpips_file: Optional[str] = None, lpips_vgg: Optional[str] = None,
                     fvd_file: Optional[str] = None, kvd: bool = False, fid_file: Optional[str] = None,
                     inception_score: bool = False, samples: int = 1, skip: int = 0, frames: Optional[int] = None,
                     ssim_window: str = "uniform", psnr_average: str = "frames", i3d_resize: Optional[str] = None,
                     kvd_subsets: Optional[int] = None, is_splits: int = 10, device: str = "cpu",
                     i3d_bn_eps: float = 1e-5) -> dict:
    """The chosen metrics of the generated videos against the real ones (module docstring: pairing). Returns a dict
    ``{metric: value or {"mean", "std", "per_video"}, "videos": {...}, "settings": {...}}``; weights are loaded
    before any video is read, so a missing file fails first."""
    if samples < 1:
        raise ValueError(f"samples must be ≥ 1, got {samples}")
    if kvd_subsets is not None and kvd_subsets < 1:
        raise ValueError(f"kvd_subsets must be ≥ 1 (or none: the whole sets), got {kvd_subsets}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA GPU is available here; use --device cpu")
    if kvd and not fvd_file:
        raise ValueError("KVD uses the I3D features of FVD: pass --fvd I3D_FILE with --kvd")
    lp = i3d = inc = None
    if lpips_file is not None:
        from .weights import require_file
        from ..autoencoder import load_lpips
        require_file(lpips_file, "lpips")
        lp = load_lpips(lpips_file, lpips_vgg).to(device)
    if fvd_file is not None:
        from .i3d import load_i3d
        i3d = load_i3d(fvd_file, i3d_resize, device, i3d_bn_eps)
    if fid_file is not None or inception_score:
        from .inception import load_inception
        inc = load_inception(fid_file, device, metric="fid" if fid_file else "is")
    if not (psnr or ssim or lp or i3d or inc):
        raise ValueError("no metric chosen: pass --psnr, --ssim, --lpips FILE, --fvd FILE, --fid FILE or --is")

    gen_videos, real_videos = find_videos(generated), find_videos(real)
    paired = psnr or ssim or lp is not None
    if paired and len(gen_videos) != samples * len(real_videos):
        raise ValueError(f"{len(gen_videos)} generated videos for {len(real_videos)} real ones with {samples} "
                         f"sample(s) each: PSNR/SSIM/LPIPS need exactly {samples * len(real_videos)} (generated "
                         f"i·N … i·N+N−1 are the samples of real video i, both folders in natural order)")
    frame_scores = {k: [] for k, on in (("psnr", psnr), ("ssim", ssim), ("lpips", lp is not None)) if on}
    feats = {"i3d_gen": [], "i3d_real": [], "pool_gen": [], "pool_real": [], "logits_gen": []}
    shape = None

    def features(video: torch.Tensor, side: str) -> None:
        if i3d is not None:
            feats[f"i3d_{side}"].append(i3d(video[None]))
        if inc is not None:
            pool, logits = inc(video[:, skip:].transpose(0, 1))
            feats[f"pool_{side}"].append(pool)
            if side == "gen":
                feats["logits_gen"].append(logits)

    def check_shape(video: torch.Tensor, path: str) -> None:
        nonlocal shape
        if shape is None:
            shape = tuple(video.shape)
        elif paired and tuple(video.shape) != shape:
            raise ValueError(f"{path} is {tuple(video.shape)} (C, T, H, W), the first video {shape}: paired metrics "
                             f"need videos of one size and length (--frames N takes the first N frames)")
        if not 0 <= skip < video.shape[1]:
            raise ValueError(f"--skip {skip} leaves no frame of {path} ({video.shape[1]} frames)")

    for i, rv in enumerate(real_videos):
        r = read_video(rv, frames)
        check_shape(r, rv.path)
        features(r, "real")
        if not paired:
            continue
        scores = {k: [] for k in frame_scores}
        for gv in gen_videos[i * samples:(i + 1) * samples]:
            g = read_video(gv, frames)
            check_shape(g, gv.path)
            features(g, "gen")
            rb, gb = r[None], g[None]
            if psnr:
                scores["psnr"].append(M.psnr_clips(rb, gb, skip, psnr_average))
            if ssim:
                scores["ssim"].append(M.clip_average(M.ssim_frames(rb, gb, window=ssim_window), skip))
            if lp is not None:
                scores["lpips"].append(M.clip_average(M.lpips_frames(rb, gb, lp), skip))
        for k, v in scores.items():
            frame_scores[k].append(torch.cat(v))
    if not paired:
        for gv in gen_videos:
            g = read_video(gv, frames)
            check_shape(g, gv.path)
            features(g, "gen")

    out: dict = {}
    for k, per_video in frame_scores.items():
        best = M.best_of_n(torch.stack(per_video), M.HIGHER_IS_BETTER[k])
        out[k] = _summary(best)
    if i3d is not None:
        fg, fr = torch.cat(feats["i3d_gen"]), torch.cat(feats["i3d_real"])
        out["fvd"] = M.frechet_distance(fg, fr)
        if kvd:
            out["kvd"] = M.kernel_distance(fg, fr, subsets=kvd_subsets)
    if fid_file is not None:
        out["fid"] = M.frechet_distance(torch.cat(feats["pool_gen"]), torch.cat(feats["pool_real"]))
    if inception_score:
        logits = feats["logits_gen"]
        if any(x is None for x in logits):
            raise ValueError("IS needs the Inception's classifier logits, which this TorchScript file does not give "
                             "(pass pytorch-fid's pt_inception-2015-12-05-6726825d.pth or StyleGAN2-ADA's "
                             "inception-2015-12-05.pt)")
        mean, std = M.inception_score(torch.cat(logits), is_splits)
        out["is"] = {"mean": mean, "std": std}
    out["videos"] = {"real": len(real_videos), "generated": len(gen_videos), "samples_per_video": samples,
                     "shape_CTHW": list(shape) if shape else None}
    out["settings"] = {"skip": skip, "frames": frames, "ssim_window": ssim_window, "psnr_average": psnr_average,
                       "i3d_resize": i3d.resize if i3d is not None else None,
                       "i3d_bn_eps": i3d_bn_eps if i3d is not None and not i3d.torchscript else None,
                       "kvd_subsets": kvd_subsets,
                       "is_splits": is_splits, "value_range": "[0, 1] (frames read as uint8 / 255)"}
    return out


NAMES = {"psnr": "PSNR ↑ (best of N)", "ssim": "SSIM ↑ (best of N)", "lpips": "LPIPS ↓ (best of N)",
         "fvd": "FVD ↓", "kvd": "KVD ↓", "fid": "FID ↓", "is": "IS ↑"}


def format_table(result: dict) -> str:
    """The metrics as a two-column text table (mean ± std over videos, or over IS splits)."""
    rows = []
    for k, name in NAMES.items():
        if k not in result:
            continue
        v = result[k]
        rows.append((name, f"{v['mean']:.4f} ± {v['std']:.4f}" if isinstance(v, dict) else f"{v:.4f}"))
    w = max(len(r[0]) for r in rows)
    lines = [f"{'metric'.ljust(w)}  value", f"{'-' * w}  {'-' * 17}"] + [f"{a.ljust(w)}  {b}" for a, b in rows]
    vids = result["videos"]
    lines.append(f"({vids['real']} real, {vids['generated']} generated videos, {vids['samples_per_video']} "
                 f"sample(s) per real video)")
    return "\n".join(lines)


def write_json(result: dict, path: str) -> None:
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    with open(path, "w") as f:
        json.dump(clean(result), f, indent=1)
