"""The native ComfyUI MODEL adapter (``models/native.py``).

The conversions are pure torch and run everywhere. The rest runs ComfyUI's real ``comfy.samplers`` in one process under
ComfyUI's Python (``cvk_testkit/native_checks.py``, the mechanism of ``test_comfyui_model_management.py``), when
COMFYUI_PATH is set (marker ``comfyui``): tiny Wan 2.1 (flow, 5-D latent) and SD1.5-like (ε, frames in the batch)
models built from ComfyUI's own classes."""

import pytest
import torch

from cvk_testkit import load_pack
from cvk_testkit.real_host import MARKS, run_checks

real_host = MARKS


def native():
    load_pack()
    from consistent_video_kit.models import native as n
    return n


# ---------------------------------------------------------------- pure conversions

def test_frames_in_batch_layout_round_trips_and_orders_frames_within_each_video():
    n = native()
    x = torch.arange(2 * 4 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 4, 3, 2, 2)
    c = n.to_comfy_layout(x, "frames_in_batch")
    assert c.shape == (6, 4, 2, 2)
    assert torch.equal(c[4], x[1, :, 1])               # video 1, frame 1
    assert torch.equal(n.from_comfy_layout(c, "frames_in_batch", 2), x)
    assert n.to_comfy_layout(x, "5d") is x
    with pytest.raises(ValueError, match="B·F"):
        n.from_comfy_layout(c, "frames_in_batch", 4)


def test_flow_levels_map_to_variance_exploding_and_back():
    """x_c = (1 − s)·x0 + s·ε at level s is x = x0 + σ·ε with σ = s/(1 − s), x = x_c/(1 − s); s = 1 is held at
    FLOW_SIGMA_MAX, whose s is 1.0 in float32; ε and v models pass through."""
    n = native()
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(1, 4, 2, 3, 3, generator=g), torch.randn(1, 4, 2, 3, 3, generator=g)
    for s in (0.1, 0.5, 0.9):
        sigma = n.sigma_from_model(s, "flow")
        assert sigma == pytest.approx(s / (1 - s)) and n.sigma_to_model(sigma, "flow") == pytest.approx(s)
        xc = (1 - s) * x0 + s * eps
        assert torch.allclose(n.x_from_model(xc, s, "flow"), x0 + sigma * eps, atol=1e-5)
        assert torch.allclose(n.x_to_model(x0 + sigma * eps, sigma, "flow"), xc, atol=1e-6)
    assert n.sigma_from_model(1.0, "flow") == n.FLOW_SIGMA_MAX
    assert torch.tensor(n.sigma_to_model(n.FLOW_SIGMA_MAX, "flow"), dtype=torch.float32).item() == 1.0
    table = n.sigma_from_model(torch.tensor([0.25, 1.0]), "flow")
    assert table.tolist() == [pytest.approx(1 / 3), n.FLOW_SIGMA_MAX]
    for kind in ("eps", "v_prediction"):
        assert n.sigma_from_model(3.0, kind) == 3.0 and n.x_to_model(x0, 3.0, kind) is x0


def test_initial_latent_starts_from_the_denoisers_start():
    """The seeded start uses the denoiser's start: a flow model's ε·(1 + σ₀) (x_c = ε at the start), a
    VP-form one (ε, v: kind "eps"/"v_prediction", or none) ε·sqrt(1 + σ₀²) exactly as before."""
    load_pack()
    from consistent_video_kit.samplers.noise import generator, randn
    from consistent_video_kit.samplers.sampling import initial_latent

    def Den(kind):                          # the adapter's own start, without ComfyUI
        den = native().NativeDenoiser.__new__(native().NativeDenoiser)
        den.kind = kind
        return den
    eps = randn((1, 4, 2, 3, 3), generator(5, "initial"), None)
    sig = torch.tensor([3.0, 1.0])
    assert torch.allclose(initial_latent((1, 4, 2, 3, 3), sig, 5, denoise=Den("flow")), eps * 4.0, rtol=1e-6)
    for den in (Den("eps"), Den("v_prediction"), None):
        assert torch.equal(initial_latent((1, 4, 2, 3, 3), sig, 5, denoise=den), eps * 10 ** 0.5)


# ---------------------------------------------------------------- inside ComfyUI

@pytest.fixture(scope="module")
def checks():
    return run_checks("cvk_testkit.native_checks")


def result(checks, name):
    c = checks[name]
    assert "error" not in c, c.get("error")
    return c


