"""CVD: strict loading of the released sync module (manifest, meta device), the epi module's locality and bias,
zeroed outputs = single-view CameraCtrl, pairings, exact NFE, bias builds and bytes, split calls, the nodes."""
import copy
import json
import math
import os

import pytest
import torch

from consistent_video_kit import host
from consistent_video_kit.camera.epipolar import epipolar_bias
from consistent_video_kit.models import cvd
from consistent_video_kit.models.checkpoint import CheckpointError
from consistent_video_kit.nodes.camera import CVK_CameraTrajectory
from consistent_video_kit.nodes.cameractrl import CVK_CameraCtrlLoader
from consistent_video_kit.nodes.common import CVKInputError
from consistent_video_kit.nodes.cvd import CVK_CVDSyncLoader, CVK_EpipolarSyncSampler, CVK_ViewGrid
from consistent_video_kit.samplers import epipolar_sync as es
from consistent_video_kit.samplers.guidance import Guided
from test_cameractrl import full_size_v3_unet
from test_loaders import MANIFESTS, needs_manifests

TINY_CC, TINY_SYNC = "tiny CameraCtrl (untrained demo)", cvd.TINY_NAME


@pytest.fixture(scope="module")
def models(tiny_animatediff):
    cam = CVK_CameraCtrlLoader().load(tiny_animatediff, TINY_CC, 1.0)[0]
    return cam, CVK_CVDSyncLoader().load(cam, TINY_SYNC)[0]


def circle(views, frames=4, size=64):
    return CVK_CameraTrajectory().make("circle", views, frames, 0.5, 1.0, 0.0, size, size)[0]


def run(model, camera, **kw):
    args = dict(prompt="a cat", negative_prompt="", seed=0, steps=3, cfg=0.0, multistep=0, accumulate_step=0,
                views_per_batch=0) | kw
    return CVK_EpipolarSyncSampler().sample(model, camera, **args)[0]["samples"]


# ---------------------------------------------------------------- the released file

@needs_manifests
def test_released_manifest_matches_strictly():
    with open(os.path.join(MANIFESTS, "cvd_sync_module.json")) as f:
        shapes = json.load(f)["tensors"]
    sd = {f"unet_trainable_dict/{k}": torch.empty(s, device="meta") for k, s in shapes.items()}
    unet = full_size_v3_unet()
    sync, matched = cvd.match_file(sd, unet, "CVD.ckpt")
    assert len(sync.slots) == 20 and len(matched) == 520 == len(sync.state_dict())
    assert sum(p.numel() for p in sync.parameters()) == 417_137_600            # the manifest's n_elements
    missing = dict(sd)
    missing.pop("unet_trainable_dict/up_blocks.3.epi_modules.2.epi_transformer.proj_out.bias")
    with pytest.raises(CheckpointError, match=r"sync module: the file does not match the model.*1 missing keys: "
                                              r"epi\.up_blocks_3_epi_modules_2\.epi_transformer\.proj_out\.bias"):
        cvd.match_file(missing, unet, "CVD.ckpt")
    coords = dict(sd, **{"unet_trainable_dict/down_blocks.0.epi_modules.0.epi_transformer.transformer_blocks.0"
                         ".attention_blocks.0.pos_encoder.coords": torch.empty(64, 64, 3, device="meta")})
    assert cvd.match_file(coords, unet, "CVD.ckpt")[1].keys() == matched.keys()   # rebuilt buffers are ignored


def test_a_file_that_is_no_sync_module_is_refused(tiny_animatediff, tmp_path):
    from cvk_testkit import tiny_files as tf
    tf.write_cameractrl(str(tmp_path / "CameraCtrl.ckpt"), tiny_animatediff.unet, "flat")
    with pytest.raises(CheckpointError, match=r"'CameraCtrl.ckpt' is not a CVD sync module"):
        cvd.load_sync(str(tmp_path / "CameraCtrl.ckpt"), tiny_animatediff.unet)


def test_tiny_file_round_trip(models, tmp_path, monkeypatch):
    cam, _ = models
    ref = cvd.tiny_sync(cam.unet, seed=77)
    (tmp_path / "cvd").mkdir()
    torch.save({"epoch": 1, "global_step": 5, "unet_trainable_dict": {
        k.replace("epi.", "").replace("_epi_modules_", ".epi_modules.").replace("down_blocks_", "down_blocks.")
         .replace("up_blocks_", "up_blocks."): v for k, v in ref.state_dict().items()},
        "optimizer_state_dict": {"state": {}, "param_groups": []}}, tmp_path / "cvd" / "CVD.ckpt")
    monkeypatch.setenv(host.MODELS_DIR_ENV, str(tmp_path))
    m = CVK_CVDSyncLoader().load(cam, "CVD.ckpt")[0]
    for k, v in ref.state_dict().items():
        assert torch.equal(m.sync.module.state_dict()[k], v), k


