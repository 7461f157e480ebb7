"""``CVK_VideoGuideNativeSampler`` (``nodes/native_videoguide.py``) against ComfyUI's own sampling, in ComfyUI's Python
(the mechanism of :mod:`.native_checks`, whose tiny models it reuses):

    COMFYUI_PATH=... $COMFYUI_PYTHON -m cvk_testkit.native_videoguide_checks

``tests/test_native_videoguide.py`` asserts on the numbers.
"""
from __future__ import annotations

import sys

import torch

from .comfy_checks import check, main as _main
from .native_checks import CPU, _conds, _diff, _init, _setup, tiny_sd15


def _guider(mp, pos, neg, cfg):
    import comfy.samplers
    g = comfy.samplers.CFGGuider(mp)
    g.set_conds(pos, neg)
    g.set_cfg(cfg)
    return g


def _counted(mp, calls):
    def wrapper(apply_model, args):
        calls.append(args["input"].shape[0])
        return apply_model(args["input"], args["timestep"], **args["c"])
    m = mp.clone()
    m.set_model_unet_function_wrapper(wrapper)
    return m


@check
def videoguide_native():
    """Tiny SD1.5-like ε main model (CFG 6 in its GUIDER) and a second one as the guide (other weights, its own conds,
    CFG 4), 3 frames, 6 steps of ComfyUI's normal scheduler, NOISE from ``comfy.sample.prepare_noise`` (what
    RandomNoise gives), run as SamplerCustomAdvanced runs them (``CFGGuider.sample``)."""
    mm = _setup()
    import comfy.sample
    import comfy.sampler_helpers
    import comfy.samplers
    from consistent_video_kit.nodes.native_videoguide import CVK_VideoGuideNativeSampler
    from consistent_video_kit.nodes.common import CVKInputError
    mp = tiny_sd15()
    gm = tiny_sd15()
    _init(gm.model, seed=2, std=0.05)
    pos, neg = _conds(32, 8, 4)
    gpos, gneg = _conds(32, 8, 9)
    frames, steps = 3, 6
    lat = torch.zeros(frames, 4, 8, 8)
    noise = comfy.sample.prepare_noise(lat, 123)
    sig = comfy.samplers.calculate_sigmas(mp.model.model_sampling, "normal", steps)
    node = CVK_VideoGuideNativeSampler()
    base = dict(sampler_name="euler", guide=gm, guide_positive=gpos, guide_negative=gneg, guided_steps=2,
                guide_steps=3, guide_grid=6, guide_weight=0.0, guide_cfg=4.0, filter="none", filter_n=4,
                filter_d_s=0.25, filter_d_t=0.25, match_by="sigma", seed=5)

    def run(model, sampler, s=sig):
        return _guider(model, pos, neg, 6.0).sample(noise, lat, sampler, s, seed=123, disable_pbar=True)
    out = {}
    core = run(mp, comfy.samplers.sampler_object("euler"))
    (ours,) = node.get_sampler(**base)
    got = run(mp, ours)
    out["w0_equal"] = bool(torch.equal(core, got))
    out["w0_max_diff"] = _diff(core, got)
    out["scale"] = float(core.abs().max())
    core_ddim = run(mp, comfy.samplers.sampler_object("ddim"))
    out["ddim_equal"] = bool(torch.equal(core_ddim, run(mp, node.get_sampler(**dict(base, sampler_name="ddim"))[0])))
    # NFE, and when the guide is released
    main_calls, guide_calls, released = [], [], []
    orig_cleanup = comfy.sampler_helpers.cleanup_models

    def cleanup(conds, models):
        released.append(len(main_calls))
        return orig_cleanup(conds, models)
    comfy.sampler_helpers.cleanup_models = cleanup
    try:
        guide = _counted(gm, guide_calls)
        main = _counted(mp, main_calls)
        loaded = []
        orig_load = mm.load_models_gpu

        def load(models, *a, **k):
            loaded.append([type(m.model).__name__ for m in models])
            return orig_load(models, *a, **k)
        mm.load_models_gpu = load
        try:
            w = run(main, node.get_sampler(**dict(base, guide=guide, guide_weight=0.5))[0])
        finally:
            mm.load_models_gpu = orig_load
    finally:
        comfy.sampler_helpers.cleanup_models = orig_cleanup
    out["nfe"] = {"main": len(main_calls), "guide": len(guide_calls), "main_batches": sorted(set(main_calls)),
                  "guide_batches": sorted(set(guide_calls)), "released_after_main_calls": released,
                  "loads": len(loaded)}
    out["weight_diff"] = _diff(w, core)
    out["weight_finite"] = bool(torch.isfinite(w).all())
    f = run(mp, node.get_sampler(**dict(base, filter="butterworth"))[0])
    out["filter_diff"] = _diff(f, core)
    t = run(mp, node.get_sampler(**dict(base, guide_weight=0.5, match_by="timestep"))[0])
    out["timestep_finite"] = bool(torch.isfinite(t).all())
    out["timestep_vs_sigma"] = _diff(t, w)       # same tables here: the same run
    again = run(mp, node.get_sampler(**dict(base, guide_weight=0.5))[0])
    out["repeat_equal"] = bool(torch.equal(again, w))
    refused = {}
    for key, kw, s in (("guide_not_native", dict(guide=object()), sig),
                       ("guide_steps_over_grid", dict(guide_steps=7), sig),
                       ("guided_over_steps", dict(guided_steps=9), sig),
                       ("grid_too_low", dict(guided_steps=6, guide_grid=24), sig)):
        try:
            run(mp, node.get_sampler(**dict(base, **kw))[0], s)
            refused[key] = "ran"
        except CVKInputError as e:
            refused[key] = "refused: " + str(e)
    out["refused"] = refused
    # self-guidance: the guide is the main MODEL itself, or a clone of it (its own wrapper, no other weights)
    selfg = {}
    for key, g in (("same", mp), ("clone", _counted(mp, []))):
        a = run(mp, node.get_sampler(**dict(base, guide=g))[0])
        b = run(mp, node.get_sampler(**dict(base, guide=g, guide_weight=0.5))[0])
        c = run(mp, node.get_sampler(**dict(base, guide=g, guide_weight=0.5, match_by="timestep"))[0])
        selfg[key] = {"w0_equal": bool(torch.equal(a, core)), "w_finite": bool(torch.isfinite(b).all()),
                      "w_diff": _diff(b, core), "timestep_equal": bool(torch.equal(b, c)),
                      "current_patcher_cleared": getattr(mp.model, "current_patcher", None) is None}
    lora = mp.clone()
    key = next(k for k in lora.model_state_dict() if k.endswith(".weight") and lora.model_state_dict()[k].ndim == 2)
    lora.add_patches({key: (torch.randn(lora.model_state_dict()[key].shape) * 0.1,)}, 1.0)
    try:
        run(mp, node.get_sampler(**dict(base, guide=lora, guide_weight=0.5))[0])
        selfg["lora"] = "ran"
    except CVKInputError as e:
        selfg["lora"] = "refused: " + str(e)
    out["self"] = selfg
    return out