@pytest.mark.parametrize("grid", ["full", "partial"])
def test_flow_model_euler_through_the_adapter_equals_core_euler(checks, grid):
    """Tiny Wan 2.1 (CONST flow, shift 8, 5-D latent), CFG 5: our DDIM η = 0 (sample_ddim through the adapter, run as a
    ComfyUI SAMPLER by comfy.samplers.sample) equals core ``euler`` on the same grid — the full grid from s = 1 (held at
    σ = 1e9) and a partial one from a non-empty latent — within 1e-5 of the output's magnitude; the model was loaded
    by comfy.model_management for the run."""
    c = result(checks, "flow_euler")
    r = c[grid]
    assert r["shape"] == [1, 16, 3, 8, 8] and r["scale"] > 1
    assert r["max_diff"] <= 1e-5 * r["scale"], r
    s = r["seen"]
    assert s["kind"] == "flow" and s["layout"] == "5d" and s["x_shape"] == [1, 16, 3, 8, 8] and s["table_max"] == 1e9
    start = r["sigmas"][0]          # the model's own level s; ours is s/(1 − s), s = 1 held at 1e9
    assert r["sigmas"][0] == 1.0 if grid == "full" else 0 < start < 1
    assert s["sigma0"] == (1e9 if grid == "full" else pytest.approx(start / (1 - start), rel=1e-6))
    assert s["loaded"] == ["WAN21"]


def test_eps_model_cfg_equals_comfyuis_sampling_function(checks):
    """SD1.5-like ε model built from supported_models.SD15 (frames in the batch): at σ 14, 2.5 and 0.3 the adapter's
    x0 equals ``sampling_function`` at CFG 7.5 on the guider's processed conds (the frames laid out as ComfyUI's batch
    by hand), each branch equals ``calc_cond_batch``, CFG differs from the positive branch alone, two videos in one call
    equal one at a time; its σ table is SD's scaled-linear one."""
    c = result(checks, "eps_cfg")
    assert c["kind"] == "eps" and c["layout"] == "frames_in_batch" and c["x_shape"] == [1, 4, 3, 8, 8]
    assert c["table"] < 1e-4
    assert len(c["rows"]) == 3
    for r in c["rows"]:
        assert r["cfg"] <= 1e-6 * r["scale"], r
        assert r["positive"] <= 1e-5 * r["scale"] and r["negative"] <= 1e-5 * r["scale"], r
        assert r["cfg_vs_positive"] > 1e-4 * r["scale"], r
        assert r["batched"] <= 1e-6 * r["scale"], r


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_sigma_per_frame_rescales_each_frame_and_redoes_x0_at_its_own_level(checks, kind):
    """σ per frame (B, 1, F, 1, 1) told the step level's timestep — tiny SD1.5-like ε model (frames in the batch) and
    tiny Wan flow model (5-D), CFG on: all frames at σ_t equal the float path bit for bit (CFG, one branch, and with
    the timestep left out); frame 0 at σ_s below and above σ_t (also σ_t = the flow start, held at 1e9) equals a hand
    computation from the diffusion model called directly on each frame's own input (ε: x/sqrt(1 + σ_f²), flow:
    x/(1 + σ_f)) told σ_t's timestep — x0 = x − σ_f·ε, or x_in − s_f·v — within 2e-6 of the x0's magnitude, for one
    branch and for CFG; frame 0 differs from the float path. Levels that vary with no timestep, and a timestep of
    none of the levels, are refused."""
    c = result(checks, "per_frame")[kind]
    assert len(c["rows"]) == 3
    for r in c["rows"]:
        assert r["same_cfg"] == 0.0 and r["same_pos"] == 0.0 and r["same_no_timestep"] == 0.0, r
        assert r["positive"] <= 2e-6 * r["scale_pos"] and r["cfg"] <= 2e-6 * r["scale"], r
        assert r["differs"] > 1e-2 * r["scale"], r
        if kind == "eps":                       # frames are separate images: the frames at σ_t are untouched
            assert r["others_vs_float"] == 0.0, r
    assert c["no_timestep"].startswith("refused: ") and "pass timestep explicitly" in c["no_timestep"]
    assert c["foreign_timestep"].startswith("refused: ") and "none of the sample's levels" in c["foreign_timestep"]


def test_sigma_per_frame_is_refused_for_v_prediction_and_with_an_inpainting_mask(checks):
    c = result(checks, "per_frame")["refused"]
    assert c["v_prediction"].startswith("refused: ") and "not v_prediction" in c["v_prediction"], c
    assert c["eps"].startswith("refused: ") and "denoise_mask" in c["eps"], c