# ---------------------------------------------------------------- the epi module itself

def epi_inputs(C=32, V=3, Fr=2, h=4, w=4, halves=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(halves * V * Fr, C, h, w, generator=g, dtype=torch.float64)
    bias = -5 * torch.rand(V, Fr, 1, h * w, h * w, generator=g, dtype=torch.float64)
    return x, bias


@pytest.mark.parametrize("partner", [[1, 0, 3, 2], [1, 2, 0]], ids=["pairs", "3-cycle"])
def test_each_frame_attends_to_the_same_frame_of_its_partner_only(partner):
    """At an epi module's output, a video's frame depends on that frame of itself and of its partner, and of
    nothing else: no other frame, no other view, no other CFG half. (In a directed 3-cycle the block's second
    attention also reaches the partner's partner: the third view of the cycle.)"""
    epi = cvd.EpiModule(32).double()
    with torch.no_grad():
        for p in epi.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()), dtype=p.dtype) * 0.2)
    V, Fr, halves = len(partner), 2, 2
    partner = torch.tensor(partner)
    x, bias = epi_inputs(V=V, Fr=Fr, halves=halves)
    out = epi.epi_transformer(x, halves, Fr, partner, bias)
    row = lambda h, v, f: (h * V + v) * Fr + f  # noqa: E731
    h, v, f = 1, 0, 1                                          # watch this row
    reach = {v, int(partner[v]), int(partner[partner[v]])}     # pairs: {v, p}; 3-cycle: all three
    for hh in range(halves):
        for u in range(V):
            for k in range(Fr):
                x2 = x.clone()
                x2[row(hh, u, k)] += torch.randn_like(x2[row(hh, u, k)])
                changed = not torch.equal(epi.epi_transformer(x2, halves, Fr, partner, bias)[row(h, v, f)],
                                          out[row(h, v, f)])
                assert changed == ((hh, k) == (h, f) and u in reach), (hh, u, k)


def test_the_bias_reaches_attention_once_per_level_and_is_the_epipolar_bias(models, monkeypatch):
    _, sync_model = models
    seen = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        seen.append(attn_mask)
        return real(q, k, v, attn_mask=attn_mask, **kw)
    monkeypatch.setattr(cvd.F, "scaled_dot_product_attention", spy)
    partners = []
    real_epi = cvd._EpiTransformer.forward
    monkeypatch.setattr(cvd._EpiTransformer, "forward",
                        lambda self, x, halves, frames, partner, bias: partners.append(partner.tolist())
                        or real_epi(self, x, halves, frames, partner, bias))
    cam = circle(2)
    run(sync_model, cam, steps=1)
    assert partners and all(p == [1, 0] for p in partners)        # each view attends to the other
    st = sync_model.sync.state
    assert st.builds == len(sync_model.unet.down_blocks)          # one build per level for the one pairing
    levels = {m.shape[-1]: m for m in seen if m is not None}     # N = h·w per level (CameraCtrl's have no mask)
    for N, mask in levels.items():
        assert mask.stride(1) == 0 and mask.shape[1] == 8          # every head sees one bias: no per-head copy
        side = int(math.isqrt(N))
        for v in range(2):
            want = epipolar_bias(cam.K[v], cam.c2w[v], cam.K[1 - v], cam.c2w[1 - v], side, side, (64, 64),
                                 theta=st.theta)
            got = mask[v * cam.frames:(v + 1) * cam.frames, 0]
            assert torch.allclose(got, want, atol=1e-5), (N, v)


