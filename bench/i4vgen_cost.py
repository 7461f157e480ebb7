"""I4VGen against the baseline sampler, in one run: network evaluations (NFE) and wall time. Official at
AnimateDiff defaults: 25 (candidates) + 16 (NI-VSDS) + 25 (regeneration) = 66 NFE vs 25, 2.6×.

    .venv/bin/python bench/i4vgen_cost.py [--steps 25] [--candidates 16] [--frames 16] [--size 64]

Tiny AnimateDiff, CFG 7.5 (each NFE one batched cond+uncond call), p_ni_vsds 0.6, p_re 1.0. Stage-1 calls
process all candidates as single frames in one batch; scoring (a scorer model) is not counted.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    from cvk_testkit import load_pack
    load_pack()
    from consistent_video_kit.models.tiny import tiny_model
    from consistent_video_kit.samplers import i4vgen
    from consistent_video_kit.samplers.sampling import sample
    from consistent_video_kit.samplers.vp import VPDenoiser
    m = tiny_model("tiny-animatediff")
    calls = [0]

    def counted(z, t, cond):
        calls[0] += 1
        return m.network(z, t, cond)
    den = VPDenoiser(counted, m.alphas_cumprod, m.prediction_type)
    sig = m.sigmas(args.steps)
    c, u = m.encode_prompt_pair("a cat", "")
    with m.loaded() as dev:
        t0 = time.perf_counter()
        sample(den, m.latent_shape(args.frames, args.size, args.size), sig, c, u, 7.5, "cfg", 0.0, 0, dev)
        base, base_nfe = time.perf_counter() - t0, calls[0]
        calls[0] = 0
        t0 = time.perf_counter()
        cand = i4vgen.anchor_candidates(den, m.latent_shape(1, args.size, args.size, args.candidates), sig, c, u, 7.5, 0, dev)
        n1 = calls[0]
        anim = i4vgen.animate(den, cand[:1], args.frames, sig, c, u, 7.5, 0.6, "animatediff", 0)
        n2 = calls[0] - n1
        i4vgen.regenerate(den, anim, sig, c, u, 7.5, 1.0, 0.0, 0)
        total, nfe = time.perf_counter() - t0, calls[0]
    print(f"steps {args.steps}, {args.candidates} candidates, {args.frames} frames at {args.size}×{args.size}")
    print(f"baseline: {base_nfe} NFE, {base:.2f} s")
    print(f"I4VGen:   {nfe} NFE ({n1} candidates + {n2} NI-VSDS + {nfe - n1 - n2} regeneration), {total:.2f} s")
    print(f"ratio:    NFE {nfe / base_nfe:.2f}×, wall time {total / base:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
