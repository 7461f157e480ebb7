"""Camera geometry: property tests on random cameras, CVD's patterns, the artist moves, pose files."""
import math

import pytest
import torch

from consistent_video_kit.camera import epipolar, poses, rays, trajectories as tr
from consistent_video_kit.camera.path import CameraPath

G = torch.Generator().manual_seed(0)


def random_cameras(n, gen=G):
    """n random cameras (c2w (n, 4, 4)) around the origin looking roughly at it, and K (n, 3, 3)."""
    centre = torch.randn(n, 3, generator=gen, dtype=torch.float64) * 2 + torch.tensor([0, 0, -5.0], dtype=torch.float64)
    target = torch.randn(n, 3, generator=gen, dtype=torch.float64) * 0.3
    c2w = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    c2w[:, :3, :3] = tr.look_at(centre, target)
    c2w[:, :3, 3] = centre
    f = 150 + 100 * torch.rand(n, generator=gen, dtype=torch.float64)
    K = torch.zeros(n, 3, 3, dtype=torch.float64)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = f, f * 1.1, 128 + 5 * torch.randn(n, generator=gen, dtype=torch.float64), 96, 1
    return K, c2w


def project(K, c2w, X):
    """Pixel coords (n, 2) of world points X (n, 3)."""
    Xc = (torch.linalg.inv(c2w) @ torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], -1)[..., None])[:, :3, 0]
    x = (K @ Xc[..., None])[..., 0]
    return x[:, :2] / x[:, 2:]


def centres_256(n):
    """Homogeneous centres (n·n, 3) of an n × n token grid over 256 × 256 pixels, row-major, written out as CVD
    places them: token k along an axis covers pixels s·k … s·k + s − 1 (s = 256/n), centre s·k + (s − 1)/2."""
    s = 256 // n
    axis = torch.tensor([s * k + (s - 1) / 2 for k in range(n)], dtype=torch.float64)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1), torch.ones(n * n, dtype=torch.float64)], -1)


def test_plucker_properties():
    K, c2w = random_cameras(5)
    H, W = 24, 32
    P = rays.plucker(K, c2w, H, W)
    assert P.shape == (5, 6, H, W)
    m, d = P[:, :3], P[:, 3:]
    assert torch.allclose(d.norm(dim=1), torch.ones(5, H, W, dtype=torch.float64))
    assert (m * d).sum(1).abs().max() < 1e-12                        # o×d ⊥ d
    # the line of pixel (u, v) contains the point seen there: X = o + s·d projects to the pixel centre
    u, v, s = 7, 11, 3.7
    X = c2w[:, :3, 3] + s * d[:, :, v, u]
    assert torch.allclose(project(K, c2w, X), torch.tensor([u + 0.5, v + 0.5], dtype=torch.float64).expand(5, 2), atol=1e-9)
    assert (torch.linalg.cross(X, d[:, :, v, u]) - m[:, :, v, u]).abs().max() < 1e-12   # X × d = o × d for X on the line
    # frame 0 of an anchored path: o = 0, so the moment is 0
    p = tr.pattern("circle", 2, 4, 64, 64)
    assert rays.plucker(p.K[0], p.c2w[0], 8, 8)[0, :3].abs().max() == 0


def test_epipolar_lines_pass_through_correspondences():
    K_a, c2w_a = random_cameras(6)
    K_b, c2w_b = random_cameras(6)
    Fm = epipolar.fundamental(K_a, c2w_a, K_b, c2w_b)
    X = torch.randn(6, 3, generator=G, dtype=torch.float64) * 0.5
    xa, xb = project(K_a, c2w_a, X), project(K_b, c2w_b, X)
    ha, hb = torch.cat([xa, torch.ones(6, 1, dtype=torch.float64)], -1), torch.cat([xb, torch.ones(6, 1, dtype=torch.float64)], -1)
    lines = (Fm @ ha[..., None])[..., 0]
    dist = (lines * hb).sum(-1).abs() / lines[:, :2].norm(dim=-1)
    assert dist.max() <= 1e-4