def test_zeroed_outputs_give_single_view_cameractrl(models):
    """With every epi module's proj_out zeroed, each view's video is the single-view CameraCtrl video of that view
    (same noise: view v's initial noise is row v of the batch)."""
    cam_model = copy.deepcopy(models[0])                          # in float64: batch size changes no bit
    for part in (cam_model.unet_part, cam_model.camera.part):
        part.module.double()
    sync = cvd.tiny_sync(cam_model.unet)
    with torch.no_grad():
        for epi in sync.epi.values():
            epi.epi_transformer.proj_out.weight.zero_(), epi.epi_transformer.proj_out.bias.zero_()
    part, control = cvd.patch_unet(cam_model.unet_part, host.ModelPart(sync, "diffusion", "zeroed"))
    zeroed = cam_model.with_sync(part, control)
    cam = circle(2)
    both = run(zeroed, cam, cfg=7.5)
    # the single-view CameraCtrl run of view v, from the batch's noise row v
    from consistent_video_kit.samplers.noise import generator
    shape = cam_model.latent_shape(cam.frames, 64, 64, batch=2)
    noise = torch.randn(shape, generator=generator(0, "initial"))
    from consistent_video_kit.samplers.guidance import guidance
    from consistent_video_kit.samplers.sampling import sample_ddim
    from consistent_video_kit.samplers.vp import to_vp
    from consistent_video_kit.camera.rays import plucker
    sig = cam_model.sigmas(3)
    c, u = cam_model.encode_prompt_pair("a cat", "")
    with cam_model.loaded():
        for v in range(2):
            feats = cam_model.camera.encode(plucker(cam.K[v], cam.c2w[v], 64, 64).transpose(0, 1)[None].float())
            g = guidance(cam_model.denoiser(), dict(c, camera=feats), dict(u, camera=feats), 7.5, "cfg")
            x = sample_ddim(g, noise[v:v + 1] * math.sqrt(1 + float(sig[0]) ** 2), sig)
            assert torch.allclose(to_vp(x, float(sig[-1])), both[v:v + 1], rtol=1e-6, atol=1e-6), v


# ---------------------------------------------------------------- the loop (stand-in models)

class StandIn:
    """A guided model where each view is pulled toward its partner: x0 = 0.5·x + 0.1·x[partner]; counts calls."""

    def __init__(self):
        self.calls, self.batches, self.pairings = 0, [], []

    def __call__(self, pairing, theta):
        self.calls += 1
        self.pairings.append(pairing)

        def call(x, sigma, views):
            self.batches.append(list(views))
            pos = {v: i for i, v in enumerate(views)}
            partner = torch.tensor([pos[pairing.partner[v]] for v in views])
            x0 = 0.5 * x + 0.1 * x[partner]
            return Guided(x0, (x - x0) / sigma)
        return call


