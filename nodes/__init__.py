"""The ComfyUI face: one module per method, thin. Collects every module's node mappings."""
from . import video, videoguide

NODE_CLASS_MAPPINGS = {**video.NODE_CLASS_MAPPINGS, **videoguide.NODE_CLASS_MAPPINGS}
NODE_DISPLAY_NAME_MAPPINGS = {**video.NODE_DISPLAY_NAME_MAPPINGS, **videoguide.NODE_DISPLAY_NAME_MAPPINGS}
