"""Load the repo root as one package, ``consistent_video_kit``, the way ComfyUI loads a pack folder
(so the pack's relative imports work; a sys.path entry for the root would break them)."""
from __future__ import annotations

import importlib.util
import os
import sys

PACKAGE = "consistent_video_kit"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_pack():
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    spec = importlib.util.spec_from_file_location(PACKAGE, os.path.join(ROOT, "__init__.py"),
                                                  submodule_search_locations=[ROOT])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)
    return module
