"""camera/ is device-agnostic: every tensor a camera function makes is made on its inputs' device (and in their
dtype, except where the code deliberately works in float64: K and c2w of a CameraPath, fundamental matrices,
epipolar lines).

Checked on the ``meta`` device, where only shapes, dtypes and devices exist: each function runs on meta inputs,
returns meta tensors of the documented shapes and dtypes, and a dispatch-level watch records every tensor any
operation produces along the way; none may be a CPU tensor with dimensions (a CPU 0-d tensor is a scalar, which
torch combines with tensors on any device). Not on meta, because they must read values: the preview
(``frustum_points`` validates and measures the path, ``render_preview`` draws with PIL; both run on any real
device, the picture is drawn on the CPU) and ``camera_from_poses`` (reads the pose-size slots). Functions without
tensor inputs (``move``, ``fov_intrinsics``, pose-file parsing, ``pattern`` without K) build on the CPU.
kornia's essential/fundamental construction runs on meta as it is.
"""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from consistent_video_kit.camera import epipolar, poses, rays, trajectories as tr
from consistent_video_kit.camera.path import CameraPath

META = torch.device("meta")
F = 3


class CpuWatch(TorchDispatchMode):
    """Records (op, shape) of every CPU tensor with dimensions that an operation returns."""

    def __init__(self):
        super().__init__()
        self.cpu = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if torch.is_tensor(t) and t.device.type == "cpu" and t.ndim > 0:
                self.cpu.append((str(func), tuple(t.shape)))
        return out


def meta(*shape, dtype=torch.float64):
    return torch.empty(*shape, dtype=dtype, device=META)


def run_on_meta(fn):
    """fn() under the watch; fails if a CPU tensor was made."""
    import kornia.geometry.epipolar  # noqa: F401  (imported outside the watch: its import makes CPU tables)
    watch = CpuWatch()
    with watch:
        out = fn()
    assert not watch.cpu, f"CPU tensors made from meta inputs: {watch.cpu[:5]}"
    return out


def check(t, shape, dtype):
    assert t.device == META and tuple(t.shape) == shape and t.dtype == dtype, (t.device, tuple(t.shape), t.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_plucker_on_meta(dtype):
    out = run_on_meta(lambda: rays.plucker(meta(F, 3, 3, dtype=dtype), meta(F, 4, 4), 6, 10))
    check(out, (F, 6, 6, 10), dtype)                                   # in K's dtype


def test_relative_pose_and_fundamental_on_meta():
    R, t = run_on_meta(lambda: epipolar.relative_pose(meta(F, 4, 4), meta(F, 4, 4)))
    check(R, (F, 3, 3), torch.float64)
    check(t, (F, 3), torch.float64)
    for dtype in (torch.float32, torch.float64):
        Fm = run_on_meta(lambda: epipolar.fundamental(meta(F, 3, 3, dtype=dtype), meta(F, 4, 4),
                                                      meta(F, 3, 3, dtype=dtype), meta(F, 4, 4)))
        check(Fm, (F, 3, 3), dtype)                                    # in K_a's dtype


def test_token_centres_on_a_device():
    p = run_on_meta(lambda: epipolar.token_centres(4, 6, (32, 48), device=META))
    check(p, (24, 3), torch.float64)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("with_generator", [False, True])
def test_epipolar_bias_on_meta(dtype, with_generator):
    g = torch.Generator().manual_seed(0) if with_generator else None
    out = run_on_meta(lambda: epipolar.epipolar_bias(meta(F, 3, 3), meta(F, 4, 4), meta(F, 3, 3), meta(F, 4, 4),
                                                     4, 5, (64, 80), generator=g, dtype=dtype))
    check(out, (F, 20, 20), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rotations_on_meta(dtype):
    check(run_on_meta(lambda: tr.look_at(meta(F, 3, dtype=dtype), meta(F, 3, dtype=dtype))), (F, 3, 3), dtype)
    check(run_on_meta(lambda: tr.axis_angle(meta(2, F, 3, dtype=dtype), meta(2, F, dtype=dtype))), (2, F, 3, 3), dtype)
    check(run_on_meta(lambda: tr.slerp_from_identity(meta(2, 3, 3, dtype=dtype), meta(F, dtype=dtype))),
          (2, F, 3, 3), dtype)


def test_paths_on_meta():
    """Intrinsics from pose files, re-anchoring, a CVD pattern with given K, pose rows back from a path and
    concatenation stay on the inputs' device, in float64 (the CameraPath precision)."""
    K = run_on_meta(lambda: poses.crop_intrinsics(meta(F, 4), 64, 48, 1280, 720))
    check(K, (F, 3, 3), torch.float64)
    check(run_on_meta(lambda: poses.anchor(meta(2, F, 4, 4))), (2, F, 4, 4), torch.float64)
    path = run_on_meta(lambda: CameraPath(meta(2, F, 3, 3, dtype=torch.float32), meta(2, F, 4, 4), 64, 48))
    check(path.K, (2, F, 3, 3), torch.float64)
    check(run_on_meta(path.w2c), (2, F, 4, 4), torch.float64)
    for name in tr.PATTERNS:
        pat = run_on_meta(lambda: tr.pattern(name, 3, F, 64, 64, K=meta(3, 3, dtype=torch.float32)))
        check(pat.K, (3, F, 3, 3), torch.float64)
        check(pat.c2w, (3, F, 4, 4), torch.float64)
    check(run_on_meta(lambda: tr.pattern_centres("circle", 4, device=META)), (4, 3), torch.float64)
    rows = run_on_meta(lambda: poses.poses_from_camera(path, 1))
    for t, shape in ((rows.timestamps, (F,)), (rows.intrinsics, (F, 4)), (rows.slots, (F, 2)), (rows.w2c, (F, 4, 4))):
        check(t, shape, torch.float64)
    zero = run_on_meta(lambda: poses.poses_from_camera(path, 0, slots="zero"))
    check(zero.slots, (F, 2), torch.float64)
    joined = run_on_meta(lambda: tr.concat([path, path]))
    check(joined.c2w, (2, 2 * F - 1, 4, 4), torch.float64)


def test_the_watch_sees_cpu_tensors():
    """The watch itself: a tensor made without a device is reported, even where meta kernels would let it mix in
    (look_at's reference axis once did: linalg.cross of a meta and a CPU tensor runs on meta)."""
    with pytest.raises(AssertionError, match=r"CPU tensors made from meta inputs: \[\('aten.eye"):
        run_on_meta(lambda: torch.linalg.cross(meta(F, 3), torch.eye(3, dtype=torch.float64)[0].expand(F, 3)))
    run_on_meta(lambda: meta(F, 3) * torch.tensor(2.0))               # a 0-d CPU scalar is fine on any device