def test_long_video_extend_runs_as_a_comfyui_sampler_with_the_replace_rule(checks):
    """``long_video.extend`` (REPLACE, 3 windows of 4, context 2, s = 400, η = 1, 10 steps) run by ``native_sampler``
    under ComfyUI's CFGGuider (CFG 6) on the tiny SD1.5-like ε model: window 0 calls with float σ; in windows 1 and 2
    every call's known slots hold z_s (σ_t ≤ σ_s) or z_s + √(σ_t² − σ_s²)·ξ (σ_t > σ_s) exactly — ξ_s and ξ rebuilt
    from our own generators — at levels σ_s / σ_t, the other slots at σ_t, timestep of σ_t; and what ComfyUI hands
    the model (one call per step, at σ_t) is, after its scaling by 1/sqrt(σ_t² + 1), each frame's own VP input
    x_f/sqrt(σ_f² + 1), for both CFG halves."""
    c = result(checks, "extend_native")
    assert c["calls"] == 30 and c["first_window_floats"] and c["cond"] == ["None"] and c["finite"]
    assert c["counts"]["renoised"] > 0 and c["counts"]["held"] > 0, c["counts"]
    assert c["known_max_diff"] == 0.0 and c["problems"] == [], c["problems"][:3]
    assert c["out_shape"] == [1, 4, 8, 8, 8] and c["out_finite"]
    assert c["net_calls"] == 30 and c["net_sigma_is_step"]
    assert c["net_input_max_diff"] <= 1e-5, c["net_input_max_diff"]


def test_a_weight_patch_on_the_model_reaches_the_adapter(checks):
    """ModelPatcher.add_patches (LoRA-style, one attention weight of a clone): the run changes, equals the model with
    the weight changed by hand, and the unpatched model computes its own output again."""
    c = result(checks, "lora_patch")
    assert c["added"] == ["diffusion_model.blocks.0.self_attn.q.weight"]
    assert c["plain_vs_patched"] > 1e-4 * c["scale"]
    assert c["plain_again"] == 0.0
    assert c["patched_vs_by_hand"] <= 1e-6 * c["scale"]


def test_a_lora_through_core_lora_loader_reaches_the_adapter(checks):
    """Core LoraLoaderModelOnly with a rank-2 LoRA file (lora_unet_* keys) at strength 0.8: the run changes and equals
    the model with 0.8·up·down added to that weight by hand."""
    c = result(checks, "lora_patch")
    assert c["lora_loader_keys"] == ["diffusion_model.blocks.0.self_attn.q.weight"]
    assert c["plain_vs_lora_loader"] > 1e-4 * c["scale"]
    assert c["lora_loader_vs_by_hand"] <= 1e-5 * c["scale"], c


def test_unknown_prediction_kinds_are_refused_by_name(checks):
    c = result(checks, "kinds")
    assert (c["EPS"], c["V_PREDICTION"], c["CONST"]) == ("eps", "v_prediction", "flow")
    for kind in ("X0", "EDM", "IMG_TO_IMG", "IMG_TO_IMG_FLOW", "V_PREDICTION_DDPM", "COSMOS_RFLOW"):
        assert c[kind].startswith("refused: ") and f"prediction kind {kind} " in c[kind], c[kind]
    assert c["run"].startswith("refused: ") and "prediction kind X0 " in c["run"]


def test_extend_video_native_node(checks):
    """Extend Video (CVK native) on the tiny ε model (frames in the batch: 6 + 5 frames, windows of 4 with context 2 →
    3 windows) and the tiny Wan (5-D: 3 + 2 latent frames, windows of 3, context 1 → 1 window), 3 steps each: the
    latent so far unchanged in front, windows × steps model calls of both CFG halves in one batch, the same seed
    repeats, another seed and a LoRA-like weight patch change the new frames."""
    c = result(checks, "extend_node")
    eps, flow = c["eps"], c["flow"]
    assert eps["shape"] == [11, 4, 8, 8] and flow["shape"] == [1, 16, 5, 8, 8]
    for r, windows, batch in ((eps, 3, 8), (flow, 1, 2)):
        assert r["given_equal"] and r["finite"] and r["same_seed"], r
        assert r["calls"] == windows * 3 and r["batches"] == [batch], r
        assert r["other_seed_diff"] > 1e-3 and r["lora_diff"] > 1e-4, r


for _name, _fn in list(globals().items()):
    if _name.startswith("test_") and "checks" in _fn.__code__.co_varnames[:_fn.__code__.co_argcount]:
        for _m in real_host:
            _fn = _m(_fn)
        globals()[_name] = _fn
