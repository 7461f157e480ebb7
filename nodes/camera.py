"""Camera nodes: make, load, save, convert and combine camera paths (``CVK_CAMERA``)."""
from __future__ import annotations

import hashlib
import os

from .. import host
from ..camera import poses as pose_io
from ..camera import trajectories as tr
from ..camera.path import CameraPath
from ..camera.poses import PoseFileError
from .common import CATEGORY_ROOT, CVKInputError, check_file_name

CATEGORY = f"{CATEGORY_ROOT}/camera"
CAMERA = CameraPath.TYPE
CAMERACTRL = "CAMERACTRL_POSES"
TRAJECTORIES = list(tr.PATTERNS) + list(tr.MOVES)


def check_camera(node: str, camera, name: str = "camera") -> CameraPath:
    if not isinstance(camera, CameraPath):
        raise CVKInputError(node, name, camera, "a CVK_CAMERA (from Camera Trajectory, Load Camera Poses, …)")
    return camera


def size_inputs(width: int = 256, height: int = 256) -> dict:
    tip = "of the video the cameras are for, in pixels (K is in pixels of this size)"
    return {"width": ("INT", {"default": width, "min": 8, "max": 4096, "step": 8, "tooltip": f"Width {tip}."}),
            "height": ("INT", {"default": height, "min": 8, "max": 4096, "step": 8, "tooltip": f"Height {tip}."})}


def _pose_files() -> list[str]:
    folder = host.input_directory()
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(".txt"))


class CVK_CameraTrajectory:
    DESCRIPTION = ("Makes camera paths. CVD's multi-view patterns (circle, upper_hemi, interpolate: every view starts "
                   "at one shared camera and turns toward a point 1 unit ahead while moving `distance` out; CVD's "
                   "fixed intrinsics) or a single-view move (pan, tilt, zoom, dolly, orbit, roll, static). Frame 0 "
                   "is always the identity camera.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (CAMERA,)
    RETURN_NAMES = ("camera",)
    OUTPUT_TOOLTIPS = ("The camera paths: views × frames of intrinsics and camera-to-world poses.",)
    FUNCTION = "make"
    NODE = "CVK_CameraTrajectory"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "trajectory": (TRAJECTORIES, {"default": "circle", "tooltip": (
                "circle / upper_hemi / interpolate: CVD's multi-view patterns (views ≥ 2). The others are single-view "
                "moves: pan = sideways along the camera's x axis, tilt = turn up/down, zoom = focal length, dolly = "
                "forward/back, orbit = circle around the point `distance` ahead, roll = turn about the view axis.")}),
            "views": ("INT", {"default": 4, "min": 1, "max": 64,
                              "tooltip": "Number of views (camera paths) for a pattern; moves make one view."}),
            "frames": ("INT", {"default": 16, "min": 1, "max": 1024, "tooltip": "Frames per view."}),
            "distance": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 100.0, "step": 0.05, "tooltip": (
                "Patterns: how far each view's camera moves from the shared start (CVD's default 0.5). Orbit: the "
                "radius, the distance to the point orbited.")}),
            "speed": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.05, "tooltip": (
                f"Moves: 1 = {tr.BASE_STEP:.4f} units per frame (pan, dolly), {tr.BASE_DEGREES}° per frame (tilt, orbit, "
                f"roll), focal length ×(1 + {tr.BASE_ZOOM}·frame) (zoom). Not used by patterns.")}),
            "fov": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 179.0, "step": 0.5, "tooltip": (
                "Vertical field of view in degrees, square pixels. 0 = automatic: CVD's fixed intrinsics for patterns "
                "(fx = fy = 223.578 at 256 px), 60° for moves.")}),
            **size_inputs(),
        }}

    def make(self, trajectory, views, frames, distance, speed, fov, width, height):
        node = self.NODE
        if trajectory in tr.PATTERNS:
            if views < 2:
                raise CVKInputError(node, "views", views, f"at least 2 for the multi-view pattern '{trajectory}'")
            K = pose_io.fov_intrinsics(fov, width, height) if fov > 0 else None
            return (tr.pattern(trajectory, views, frames, width, height, distance, K),)
        if views != 1:
            raise CVKInputError(node, "views", views, f"1 for the move '{trajectory}' (moves make one view; use a pattern "
                                                      f"for several views)")
        if trajectory.startswith("orbit") and distance <= 0:
            raise CVKInputError(node, "distance", distance, "a positive orbit radius")
        return (tr.move(trajectory, frames, width, height, speed, fov if fov > 0 else 60.0, distance),)