@pytest.mark.parametrize("views,M,A", [(2, 1, 1), (3, 3, 1), (4, 3, 1), (5, 6, 2), (6, 6, 2), (7, 2, 3)])
def test_exact_nfe_and_every_view_partnered(views, M, A):
    steps = 25 if (views, M, A) == (4, 3, 1) else 5
    model = StandIn()
    sig = torch.linspace(10, 0, steps + 1, dtype=torch.float64)
    es.sample_sync(model, torch.randn(views, 2, 1, 2, 2), sig, M, A, seed=3)
    assert model.calls == es.nfe(steps, M, A) == (steps - 1) * M * A + A
    if (views, M, A) == (4, 3, 1):
        assert model.calls == 73
    for p in model.pairings:
        assert sorted(p.partner) == list(range(views)) and all(p.partner[v] != v for v in range(views))
        assert sorted(len(g) for g in p.groups) == [2] * (views // 2 - (views % 2)) + ([3] if views % 2 else [])


def test_same_seed_same_result_and_split_calls_equal_the_whole_call():
    sig = torch.linspace(10, 0, 6, dtype=torch.float64)
    x = torch.randn(5, 2, 1, 2, 2, dtype=torch.float64)
    whole = es.sample_sync(StandIn(), x, sig, 3, 2, 0, seed=9)
    assert torch.equal(whole, es.sample_sync(StandIn(), x, sig, 3, 2, 0, seed=9))
    assert not torch.equal(whole, es.sample_sync(StandIn(), x, sig, 3, 2, 0, seed=10))
    model = StandIn()
    split = es.sample_sync(model, x, sig, 3, 2, 3, seed=9)
    assert torch.equal(split, whole)
    assert all(len(b) <= 3 for b in model.batches) and len(model.batches) > model.calls      # really split
    with pytest.raises(ValueError, match="cannot keep a pairing group of 3 views together"):
        es.sample_sync(StandIn(), x, sig, 1, 1, 2, seed=9)


def test_renoise_goes_back_to_the_step_level():
    """With M = 2 the first pass's result is re-noised from σ' to σ: x = x' + sqrt(σ² − σ'²)·ξ (ξ from its own
    generator), which a stand-in that records its inputs sees as the second pass's input."""
    from consistent_video_kit.samplers.noise import generator, randn
    seen = []

    def model_for(pairing, theta):
        def call(x, sigma, views):
            seen.append((x.clone(), sigma))
            return Guided(0 * x, x / sigma)
        return call
    sig = torch.tensor([4.0, 1.0, 0.0], dtype=torch.float64)
    x = torch.randn(2, 1, 1, 2, 2, dtype=torch.float64)
    es.sample_sync(model_for, x, sig, 2, 1, seed=5)
    after_first = seen[0][0] / 4.0 * 1.0                       # x0 = 0, eps = x/σ: x' = σ'·x/σ
    xi = randn(x.shape, generator(5, "cvd-renoise"), dtype=torch.float64)
    assert seen[1][1] == 4.0 and torch.allclose(seen[1][0], after_first + math.sqrt(16 - 1) * xi)
    assert [s for _, s in seen] == [4.0, 4.0, 1.0]             # the last step once


# ---------------------------------------------------------------- the nodes on the tiny model

def test_views_two_to_six_run_and_repeat_with_the_seed(models):
    _, m = models
    for views in (2, 3, 4, 5, 6):
        out = run(m, circle(views), steps=2)
        assert out.shape == (views, 4, 4, 8, 8) and torch.isfinite(out).all()
    cam = circle(4)
    assert torch.equal(run(m, cam, steps=2), run(m, cam, steps=2))


def test_bias_builds_and_bytes(models, monkeypatch):
    _, m = models
    drawn = []
    real = es.draw_pairing
    monkeypatch.setattr(es, "draw_pairing", lambda v, g: drawn.append(real(v, g)) or drawn[-1])
    st = m.sync.state
    cam = circle(4, frames=4)
    run(m, cam, steps=3)
    changes = sum(1 for i, p in enumerate(drawn) if i == 0 or p != drawn[i - 1])
    levels = len(m.unet.down_blocks)
    assert st.builds == levels * changes and changes >= 2
    # held after a call: one pairing's biases at every level, Σ V·F·N²·itemsize
    held = {}
    with m.loaded(), m.sync.cameras(cam.K, cam.c2w, (64, 64), torch.device("cpu")):
        with m.sync.call(drawn[0], 0.3, [0, 1, 2, 3]):
            for level, (h, w) in enumerate([(8, 8), (4, 4)]):
                st.bias(level, h, w, torch.float32, torch.device("cpu"))
        held = st.held_bytes()
    want = sum(4 * cam.frames * (n * n) ** 2 * 4 for n in (8, 4))
    assert abs(held - want) <= 0.05 * want


def test_split_calls_equal_the_whole_call_on_the_network_in_float64(models):
    _, m = models
    m64 = copy.deepcopy(m)
    for part in (m64.unet_part, m64.camera.part, m64.sync.part):
        part.module.double()
    cam = circle(4)
    whole = run(m64, cam, steps=2, multistep=2)
    assert torch.equal(run(m64, cam, steps=2, multistep=2, views_per_batch=2), whole)


def test_node_errors_and_the_view_grid(models, tiny_animatediff):
    cam_model, m = models
    cases = [
        (lambda: CVK_CVDSyncLoader().load(tiny_animatediff, TINY_SYNC), "CVK_CVDSyncLoader: input 'model'",
         "a model with CameraCtrl"),
        (lambda: CVK_CVDSyncLoader().load(m, TINY_SYNC), "CVK_CVDSyncLoader: input 'model'", "without CVD sync"),
        (lambda: run(cam_model, circle(2)), "CVK_EpipolarSyncSampler: input 'model'", "with CameraCtrl and CVD"),
        (lambda: run(m, CVK_CameraTrajectory().make("pan left", 1, 4, 0.5, 1, 0, 64, 64)[0]),
         "CVK_EpipolarSyncSampler: input 'camera'", "at least 2 views"),
        (lambda: run(m, circle(3), views_per_batch=2), "CVK_EpipolarSyncSampler: input 'views_per_batch' got 2",
         "at least 3 for 3 views"),
        (lambda: run(m, circle(2), prompt="a\nb\nc"), "CVK_EpipolarSyncSampler: input 'prompt' got '3 lines'",
         "at most 2 lines"),
        (lambda: run(m, circle(2, frames=17)), "CVK_EpipolarSyncSampler: input 'camera'", "at most 16 frames"),
    ]
    for call, start, words in cases:
        with pytest.raises(CVKInputError) as e:
            call()
        assert str(e.value).startswith(start) and words in str(e.value), str(e.value)
    frames = torch.rand(3 * 4, 8, 6, 3)
    (grid,) = CVK_ViewGrid().grid(frames, 3)
    assert grid.shape == (4, 8, 18, 3)
    for v in range(3):
        for f in range(4):
            assert torch.equal(grid[f, :, 6 * v:6 * (v + 1)], frames[v * 4 + f])
    with pytest.raises(CVKInputError, match="a number that divides the 12 frames"):
        CVK_ViewGrid().grid(frames, 5)
