"""Running check modules inside a real ComfyUI (its own Python, ``COMFYUI_PATH``) from the pack's tests: the marks a
real-host test carries and the one way to run a check module and read its ``CHECK <name> <json>`` lines."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from . import ROOT

COMFY = os.environ.get("COMFYUI_PATH")
MARKS = [pytest.mark.comfyui,
         pytest.mark.skipif(not COMFY and not os.environ.get("CI"),
                            reason="COMFYUI_PATH is not set: no real ComfyUI to test against (build one with "
                                   "../shared/tools/comfyui-host.sh, see the README)")]


def run_checks(module: str, *names: str) -> dict:
    """``$COMFYUI_PYTHON -m <module> [names]`` in tests/: every check's result by name (printed for the log)."""
    if not COMFY:
        pytest.fail("CI is set but COMFYUI_PATH is not: run the real-host tests through .ci/run, which builds ComfyUI")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", COMFYUI_PATH=COMFY)
    if os.environ.get("COMFYUI_LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] = os.environ["COMFYUI_LD_LIBRARY_PATH"]
    out = subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable), "-m", module, *names],
                         cwd=os.path.join(ROOT, "tests"), env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    found = {}
    for line in out.stdout.splitlines():
        if line.startswith("CHECK "):
            _, name, data = line.split(" ", 2)
            found[name] = json.loads(data)
    print("\n" + "\n".join(f"{k}: {json.dumps(v)}" for k, v in found.items()))
    return found