class CVK_CameraConcat:
    DESCRIPTION = ("Plays camera paths one after another: each next path continues from the previous path's last "
                   "camera (their shared frame appears once). Views and image size must agree.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (CAMERA,)
    RETURN_NAMES = ("camera",)
    OUTPUT_TOOLTIPS = ("The concatenated paths.",)
    FUNCTION = "concat"
    NODE = "CVK_CameraConcat"

    @classmethod
    def INPUT_TYPES(cls):
        tip = "Camera paths to play {}."
        return {"required": {"camera_a": (CAMERA, {"tooltip": tip.format("first")}),
                             "camera_b": (CAMERA, {"tooltip": tip.format("second")})},
                "optional": {"camera_c": (CAMERA, {"tooltip": tip.format("third (optional)")})}}

    def concat(self, camera_a, camera_b, camera_c=None):
        parts = [(n, check_camera(self.NODE, c, n)) for n, c in (("camera_a", camera_a), ("camera_b", camera_b),
                                                                   ("camera_c", camera_c)) if c is not None]
        try:
            return (tr.concat([c for _, c in parts]),)
        except tr.ConcatError as e:   # the path at fault, by its input
            name, camera = parts[e.index]
            raise CVKInputError(self.NODE, name, camera, problem=str(e)) from None


class CVK_LoadCameraPoses:
    DESCRIPTION = ("Loads a RealEstate10K / CameraCtrl pose file (.txt in ComfyUI's input folder: a URL line, then per "
                   "frame timestamp, normalised fx fy cx cy, two slots, a 3×4 world-to-camera matrix) as one view. "
                   "Intrinsics follow CameraCtrl: the pose video is resized and centre-cropped to width×height.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (CAMERA,)
    RETURN_NAMES = ("camera",)
    OUTPUT_TOOLTIPS = ("One view with one camera per pose line.",)
    FUNCTION = "load"
    NODE = "CVK_LoadCameraPoses"
    FILE_INPUTS = ("pose_file",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "pose_file": (_pose_files(), {"tooltip": "A pose .txt file in ComfyUI's input folder."}),
            **size_inputs(),
            "pose_width": ("INT", {"default": 0, "min": 0, "max": 16384, "tooltip": (
                "Width of the video the poses were taken from (their intrinsics are normalised by it). 0: the file's "
                "slots when they hold a size (AnimateDiff-Evolved writes them), else 1280.")}),
            "pose_height": ("INT", {"default": 0, "min": 0, "max": 16384,
                                    "tooltip": "Height of that video; 0: from the file's slots, else 720."}),
            "relative": ("BOOLEAN", {"default": True, "tooltip": "Re-anchor so frame 0 is the identity camera, as "
                                                                 "CameraCtrl and CVD do."}),
        }}

    @classmethod
    def IS_CHANGED(cls, pose_file, **_):
        path = os.path.join(host.input_directory(), pose_file)
        return hashlib.sha256(open(path, "rb").read()).hexdigest() if os.path.isfile(path) else ""

    def load(self, pose_file, width, height, pose_width, pose_height, relative):
        node = self.NODE
        path = os.path.join(host.input_directory(), check_file_name(node, "pose_file", pose_file, subfolders=False))
        if not os.path.isfile(path):
            raise CVKInputError(node, "pose_file", pose_file, "a .txt pose file in ComfyUI's input folder")
        if (pose_width > 0) != (pose_height > 0):
            raise CVKInputError(node, "pose_width", pose_width, "both pose_width and pose_height set, or both 0")
        try:
            with open(path, encoding="utf-8") as f:
                poses = pose_io.parse_pose_text(f.read(), pose_file)
        except (PoseFileError, UnicodeDecodeError) as e:
            raise CVKInputError(node, "pose_file", pose_file, problem=str(e)) from None
        size = (pose_width, pose_height) if pose_width > 0 else None
        return (pose_io.camera_from_poses([poses], width, height, size, relative),)


class CVK_SaveCameraPoses:
    DESCRIPTION = ("Saves each view of a camera as a RealEstate10K / CameraCtrl pose file in ComfyUI's output folder "
                   "(intrinsics normalised by the camera's own width and height, which go in the two slots).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ()
    OUTPUT_TOOLTIPS = ()
    OUTPUT_NODE = True
    FUNCTION = "save"
    NODE = "CVK_SaveCameraPoses"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "camera": (CAMERA, {"tooltip": "The camera paths to save."}),
            "filename_prefix": ("STRING", {"default": "cvk_camera", "tooltip": "File names: <prefix>_v<view>_<n>.txt"}),
        }}

    def save(self, camera, filename_prefix):
        camera = check_camera(self.NODE, camera)
        check_file_name(self.NODE, "filename_prefix", filename_prefix, subfolders=False)
        if filename_prefix.startswith("."):
            raise CVKInputError(self.NODE, "filename_prefix", filename_prefix, "a name that does not start with '.'")
        folder = host.output_directory()
        os.makedirs(folder, exist_ok=True)
        saved = []
        for v in range(camera.views):
            n = 1
            while os.path.exists(os.path.join(folder, f"{filename_prefix}_v{v}_{n:05d}.txt")):
                n += 1
            name = f"{filename_prefix}_v{v}_{n:05d}.txt"
            with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
                f.write(pose_io.format_pose_text(pose_io.poses_from_camera(camera, v)))
            saved.append(name)
        return {"ui": {"text": saved}, "result": ()}


