"""Camera path preview: an IMAGE of top / front / side views, and a rotatable 3-D view on the node (web/)."""
from __future__ import annotations

from ..camera.path import CameraPath
from ..camera.preview import render_preview
from .common import CATEGORY_ROOT, CVKInputError

CAMERA = CameraPath.TYPE
PROJECTION_CHOICES = ("top,front,side", "top,front", "top,side", "front,side")
SIZE_MIN, SIZE_MAX, SIZE_STEP = 128, 2048, 64


class CVK_CameraPreview:
    DESCRIPTION = ("Shows a camera path (CVK_CAMERA): every view's camera centres as a coloured line, each frame's "
                   "camera as a small frustum pointing where it looks, frame 0 marked with a dot and the last frame "
                   "with an arrowhead. Outputs orthographic top / front / side panels as an IMAGE, and draws a "
                   "rotatable 3-D view on the node (drag to rotate, wheel to zoom, double-click to reset).")
    CATEGORY = f"{CATEGORY_ROOT}/camera"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("preview",)
    OUTPUT_TOOLTIPS = ("The panels side by side as one IMAGE [1, size, panels × size, 3].",)
    FUNCTION = "preview"
    OUTPUT_NODE = True
    NODE = "CVK_CameraPreview"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "camera": (CAMERA, {"tooltip": "The camera path to show: one or more views, each a camera per frame."}),
            "size": ("INT", {"default": 512, "min": SIZE_MIN, "max": SIZE_MAX, "step": SIZE_STEP,
                             "tooltip": "Height of the image in pixels; each panel is size × size."}),
            "projections": (list(PROJECTION_CHOICES), {"default": PROJECTION_CHOICES[0], "tooltip": (
                "Which orthographic panels, left to right. top: x–z seen from above; front: x–y looking along "
                "+z; side: z–y looking along −x (OpenCV axes: x right, y down, z forward).")}),
        }}

    def preview(self, camera, size=512, projections=PROJECTION_CHOICES[0]):
        node = self.NODE
        if not isinstance(camera, CameraPath):
            raise CVKInputError(node, "camera", camera, "a CVK_CAMERA (a camera path from one of the camera nodes)")
        try:
            image = render_preview(camera, size, projections)
        except ValueError as e:          # a path that cannot be drawn (non-finite or singular K)
            raise CVKInputError(node, "camera", camera, problem=str(e)) from None
        return {"ui": {"cvk_camera": [camera.to_json()]}, "result": (image,)}


NODE_CLASS_MAPPINGS = {"CVK_CameraPreview": CVK_CameraPreview}
NODE_DISPLAY_NAME_MAPPINGS = {"CVK_CameraPreview": "Camera Preview (CVK)"}
