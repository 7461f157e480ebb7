"""CameraCtrl: strict loading of the released layouts (manifest, meta device) and of tiny files in both
layouts, the injection h' = h + s·(W_m(h + p) + b_m) at the first temporal attention of every motion module
(checked token by token against the motion module's own input), strength 0 = plain AnimateDiff bit for bit,
the input model untouched, the nodes and their errors."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

from cvk_testkit import tiny_files as tf
from consistent_video_kit import host
from consistent_video_kit.models import cameractrl as ctl
from consistent_video_kit.models import loaders
from consistent_video_kit.models.checkpoint import CheckpointError, empty_params
from consistent_video_kit.nodes.camera import CVK_CameraTrajectory
from consistent_video_kit.nodes.cameractrl import CVK_CameraCtrlLoader, CVK_CameraCtrlSampler
from consistent_video_kit.nodes.common import CVKInputError
from consistent_video_kit.nodes.video import CVK_TextToVideo
from test_loaders import MANIFESTS, needs_manifests

TINY = ctl.TINY_NAME


def orbit(frames=8, size=64):
    return CVK_CameraTrajectory().make("orbit left", 1, frames, 1.0, 1.0, 0.0, size, size)[0]


def sample(model, camera, **kw):
    args = dict(view=0, prompt="a cat", negative_prompt="", seed=0, steps=3, cfg=7.5, sampler="ddim") | kw
    return CVK_CameraCtrlSampler().sample(model, camera, **args)[0]["samples"]


# ---------------------------------------------------------------- the released layouts (meta device)

def full_size_v3_unet():
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel
    cfg = loaders.read_json(os.path.join(loaders.CONFIG_ROOT, "animatediff", "motion_adapter_v3", "config.json"))
    unet2d = loaders._build(UNet2DConditionModel,
                            loaders.read_json(os.path.join(loaders.CONFIG_ROOT, "sd15", "unet", "config.json")))
    with empty_params():
        return UNetMotionModel.from_unet2d(unet2d, loaders._build(MotionAdapter, cfg), load_weights=False)


@needs_manifests
def test_released_manifest_matches_strictly_in_both_layouts():
    with open(os.path.join(MANIFESTS, "cameractrl_animatediff_v3.json")) as f:
        shapes = json.load(f)["tensors"]
    released = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    assert len(released) == 190
    unet = full_size_v3_unet()
    cc, matched = ctl.match_file(released, unet, "CameraCtrl.ckpt")
    assert cc.pose_encoder.channels == (320, 640, 1280, 1280) and cc.pose_encoder.rows == 16
    assert len(cc.slots) == 20 and {lv for _, lv in cc.slots} == {0, 1, 2, 3}
    assert set(matched) == set(cc.state_dict()) and len(matched) == 190          # every key, nothing left over
    n_enc = sum(p.numel() for p in cc.pose_encoder.parameters())
    n_merge = sum(p.numel() for p in cc.merges.parameters())
    print(f"\npose encoder {n_enc:,} parameters (+ 8 positional tables), merges {n_merge:,}")
    size = lambda prefix: sum(torch.Size(v).numel() for k, v in shapes.items() if k.startswith(prefix))  # noqa: E731
    assert n_merge == size("attention_processor_state_dict/") == 18_961_600
    assert n_enc + sum(b.numel() for b in cc.pose_encoder.buffers()) == size("pose_encoder_state_dict/")
    assert n_enc + n_merge + sum(b.numel() for b in cc.buffers()) == 218_336_640   # the manifest's n_elements
    flat = {k.split("/", 1)[1]: v for k, v in released.items()}                  # AnimateDiff-Evolved's pruned file
    assert ctl.match_file(flat, unet, "CameraCtrl_pruned.safetensors")[1].keys() == matched.keys()
    # the two-dict layout as the reader hands it over, with the training state on the ignore-list
    missing = dict(released)
    missing.pop("attention_processor_state_dict/up_blocks.3.motion_modules.2.temporal_transformer.transformer_blocks.0"
                ".attention_blocks.0.processor.qkv_merge.bias")
    with pytest.raises(CheckpointError, match=r"1 missing keys: up_blocks\.3\.motion_modules\.2\..*qkv_merge\.bias"):
        ctl.match_file(missing, unet, "CameraCtrl.ckpt")
    extra = dict(released, **{"pose_encoder_state_dict/encoder_extra.weight": torch.empty(3, device="meta")})
    with pytest.raises(CheckpointError, match=r"pose encoder: the file does not match the model.*1 unexpected keys: "
                                              r"encoder_extra\.weight"):
        ctl.match_file(extra, unet, "CameraCtrl.ckpt")


def test_a_v2_model_and_a_motion_module_file_are_refused(tmp_path):
    from diffusers import UNetMotionModel
    unet2d, _, _ = tf.tiny_sd_models()
    v2 = UNetMotionModel.from_unet2d(unet2d, tf.tiny_motion_adapter(True))
    with pytest.raises(ValueError, match="needs an AnimateDiff v3-layout motion module .*this model has one"):
        ctl.motion_attention_slots(v2)
    v3 = UNetMotionModel.from_unet2d(unet2d, tf.tiny_motion_adapter(False))
    mm = tf.write_motion_module(str(tmp_path / "mm.ckpt"), mid_block=False)
    with pytest.raises(CheckpointError, match=r"unexpected keys for a CameraCtrl file"):
        ctl.load_cameractrl(str(tmp_path / "mm.ckpt"), v3)
    assert mm is not None


# ---------------------------------------------------------------- tiny files, both layouts

@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_animatediff):
    d = tmp_path_factory.mktemp("models")
    (d / "cameractrl").mkdir()
    ref = tf.write_cameractrl(str(d / "cameractrl" / "CameraCtrl.ckpt"), tiny_animatediff.unet, "released")
    tf.write_cameractrl(str(d / "cameractrl" / "CameraCtrl_pruned.safetensors"), tiny_animatediff.unet, "flat")
    return d, ref


def test_both_layouts_load_the_same_weights_and_skip_the_training_state(files, tiny_animatediff, monkeypatch):
    d, ref = files
    read = []
    real = ctl.read_state_dict

    def spy(path, skip=(), nested=False):
        out = real(path, skip, nested)
        read.append(sorted({k.split("/")[0] for k in out}))
        return out
    monkeypatch.setattr(ctl, "read_state_dict", spy)
    a = ctl.load_cameractrl(str(d / "cameractrl" / "CameraCtrl.ckpt"), tiny_animatediff.unet)
    b = ctl.load_cameractrl(str(d / "cameractrl" / "CameraCtrl_pruned.safetensors"), tiny_animatediff.unet)
    assert read[0] == ["attention_processor_state_dict", "pose_encoder_state_dict"]   # no optimizer_state_dict
    for k, v in ref.state_dict().items():
        assert torch.equal(a.state_dict()[k], v) and torch.equal(b.state_dict()[k], v), k


def test_the_loader_node_reads_models_cameractrl(files, tiny_animatediff, monkeypatch):
    d, ref = files
    monkeypatch.setenv(host.MODELS_DIR_ENV, str(d))
    choices = CVK_CameraCtrlLoader.INPUT_TYPES()["required"]["cameractrl"][0]
    assert choices == [TINY, "CameraCtrl.ckpt", "CameraCtrl_pruned.safetensors"]
    m = CVK_CameraCtrlLoader().load(tiny_animatediff, "CameraCtrl.ckpt", 1.0)[0]
    assert torch.equal(m.camera.module.merges[ref.slots[0][0].replace(".", "_")].weight,
                       ref.merge(ref.slots[0][0]).weight)
    with pytest.raises(CVKInputError, match=r"input 'cameractrl' got 'gone.ckpt': model file 'gone.ckpt' not found"):
        CVK_CameraCtrlLoader().load(tiny_animatediff, "gone.ckpt", 1.0)


# ---------------------------------------------------------------- the injection

def test_injection_token_by_token(tiny_animatediff):
    """At every motion module's first temporal attention, the attention's own processor receives
    h + s·(W_m(h + p) + b_m), where p at token (sample b, row y, column x) and frame f is the pose feature
    [b, :, f, y, x] of the module's level (down block i: level i; up block i: level L−1−i)."""
    s = 0.7
    model = CVK_CameraCtrlLoader().load(tiny_animatediff, TINY, s)[0]
    cc, unet = model.camera.module, model.unet
    plucker = torch.randn(1, 6, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    seen, hooks = {}, []
    for name, level in cc.slots:
        attn = unet.get_submodule(name)
        hooks.append(attn.register_forward_pre_hook(
            lambda m, args, kw, name=name: seen.setdefault(name, {}).update(h=(args[0] if args else kw["hidden_states"]).clone()),
            with_kwargs=True))
    try:
        with model.loaded():
            feats = model.camera.encode(plucker)
            for name, _ in cc.slots:
                proc = unet.get_submodule(name).processor
                assert isinstance(proc, ctl.PoseMergeProcessor)
                real = proc.inner
                proc.inner = lambda attn, h, *a, real=real, name=name, **k: seen[name].update(h2=h.clone()) or real(attn, h, *a, **k)
            z = torch.randn(2, 4, 4, 4, 4, generator=torch.Generator().manual_seed(1))
            text = tiny_animatediff.text.encode(["a", "b"])
            model.network(z, torch.tensor(500), {"text": text, "camera": [torch.cat([f, f]) for f in feats]})
    finally:   # (the spied processors belong to this test's model alone)
        for h in hooks:
            h.remove()
    levels = len(unet.down_blocks)
    for name, level in cc.slots:
        kind, i = name.split(".")[:2]
        assert level == (int(i) if kind == "down_blocks" else levels - 1 - int(i))
        h, h2 = seen[name]["h"], seen[name]["h2"]                   # (B·hh·ww, F, C)
        feat = torch.cat([feats[level]] * 2)                      # CFG: the same features for both rows
        B, C, Fr, hh, ww = feat.shape
        merge = cc.merge(name)
        for b, y, x in [(0, 0, 0), (1, hh - 1, 0), (0, hh // 2, ww - 1), (1, hh - 1, ww - 1)]:
            n = (b * hh + y) * ww + x
            p = feat[b, :, :, y, x].T                             # (F, C)
            want = h[n] + s * F.linear(h[n] + p, merge.weight, merge.bias)
            assert torch.allclose(h2[n], want, atol=1e-6), (name, b, y, x)


def test_strength_zero_and_zero_merges_are_plain_animatediff_and_the_input_model_is_untouched(tiny_animatediff):
    m = tiny_animatediff
    cam = orbit()
    plain = CVK_TextToVideo().generate(m, "a cat", "", 0, 3, "cfg", 7.5, "ddim", 0.0, 8, 64, 64)[0]["samples"]
    with_cam = CVK_CameraCtrlLoader().load(m, TINY, 1.0)[0]
    steered = sample(with_cam, cam)
    assert not torch.allclose(steered, plain, atol=1e-4)
    assert torch.equal(sample(CVK_CameraCtrlLoader().load(m, TINY, 0.0)[0], cam), plain)
    zero = CVK_CameraCtrlLoader().load(m, TINY, 1.0)[0]
    cc = ctl.tiny_cameractrl(m.unet)
    with torch.no_grad():
        for merge in cc.merges.values():
            merge.weight.zero_(), merge.bias.zero_()
    part, control = ctl.patch_unet(m.unet_part, host.ModelPart(cc, "diffusion", "zero merges"), 1.0)
    zero = m.with_camera(part, control)
    assert torch.equal(sample(zero, cam), plain)
    # the model given to the loader still makes the plain video, and the camera model its own
    again = CVK_TextToVideo().generate(m, "a cat", "", 0, 3, "cfg", 7.5, "ddim", 0.0, 8, 64, 64)[0]["samples"]
    assert torch.equal(again, plain) and m.camera is None and torch.equal(sample(with_cam, cam), steered)
    # a different camera gives a different video
    assert not torch.allclose(sample(with_cam, orbit().__class__(cam.K, cam.c2w.flip(1), 64, 64)), steered, atol=1e-4)


def test_pose_encoder_shapes_and_frame_limit(tiny_animatediff):
    enc = ctl.tiny_cameractrl(tiny_animatediff.unet).pose_encoder
    feats = enc(torch.zeros(2, 6, 5, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(2, 32, 5, 8, 12), (2, 64, 5, 4, 6)]
    with pytest.raises(ValueError, match="at most 16 frames"):
        enc(torch.zeros(1, 6, 17, 64, 64))


# ---------------------------------------------------------------- the nodes

def test_node_errors(tiny_animatediff, tiny_modelscope):
    m = tiny_animatediff
    cm = CVK_CameraCtrlLoader().load(m, TINY, 1.0)[0]
    cases = [
        (lambda: CVK_CameraCtrlLoader().load(tiny_modelscope, TINY, 1.0), "CVK_CameraCtrlLoader: input 'model'",
         "expected an AnimateDiff model"),
        (lambda: CVK_CameraCtrlLoader().load(cm, TINY, 1.0), "CVK_CameraCtrlLoader: input 'model'",
         "a model without CameraCtrl"),
        (lambda: sample(m, orbit()), "CVK_CameraCtrlSampler: input 'model'", "a model with CameraCtrl"),
        (lambda: sample(cm, orbit(frames=17)),
         "CVK_CameraCtrlSampler: input 'camera' got <CVK_CAMERA 1 view(s) × 17 frame(s), 64×64>",
         "expected a path of at most 16 frames"),
        (lambda: sample(cm, orbit(size=72)), "CVK_CameraCtrlSampler: input 'camera' got <CVK_CAMERA",
         "width and height are multiples of 16 for this model (set them in the camera node)"),
        (lambda: sample(cm, orbit(), view=1), "CVK_CameraCtrlSampler: input 'view' got 1", "a view index below 1"),
    ]
    for call, start, words in cases:
        with pytest.raises(CVKInputError) as e:
            call()
        assert str(e.value).startswith(start) and words in str(e.value), str(e.value)


def test_sampler_takes_size_and_frames_from_the_camera(tiny_animatediff):
    cm = CVK_CameraCtrlLoader().load(tiny_animatediff, TINY, 1.0)[0]
    cam = CVK_CameraTrajectory().make("pan left", 1, 6, 0.5, 1.0, 50.0, 96, 64)[0]
    assert sample(cm, cam).shape == (1, 4, 6, 8, 12)


def test_the_shared_unet_called_for_the_plain_model_is_plain_while_the_patch_is_in_force(tiny_animatediff):
    """The processors are object patches on the UNet both bundles share; a plain call (no pose features) while
    they are in force computes plain AnimateDiff."""
    m = tiny_animatediff
    z = torch.randn(1, 4, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    cond = {"text": m.text.encode(["a"])}
    with m.loaded():
        plain = m.network(z, torch.tensor(400), cond)
    cm = CVK_CameraCtrlLoader().load(m, TINY, 1.0)[0]
    with cm.loaded():       # the camera clone's processors now sit on the shared UNet
        assert isinstance(m.unet.get_submodule(cm.camera.module.slots[0][0]).processor, ctl.PoseMergeProcessor)
        assert torch.equal(m.network(z, torch.tensor(400), cond), plain)
