"""CVD's epipolar bias: how often it is built, what it costs, what it holds, during multi-view sampling at 256 px.

The pack builds a pairing's bias once per UNet level, (views, F, 1, N, N) in the model's dtype, broadcast over the
heads and kept while the pairing repeats. The official code rebuilds it in each of the 40 epi attentions of every
network call and copies it per head: ``official builds`` below is that count for the same run.

Runs the tiny AnimateDiff + tiny CameraCtrl + tiny CVD modules (2 UNet levels: 32×32 and 16×16 tokens at 256 px;
SD1.5 adds 8×8 and 4×4, which cost little) on the circle pattern, 16 frames at 256×256, official settings per view
count. The tiny UNet is much cheaper than SD1.5, so the bias's share of the sampling time here is an upper bound.

    .venv/bin/python bench/cvd_bias.py [--steps 4] [--views 2,4]
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--views", default="2,4")
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    from cvk_testkit import load_pack
    load_pack()
    from consistent_video_kit.models import cvd
    from consistent_video_kit.nodes.camera import CVK_CameraTrajectory
    from consistent_video_kit.nodes.cameractrl import CVK_CameraCtrlLoader
    from consistent_video_kit.nodes.cvd import CVK_CVDSyncLoader, CVK_EpipolarSyncSampler
    from consistent_video_kit.nodes.video import CVK_VideoModelLoader
    from consistent_video_kit.samplers.epipolar_sync import nfe, official_settings
    model = CVK_VideoModelLoader().load("tiny-animatediff (untrained demo)")[0]
    model = CVK_CameraCtrlLoader().load(model, "tiny CameraCtrl (untrained demo)", 1.0)[0]
    model = CVK_CVDSyncLoader().load(model, cvd.TINY_NAME)[0]
    st = model.sync.state
    spent, held = [0.0], [0]
    real = cvd.SyncState.bias

    def timed(self, level, h, w, dtype, device):
        t0, before = time.perf_counter(), self.builds
        out = real(self, level, h, w, dtype, device)
        if self.builds > before:
            spent[0] += time.perf_counter() - t0
        held[0] = max(held[0], self.held_bytes())
        return out
    cvd.SyncState.bias = timed
    levels = len(model.unet.down_blocks)
    epi_modules = len(model.sync.module.slots)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {args.size}×{args.size}, 16 frames, "
          f"{args.steps} steps")
    print(f"{'views':>5} {'NFE':>4} {'builds':>6} {'official builds':>15} {'bias s':>7} {'sampling s':>10} "
          f"{'share':>6} {'held MiB':>9} {'Σ V·F·N²·4 MiB':>15}")
    for views in (int(v) for v in args.views.split(",")):
        cam = CVK_CameraTrajectory().make("circle", views, 16, 0.5, 1.0, 0.0, args.size, args.size)[0]
        spent[0], held[0] = 0.0, 0
        t0 = time.perf_counter()
        CVK_EpipolarSyncSampler().sample(model, cam, "a cat", "", 0, args.steps, 0.0, 0, 0, 0)
        total = time.perf_counter() - t0
        _, M, A = official_settings(views)
        calls = nfe(args.steps, M, A)
        tokens = [(args.size // 8 // 2 ** i) ** 2 for i in range(levels)]
        want = sum(views * 16 * n * n * 4 for n in tokens) / 2**20
        print(f"{views:>5} {calls:>4} {st.builds:>6} {calls * epi_modules * 2:>15} {spent[0]:>7.2f} {total:>10.2f} "
              f"{spent[0] / total:>6.1%} {held[0] / 2**20:>9.1f} {want:>15.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
