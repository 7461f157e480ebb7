"""VideoGuide Sampler (CVK native) — ``nodes/native_videoguide.py`` — against ComfyUI's own sampling, in ComfyUI's
Python (``cvk_testkit/native_videoguide_checks.py``) when COMFYUI_PATH is set (marker ``comfyui``): the tiny SD1.5-like
ε model of ``native_checks`` as the main model and a second one (other weights, its own conds) as the guide."""
import json

import pytest

from cvk_testkit import load_pack
from cvk_testkit.real_host import MARKS, run_checks

real_host = MARKS


@pytest.fixture(scope="module")
def checks():
    found = run_checks("cvk_testkit.native_videoguide_checks")
    for c in found.values():
        assert "error" not in c, c.get("error")
    print("\n" + json.dumps(found))
    c = found["videoguide_native"]
    c["flow"] = found["videoguide_native_flow"]
    return c


def test_weight_zero_and_no_filter_is_core_euler_bit_for_bit(checks):
    """Guide weight 0, filter none, 2 guided steps: the node's SAMPLER under the main model's CFGGuider (CFG 6), as
    SamplerCustomAdvanced runs it, equals core ``euler`` (and ``ddim``) with the same NOISE (``prepare_noise``) and
    SIGMAS exactly: the step is ComfyUI's euler form and the blend adds exactly 0."""
    assert checks["w0_equal"] and checks["w0_max_diff"] == 0.0 and checks["scale"] > 1, checks
    assert checks["ddim_equal"]


def test_model_calls_are_the_pack_videoguide_count_and_the_guide_is_released_after_the_guided_steps(checks):
    """steps + guided·guide_steps evaluations: 6 main-model calls and 2·3 guide-model calls, each with both CFG halves
    of the 3 frames in one batch (6); both models loaded through load_models_gpu; the guide's cleanup_models runs after
    the 2nd main call (the end of the guided steps), the main guider's at the end."""
    n = checks["nfe"]
    assert n["main"] == 6 and n["guide"] == 2 * 3, n
    assert n["main_batches"] == [6] and n["guide_batches"] == [6], n
    assert n["released_after_main_calls"] == [2, 6] and n["loads"] == 2, n


def test_guide_weight_and_filter_change_the_result_and_a_run_repeats(checks):
    assert checks["weight_finite"] and checks["weight_diff"] > 1e-3 * checks["scale"], checks
    assert checks["filter_diff"] > 1e-3 * checks["scale"], checks
    assert checks["repeat_equal"]
    assert checks["timestep_finite"] and checks["timestep_vs_sigma"] == 0.0   # two SD1.5 tables: the same levels


def test_bad_inputs_are_refused_by_name(checks):
    r = checks["refused"]
    assert r["guide_not_native"].startswith("refused: ") and "input 'guide'" in r["guide_not_native"], r
    assert "input 'guide_steps' got 7" in r["guide_steps_over_grid"], r
    assert "input 'guided_steps' got 9" in r["guided_over_steps"], r
    assert "input 'guided_steps' got 6" in r["grid_too_low"] and "guide sub-grid" in r["grid_too_low"], r


def test_self_guidance_on_the_main_model_or_a_clone_and_a_lora_clone_is_refused(checks):
    """The guide is the main MODEL itself, or a clone of it (own wrapper, the same weights): weight 0 is still core
    euler exactly, weight 0.5 runs (match_by timestep is the same run: one network, one table), and the network's
    current_patcher is left as ComfyUI leaves it; a clone with another weight patch (LoRA) is refused by name."""
    s = checks["self"]
    for key in ("same", "clone"):
        r = s[key]
        assert r["w0_equal"] and r["w_finite"] and r["w_diff"] > 1e-3 and r["timestep_equal"], r
        assert r["current_patcher_cleared"], r
    assert s["lora"].startswith("refused: ") and "input 'guide'" in s["lora"] and "weight patches" in s["lora"], s


def test_flow_model_weight_zero_equals_core_euler_within_rounding(checks):
    """Tiny Wan 2.1 (flow, 5-D): VideoGuide's x̄0 + σ'·d in σ-space (the start σ is 1e9) equals core euler within
    1e-5 of the output's magnitude, as the adapter's plain euler does (test_native); weight 0.5 with the filter runs."""
    f = checks["flow"]
    assert f["shape"] == [1, 16, 3, 8, 8] and f["scale"] > 1
    assert f["w0_max_diff"] <= 1e-5 * f["scale"], f
    assert f["w_finite"] and f["w_diff"] > 1e-3 * f["scale"], f


for _name, _fn in list(globals().items()):
    if _name.startswith("test_") and "checks" in _fn.__code__.co_varnames[:_fn.__code__.co_argcount]:
        for _m in real_host:
            _fn = _m(_fn)
        globals()[_name] = _fn


def test_node_inputs_reuse_videoguides_and_it_returns_a_sampler():
    load_pack()
    from consistent_video_kit.nodes import native_videoguide as nv
    from consistent_video_kit.nodes.videoguide import CVK_VideoGuideSampler
    node = nv.CVK_VideoGuideNativeSampler
    req = node.INPUT_TYPES()["required"]
    own = CVK_VideoGuideSampler.INPUT_TYPES()["required"]
    assert list(req) == ["sampler_name", "guide", "guide_positive", "guide_negative", "guided_steps", "guide_steps",
                         "guide_grid", "guide_weight", "guide_cfg", "filter", "filter_n", "filter_d_s", "filter_d_t",
                         "match_by", "seed"]
    for k in ("guided_steps", "guide_steps", "guide_grid", "guide_weight", "filter", "filter_n", "match_by"):
        assert req[k] == own[k]
    assert node.RETURN_TYPES == ("SAMPLER",)
    assert nv.NODE_DISPLAY_NAME_MAPPINGS == {"CVK_VideoGuideNativeSampler": "VideoGuide Sampler (CVK native)"}
