"""Sampler overhead: (wall time of the baseline sampler) / (time spent inside denoiser calls).

Everything the sampler does besides calling the network — guidance arithmetic, σ bookkeeping, noise
draws, progress callbacks — shows up as the ratio above 1. Target: ≤ 1.05 at mid size.

    .venv/bin/python bench/sampler_overhead.py [--repeats 3] [--steps 10]

Configs (tiny AnimateDiff, CFG 7.5, one batched cond+uncond call per step):
  tiny: 4 frames at 64×64 px (8×8 latent)      mid: 16 frames at 256×256 px (32×32 latent)
Each config is timed for DDIM η = 0 with CFG and for DDPM (η = 1) with CFG++; the best of the
repeats is reported. Ratios are measured in one run, side by side (the machines are shared and noisy).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import CallTimer as TimedDenoiser  # noqa: E402

CONFIGS = {"tiny": (4, 64, 64), "mid": (16, 256, 256)}


def run(model, frames, width, height, steps, mode, scale, eta, callback):
    from consistent_video_kit.samplers.sampling import sample
    cond, uncond = model.encode_prompt_pair("a cat", "")
    sigmas = model.sigmas(steps)
    den = TimedDenoiser(model.denoiser())
    with model.loaded() as device:
        t = time.perf_counter()
        sample(den, model.latent_shape(frames, width, height), sigmas, cond, uncond, scale, mode, eta, 0, device,
               callback)
        wall = time.perf_counter() - t
    assert den.calls == steps
    return wall, den.seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--configs", default="tiny,mid")
    args = ap.parse_args()
    from cvk_testkit import load_pack
    load_pack()
    from consistent_video_kit.models.tiny import tiny_model
    from consistent_video_kit.nodes.common import step_callback
    model = tiny_model("tiny-animatediff")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {next(model.unet.parameters()).device}")
    print(f"{'config':6} {'sampler':14} {'wall s':>8} {'denoiser s':>11} {'ratio':>7}")
    for name in args.configs.split(","):
        frames, w, h = CONFIGS[name]
        for label, mode, scale, eta in (("ddim/cfg", "cfg", 7.5, 0.0), ("ddpm/cfg++", "cfg++", 0.8, 1.0)):
            run(model, frames, w, h, 1, mode, scale, eta, None)  # warm-up
            best = None
            for _ in range(args.repeats):
                wall, inside = run(model, frames, w, h, args.steps, mode, scale, eta,
                                   step_callback(args.steps, "bench"))
                if best is None or wall / inside < best[0] / best[1]:
                    best = (wall, inside)
            print(f"{name:6} {label:14} {best[0]:8.3f} {best[1]:11.3f} {best[0] / best[1]:7.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
