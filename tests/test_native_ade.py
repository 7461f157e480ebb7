"""The native adapter on SD1.5 + AnimateDiff loaded as artists load them — ComfyUI's Load Checkpoint and
AnimateDiff-Evolved loading the motion module natively — against the pack's own AnimateDiff bundle on the same files
(``cvk_testkit/native_ade_checks.py``, in ComfyUI's Python; real-size files, since ADE builds SD1.5's widths only)."""
import os

import pytest

from cvk_testkit.real_host import MARKS, run_checks

pytestmark = MARKS


@pytest.fixture(scope="module")
def checks(real_size_models, monkeypatch_module):
    if not os.environ.get("COMFYUI_ADE_PATH"):
        pytest.fail("COMFYUI_ADE_PATH is not set: build the host with ../shared/tools/comfyui-host.sh, which adds ADE")
    monkeypatch_module.setenv("CVK_REAL_SIZE_DIR", str(real_size_models))
    return run_checks("cvk_testkit.native_ade_checks", "ade_eps_parity", "ade_videoguide")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_native_eps_through_ade_equals_the_packs_bundle(checks):
    """Max relative difference ≤ 1e-4 in float32 at t = 999, 500, 20 (measured: about 1e-6), on an ε model laid out
    as frames in the batch, with ComfyUI's timesteps the integer ones; the σ tables (ADE's autoselected
    sqrt_linear and the pack's AnimateDiff scheduler config) agree to float32 rounding."""
    parity = checks["ade_eps_parity"]
    assert "error" not in parity, parity["error"]
    assert parity["native_seen"] == {"kind": "eps", "layout": "frames_in_batch", "x_shape": [1, 4, 4, 8, 8]}
    assert parity["native_timesteps"] == [999.0, 500.0, 20.0]
    assert parity["tables_max_rel"] < 1e-4
    for t, row in parity["rows"].items():
        assert row["finite"] and row["std"] > 0.1, (t, row)
        assert row["max_rel"] <= 1e-4, (t, row)


def test_the_motion_module_is_in_play(checks):
    """Without ADE the same checkpoint is far from the bundle: the comparison sees the motion module."""
    parity = checks["ade_eps_parity"]
    assert "error" not in parity, parity["error"]
    assert parity["without_motion_module_max_rel"] > 100 * parity["rows"]["500"]["max_rel"]
    assert parity["without_motion_module_max_rel"] > 1e-2


def test_native_videoguide_with_ade_guides_on_the_same_network(checks):
    """Main = checkpoint + ADE; guide = the plain checkpoint MODEL (same network, no motion module) or the checkpoint
    with ADE again: with weight 0 and filter none the run is core euler bit for bit (the main model's calls keep its
    motion module while the guide's are swapped out); the plain guide's call is the bare network exactly (ComfyUI's
    own sampling function, not ADE's, and no motion module), not the network with it; weight 0.5 changes the
    result; a core run after them is the first one again (nothing left injected)."""
    vg = checks["ade_videoguide"]
    assert "error" not in vg, vg["error"]
    assert vg["plain_guide_w0_equal"] and vg["ade_guide_w0_equal"] and vg["core_again_equal"]
    assert vg["plain_guide_calls"] == 1 and vg["plain_guide_batch"] == [8, 4, 8, 8]      # CFG: 2 × 4 frames
    assert vg["plain_guide_vs_bare_max_rel"] <= 1e-6
    assert vg["plain_guide_vs_with_motion_module_max_rel"] > 1e-2
    assert vg["ade_guide_w_finite"] and vg["ade_guide_w_diff"] > 1e-3
