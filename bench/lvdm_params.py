"""LVDM's 3-D UNets at the released size: parameter counts from the shipped configs (``models/configs/lvdm/unet_*.json``
and ``t2v_unet.json``, built on the meta device: no memory, seconds), and with ``--full`` the seconds per UNet call
with random weights (float32, the official latent size: 1×4×4×32×32 for short / pred, 1×4×5×32×32 for interp,
1×4×16×32×32 with a 77×768 text context for t2v; one call = one NFE on a batch of one clip; the first call is a
warm-up and not counted). Manual run, never in CI: ``--full`` allocates 2.2 GB of weights per model (3.8 GB for t2v);
at one CPU thread a call takes seconds (t2v: about half a minute, 16 frames of 32×32).

    .venv/bin/python bench/lvdm_params.py [--full] [--models short,pred,interp,t2v] [--calls 2] [--threads 1]
        [--device cpu|cuda] [--attention sdpa|xformers]

Expected counts: short 548.9M, pred 549.2M, interp 549.2M, t2v 958.9M (the official code's, checked against it
locally).

VideoCrafter2's UNet (``models/configs/lvdm/vc2_unet.json``, :func:`vc2_unet`) is reported after them: 1413.3M
parameters (the released checkpoint's UNet); with ``--full`` one call (no warm-up) at the released latent size
1×4×16×40×64 (320×512, 16 frames) with a 77×1024 text context and fps 28, float32, 5.7 GB of weights.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
CONFIGS = os.path.join(ROOT, "models", "configs", "lvdm")
FRAMES = {"short": 4, "pred": 4, "interp": 5, "t2v": 16}
CONTEXT = (77, 768)          # t2v: CLIP ViT-L/14 tokens × width


def random_weights(m: torch.nn.Module, args) -> tuple:
    """``m`` (built on the meta device) materialised on ``args.device`` with N(0, 0.02²) weights from a generator
    seeded 0, in eval mode with ``args.attention``; returns ``(m, generator)`` (the generator then draws the inputs)."""
    m = m.to_empty(device=args.device)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    m.eval().set_attention(args.attention)
    return m, g


def timed_call(m: torch.nn.Module, inputs: tuple, device: str) -> float:
    """Seconds of one ``m(*inputs)`` (CUDA synchronised before and after)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    m(*inputs)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="also time UNet calls with random weights")
    ap.add_argument("--models", default="short,pred,interp,t2v")
    ap.add_argument("--calls", type=int, default=2, help="timed calls per model (after one warm-up)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--attention", default="sdpa", choices=("sdpa", "xformers"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from cvk_testkit import load_pack
    load_pack()
    from consistent_video_kit.models.lvdm.unet3d import build_unet
    from consistent_video_kit.models.lvdm.t2v_unet import T2VUNet
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {args.device}")
    print(f"{'model':>7} {'class':>24} {'params':>9} {'latents':>16} {'s/call':>8}")
    for name in args.models.split(","):
        with open(os.path.join(CONFIGS, "t2v_unet.json" if name == "t2v" else f"unet_{name}.json")) as f:
            cfg = json.load(f)
        with torch.device("meta"):
            m = T2VUNet.from_config(cfg) if name == "t2v" else build_unet(cfg)
        n = sum(p.numel() for p in m.parameters())
        shape = (1, cfg["in_channels"], FRAMES[name], cfg["image_size"], cfg["image_size"])
        per_call = ""
        if args.full:
            m, g = random_weights(m, args)
            x = torch.randn(shape, generator=g).to(args.device)
            t = torch.tensor([500], device=args.device)
            if name == "t2v":
                extra = (torch.randn(1, *CONTEXT, generator=g).to(args.device),)             # context
            else:
                extra = (torch.tensor([100], device=args.device) if cfg.get("num_classes") else None,)   # y
            with torch.no_grad():
                times = [timed_call(m, (x, t, *extra), args.device) for _ in range(args.calls + 1)][1:]   # 1st: warm-up
            per_call = f"{sum(times) / len(times):.3f}"
            del m
        print(f"{name:>7} {cfg['_class_name']:>24} {n / 1e6:>8.1f}M {'×'.join(map(str, shape)):>16} {per_call:>8}")
    vc2_unet(args)
    return 0


def vc2_unet(args) -> None:
    """VideoCrafter2's UNet: parameter count (meta device) and, with ``--full``, the seconds of one call with random
    weights at 1×4×16×40×64 latents, a 77×1024 context, fps 28."""
    from consistent_video_kit.models.lvdm.vc2_unet import VC2UNet
    with open(os.path.join(CONFIGS, "vc2_unet.json")) as f:
        cfg = json.load(f)
    with torch.device("meta"):
        m = VC2UNet.from_config(cfg)
    n = sum(p.numel() for p in m.parameters())
    shape = (1, cfg["in_channels"], 16, 40, 64)
    per_call = ""
    if args.full:
        m, g = random_weights(m, args)
        x = torch.randn(shape, generator=g).to(args.device)
        ctx = torch.randn(1, 77, cfg["context_dim"], generator=g).to(args.device)
        t, fps = torch.tensor([500], device=args.device), torch.tensor([28], device=args.device)
        with torch.no_grad():
            per_call = f"{timed_call(m, (x, t, ctx, fps), args.device):.3f}"
        del m
    print(f"{'vc2':>7} {cfg['_class_name']:>24} {n / 1e6:>8.1f}M {'×'.join(map(str, shape)):>16} {per_call:>8}")


if __name__ == "__main__":
    sys.exit(main())
