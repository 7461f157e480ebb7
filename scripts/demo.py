"""Run an example workflow headless on the tiny demo model, the way ComfyUI would run its API copy, and
write what it saves to a folder (a video example: the test kit's Save Video stand-in writes an animated PNG,
as PyAV is not a development dependency; ComfyUI itself writes an MP4).

    python scripts/demo.py [--workflow cvk_text_to_video] [--out demo_output]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from launcher import ROOT, load_pack  # scripts/launcher.py: the pack as one package, offline


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workflow", default="cvk_text_to_video", help="example workflow name (its API copy in tests/workflows)")
    ap.add_argument("--out", default=os.path.join(ROOT, "demo_output"), help="output folder")
    args = ap.parse_args()

    from cvk_testkit.core_nodes import CORE_NODES, DIRS
    from cvk_testkit.executor import Executor

    pack = load_pack()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    DIRS.output = DIRS.temp = out
    os.environ["CVK_OUTPUT_DIR"] = out        # where the pack's own savers write outside ComfyUI
    with open(os.path.join(ROOT, "tests", "workflows", args.workflow + "_api.json")) as f:
        prompt = json.load(f)
    t0 = time.time()
    results = Executor({**pack.NODE_CLASS_MAPPINGS, **CORE_NODES}).run(prompt)
    saved = [os.path.join(out, f["subfolder"], f["filename"]) for r in results.values() if r["ui"]
             for f in r["ui"].get("images", []) if f.get("type") == "output"]
    print(f"ran {args.workflow} in {time.time() - t0:.1f} s (tiny UNTRAINED demo models: expect noise-like frames)")
    for path in saved:
        print(f"saved {os.path.relpath(path)}" + (" (an animated PNG: open it in a browser; inside ComfyUI "
                                                  "Save Video writes an MP4)" if path.endswith(".apng") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
