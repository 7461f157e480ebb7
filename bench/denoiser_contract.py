"""Cost of the denoiser contract (σ per sample / per frame) on the float-σ path every plain sampler uses.

The reference is the previous float-only implementation, kept here verbatim in substance: ``VPDenoiser``
that took σ as one Python float, and CFG that forced σ to a float. Both paths run the same guided call
(CFG 7.5, [uncond; cond] batched, one network call) alternately, and the outputs must be bit for bit equal.

    .venv/bin/python bench/denoiser_contract.py [--calls 40] [--rounds 5]

Configs: ``tiny`` = the tiny AnimateDiff, 8 frames at 64×64 px (a network call of a few ms: the target
is new/old ≤ 1.02 per call); ``null`` = a network that returns zeros (no model cost: the raw wrapper
overhead in µs per call). Best-of-rounds times; ratios measured in one run, side by side.
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


def legacy(vp, guidance_mod):
    """The float-only denoiser and CFG as they were before σ tensors were accepted."""
    class FloatVPDenoiser(vp.VPDenoiser):
        def __call__(self, x, sigma, cond):
            sigma = float(sigma)
            out = self.network(vp.to_vp(x, sigma), self.timestep(sigma), cond)
            return vp.prediction_to_x0(out.to(x.dtype), x, sigma, self.prediction_type)

    def float_guidance(denoise, cond, uncond, scale):
        pair = guidance_mod.concat_conds([uncond, cond])

        def guided(x, sigma):
            sigma = float(sigma)
            x0_u, x0_c = denoise(torch.cat([x, x], dim=0), sigma, pair).chunk(2, dim=0)
            x0 = x0_u + scale * (x0_c - x0_u)
            return guidance_mod.Guided(x0, (x - x0) / sigma)
        return guided

    return FloatVPDenoiser, float_guidance


def timed(guided, x, sigmas, calls):
    t = time.perf_counter()
    for i in range(calls):
        out = guided(x, sigmas[i % len(sigmas)])
    return (time.perf_counter() - t) / calls, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from cvk_testkit import load_pack
    load_pack()
    from consistent_video_kit.models.tiny import tiny_model
    from consistent_video_kit.samplers import guidance as guidance_mod, vp
    FloatVPDenoiser, float_guidance = legacy(vp, guidance_mod)
    model = tiny_model("tiny-animatediff")
    cond, uncond = model.encode_prompt_pair("a cat", "")
    sigmas = [float(s) for s in model.sigmas(25)[:-1]]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'config':6} {'old µs/call':>12} {'new µs/call':>12} {'new/old':>8}")
    nets = {"tiny": model.network, "null": lambda z, t, c: torch.zeros_like(z)}
    with torch.inference_mode():
        for name, net in nets.items():
            x = model.latent_shape(8, 64, 64)
            x = torch.randn(x, generator=torch.Generator().manual_seed(0))
            old = float_guidance(FloatVPDenoiser(net, model.alphas_cumprod), cond, uncond, 7.5)
            new = guidance_mod.guidance(vp.VPDenoiser(net, model.alphas_cumprod), cond, uncond, 7.5, "cfg")
            timed(old, x, sigmas, 2), timed(new, x, sigmas, 2)        # warm-up
            best_old = best_new = float("inf")
            for _ in range(args.rounds):                               # alternate, so load drifts hit both
                t_old, out_old = timed(old, x, sigmas, args.calls)
                t_new, out_new = timed(new, x, sigmas, args.calls)
                best_old, best_new = min(best_old, t_old), min(best_new, t_new)
            assert torch.equal(out_old.x0, out_new.x0) and torch.equal(out_old.eps, out_new.eps)
            print(f"{name:6} {best_old * 1e6:12.1f} {best_new * 1e6:12.1f} {best_new / best_old:8.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
