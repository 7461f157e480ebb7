"""The native adapter on SD1.5 + AnimateDiff as artists run it — ComfyUI's Load Checkpoint and AnimateDiff-Evolved
(ADE, ``COMFYUI_ADE_PATH``) loading the motion module natively — against the pack's own AnimateDiff bundle loading the
same two files, in ComfyUI's Python:

    COMFYUI_PATH=... COMFYUI_ADE_PATH=... CVK_REAL_SIZE_DIR=... $COMFYUI_PYTHON -m cvk_testkit.native_ade_checks

``CVK_REAL_SIZE_DIR`` holds ``checkpoints/`` and ``animatediff_models/`` with the real-size files of
:mod:`.tiny_files` (:data:`REAL_SIZE_FILES`; ADE builds motion modules at SD1.5's widths only).
``tests/test_native_ade.py`` asserts on the numbers.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time

import torch

from .comfy_checks import check, main as _main
from .native_checks import _setup
from .tiny_files import REAL_SIZE_FILES


def load_ade(models_dir: str):
    """ADE loaded as ComfyUI loads a custom node pack, its motion-model folder pointed at ``models_dir``'s."""
    import folder_paths
    import nodes
    if "ADE_AnimateDiffLoaderGen1" not in nodes.NODE_CLASS_MAPPINGS:
        assert asyncio.run(nodes.load_custom_node(os.environ["COMFYUI_ADE_PATH"])), "ADE did not load"
    folder_paths.add_model_folder_path("animatediff_models", os.path.join(models_dir, "animatediff_models"))
    return nodes.NODE_CLASS_MAPPINGS


@check
def ade_eps_parity():
    """ε of the network at three timesteps (999, 500, 20) on 4 frames of 8×8 latents with one random text context:
    native (Load Checkpoint's MODEL + ADE's Gen1 loader, beta schedule ``autoselect``, called through the adapter's
    :class:`NativeDenoiser` inside ComfyUI's guider at CFG 1, ADE's sampling wrappers active) vs the pack's bundle
    (``load_animatediff`` of the same two files, ``VideoModel.network``), float32 both."""
    mm = _setup()
    import comfy.sd
    import comfy.samplers
    from consistent_video_kit.models.loaders import load_animatediff
    from consistent_video_kit.models.native import run_native
    root = os.environ["CVK_REAL_SIZE_DIR"]
    ckpt = os.path.join(root, "checkpoints", REAL_SIZE_FILES["checkpoint"])
    motion = os.path.join(root, "animatediff_models", REAL_SIZE_FILES["motion_module"])
    classes = load_ade(root)
    out = {"file_bytes": {"checkpoint": os.path.getsize(ckpt), "motion_module": os.path.getsize(motion)}}
    frames, ts = 4, (999, 500, 20)
    g = torch.Generator().manual_seed(7)
    ctx = torch.randn(1, 77, 768, generator=g)
    z = torch.randn(frames, 4, 8, 8, generator=g)            # the network's input (VP-normalised), frames in batch

    t0 = time.perf_counter()
    model = comfy.sd.load_checkpoint_guess_config(ckpt, output_vae=False, output_clip=False)[0]
    (ade_model,) = classes["ADE_AnimateDiffLoaderGen1"]().load_mm_and_inject_params(
        model, REAL_SIZE_FILES["motion_module"], "autoselect")
    out["native_load_s"] = time.perf_counter() - t0
    ms = ade_model.get_model_object("model_sampling")
    table = ms.sigmas.double()
    native, seen = {}, {}

    def fn(den, x, sigmas, callback=None):
        seen.update(kind=den.kind, layout=den.layout, x_shape=list(x.shape))
        for t in ts:
            s = float(table[t])
            xs = z.permute(1, 0, 2, 3)[None] * (1 + s * s) ** 0.5      # (1, 4, F, h, w): the σ-space point
            t1 = time.perf_counter()
            x0 = den(xs, s)
            native[t] = (((xs - x0) / s).detach(), time.perf_counter() - t1)
        return x
    pos, neg = [[ctx, {}]], [[torch.zeros_like(ctx), {}]]
    lat = torch.zeros(frames, 4, 8, 8)
    sig = torch.tensor([float(table[999]), 0.0])
    run_native(ade_model, pos, neg, 1.0, lat, torch.zeros_like(lat), sig, fn, seed=0)
    out["native_seen"] = seen
    plain = {}                                  # the same checkpoint without ADE: how much the motion module adds

    def fn_plain(den, x, sigmas, callback=None):
        s = float(table[500])
        xs = z.permute(1, 0, 2, 3)[None] * (1 + s * s) ** 0.5
        plain[500] = (xs - den(xs, s)) / s
        return x
    run_native(model, pos, neg, 1.0, lat, torch.zeros_like(lat), sig, fn_plain, seed=0)
    out["native_timesteps"] = [float(ms.timestep(table[t]).item()) for t in ts]
    del model, ade_model
    mm.unload_all_models()
    mm.soft_empty_cache()

    t0 = time.perf_counter()
    bundle = load_animatediff(ckpt, motion, precision="fp32")
    out["ours_load_s"] = time.perf_counter() - t0
    ours = {}
    with bundle.loaded():
        for t in ts:
            t1 = time.perf_counter()
            ours[t] = (bundle.network(z.permute(1, 0, 2, 3)[None], torch.tensor(t), {"text": ctx}),
                       time.perf_counter() - t1)
    out["tables_max_rel"] = float(((bundle.denoiser().sigmas - table).abs() / table).max())
    rows = {}
    for t in ts:
        a, b = native[t][0], ours[t][0]
        rows[str(t)] = {"max_rel": float((a - b).abs().max() / b.abs().max()), "max_abs": float((a - b).abs().max()),
                        "scale": float(b.abs().max()), "std": float(b.std()), "native_s": native[t][1],
                        "ours_s": ours[t][1], "finite": bool(torch.isfinite(a).all() and torch.isfinite(b).all())}
    out["rows"] = rows
    out["without_motion_module_max_rel"] = float((plain[500] - ours[500][0]).abs().max() / ours[500][0].abs().max())
    return out


