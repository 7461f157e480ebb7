"""VideoGuide against the baseline sampler, in one run: network evaluations (NFE), wall time, and the
share of VideoGuide's time spent outside model calls (guide re-noise, interpolation, the FFT low-pass mix,
bookkeeping). Official defaults: N = 50, I = 5, τ = 10 → 2.0× the NFE of the plain sampler.

    .venv/bin/python bench/videoguide_cost.py [--steps 50] [--configs tiny,mid] [--repeats 2]

Sampler: tiny AnimateDiff; guide: tiny ModelScope (different noise tables, match_by sigma), CFG++ 0.8,
each NFE one batched cond+uncond call. tiny: 4 frames at 64×64; mid: 8 frames at 128×128.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONFIGS = {"tiny": (4, 64, 64), "mid": (8, 128, 128)}


class Timed:
    """Wraps a model's network: counts calls and the seconds spent inside them."""

    def __init__(self, net):
        self.net, self.calls, self.seconds = net, 0, 0.0

    def __call__(self, z, t, cond):
        t0 = time.perf_counter()
        out = self.net(z, t, cond)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--configs", default="tiny,mid")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    from cvk_testkit import load_pack
    load_pack()
    from consistent_video_kit.models.tiny import tiny_model
    from consistent_video_kit.samplers.sampling import sample
    from consistent_video_kit.samplers.schedules import sigma_grid
    from consistent_video_kit.samplers.videoguide import VideoGuideSettings, default_timesteps, guide_denoiser, videoguide
    from consistent_video_kit.samplers.vp import VPDenoiser
    m, g = tiny_model("tiny-animatediff"), tiny_model("tiny-modelscope")
    sigmas = sigma_grid(m.alphas_cumprod, default_timesteps(args.steps), "zero")
    c, u = m.encode_prompt_pair("a cat", "")
    gc, gu = g.encode_prompt_pair("a cat", "")
    st = VideoGuideSettings()
    print(f"N={args.steps}, I={st.guided_steps}, tau={st.guide_steps}; best of {args.repeats}")
    print(f"{'config':6} {'base NFE':>8} {'VG NFE':>7} {'NFE x':>6} {'base s':>7} {'VG s':>7} {'time x':>7} {'VG outside':>10}")
    for name in args.configs.split(","):
        shape = m.latent_shape(*CONFIGS[name])
        best = None
        for _ in range(args.repeats):
            sm, gm = Timed(m.network), Timed(g.network)
            den = VPDenoiser(sm, m.alphas_cumprod, m.prediction_type)
            gden = guide_denoiser("sigma", gm, g.alphas_cumprod, g.prediction_type, m.alphas_cumprod)
            with m.loaded() as dev, g.loaded():
                t0 = time.perf_counter()
                sample(den, shape, sigmas, c, u, 0.8, "cfg++", 0.0, 0, dev)
                base = time.perf_counter() - t0
                base_nfe = sm.calls
                sm.calls, sm.seconds = 0, 0.0
                t0 = time.perf_counter()
                videoguide(den, gden, shape, sigmas, c, u, gc, gu, settings=st, seed=0, device=dev)
                vg = time.perf_counter() - t0
            row = (base_nfe, sm.calls + gm.calls, base, vg, (vg - sm.seconds - gm.seconds) / vg)
            if best is None or row[3] / row[2] < best[3] / best[2]:
                best = row
        b_nfe, v_nfe, b, v, outside = best
        print(f"{name:6} {b_nfe:8d} {v_nfe:7d} {v_nfe / b_nfe:6.2f} {b:7.2f} {v:7.2f} {v / b:7.2f} {outside:10.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
