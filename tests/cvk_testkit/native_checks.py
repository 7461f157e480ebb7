"""The native-MODEL adapter (``models/native.py``) against ComfyUI's own sampling, imported into this process under
ComfyUI's Python (the mechanism of :mod:`.comfy_checks`, whose ``import_comfy`` and ``main`` it reuses):

    COMFYUI_PATH=... $COMFYUI_PYTHON -m cvk_testkit.native_checks [<check> ...]

Models are built in code at tiny sizes from ComfyUI's own classes (``comfy.supported_models``), their weights drawn
from a seeded generator (ComfyUI's layers skip initialisation). ``tests/test_native.py`` asserts on the numbers.
"""
from __future__ import annotations

import os
import sys
import tempfile

import torch

from .comfy_checks import check, import_comfy, main as _main, CHECKS  # noqa: F401

CPU = torch.device("cpu")


def _setup():
    mm = import_comfy(os.environ["COMFYUI_PATH"])
    from cvk_testkit import load_pack
    load_pack()
    mm.unload_all_models()
    return mm


def _init(model, seed=0, std=0.1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.diffusion_model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def _patcher(model):
    import comfy.model_patcher
    return comfy.model_patcher.ModelPatcher(model, load_device=CPU, offload_device=CPU)


def tiny_wan():
    """ComfyUI's Wan 2.1 T2V (``WAN21_T2V`` → ``model_base.WAN21``, CONST flow sampling, shift 8) at dim 32."""
    import comfy.supported_models as sm
    cfg = sm.WAN21_T2V({"image_model": "wan2.1", "model_type": "t2v", "dim": 32, "ffn_dim": 64, "num_heads": 2,
                        "num_layers": 2, "text_dim": 16, "in_dim": 16, "out_dim": 16, "freq_dim": 32, "text_len": 8})
    cfg.set_inference_dtype(torch.float32, None)
    return _patcher(_init(cfg.get_model({})))


def tiny_sd15():
    """ComfyUI's SD1.5 (``supported_models.SD15`` → ``model_base.BaseModel``, EPS, scaled-linear table) built directly
    with a reduced UNet: ComfyUI recognises an SD1.5 file only at model_channels 320 / context 768, so a tiny file would
    not load through Load Diffusion Model; the object built here is the one such a load makes, at a smaller size."""
    import comfy.supported_models as sm
    unet = {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
            "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": 32, "num_res_blocks": [1, 1],
            "transformer_depth": [1, 1], "channel_mult": [1, 2], "transformer_depth_middle": 1,
            "use_linear_in_transformer": False, "context_dim": 32, "transformer_depth_output": [1, 1, 1, 1],
            "use_temporal_attention": False, "use_temporal_resblock": False}
    cfg = sm.SD15(unet)
    cfg.set_inference_dtype(torch.float32, None)
    return _patcher(_init(cfg.get_model({}), seed=1, std=0.05))


def _conds(dim, tokens, seed):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, dim, generator=g), {}]], [[torch.randn(1, tokens, dim, generator=g), {}]]


def _euler(record=None):
    from consistent_video_kit.models import native  # noqa: F401
    from consistent_video_kit.samplers.guidance import guidance
    from consistent_video_kit.samplers.sampling import sample_ddim

    def fn(den, x, sigmas, callback=None):
        if record is not None:
            record(den, x, sigmas)
        return sample_ddim(guidance(den, None), x, sigmas, 0.0, callback=callback)
    return fn


def _diff(a, b):
    return float((a - b).abs().max())