@check
def videoguide_native_flow():
    """Tiny Wan 2.1 (CONST flow, 5-D) main model (CFG 5) and a second one as the guide: weight 0 and filter none vs
    core euler (σ-space steps: float rounding), weight 0.5 with the filter runs and changes the result."""
    _setup()
    import comfy.samplers
    from consistent_video_kit.nodes.native_videoguide import CVK_VideoGuideNativeSampler
    from .native_checks import tiny_wan
    mp, gm = tiny_wan(), tiny_wan()
    _init(gm.model, seed=3)
    pos, neg = _conds(16, 8, 2)
    gpos, gneg = _conds(16, 8, 7)
    lat = torch.zeros(1, 16, 3, 8, 8)
    noise = torch.randn(lat.shape, generator=torch.Generator().manual_seed(3))
    sig = comfy.samplers.calculate_sigmas(mp.model.model_sampling, "simple", 6)
    base = dict(sampler_name="euler", guide=gm, guide_positive=gpos, guide_negative=gneg, guided_steps=2,
                guide_steps=3, guide_grid=6, guide_weight=0.0, guide_cfg=4.0, filter="none", filter_n=4,
                filter_d_s=0.25, filter_d_t=0.25, match_by="sigma", seed=5)
    node = CVK_VideoGuideNativeSampler()

    def run(sampler):
        return _guider(mp, pos, neg, 5.0).sample(noise, lat, sampler, sig, seed=0, disable_pbar=True)
    core = run(comfy.samplers.sampler_object("euler"))
    w0 = run(node.get_sampler(**base)[0])
    w = run(node.get_sampler(**dict(base, guide_weight=0.5, filter="butterworth"))[0])
    return {"w0_max_diff": _diff(core, w0), "scale": float(core.abs().max()), "w_diff": _diff(w, core),
            "w_finite": bool(torch.isfinite(w).all()), "shape": list(w.shape)}


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:] or ["videoguide_native", "videoguide_native_flow"]))