@check
def ade_videoguide():
    """The native VideoGuide sampler with ADE: main = checkpoint + ADE (CFG 7.5 in its CFGGuider), 4 frames, 2 steps
    of the normal scheduler, NOISE as RandomNoise makes it. Guides on the same network: the plain checkpoint MODEL
    (no motion module: its calls must run without the main model's, and the main model's with it) and the checkpoint
    with ADE again (a second ADE patcher: its own sampling wrappers, or ADE fails on a missing state). With weight 0
    and filter none both equal core ``euler`` bit for bit; the plain guide's output equals the network without the
    motion module on the same input; weight 0.5 changes the result."""
    mm = _setup()
    import comfy.sample
    import comfy.sd
    import comfy.samplers
    from consistent_video_kit.nodes.native_videoguide import CVK_VideoGuideNativeSampler
    root = os.environ["CVK_REAL_SIZE_DIR"]
    classes = load_ade(root)
    model = comfy.sd.load_checkpoint_guess_config(os.path.join(root, "checkpoints", REAL_SIZE_FILES["checkpoint"]),
                                                  output_vae=False, output_clip=False)[0]
    gen1 = classes["ADE_AnimateDiffLoaderGen1"]()
    (main,) = gen1.load_mm_and_inject_params(model, REAL_SIZE_FILES["motion_module"], "autoselect")
    (second,) = gen1.load_mm_and_inject_params(model, REAL_SIZE_FILES["motion_module"], "autoselect")
    g = torch.Generator().manual_seed(3)
    pos, neg = [[torch.randn(1, 77, 768, generator=g), {}]], [[torch.randn(1, 77, 768, generator=g), {}]]
    lat = torch.zeros(4, 4, 8, 8)
    noise = comfy.sample.prepare_noise(lat, 11)
    sig = comfy.samplers.calculate_sigmas(main.get_model_object("model_sampling"), "normal", 2)
    calls = []

    def record(apply_model, args):
        out = apply_model(args["input"], args["timestep"], **args["c"])
        calls.append((args["input"].clone(), args["timestep"].clone(), args["c"]["c_crossattn"].clone(), out.clone()))
        return out
    plain = model.clone()
    plain.set_model_unet_function_wrapper(record)
    base = dict(sampler_name="euler", guide_positive=pos, guide_negative=neg, guided_steps=1, guide_steps=1,
                guide_grid=4, guide_weight=0.0, guide_cfg=5.0, filter="none", filter_n=4, filter_d_s=0.25,
                filter_d_t=0.25, match_by="sigma", seed=5)
    node = CVK_VideoGuideNativeSampler()

    def run(sampler):
        guider = comfy.samplers.CFGGuider(main)
        guider.set_conds(pos, neg)
        guider.set_cfg(7.5)
        t0 = time.perf_counter()
        x = guider.sample(noise, lat, sampler, sig, seed=11, disable_pbar=True)
        return x, time.perf_counter() - t0
    out = {}
    core, out["core_s"] = run(comfy.samplers.sampler_object("euler"))
    w0_plain, out["plain_guide_s"] = run(node.get_sampler(guide=plain, **base)[0])
    out["plain_guide_w0_equal"] = bool(torch.equal(core, w0_plain))
    out["plain_guide_calls"] = len(calls)
    inp, ts, ctx, got = calls[0]                  # the wrapper sees x and σ, and returns ComfyUI's x0
    with torch.no_grad():                          # the network with and without the motion module, on that input
        was = main.is_injected
        main.inject_model()
        with_mm = model.model.apply_model(inp, ts, c_crossattn=ctx)
        main.eject_model()
        bare = model.model.apply_model(inp, ts, c_crossattn=ctx)
        if was:
            main.inject_model()
    out["plain_guide_vs_bare_max_rel"] = float((got - bare).abs().max() / bare.abs().max())
    out["plain_guide_vs_with_motion_module_max_rel"] = float((got - with_mm).abs().max() / with_mm.abs().max())
    out["plain_guide_batch"] = list(inp.shape)
    w0_ade, out["ade_guide_s"] = run(node.get_sampler(guide=second, **base)[0])
    out["ade_guide_w0_equal"] = bool(torch.equal(core, w0_ade))
    w, _ = run(node.get_sampler(guide=second, **dict(base, guide_weight=0.5))[0])
    out["ade_guide_w_finite"] = bool(torch.isfinite(w).all())
    out["ade_guide_w_diff"] = float((w - core).abs().max() / core.abs().max())
    again, _ = run(comfy.samplers.sampler_object("euler"))
    out["core_again_equal"] = bool(torch.equal(core, again))     # nothing left injected or patched after the runs
    mm.unload_all_models()
    return out


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:] or ["ade_eps_parity", "ade_videoguide"]))