@check
def flow_euler():
    """Wan (flow, 5-D): our DDIM η = 0 through the adapter vs core ``euler`` through ``comfy.samplers.sample``, CFG 5,
    on the full grid from s = 1 and on a partial (img2img) grid from a non-empty latent."""
    mm = _setup()
    import comfy.samplers
    from consistent_video_kit.models.native import run_native
    mp = tiny_wan()
    pos, neg = _conds(16, 8, 2)
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(1, 16, 3, 8, 8, generator=g)
    ms = mp.model.model_sampling
    seen = {}

    def record(den, x, sigmas):
        seen.update(kind=den.kind, layout=den.layout, x_shape=list(x.shape), sigma0=float(sigmas[0]),
                    table_max=den.sigma_max, table_min=den.sigma_min,
                    loaded=[type(lm.model.model).__name__ for lm in mm.current_loaded_models if lm.model is not None])
    out = {}
    for name, sig, lat in (("full", comfy.samplers.calculate_sigmas(ms, "simple", 6), torch.zeros(1, 16, 3, 8, 8)),
                           ("partial", comfy.samplers.calculate_sigmas(ms, "simple", 10)[-5:],
                            torch.randn(1, 16, 3, 8, 8, generator=g))):
        core = comfy.samplers.sample(mp, noise, pos, neg, 5.0, CPU, comfy.samplers.ksampler("euler"), sig,
                                     latent_image=lat, seed=0, disable_pbar=True)
        ours = run_native(mp, pos, neg, 5.0, lat, noise, sig, _euler(record), seed=0)
        out[name] = {"max_diff": _diff(core, ours), "scale": float(core.abs().max()), "shape": list(ours.shape),
                     "sigmas": [float(s) for s in sig], "seen": dict(seen)}
    return out