def test_bias_is_zero_on_the_line_and_the_formula_off_it():
    """Place a 3-D point so that its projections fall exactly on token centres of a 16×16 grid in both views;
    the bias there is 0, and every entry follows −max(D − band, 0)·3/(band + 1e−6) computed here from scratch."""
    K_a, c2w_a = random_cameras(1, torch.Generator().manual_seed(5))
    K_b, c2w_b = random_cameras(1, torch.Generator().manual_seed(6))
    H = W = 16
    size = (256, 256)
    bias = epipolar.epipolar_bias(K_a, c2w_a, K_b, c2w_b, H, W, size, dtype=torch.float64)[0]
    p = centres_256(16)
    assert p[1, 0] == 23.5 and p[16, 1] == 23.5 and p[0, 0] == 7.5
    assert torch.equal(epipolar.token_centres(H, W, size), p)
    Fm = epipolar.fundamental(K_a, c2w_a, K_b, c2w_b)[0]
    l = p @ Fm.T
    D = (l @ p.T).abs() / (l[:, :2].norm(dim=-1, keepdim=True) + 1e-6)
    band = 3 / 128 * D.max()
    want = -(D - band).clamp(min=0) * 3 / (band + 1e-6)     # CVD's get_attn_map, epsilon included
    assert torch.allclose(bias, want, atol=1e-12)
    assert bias.min().item() == pytest.approx(-125.0)
    i = 5 * W + 9                                            # a query token; its epipolar line's nearest key token
    j = int(D[i].argmin())
    assert D[i, j] <= band and bias[i, j] == 0
    # one batched pass over frames, in the requested dtype, no NaN
    p2 = tr.pattern("circle", 2, 16, 256, 256)
    b16 = epipolar.epipolar_bias(p2.K[0], p2.c2w[0], p2.K[1], p2.c2w[1], 32, 32, (256, 256), dtype=torch.float16)
    assert b16.shape == (16, 1024, 1024) and b16.dtype == torch.float16 and not torch.isnan(b16).any()


def test_identical_cameras_use_pseudo_lines():
    K, c2w = random_cameras(1)
    h = w = 8
    size = (256, 256)
    flat = epipolar.epipolar_bias(K, c2w, K, c2w, h, w, size, dtype=torch.float64)[0]
    assert not torch.isnan(flat).any()
    p = centres_256(8)
    same_row = (p[:, None, 1] == p[None, :, 1])
    assert (flat[same_row] == 0).all() and (flat[~same_row] < 0).all()     # horizontal line through each token
    g = torch.Generator().manual_seed(1)
    theta = float(torch.rand((), generator=torch.Generator().manual_seed(1), dtype=torch.float64)) * math.pi
    tilted = epipolar.epipolar_bias(K, c2w, K, c2w, h, w, size, generator=g, dtype=torch.float64)[0]
    n = torch.tensor([math.cos(theta), math.sin(theta)], dtype=torch.float64)
    D = ((p[None, :, :2] - p[:, None, :2]) @ n).abs()
    band = 3 / 128 * D.max()
    assert torch.allclose(tilted, -(D - band).clamp(min=0) * 3 / (band + 1e-6), atol=1e-12)
    # frame 0 of views sharing their first camera is exactly this case
    pat = tr.pattern("circle", 2, 3, 256, 256)
    b = epipolar.epipolar_bias(pat.K[0], pat.c2w[0], pat.K[1], pat.c2w[1], h, w, size, dtype=torch.float64)
    assert torch.equal(b[0], flat) or torch.allclose(b[0], flat)
    one = epipolar.epipolar_bias(K, c2w, K, c2w, 1, 1, size)
    assert one.shape == (1, 1, 1) and one.item() == 0


