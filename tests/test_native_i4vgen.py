"""NI-VSDS Animator (CVK native) (``nodes/native_i4vgen.py``): the step-size parsing runs everywhere; the node runs
inside ComfyUI under its Python (``cvk_testkit/native_i4vgen_checks.py``, the mechanism of ``test_native.py``) when
COMFYUI_PATH is set (marker ``comfyui``), on the tiny SD1.5-like ε model built from ComfyUI's own classes."""
import importlib

import pytest

from cvk_testkit import load_pack
from cvk_testkit.real_host import MARKS, run_checks

real_host = MARKS


def module():
    load_pack()
    return importlib.import_module("consistent_video_kit.nodes.native_i4vgen")


# ---------------------------------------------------------------- everywhere

def test_node_inputs_and_names():
    m = module()
    node = m.CVK_NIVSDSNative
    assert list(node.INPUT_TYPES()["required"]) == ["model", "positive", "negative", "anchor_latent", "frames", "steps",
                                                    "p_ni_vsds", "step_sizes", "cfg", "scheduler", "seed"]
    assert node.INPUT_TYPES()["required"]["model"][0] == "MODEL" and node.RETURN_TYPES == ("LATENT",)
    assert node.INPUT_TYPES()["required"]["cfg"][1]["default"] == 7.5
    assert m.NODE_DISPLAY_NAME_MAPPINGS == {"CVK_NIVSDSNative": "NI-VSDS Animator (CVK native)"}
    assert m.NODE_CLASS_MAPPINGS == {"CVK_NIVSDSNative": node}


def test_step_sizes_presets_and_lists():
    parse = module().parse_step_sizes
    assert parse("animatediff", 5) == [10.0, 10.0, 10.0, 1.0, 1.0]
    assert parse(" AnimateDiff ", 2) == [10.0, 10.0]
    assert parse("constant", 3) == [1.0, 1.0, 1.0]
    assert parse("animatediff (10, 10, 10, then 1)", 4) == [10.0, 10.0, 10.0, 1.0]   # the pack node's label
    assert parse("10, 10, 10, 1, 5", 4) == [10.0, 10.0, 10.0, 1.0]                   # extra values ignored
    assert parse("0.5,2", 2) == [0.5, 2.0]
    for bad, words in (("10, ten", "comma-separated list"), ("", "comma-separated list"), ("10,,1", "comma-separated"),
                       ("10, 10", "at least 3 step sizes"), ("1, -1, 1", "above 0"), ("1, nan, 1", "finite"),
                       (None, "preset name")):
        with pytest.raises(ValueError, match=words):
            parse(bad, 3)


# ---------------------------------------------------------------- inside ComfyUI

@pytest.fixture(scope="module")
def checks():
    return run_checks("cvk_testkit.native_i4vgen_checks")


def result(checks, name):
    c = checks[name]
    assert "error" not in c, c.get("error")
    return c


def test_node_equals_the_packs_nivsds_and_the_official_eps_form(checks):
    """Tiny SD1.5-like ε model, 3 frames, 6 steps (ddim_uniform), p 0.5 → 4 iterations, CFG 7.5 (ComfyUI's guider):
    the node's LATENT [frames, C, h, w] equals bit for bit the pack's own ``samplers.i4vgen.animate`` (guidance scale
    1) on the same NativeDenoiser under run_native, and, within 1e-5 of its magnitude, the official ε form
    z ← z − η·(1 − ᾱ)·(ε̂ − ε*) computed by hand from the diffusion model called directly (CFG on ε, z in the model's
    space ×0.18215); the anchor moved."""
    c = result(checks, "nivsds_node")
    assert c["shape"] == [3, 4, 8, 8] and c["finite"] and c["moved"] > 1e-2 * c["scale"]
    assert c["vs_pack"] == 0.0, c
    assert c["vs_by_hand"] <= 1e-5 * c["hand_scale"], c


def test_node_costs_one_model_call_per_iteration_as_the_packs_nivsds(checks):
    """int(steps·p) + 1 = 4 iterations: 4 adapter calls (cond None: the guider's CFG), as the pack's NI-VSDS on the
    same denoiser, and 4 network calls, each of both CFG halves of the 3 frames in one batch of 6."""
    c = result(checks, "nivsds_node")
    assert c["iterations"] == 4
    assert c["adapter_calls"] == c["pack_adapter_calls"] == 4 and c["adapter_conds"] == ["None"]
    assert c["net_calls"] == 4 and c["batches"] == [6]


def test_step_size_lists_seeds_and_a_weight_patch(checks):
    """'10, 10, 10, 1, 5' equals the animatediff preset (4 iterations), '1,1,1,1' equals 'constant' (which differs);
    the same seed repeats and another changes the output; a LoRA-like ``add_patches`` on a clone changes it and the
    unpatched model gives its own output again."""
    c = result(checks, "nivsds_node")
    assert c["list_vs_preset"] == 0.0 and c["ones_vs_constant"] == 0.0 and c["constant_vs_preset"] > 1e-2 * c["scale"]
    assert c["same_seed"] == 0.0 and c["other_seed"] > 1e-2 * c["scale"]
    assert c["lora_key"] == "diffusion_model.out.2.weight" and c["lora"] > 1e-4 * c["scale"] and c["plain_again"] == 0.0, c


@pytest.mark.parametrize("case, name, words", [
    ("batch_anchor", "anchor_latent", "a tensor of shape (2, 4, 8, 8); expected one picture's latent [1, 4, h, w]"),
    ("5d_anchor", "anchor_latent", "a tensor of shape (1, 4, 1, 8, 8); expected one picture's latent"),
    ("wrong_channels", "anchor_latent", "[1, 4, h, w]"),
    ("no_samples", "anchor_latent", "a LATENT dict with a 'samples' tensor"),
    ("steps_words", "step_sizes", "got '10, ten, 1'; expected a preset (animatediff, constant) or a comma-separated"),
    ("steps_short", "step_sizes", "at least 4 step sizes"),
    ("steps_negative", "step_sizes", "finite numbers above 0"),
    ("steps_empty", "step_sizes", "comma-separated list"),
    ("scheduler", "scheduler", "no_such_scheduler"),
    ("not_a_model", "model", "a native MODEL"),
    ("video_model", "model", "'WAN21': a video model with its own 5-D latent"),
])
def test_bad_inputs_name_the_input(checks, case, name, words):
    r = result(checks, "nivsds_bad_inputs")[case]
    assert r.get("input") == name, r
    assert r["message"].startswith(f"CVK_NIVSDSNative: input '{name}' got ") and words in r["message"], r


for _name, _fn in list(globals().items()):
    if _name.startswith("test_") and "checks" in _fn.__code__.co_varnames[:_fn.__code__.co_argcount]:
        for _m in real_host:
            _fn = _m(_fn)
        globals()[_name] = _fn
