"""The ComfyUI face: one module per method, thin. Collects every module's node mappings; every node's
declared INT/FLOAT inputs are checked before it runs (``common.checked``: finite, within min/max)."""
from . import (camera, camera_preview, cameractrl, cvd, i4vgen, lgcvd, long_video, lvdm, native_i4vgen, native_long_video,
               native_videoguide, scorers, video, videoguide)
from .common import checked

_MODULES = (video, videoguide, i4vgen, scorers, camera, camera_preview, cameractrl, cvd, lvdm, long_video, lgcvd,
            native_long_video, native_i4vgen, native_videoguide)
NODE_CLASS_MAPPINGS = {k: checked(v) for m in _MODULES for k, v in m.NODE_CLASS_MAPPINGS.items()}
NODE_DISPLAY_NAME_MAPPINGS = {k: v for m in _MODULES for k, v in m.NODE_DISPLAY_NAME_MAPPINGS.items()}
