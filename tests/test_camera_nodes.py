"""Camera nodes: trajectories, pose files in and out, CAMERACTRL_POSES, concat, errors."""

import pytest
import torch

from consistent_video_kit.nodes.camera import (CVK_CameraConcat, CVK_CameraFromCameraCtrlPoses, CVK_CameraToCameraCtrlPoses,
                                               CVK_CameraTrajectory, CVK_LoadCameraPoses, CVK_SaveCameraPoses)
from consistent_video_kit.nodes.common import CVKInputError

REAL10K = ("https://www.youtube.com/watch?v=abc\n"
           "0 0.4710 0.8373 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0\n"
           "33366 0.4710 0.8373 0.5 0.5 0 0 0.99 0 0.141 -0.1 0 1 0 0 -0.141 0 0.99 -0.2\n")


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    for d in ("input", "output"):
        (tmp_path / d).mkdir()
    monkeypatch.setenv("CVK_INPUT_DIR", str(tmp_path / "input"))
    monkeypatch.setenv("CVK_OUTPUT_DIR", str(tmp_path / "output"))
    return tmp_path


def test_trajectory_node(dirs):
    (cam,) = CVK_CameraTrajectory().make("upper_hemi", 3, 8, 0.5, 1.0, 0.0, 384, 256)
    assert (cam.views, cam.frames, cam.width, cam.height) == (3, 8, 384, 256)
    (mv,) = CVK_CameraTrajectory().make("orbit left", 1, 8, 0.7, 2.0, 45.0, 256, 256)
    assert mv.views == 1 and mv.K[0, 0, 1, 1].item() == pytest.approx(128 / 0.41421356, rel=1e-6)
    (fixed,) = CVK_CameraTrajectory().make("circle", 2, 4, 0.5, 1.0, 60.0, 256, 256)
    assert fixed.K[0, 0, 0, 0].item() == pytest.approx(128 / 0.57735027, rel=1e-6)
    for args, field, expected in ((("pan left", 2), "views", "1 for the move 'pan left'"),
                                  (("circle", 1), "views", "at least 2 for the multi-view pattern")):
        with pytest.raises(CVKInputError, match=f"input '{field}' got 2|input '{field}' got 1") as e:
            CVK_CameraTrajectory().make(args[0], args[1], 8, 0.5, 1.0, 0.0, 256, 256)
        assert expected in str(e.value)


def test_load_and_save_pose_files(dirs):
    (dirs / "input" / "cam.txt").write_text(REAL10K)
    assert "cam.txt" in CVK_LoadCameraPoses.INPUT_TYPES()["required"]["pose_file"][0]
    (cam,) = CVK_LoadCameraPoses().load("cam.txt", 384, 256, 0, 0, True)
    assert cam.frames == 2 and torch.allclose(cam.c2w[0, 0], torch.eye(4, dtype=torch.float64))
    assert cam.K[0, 0, 0, 0].item() == pytest.approx(214.35, abs=0.01)
    out = CVK_SaveCameraPoses().save(cam, "saved")
    assert out["ui"]["text"] == ["saved_v0_00001.txt"]
    (dirs / "input" / "saved.txt").write_text((dirs / "output" / "saved_v0_00001.txt").read_text())
    (back,) = CVK_LoadCameraPoses().load("saved.txt", 384, 256, 0, 0, False)     # size from the slots
    assert torch.allclose(back.c2w, cam.c2w, atol=1e-12) and torch.allclose(back.K, cam.K, rtol=1e-9)
    assert CVK_LoadCameraPoses.IS_CHANGED("cam.txt") != CVK_LoadCameraPoses.IS_CHANGED("saved.txt")


def test_pose_file_errors_name_the_line(dirs):
    (dirs / "input" / "bad.txt").write_text(REAL10K + "1 2 3\n")
    with pytest.raises(CVKInputError, match=r"input 'pose_file' got 'bad.txt': bad.txt, line 4: 3 columns, expected 19"):
        CVK_LoadCameraPoses().load("bad.txt", 256, 256, 0, 0, True)
    with pytest.raises(CVKInputError, match="input 'pose_file' got 'missing.txt'"):
        CVK_LoadCameraPoses().load("missing.txt", 256, 256, 0, 0, True)
    with pytest.raises(CVKInputError, match="both pose_width and pose_height"):
        (dirs / "input" / "cam.txt").write_text(REAL10K)
        CVK_LoadCameraPoses().load("cam.txt", 256, 256, 1280, 0, True)


def test_cameractrl_poses_round_trip():
    (cam,) = CVK_CameraTrajectory().make("interpolate", 3, 5, 0.5, 1.0, 0.0, 256, 256)
    rows = [CVK_CameraToCameraCtrlPoses().convert(cam, v)[0] for v in range(3)]
    assert len(rows[0]) == 5 and len(rows[0][0]) == 19 and rows[0][0][5:7] == [256.0, 256.0]
    (back,) = CVK_CameraFromCameraCtrlPoses().convert(rows[0], 256, 256, False, rows[1], rows[2])
    assert torch.allclose(back.c2w, cam.c2w, rtol=1e-6, atol=1e-12) and torch.allclose(back.K, cam.K, rtol=1e-6)
    # AnimateDiff-Evolved's rows carry the pose video's size: 1280×720 poses crop to 214.35 px at 384×256
    ade = [[0, 0.4710, 0.8373, 0.5, 0.5, 1280, 720] + [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]]
    (c,) = CVK_CameraFromCameraCtrlPoses().convert(ade, 384, 256, True)
    assert c.K[0, 0, 0, 0].item() == pytest.approx(214.35, abs=0.01)
    with pytest.raises(CVKInputError, match="input 'view' got 3"):
        CVK_CameraToCameraCtrlPoses().convert(cam, 3)
    with pytest.raises(CVKInputError, match="CAMERACTRL_POSES row 0: 3 values"):
        CVK_CameraFromCameraCtrlPoses().convert([[1, 2, 3]], 256, 256, True)


def test_concat_node():
    (a,) = CVK_CameraTrajectory().make("pan right", 1, 4, 0.5, 1.0, 0.0, 256, 256)
    (b,) = CVK_CameraTrajectory().make("tilt up", 1, 3, 0.5, 1.0, 0.0, 256, 256)
    (c,) = CVK_CameraConcat().concat(a, b, a)
    assert c.frames == 4 + 2 + 3
    (m,) = CVK_CameraTrajectory().make("circle", 2, 4, 0.5, 1.0, 0.0, 256, 256)
    with pytest.raises(CVKInputError, match="same number of views"):
        CVK_CameraConcat().concat(a, m)
    with pytest.raises(CVKInputError, match="input 'camera_b' got 'camera.txt'; expected a CVK_CAMERA"):
        CVK_CameraConcat().concat(a, "camera.txt")