@check
def eps_cfg():
    """SD1.5-like ε model (frames in the batch): the adapter's CFG x0 vs ComfyUI's ``sampling_function`` on the
    guider's processed conds at CFG 7.5, at three σ; single branches vs ``calc_cond_batch``; two videos in one call
    vs one at a time; the σ table vs SD's scaled-linear ᾱ."""
    _setup()
    import comfy.samplers
    from consistent_video_kit.models.native import run_native
    from consistent_video_kit.samplers.vp import sigmas_from_alphas_cumprod, vp_alphas_cumprod
    mp = tiny_sd15()
    pos, neg = _conds(32, 8, 4)
    frames = 3
    lat = torch.zeros(frames, 4, 8, 8)
    noise = torch.randn(frames, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    sig = comfy.samplers.calculate_sigmas(mp.model.model_sampling, "normal", 2)
    res = {}

    def fn(den, x, sigmas, callback=None):
        gd = den.guider
        opts = den.extra_args["model_options"]
        res.update(kind=den.kind, layout=den.layout, x_shape=list(x.shape),
                   table=_diff(den.sigmas, sigmas_from_alphas_cumprod(vp_alphas_cumprod("scaled_linear", 0.00085, 0.012))))
        g = torch.Generator().manual_seed(6)
        rows = []
        for s in (14.0, 2.5, 0.3):
            xs = torch.randn(1, 4, frames, 8, 8, generator=g) * (1 + s * s) ** 0.5
            xc = xs[0].transpose(0, 1).contiguous()                    # ComfyUI's layout: frames as the batch
            st = torch.full((frames,), s)
            ref = comfy.samplers.sampling_function(gd.inner_model, xc, st, gd.conds["negative"], gd.conds["positive"],
                                                   7.5, model_options=opts, seed=0)
            ref = ref.transpose(0, 1).unsqueeze(0)
            refs = comfy.samplers.calc_cond_batch(gd.inner_model, [gd.conds["positive"], gd.conds["negative"]], xc, st,
                                                  opts)
            x2 = torch.randn_like(xs)
            both = den(torch.cat([xs, x2]), torch.tensor([s, s], dtype=torch.float64))
            rows.append({"sigma": s, "cfg": _diff(den(xs, s), ref), "scale": float(ref.abs().max()),
                         "positive": _diff(den(xs, s, "positive"), refs[0].transpose(0, 1).unsqueeze(0)),
                         "negative": _diff(den(xs, s, "negative"), refs[1].transpose(0, 1).unsqueeze(0)),
                         "cfg_vs_positive": _diff(den(xs, s), refs[0].transpose(0, 1).unsqueeze(0)),
                         "batched": max(_diff(both[:1], den(xs, s)), _diff(both[1:], den(x2, s)))})
        res["rows"] = rows
        return x
    run_native(mp, pos, neg, 7.5, lat, noise, sig, fn, seed=0)
    return res


def _per_frame_rows(den, x, levels, step, ctx_pos, ctx_neg, cfg, raw_fn):
    """The adapter with σ per frame vs by hand from the network's raw outputs (``raw_fn(x_in, t, context)``, the
    diffusion model called directly on each frame's own input): one branch and CFG."""
    from consistent_video_kit.models.native import sigma_to_model
    t = den.timestep(step)
    lv = levels.to(torch.float64)
    if den.kind == "eps":
        xin = (x.to(torch.float64) / (1 + lv ** 2).sqrt()).to(x.dtype)       # each frame's own VP input
    else:
        xin = (x.to(torch.float64) / (1 + lv)).to(x.dtype)                    # each frame's own flow input
    s_f = sigma_to_model(lv, den.kind)

    def x0_of(raw):
        raw = raw.to(torch.float64)
        return (x - lv * raw) if den.kind == "eps" else (xin.to(torch.float64) - s_f * raw)
    rc, ru = raw_fn(xin, t, ctx_pos), raw_fn(xin, t, ctx_neg)
    hand_pos, hand_cfg = x0_of(rc), x0_of(ru + cfg * (rc - ru))
    got_pos = den(x, levels, "positive", timestep=t)
    got_cfg = den(x, levels, timestep=t)
    return {"positive": _diff(got_pos.to(torch.float64), hand_pos), "cfg": _diff(got_cfg.to(torch.float64), hand_cfg),
            "scale": float(hand_cfg.abs().max()), "scale_pos": float(hand_pos.abs().max())}


@check
def per_frame():
    """σ per frame (B, 1, F, 1, 1) with the timestep of the step level σ_t, on the tiny SD1.5-like ε model (frames in
    the batch) and the tiny Wan flow model (5-D): every frame at σ_t gives the float path's x0 bit for bit (CFG and one
    branch); frame 0 at σ_s ≠ σ_t (below and above) gives x0 equal to a hand computation from the raw output of the
    diffusion model called directly on each frame's own input (ε: x/sqrt(1 + σ_f²), flow: x/(1 + σ_f)), told σ_t's
    timestep: x0 = x − σ_f·ε (ε), x_in − s_f·v (flow), for one branch and for CFG; the refusals."""
    _setup()
    from consistent_video_kit.models.native import run_native
    out = {}
    for name, mp, dim, shape, cfg, cases in (
            ("eps", tiny_sd15(), 32, (3, 4, 8, 8), 7.5, ((2.5, 0.4), (2.5, 9.0), (14.0, 1.0))),
            ("flow", tiny_wan(), 16, (1, 16, 3, 8, 8), 5.0, ((1.5, 0.3), (1.5, 6.0), (1e9, 2.0)))):
        pos, neg = _conds(dim, 8, 4)
        lat = torch.zeros(shape)
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(5))
        sig = torch.tensor([0.9, 0.0]) if name == "flow" else torch.tensor([2.0, 0.0])
        res = {}

        def fn(den, x, sigmas, callback=None, res=res, pos=pos, neg=neg, cfg=cfg, cases=cases, name=name):
            f = x.shape[2]
            dm = den.inner_model.diffusion_model
            if name == "eps":
                def raw_fn(xin, t, ctx):                                   # frames as the batch, as ComfyUI lays them
                    z = xin[0].transpose(0, 1).contiguous()
                    o = dm(z, t.float().expand(f), context=ctx.expand(f, -1, -1))
                    return o.transpose(0, 1).unsqueeze(0)
            else:
                def raw_fn(xin, t, ctx):
                    return dm(xin, t.float().reshape(1), context=ctx)
            g = torch.Generator().manual_seed(6)
            rows = []
            for step, known in cases:
                base = torch.randn(x.shape, generator=g, dtype=torch.float64)

                def at(lv):                                                 # a point of each frame's own magnitude
                    return (base * ((1 + lv ** 2).sqrt() if name == "eps" else 1 + lv)).float()
                same = torch.full((1, 1, f, 1, 1), step, dtype=torch.float64)
                x_ = at(same)
                t = den.timestep(step)
                row = {"step": step, "known": known,
                       "same_cfg": _diff(den(x_, same, timestep=t), den(x_, step)),
                       "same_pos": _diff(den(x_, same, "positive", timestep=t), den(x_, step, "positive")),
                       "same_no_timestep": _diff(den(x_, same), den(x_, step))}
                levels = same.clone()
                levels[:, :, 0] = known
                xm = at(levels)
                row.update(_per_frame_rows(den, xm, levels, step, pos[0][0], neg[0][0], cfg, raw_fn))
                per = den(xm, levels, timestep=t)
                row["others_vs_float"] = _diff(per[:, :, 1:], den(xm, step)[:, :, 1:])   # frames at σ_t: ComfyUI's x0
                row["differs"] = _diff(per[:, :, :1], den(xm, step)[:, :, :1])
                rows.append(row)
            res["rows"] = rows
            levels = torch.full((1, 1, f, 1, 1), cases[0][0], dtype=torch.float64)
            levels[:, :, 0] = cases[0][1]
            for key, call in (("no_timestep", lambda: den(x, levels)),
                              ("foreign_timestep", lambda: den(x, levels, timestep=den.timestep(cases[0][0] * 0.37)))):
                try:
                    call()
                    res[key] = "ran"
                except ValueError as e:
                    res[key] = "refused: " + str(e)
            return x
        run_native(mp, pos, neg, cfg, lat, noise, sig, fn, seed=0)
        out[name] = res
    out["refused"] = _per_frame_refusals()
    return out