class CVK_CameraFromCameraCtrlPoses:
    DESCRIPTION = ("Turns AnimateDiff-Evolved CAMERACTRL_POSES (one per view) into a CVK_CAMERA. The poses' slots "
                   "carry the size of the video their intrinsics are normalised by (1280×720 when empty).")
    CATEGORY = CATEGORY
    RETURN_TYPES = (CAMERA,)
    RETURN_NAMES = ("camera",)
    OUTPUT_TOOLTIPS = ("One view per connected pose list.",)
    FUNCTION = "convert"
    NODE = "CVK_CameraFromCameraCtrlPoses"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"poses": (CAMERACTRL, {"tooltip": "View 0's poses."}), **size_inputs(),
                             "relative": ("BOOLEAN", {"default": True, "tooltip": "Re-anchor each view so frame 0 is "
                                                                                  "the identity."})},
                "optional": {f"poses_{i}": (CAMERACTRL, {"tooltip": f"View {i}'s poses (optional)."}) for i in (1, 2, 3)}}

    def convert(self, poses, width, height, relative, poses_1=None, poses_2=None, poses_3=None):
        views = []
        for name, rows in (("poses", poses), ("poses_1", poses_1), ("poses_2", poses_2), ("poses_3", poses_3)):
            if rows is None:
                continue
            if not isinstance(rows, (list, tuple)):
                raise CVKInputError(self.NODE, name, rows, "CAMERACTRL_POSES (a list of 19-number rows)")
            try:
                views.append(pose_io.poses_from_cameractrl(rows))
            except PoseFileError as e:
                raise CVKInputError(self.NODE, name, f"{len(rows)} rows", problem=str(e)) from None
        try:
            return (pose_io.camera_from_poses(views, width, height, None, relative),)
        except PoseFileError as e:
            raise CVKInputError(self.NODE, "poses_1", f"{len(views)} views", problem=str(e)) from None


class CVK_CameraToCameraCtrlPoses:
    DESCRIPTION = "One view of a CVK_CAMERA as AnimateDiff-Evolved CAMERACTRL_POSES (its size in the two slots)."
    CATEGORY = CATEGORY
    RETURN_TYPES = (CAMERACTRL,)
    RETURN_NAMES = ("poses",)
    OUTPUT_TOOLTIPS = ("Rows [t, fx, fy, cx, cy, width, height, 12 × world-to-camera].",)
    FUNCTION = "convert"
    NODE = "CVK_CameraToCameraCtrlPoses"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"camera": (CAMERA, {"tooltip": "The camera paths."}),
                             "view": ("INT", {"default": 0, "min": 0, "max": 63, "tooltip": "Which view to convert."})}}

    def convert(self, camera, view):
        camera = check_camera(self.NODE, camera)
        if view >= camera.views:
            raise CVKInputError(self.NODE, "view", view, f"a view index below {camera.views}")
        return (pose_io.poses_to_cameractrl(pose_io.poses_from_camera(camera, view)),)


NODE_CLASS_MAPPINGS = {c.__name__: c for c in (CVK_CameraTrajectory, CVK_CameraConcat, CVK_LoadCameraPoses,
                                               CVK_SaveCameraPoses, CVK_CameraFromCameraCtrlPoses,
                                               CVK_CameraToCameraCtrlPoses)}
NODE_DISPLAY_NAME_MAPPINGS = {
    "CVK_CameraTrajectory": "Camera Trajectory (CVK)", "CVK_CameraConcat": "Camera Concat (CVK)",
    "CVK_LoadCameraPoses": "Load Camera Poses (CVK)", "CVK_SaveCameraPoses": "Save Camera Poses (CVK)",
    "CVK_CameraFromCameraCtrlPoses": "Camera from CameraCtrl Poses (CVK)",
    "CVK_CameraToCameraCtrlPoses": "Camera to CameraCtrl Poses (CVK)",
}
