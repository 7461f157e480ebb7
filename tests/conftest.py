"""Test setup: the pack loaded as one package; tiny models built once per session; output folders
for the core-node stand-ins."""
from __future__ import annotations

import os
import sys

# one torch thread per process unless told otherwise: two threads on two busy cores run ~10× slower (set
# before torch is imported)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

from cvk_testkit import load_pack  # noqa: E402

load_pack()  # test modules import `consistent_video_kit...` at collection time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def pack():
    return load_pack()


@pytest.fixture(scope="session")
def tiny_animatediff(pack):
    from consistent_video_kit.models.tiny import tiny_model
    return tiny_model("tiny-animatediff")


@pytest.fixture(scope="session")
def tiny_modelscope(pack):
    from consistent_video_kit.models.tiny import tiny_model
    return tiny_model("tiny-modelscope")


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory):
    """The tiny LVDM training runs (``cvk_testkit.tiny_training``: the AE, short, pred and interp exports), trained
    once per session (about 30 s at one thread) or found in ``$CVK_TRAINED_DIR`` (CI's training stage)."""
    from cvk_testkit.tiny_training import trained_models
    return trained_models(str(tmp_path_factory.mktemp("trained")))


@pytest.fixture
def comfy_dirs(tmp_path, monkeypatch):
    """Point the core-node stand-ins (SaveImage, PreviewImage, LoadImage) at fresh folders."""
    from cvk_testkit.core_nodes import DIRS
    for name in ("output", "temp", "input"):
        (tmp_path / name).mkdir()
        monkeypatch.setattr(DIRS, name, str(tmp_path / name))
    monkeypatch.setenv("CVK_INPUT_DIR", str(tmp_path / "input"))     # the pack's own file nodes (host.py)
    monkeypatch.setenv("CVK_OUTPUT_DIR", str(tmp_path / "output"))
    return tmp_path


@pytest.fixture(scope="session")
def real_size_models(tmp_path_factory):
    """A models folder with the real-size SD1.5 checkpoint and motion module (``tiny_files.REAL_SIZE_FILES``, 4 GB,
    about 25 s to write), written once per session for the real-host tests that need AnimateDiff-Evolved."""
    from cvk_testkit import tiny_files as tf
    root = tmp_path_factory.mktemp("real_size_models")
    tf.write_real_size_files(str(root))
    return root
