"""AnimateDiff's GroupNorms as the original code computes them (guoyww/AnimateDiff, animatediff/models):
motion modules normalise each frame alone with the motion module's own group count; v1 modules pool the
spatial ResNet norms and conv_norm_out over the clip. Pinned with ``F.group_norm`` on explicit views
(the independent reference) and with a frame-independence property, inside the loaded models."""
import pytest
import torch
import torch.nn.functional as F

from cvk_testkit import tiny_files as tf
from consistent_video_kit.models import loaders
from consistent_video_kit.models.animatediff import ClipGroupNorm, FrameGroupNorm, motion_version


def motion_norms(unet):
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
    return [m.norm for m in unet.modules() if isinstance(m, AnimateDiffTransformer3D)]


def captured_norm_io(model, norm, frames=4):
    """Input and output of ``norm`` inside one real UNet call of ``model``."""
    seen = {}
    h = norm.register_forward_hook(lambda mod, args, out: seen.update(x=args[0].clone(), y=out.clone()))
    try:
        z = torch.randn(2, 4, frames, 8, 8, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            model.network(z, torch.tensor(500), {"text": torch.randn(2, 77, model.text.model.config.hidden_size)})
    finally:
        h.remove()
    return seen["x"], seen["y"]


def test_motion_norm_is_per_frame_in_the_tiny_model(tiny_animatediff):
    norms = motion_norms(tiny_animatediff.unet)
    assert norms and all(isinstance(n, FrameGroupNorm) for n in norms)
    for norm in (norms[0], norms[-1]):
        x, y = captured_norm_io(tiny_animatediff, norm)            # (b, c, f, h, w), as diffusers hands it over
        b, c, f, h, w = x.shape
        per_frame = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        ref = F.group_norm(per_frame, norm.num_groups, norm.weight, norm.bias, norm.eps)
        assert torch.allclose(y, ref.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4), atol=1e-5)
        pooled = F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)     # what diffusers computes
        assert not torch.allclose(y, pooled, atol=1e-3)


def test_motion_norm_frame_independence(tiny_animatediff):
    """Rescaling and shifting frame j's input changes no normalised value of any other frame, and frame j
    normalises back to its own values (a norm pooled over frames fails both)."""
    norm = motion_norms(tiny_animatediff.unet)[0]
    x, _ = captured_norm_io(tiny_animatediff, norm)
    y = norm(x)
    for j in range(x.shape[2]):
        x2 = x.clone()
        x2[:, :, j] = 5.0 * x2[:, :, j] + 3.0
        y2 = norm(x2)
        others = [k for k in range(x.shape[2]) if k != j]
        assert torch.equal(y2[:, :, others], y[:, :, others])
        assert torch.allclose(y2[:, :, j], y[:, :, j], atol=1e-4)


@pytest.fixture(scope="module")
def v_files(tmp_path_factory):
    """Tiny SD1.5 base (norm groups 8) and v1/v2/v3-shaped motion modules (motion groups 32, as shipped)."""
    d = tmp_path_factory.mktemp("mm")
    root = tf.write_config_root(str(d / "configs"))
    tf.write_sd_single_file(str(d / "sd.safetensors"))
    tf.write_motion_module(str(d / "v2.ckpt"), mid_block=True)
    tf.write_motion_module(str(d / "v3.ckpt"), mid_block=False)
    tf.write_motion_module(str(d / "v1.ckpt"), mid_block=False, table=24)
    return d, root


@pytest.mark.parametrize("version", ["v1", "v2", "v3"])
def test_loaded_modules_use_their_own_group_count_and_version_norms(v_files, version):
    d, root = v_files
    m = loaders.load_animatediff(str(d / "sd.safetensors"), str(d / f"{version}.ckpt"), config_root=root)
    assert tf.TINY_SD_UNET["norm_num_groups"] == 8 != tf.TINY_MOTION["motion_norm_num_groups"] == 32
    norms = motion_norms(m.unet)
    assert all(isinstance(n, FrameGroupNorm) and n.num_groups == 32 for n in norms)   # not the UNet's 8
    resnet_norm = m.unet.down_blocks[0].resnets[0].norm1
    pooled = version == "v1"
    assert isinstance(resnet_norm, ClipGroupNorm) == pooled and isinstance(m.unet.conv_norm_out, ClipGroupNorm) == pooled
    assert m.max_frames == (24 if pooled else 32)
    # the ResNet norm as the original computes it: per frame (v2/v3) or over the whole clip (v1)
    x, y = captured_norm_io(m, resnet_norm, frames=3)                # (b·f, c, h, w)
    bf, c, h, w = x.shape
    clip = x.reshape(2, 3, c, h, w).transpose(1, 2)
    ref = (F.group_norm(clip, 8, resnet_norm.weight, resnet_norm.bias, resnet_norm.eps).transpose(1, 2).reshape(bf, c, h, w)
           if pooled else F.group_norm(x, 8, resnet_norm.weight, resnet_norm.bias, resnet_norm.eps))
    assert torch.allclose(y, ref, atol=1e-5)


def test_version_from_the_file():
    assert motion_version(True, 32) == "v2" and motion_version(False, 24) == "v1"
    assert motion_version(False, 32) == "v3" and motion_version(False, None) == "v3"
