"""The pack's models under ComfyUI's own model management: ComfyUI's real ``comfy.model_management`` and
``comfy.model_patcher`` imported into one process under ComfyUI's Python (``cvk_testkit/comfy_checks.py``), no
server; runs when COMFYUI_PATH is set (marker ``comfyui``), like ``test_comfyui_host.py``. The server test of
``POST /free`` is in ``test_comfyui_host.py``."""

import pytest

from cvk_testkit.real_host import MARKS, run_checks

pytestmark = MARKS


@pytest.fixture(scope="module")
def checks():
    return run_checks("cvk_testkit.comfy_checks")


ROLES = ["scorer", "text_encoder", "unet", "vae"]


def result(checks, name):
    c = checks[name]
    assert "error" not in c, c.get("error")
    return c


def test_consecutive_nodes_load_each_part_once_and_move_nothing_back(checks):
    """I4VGen chain (Anchor Candidates → Selector → NI-VSDS Animator → Regenerate → Decode) then Text to Video →
    Decode: each part goes through ModelPatcher.load once, at its first use, and nothing is unloaded; ComfyUI's
    unload_all_models (what POST /free runs) unloads every part once and leaves none loaded; the next run loads
    them again and gives the same frames."""
    c = result(checks, "moves")
    assert c["i4vgen"] == {"load": {r: 1 for r in ROLES}, "unload": {}, "partial_unload": {}}
    assert c["t2v_decode"] == {"load": {}, "unload": {}, "partial_unload": {}}
    assert c["loaded_after_chains"] == ROLES
    assert c["unload_all"] == {"load": {}, "unload": {r: 1 for r in ROLES}, "partial_unload": {}}
    assert c["loaded_after_unload"] == []
    assert c["t2v_decode_after_unload"]["load"] == {"text_encoder": 1, "unet": 1, "vae": 1}
    assert c["loaded_after_rerun"] == ["text_encoder", "unet", "vae"] and c["rerun_max_diff"] == 0.0


def test_a_partial_load_gives_the_full_loads_output(checks):
    """With 40 % and 10 % of each part's weights loaded (ComfyUI's ModelPatcher picks the modules; the rest stream
    in per call), both chains give the full load's frames bit for bit; after an unload nothing streams; a fully
    loaded UNet that ComfyUI partially unloads computes the same output."""
    c = result(checks, "partial_equals_full")
    assert all(v == 0 for v in c["full_streamed"].values())
    for share in ("0.4", "0.1"):
        p = c[f"partial_{share}"]
        assert p["max_diff"] == 0.0
        assert all(p["lowvram"].values()) and all(0 <= v <= float(share) + 1e-9 for v in p["loaded_share"].values())
        assert 0 < p["loaded_share"]["unet"] and 0 < p["loaded_share"]["vae"]
        assert all(0 < p["streamed"][r] <= p["modules"][r] for r in ROLES) and all(p["weights_back"].values())
    assert all(v == 0 for v in c["after_unload_streamed"].values())
    u = c["partially_unloaded"]
    assert u["freed_share"] > 0.3 and u["streamed"] > 0 and u["max_diff"] == 0.0


def test_a_partial_load_to_another_device_computes_there(checks):
    """Partial loads to the meta device (it mixes with no CPU tensor, as a GPU): every part computes with some
    layers moved and the others streamed from the CPU, outputs on the load device, and the streamed layers'
    own tensors are back in place after the calls."""
    c = result(checks, "meta_device")
    assert c["outputs"] == {"unet": ["meta", [2, 4, 3, 8, 8]], "text": ["meta", [1, 77, 32]],
                            "decode": ["meta", [2, 3, 64, 64]], "encode": ["meta", [1, 4, 8, 8]],
                            "scorer_text": ["meta", [1, 32]], "scorer_image": ["meta", [1, 16]]}
    for r in ROLES:
        p = c["parts"][r]
        assert p["on_cpu"] > 0 and p["streamed"] > 0 and p["tensors_restored"], (r, p)
    assert c["parts"]["unet"]["on_meta"] > 0 and c["parts"]["vae"]["on_meta"] > 0


def test_a_patched_clone_shares_the_weights_and_leaves_its_source_alone(checks):
    """A clone of the UNet part with an object patch (its last layer doubled) and the original, loaded in turn:
    ComfyUI sees clones (one held module, the clone's patcher a child of the source's, one loaded model), each
    computes its own function every time, and loading the source puts the original layer back."""
    c = result(checks, "clones")
    assert c["same_held"] and c["is_clone"] and c["parent"] and c["loaded"] == ["CVK_UNetMotionModel"]
    assert c["orig_again"] == 0.0 and c["patched_again"] == 0.0 and c["patched_vs_double"] == 0.0
    assert c["orig_vs_patched"] > 0.1
    assert c["while_patched"] == "Doubled" and c["restored"]
