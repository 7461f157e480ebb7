"""LVDM video decoder: peak memory and seconds of decoding T latents one-shot vs overlapped (exact and plain).

    .venv/bin/python bench/lvdm_decode.py [--latents 4,16,64] [--window 16] [--overlap 12] [--size 2]
                                          [--n-hiddens 32] [--device cpu]

Model: the released architecture (models/configs/lvdm/videoae.json, n_hiddens 32, 12.0M-parameter decoder) with
random weights, batch 1, latents (1, 4, T, size, size) → video (1, 3, 4T, 8·size, 8·size). Modes:
``one-shot`` = ``ae.decode``; ``exact`` / ``plain`` = ``decode_overlapped`` with ``--window``/``--overlap`` (T ≤
window is a single one-shot decode in every mode).

Memory: each measurement runs in a fresh child process (one torch thread). On CPU it is the growth of the peak
resident set size during the decode: the child builds the model and the latents, warms up on one latent, resets
the kernel's peak-RSS mark (``/proc/self/clear_refs`` ← 5, Linux), decodes, and reads ``VmHWM`` − the RSS before
(``ru_maxrss`` if the mark cannot be reset, which can hide growth below the build's own peak). With
``--device cuda`` it is ``torch.cuda.max_memory_allocated`` growth. The children run with glibc's
``MALLOC_MMAP_THRESHOLD_=65536`` so that freed tensors leave the RSS at once (otherwise the allocator's caching makes
the CPU figures swing by tens of MB). "w/o out" subtracts the output tensor, which
every mode must hold: that is the part that should not grow with T for the overlapped modes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import MB, ROOT, PeakRSS, load_pack, run_child  # noqa: E402


def child(args) -> dict:
    import torch
    torch.set_num_threads(1)
    load_pack()
    from consistent_video_kit.models.lvdm import autoencoder3d as ae3d
    with open(os.path.join(ROOT, "models", "configs", "lvdm", ae3d.CONFIG_NAME)) as f:
        cfg = json.load(f)
    for part in ("encoder", "decoder"):
        cfg["ddconfig"][part]["n_hiddens"] = args.n_hiddens
    torch.manual_seed(0)
    device = torch.device(args.device)
    ae = ae3d.VideoAutoencoderKL.from_config(cfg).eval().to(device)
    del ae.encoder
    z = torch.randn(1, 4, args.child_latents, args.size, args.size, generator=torch.Generator().manual_seed(1))
    z = z.to(device)

    def run():
        if args.child_mode == "one-shot":
            return ae.decode(z)
        return ae3d.decode_overlapped(ae, z, args.window, args.overlap, args.child_mode)

    with torch.no_grad():
        ae.decode(z[:, :, :1])                                      # warm-up: kernels, allocator pools
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            meter = PeakRSS()
            meter.reset()
        t = time.perf_counter()
        out = run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated() - before
        else:
            peak = meter.peak()
    return {"seconds": seconds, "peak": peak, "out": out.numel() * out.element_size(), "shape": list(out.shape)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", default="4,16,64", help="latent counts T, comma-separated")
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--overlap", type=int, default=12, help="exact mode needs ≥ 12 with the released decoder")
    ap.add_argument("--size", type=int, default=2, help="latent height and width (video: 8× that)")
    ap.add_argument("--n-hiddens", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--child-mode", help=argparse.SUPPRESS)
    ap.add_argument("--child-latents", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_mode:
        print(json.dumps(child(args)))
        return 0
    print(f"decoder n_hiddens {args.n_hiddens}, latents (1, 4, T, {args.size}, {args.size}), window {args.window}, "
          f"overlap {args.overlap}, device {args.device}, one thread, each row a fresh process")
    print(f"{'T':>4} {'mode':9} {'seconds':>8} {'×time':>6} {'peak MB':>8} {'out MB':>7} {'w/o out':>8} {'×peak':>6}")
    for t in (int(v) for v in args.latents.split(",")):
        base = None
        for mode in ("one-shot", "exact", "plain"):
            cmd = [sys.executable, os.path.abspath(__file__), "--child-mode", mode, "--child-latents", str(t),
                   "--window", str(args.window), "--overlap", str(args.overlap), "--size", str(args.size),
                   "--n-hiddens", str(args.n_hiddens), "--device", args.device]
            res = run_child(cmd)   # one thread, glibc mmap'ing every allocation ≥ 64 kB (RSS follows live tensors)
            base = base or res
            print(f"{t:4d} {mode:9} {res['seconds']:8.2f} {res['seconds'] / base['seconds']:6.2f} "
                  f"{res['peak'] / MB:8.1f} {res['out'] / MB:7.1f} {(res['peak'] - res['out']) / MB:8.1f} "
                  f"{res['peak'] / base['peak']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
