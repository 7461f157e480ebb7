"""What the command-line scripts share: the pack root loaded as one package (``consistent_video_kit``), as the
tests and the demo load it — a plain ``python -m training`` from the root would break the pack's relative imports —
offline, and bad input reported as one line. Imported by the scripts beside it (their folder is on ``sys.path``)."""
from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))          # the pack loader (tests/cvk_testkit)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_pack():
    """The pack's root package (``consistent_video_kit``), imported once."""
    from cvk_testkit import load_pack as load
    return load()


def refuse(script: str, error: Exception) -> int:
    """Print ``<script>: error: <the error's first line>`` to stderr; the exit status 2 (argparse's)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    print(f"{script}: error: {text}", file=sys.stderr)
    return 2
