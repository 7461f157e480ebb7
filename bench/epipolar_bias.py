"""CVD's epipolar attention bias on CPU: 2 views × 16 frames at 32×32 tokens (a 256-px CVD video's
finest attention level), one batched call. Reports wall time (best of repeats), the size of the bias
tensor, and the process's peak-RSS growth during the call, for float32 and float16 output — each dtype in
its own fresh process, so the peaks do not mix.

    .venv/bin/python bench/epipolar_bias.py [--frames 16] [--tokens 32] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one(dtype_name: str, frames: int, tokens: int, repeats: int) -> dict:
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from cvk_testkit import load_pack
    load_pack()
    import torch
    from consistent_video_kit.camera import epipolar, trajectories
    dtype = getattr(torch, dtype_name)
    cam = trajectories.pattern("circle", 2, frames, 256, 256)
    args = (cam.K[0], cam.c2w[0], cam.K[1], cam.c2w[1], tokens, tokens, (256, 256))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    best = None
    for _ in range(repeats):
        t = time.perf_counter()
        bias = epipolar.epipolar_bias(*args, dtype=dtype)
        best = min(best or 1e9, time.perf_counter() - t)
        shape, nbytes = tuple(bias.shape), bias.numel() * bias.element_size()
        del bias
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return {"dtype": dtype_name, "shape": shape, "seconds": best, "tensor_MiB": nbytes / 2**20, "peak_MiB": peak / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.frames, a.tokens, a.repeats)))
        return 0
    rows = []
    for dt in ("float32", "float16"):
        out = subprocess.run([sys.executable, __file__, "--one", dt, "--frames", str(a.frames), "--tokens", str(a.tokens),
                              "--repeats", str(a.repeats)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"bias {rows[0]['shape']} (2 views × {a.frames} frames, {a.tokens}×{a.tokens} tokens), best of {a.repeats}")
    print(f"{'dtype':8} {'seconds':>8} {'tensor MiB':>11} {'peak RSS MiB':>13}")
    for r in rows:
        print(f"{r['dtype']:8} {r['seconds']:8.3f} {r['tensor_MiB']:11.1f} {r['peak_MiB']:13.1f}")
    print(f"float16 / float32: tensor {rows[1]['tensor_MiB'] / rows[0]['tensor_MiB']:.2f}, "
          f"peak {rows[1]['peak_MiB'] / max(rows[0]['peak_MiB'], 1e-9):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