def _per_frame_refusals():
    """σ per frame on a V-prediction model, and with ComfyUI's inpainting mask: refused with their reasons."""
    import comfy.model_sampling as ms
    from consistent_video_kit.models.native import run_native
    mp = tiny_sd15()
    pos, neg = _conds(32, 8, 4)
    lat = torch.zeros(2, 4, 8, 8)
    got = {}

    def fn(den, x, sigmas, callback=None):
        levels = torch.tensor([2.0, 0.5], dtype=torch.float64).reshape(1, 1, 2, 1, 1)
        try:
            den(x, levels, timestep=den.timestep(2.0))
            got[den.kind] = "ran"
        except ValueError as e:
            got[den.kind] = "refused: " + str(e)
        return x
    v = mp.clone()
    v.add_object_patch("model_sampling", type("ModelSampling", (ms.ModelSamplingDiscrete, ms.V_PREDICTION), {})())
    sig = torch.tensor([2.0, 0.0])
    run_native(v, pos, neg, 1.0, lat, torch.randn_like(lat), sig, fn, seed=0)
    run_native(mp, pos, neg, 1.0, lat, torch.randn_like(lat), sig, fn, seed=0, denoise_mask=torch.ones(2, 1, 8, 8))
    return got


@check
def extend_native():
    """``samplers.long_video.extend`` (REPLACE, 3 windows of 4 latents, context 2, DDIM η = 1) run as a ComfyUI SAMPLER
    (``native_sampler`` via ``comfy.samplers.sample``) on the tiny SD1.5-like ε model at CFG 6: every call the adapter
    gets is recorded and set against the long-video rule, rebuilt from our own generators — known slots z_s at σ_s
    (σ_t ≤ σ_s) or z_s + √(σ_t² − σ_s²)·ξ at σ_t, the other slots at σ_t, the timestep of σ_t."""
    _setup()
    import math
    import comfy.samplers
    from consistent_video_kit.models.native import run_native
    from consistent_video_kit.samplers import long_video as lv
    from consistent_video_kit.samplers.noise import generator
    mp = tiny_sd15()
    pos, neg = _conds(32, 8, 4)
    seed, L, k, s, new, steps = 11, 4, 2, 400, 8, 10
    lat = torch.zeros(L, 4, 8, 8)
    sig = comfy.samplers.calculate_sigmas(mp.model.model_sampling, "normal", steps)
    res = {}

    class Recorder:
        def __init__(self, den):
            self.den, self.calls = den, []

        def __getattr__(self, name):
            return getattr(self.den, name)

        def __call__(self, x, sigma, cond=None, timestep=None):
            x0 = self.den(x, sigma, cond, timestep=timestep)
            self.calls.append({"x": x.clone(), "sigma": sigma, "timestep": timestep, "cond": cond,
                               "finite": bool(torch.isfinite(x0).all())})
            return x0

    def fn(den, x, sigmas, callback=None):
        rec = Recorder(den)
        out = lv.extend(rec, None, new, L, k, sigmas, lv.Conditioning(lv.REPLACE, s, conds=((None, None),)),
                        (1, 4, 0, 8, 8), 1.0, seed)
        res.update(rec=rec, out=out, sigmas=sigmas, sigma_s=float(den.sigmas[s]))
        return x
    net = []

    def wrapper(apply_model, args):                # what ComfyUI hands the model: input and σ, before its scaling
        net.append({"input": args["input"].clone(), "sigma": args["timestep"].clone()})
        return apply_model(args["input"], args["timestep"], **args["c"])
    wrapped = mp.clone()
    wrapped.set_model_unet_function_wrapper(wrapper)
    run_native(wrapped, pos, neg, 6.0, lat, torch.randn(lat.shape, generator=torch.Generator().manual_seed(5)), sig,
               fn, seed=0)
    rec, out, grid, sigma_s = res["rec"], res["out"], res["sigmas"], res["sigma_s"]
    calls = rec.calls
    # the network's own input, frame by frame: ComfyUI's input / sqrt(σ_t² + 1) = the frame's x / sqrt(σ_f² + 1)
    net_worst, net_sigma_ok = 0.0, len(net) == len(calls)
    for call, n in zip(calls, net):
        lv_ = torch.as_tensor(call["sigma"], dtype=torch.float64).reshape(-1, 1, 1, 1) * torch.ones(L, 1, 1, 1)
        want_in = call["x"][0].transpose(0, 1).to(torch.float64) / (1 + lv_ ** 2).sqrt()
        st = n["sigma"].to(torch.float64).reshape(-1, 1, 1, 1)
        got_in = n["input"].to(torch.float64) / (1 + st ** 2).sqrt()
        for half in range(got_in.shape[0] // L):
            net_worst = max(net_worst, _diff(got_in[half * L:(half + 1) * L], want_in))
        step = call["sigma"] if not torch.is_tensor(call["sigma"]) else float(call["sigma"].reshape(-1)[-1])
        net_sigma_ok &= bool(torch.allclose(n["sigma"].to(torch.float64), torch.tensor(step, dtype=torch.float64),
                                            rtol=1e-6))
    res_net = {"net_calls": len(net), "net_input_max_diff": net_worst, "net_sigma_is_step": net_sigma_ok}
    perturb, renoise = generator(seed, "long-video/perturb"), generator(seed, "long-video/renoise")
    worst, problems, counts = 0.0, [], {"renoised": 0, "held": 0}
    for win, start in ((1, 2), (2, 4)):
        z = out[:, :, start:start + k]
        z_s = z + sigma_s * torch.randn(z.shape, generator=perturb)
        for i, call in enumerate(calls[steps * win:steps * (win + 1)]):
            sigma_t = float(grid[i])
            if sigma_t > sigma_s:
                xi = torch.randn(z_s.shape, generator=renoise)
                want, level = z_s + math.sqrt(sigma_t ** 2 - sigma_s ** 2) * xi, sigma_t
                counts["renoised"] += 1
            else:
                want, level = z_s, sigma_s
                counts["held"] += 1
            worst = max(worst, _diff(call["x"][:, :, :k], want))
            lvls = call["sigma"].reshape(-1).tolist()
            told = float(torch.as_tensor(call["timestep"]))
            if lvls[:k] != [level] * k or lvls[k:] != [sigma_t] * (L - k) or told != float(rec.den.timestep(sigma_t)):
                problems.append({"win": win, "i": i, "levels": lvls, "told": told, "sigma_t": sigma_t})
    return {"calls": len(calls), "first_window_floats": all(not torch.is_tensor(c["sigma"]) for c in calls[:steps]),
            "cond": sorted({str(c["cond"]) for c in calls}), "finite": all(c["finite"] for c in calls),
            "known_max_diff": worst, "problems": problems, "counts": counts, "sigma_s": sigma_s,
            "grid": [float(v) for v in grid], "out_shape": list(out.shape), "out_finite": bool(torch.isfinite(out).all()),
            "scale": float(out.abs().max()), **res_net}


@check
def lora_patch():
    """A LoRA-like weight patch (``ModelPatcher.add_patches`` on one weight of a clone) reaches the adapter: the
    patched clone's run differs from the plain one and equals the plain model with that weight changed by hand; the
    plain model after the clone gives its own output again. A LoRA file loaded by core ``LoraLoaderModelOnly``
    (strength 0.8) does the same: its run equals the weight changed by 0.8·up·down by hand."""
    _setup()
    import comfy.samplers
    from consistent_video_kit.models.native import run_native
    mp = tiny_wan()
    pos, neg = _conds(16, 8, 2)
    noise = torch.randn(1, 16, 2, 8, 8, generator=torch.Generator().manual_seed(7))
    lat = torch.zeros_like(noise)
    sig = comfy.samplers.calculate_sigmas(mp.model.model_sampling, "simple", 3)
    key = "diffusion_model.blocks.0.self_attn.q.weight"
    w = mp.model.diffusion_model.blocks[0].self_attn.q.weight
    delta = torch.randn(w.shape, generator=torch.Generator().manual_seed(8)) * 0.5

    def run(m):
        return run_native(m, pos, neg, 4.0, lat, noise, sig, _euler(), seed=0)
    plain = run(mp)
    patched_mp = mp.clone()
    added = patched_mp.add_patches({key: (delta,)}, 1.0)
    patched = run(patched_mp)
    plain_again = run(mp)
    # a LoRA file through core LoraLoaderModelOnly (ComfyUI's lora_unet_* key format, rank 2, alpha 2: scale 1)
    import folder_paths
    import nodes
    from safetensors.torch import save_file
    folder = tempfile.mkdtemp()
    g = torch.Generator().manual_seed(9)
    up, down = torch.randn(w.shape[0], 2, generator=g) * 0.5, torch.randn(2, w.shape[1], generator=g) * 0.5
    name = "lora_unet_blocks_0_self_attn_q"
    save_file({f"{name}.lora_up.weight": up, f"{name}.lora_down.weight": down, f"{name}.alpha": torch.tensor(2.0)},
              os.path.join(folder, "cvk_tiny_lora.safetensors"))
    folder_paths.add_model_folder_path("loras", folder)
    (lora_mp,) = nodes.LoraLoaderModelOnly().load_lora_model_only(mp, "cvk_tiny_lora.safetensors", 0.8)
    lora = run(lora_mp)
    with torch.no_grad():
        w.add_(0.8 * up @ down)
    lora_by_hand = run(mp)
    with torch.no_grad():
        w.sub_(0.8 * up @ down)
        w.add_(delta)
    by_hand = run(mp)
    return {"added": list(added), "plain_vs_patched": _diff(plain, patched), "plain_again": _diff(plain, plain_again),
            "patched_vs_by_hand": _diff(patched, by_hand), "scale": float(plain.abs().max()),
            "lora_loader_keys": sorted(lora_mp.patches), "plain_vs_lora_loader": _diff(plain, lora),
            "lora_loader_vs_by_hand": _diff(lora, lora_by_hand)}


@check
def kinds():
    """Every prediction kind of ``comfy.model_sampling``: accepted (EPS, V_PREDICTION, CONST) or refused with its name;
    a model whose model_sampling is patched to X0 is refused by a run."""
    _setup()
    import comfy.model_sampling as ms
    import comfy.samplers
    from consistent_video_kit.models.native import prediction_kind, run_native
    out = {}
    for name in ("EPS", "V_PREDICTION", "CONST", "X0", "EDM", "IMG_TO_IMG", "IMG_TO_IMG_FLOW", "V_PREDICTION_DDPM",
                 "COSMOS_RFLOW"):
        cls = type("ModelSampling", (ms.ModelSamplingDiscrete, getattr(ms, name)), {})
        try:
            out[name] = prediction_kind(cls())
        except ValueError as e:
            out[name] = "refused: " + str(e)
    mp = tiny_wan()
    x0 = type("ModelSampling", (ms.ModelSamplingDiscreteFlow, ms.X0), {})()
    patched = mp.clone()
    patched.add_object_patch("model_sampling", x0)
    lat = torch.zeros(1, 16, 1, 4, 4)
    pos, neg = _conds(16, 8, 2)
    try:
        run_native(patched, pos, neg, 1.0, lat, torch.randn_like(lat), torch.tensor([1.0, 0.0]), _euler(), seed=0)
        out["run"] = "ran"
    except ValueError as e:
        out["run"] = "refused: " + str(e)
    return out




@check
def extend_node():
    """``CVK_ExtendVideoNative`` on the tiny SD1.5-like ε model (frames in the batch) and the tiny Wan (5-D): the latent
    so far comes back unchanged in front, windows × steps model calls (CFG in one batched call), the same seed
    repeats, another seed differs, and a LoRA-like patch on the MODEL changes the new frames."""
    _setup()
    from consistent_video_kit.nodes.native_long_video import CVK_ExtendVideoNative
    node = CVK_ExtendVideoNative()
    out = {}
    for name, mp, pos_neg, so_far, kw in (
            ("eps", tiny_sd15(), _conds(32, 8, 4), torch.randn(6, 4, 8, 8, generator=torch.Generator().manual_seed(1)),
             dict(new_frames=5, window=4, context=2, sampler_name="euler_ancestral")),
            ("flow", tiny_wan(), _conds(16, 8, 2), torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(2)),
             dict(new_frames=2, window=3, context=1, sampler_name="euler"))):
        calls = []

        def wrapper(apply_model, args):
            calls.append(args["input"].shape[0])
            return apply_model(args["input"], args["timestep"], **args["c"])
        counted = mp.clone()
        counted.set_model_unet_function_wrapper(wrapper)
        args = dict(positive=pos_neg[0], negative=pos_neg[1], latent={"samples": so_far}, s=300, cfg=5.0, steps=3,
                    scheduler="normal", seed=7, **kw)
        (a,) = node.extend(counted, **args)
        (again,) = node.extend(mp, **args)
        (other,) = node.extend(mp, **dict(args, seed=8))
        patched = mp.clone()
        key = next(k for k in patched.model_state_dict() if k.endswith(".weight") and "diffusion_model" in k
                   and patched.model_state_dict()[k].ndim == 2)
        w = patched.model_state_dict()[key]
        patched.add_patches({key: (torch.randn(w.shape, generator=torch.Generator().manual_seed(9)) * 0.5,)}, 1.0)
        (lora,) = node.extend(patched, **args)
        x, have = a["samples"], (so_far.shape[0] if name == "eps" else so_far.shape[2])
        given = x[:have] if name == "eps" else x[:, :, :have]
        new = (lambda t: t[have:]) if name == "eps" else (lambda t: t[:, :, have:])
        out[name] = {"shape": list(x.shape), "given_equal": bool(torch.equal(given, so_far)),
                     "calls": len(calls), "batches": sorted(set(calls)), "finite": bool(torch.isfinite(x).all()),
                     "same_seed": bool(torch.equal(x, again["samples"])),
                     "other_seed_diff": _diff(new(x), new(other["samples"])),
                     "lora_diff": _diff(new(x), new(lora["samples"]))}
    return out


if __name__ == "__main__":
    names = sys.argv[1:] or ["flow_euler", "eps_cfg", "per_frame", "extend_native", "lora_patch", "kinds",
                             "extend_node"]
    sys.exit(_main(names))