@pytest.mark.parametrize("name", tr.PATTERNS)
@pytest.mark.parametrize("views", [2, 3, 4, 6])
def test_cvd_patterns(name, views):
    p = tr.pattern(name, views, 16, 256, 256)
    assert p.K.shape == (views, 16, 3, 3) and p.K[0, 0, 0, 0] == 223.578 and p.K[0, 0, 0, 2] == 128
    eye = torch.eye(4, dtype=torch.float64)
    assert torch.allclose(p.c2w[:, 0], eye.expand(views, 4, 4))           # shared identity first camera
    centres = tr.pattern_centres(name, views)
    assert torch.allclose(p.c2w[:, -1, :3, 3], centres)
    fwd = p.c2w[:, -1, :3, 2]                                             # each view ends looking at (0, 0, 1)
    to_target = torch.nn.functional.normalize(torch.tensor([0, 0, 1.0], dtype=torch.float64) - centres, dim=-1)
    assert torch.allclose(fwd, to_target)
    R = p.c2w[..., :3, :3]
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(R), atol=1e-12)


def test_cvd_endpoints_from_the_reference():
    circle = tr.pattern("circle", 4, 16, 256, 256).c2w[:, -1]
    angles = [math.degrees(math.acos((R.trace() - 1) / 2)) for R in circle[:, :3, :3]]
    assert all(a == pytest.approx(26.565, abs=1e-3) for a in angles)
    inter = tr.pattern("interpolate", 4, 16, 256, 256).c2w[:, -1, :3, 3]
    assert torch.allclose(inter, torch.tensor([[0.5, 0.132, 0], [0.25, 0.004, -0.087], [-0.25, -0.128, -0.087],
                                               [-0.5, -0.132, 0]], dtype=torch.float64), atol=1e-3)
    K = tr.cvd_intrinsics(384, 256)
    assert K[0, 0] == pytest.approx(223.578 * 1.5) and K[1, 1] == pytest.approx(223.578) and K[0, 2] == 192


def test_moves_do_what_their_names_say():
    F, s = 9, 1.5
    step = tr.BASE_STEP * s * (F - 1)
    end = lambda name: tr.move(name, F, 256, 256, speed=s).c2w[0, -1]  # noqa: E731
    assert torch.allclose(end("pan right")[:3, 3], torch.tensor([step, 0, 0], dtype=torch.float64))
    assert torch.allclose(end("pan left")[:3, 3], torch.tensor([-step, 0, 0], dtype=torch.float64))
    assert torch.allclose(end("dolly in")[:3, 3], torch.tensor([0, 0, step], dtype=torch.float64))
    assert torch.allclose(end("dolly out")[:3, 3], torch.tensor([0, 0, -step], dtype=torch.float64))
    assert end("tilt up")[1, 2] < 0 and end("tilt down")[1, 2] > 0           # forward axis turns up (−y) / down
    assert torch.allclose(end("tilt up")[:3, 3], torch.zeros(3, dtype=torch.float64))
    assert end("roll right")[1, 0] > 0 and torch.allclose(end("roll right")[:3, 2], torch.tensor([0, 0, 1.0], dtype=torch.float64))
    deg = tr.BASE_DEGREES * s * (F - 1)
    assert math.degrees(math.acos((end("roll left")[:3, :3].trace() - 1) / 2)) == pytest.approx(deg)
    for name, sign in (("orbit left", -1), ("orbit right", 1)):
        path = tr.move(name, F, 256, 256, speed=s, distance=0.7).c2w[0]
        target = torch.tensor([0, 0, 0.7], dtype=torch.float64)
        assert torch.allclose((path[:, :3, 3] - target).norm(dim=-1), torch.full((F,), 0.7, dtype=torch.float64))
        assert torch.allclose(path[:, :3, 2], torch.nn.functional.normalize(target - path[:, :3, 3], dim=-1))
        assert sign * path[-1, 0, 3] > 0
    zin, zout = tr.move("zoom in", F, 256, 256).K[0], tr.move("zoom out", F, 256, 256).K[0]
    assert zin[-1, 0, 0] > zin[0, 0, 0] and zout[-1, 0, 0] < zout[0, 0, 0]
    assert torch.allclose(tr.move("static", F, 256, 256).c2w[0], torch.eye(4, dtype=torch.float64).expand(F, 4, 4))
    K = tr.move("static", 1, 512, 256, fov=90).K[0, 0]
    assert K[1, 1] == pytest.approx(128) and K[0, 0] == K[1, 1] and K[0, 2] == 256   # vertical fov, square pixels


def test_concat_continues_from_the_last_camera():
    a = tr.move("pan right", 5, 64, 64)
    b = tr.move("dolly in", 4, 64, 64)
    c = tr.concat([a, b])
    assert c.frames == 5 + 4 - 1
    assert torch.allclose(c.c2w[0, :5], a.c2w[0, :5])
    assert torch.allclose(c.c2w[0, -1, :3, 3], a.c2w[0, -1, :3, 3] + b.c2w[0, -1, :3, 3])
    with pytest.raises(ValueError, match="same number of views"):
        tr.concat([tr.pattern("circle", 2, 4, 64, 64), a])


def test_intrinsics_example_from_the_reference():
    K = poses.crop_intrinsics(torch.tensor([[0.4710, 0.8373, 0.5, 0.5]], dtype=torch.float64), 384, 256, 1280, 720)[0]
    assert K[0, 0].item() == pytest.approx(214.35, abs=0.01) and K[1, 1].item() == pytest.approx(214.35, abs=0.01)
    assert K[0, 2] == 192 and K[1, 2] == 128


def test_pose_file_and_cameractrl_round_trips():
    p = tr.concat([tr.pattern("interpolate", 3, 6, 384, 256), tr.pattern("circle", 3, 5, 384, 256)])
    for v in range(p.views):
        ps = poses.poses_from_camera(p, v)
        text = poses.format_pose_text(ps)
        back = poses.parse_pose_text(text)
        assert torch.allclose(back.w2c, ps.w2c, rtol=1e-6, atol=0) and torch.allclose(back.intrinsics, ps.intrinsics, rtol=1e-6)
        rows = poses.poses_to_cameractrl(back)
        again = poses.poses_from_cameractrl(rows)
        assert torch.equal(again.w2c, back.w2c) and torch.equal(again.slots, back.slots)
        cam = poses.camera_from_poses([again], 384, 256, relative=False)
        assert torch.allclose(cam.c2w[0], p.c2w[v], rtol=1e-6, atol=1e-12) and torch.allclose(cam.K[0], p.K[v], rtol=1e-6)
    # re-anchoring: frame 0 becomes the identity, relative motion is kept
    moved = CameraPath(p.K, torch.tensor([[1.0, 0, 0, 2], [0, 0, -1, 1], [0, 1, 0, 3], [0, 0, 0, 1]], dtype=torch.float64) @ p.c2w,
                       p.width, p.height)
    rel = poses.anchor(moved.c2w)
    assert torch.allclose(rel, p.c2w, atol=1e-12)


@pytest.mark.parametrize("text,msg", [
    ("url\n1 2 3\n", "line 2: 3 columns, expected 19"),
    ("url\n" + " ".join(["0.5"] * 18) + " x\n", "line 2: 'x' is not a number"),
    ("url\n" + " ".join(["0.5"] * 18) + " nan\n", "line 2: NaN or infinite value"),
    ("url\n0 0.5 0.5 0.5 0.5 0 0 " + " ".join(["0"] * 12) + "\n", "line 2: the 3×4 world-to-camera matrix is not invertible"),
    ("url\n", "no pose lines"),
    ("", "empty file"),
])
def test_malformed_pose_files(text, msg):
    with pytest.raises(poses.PoseFileError, match=msg) as e:
        poses.parse_pose_text(text, "cam.txt")
    assert str(e.value).startswith("cam.txt")


def test_half_precision_bias_stays_close():
    """The distances are computed in the output's precision (half the memory for float16), in image-centred
    coordinates; the result stays within a few storage steps of the float64 bias."""
    p = tr.pattern("circle", 2, 4, 256, 256)
    args = (p.K[0], p.c2w[0], p.K[1], p.c2w[1], 16, 16, (256, 256))
    exact = epipolar.epipolar_bias(*args, dtype=torch.float64)
    for dtype, tol in ((torch.float32, 1e-3), (torch.float16, 0.5), (torch.bfloat16, 4.0)):
        got = epipolar.epipolar_bias(*args, dtype=dtype)
        assert got.dtype == dtype and (got.double() - exact).abs().max() <= tol
