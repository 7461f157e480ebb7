"""host.py: plain fallbacks outside ComfyUI, and the ComfyUI branches against small fakes."""
import sys
import types

import pytest
import torch

from consistent_video_kit import host


def test_fallbacks_without_comfyui(monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "folder_paths", raising=False)
    assert "comfy" not in sys.modules
    assert host.torch_device().type in ("cpu", "cuda")
    assert host.offload_device() == torch.device("cpu")
    host.check_interrupt()  # no-op
    bar = host.Progress(3, "t")
    for _ in range(3):
        bar.update()
    bar.close()
    assert bar.n == 3


def test_model_lookup_with_models_dir(monkeypatch, tmp_path):
    (tmp_path / "checkpoints" / "sub").mkdir(parents=True)
    (tmp_path / "checkpoints" / "sub" / "a.safetensors").write_bytes(b"x")
    (tmp_path / "checkpoints" / "notes.txt").write_text("x")
    monkeypatch.setenv(host.MODELS_DIR_ENV, str(tmp_path))
    assert host.list_models("checkpoints", [".safetensors"]) == ["sub/a.safetensors"]
    assert host.find_model("checkpoints", "sub/a.safetensors") == str(tmp_path / "checkpoints" / "sub" / "a.safetensors")
    with pytest.raises(host.ModelFileNotFound, match=r"'b.ckpt' not found. Put it in models/checkpoints/. Searched:\n  .*checkpoints"):
        host.find_model("checkpoints", "b.ckpt")
    monkeypatch.delenv(host.MODELS_DIR_ENV)
    with pytest.raises(host.ModelFileNotFound, match="set CVK_MODELS_DIR"):
        host.find_model("checkpoints", "b.ckpt")


@pytest.fixture
def fake_comfy(monkeypatch, tmp_path):
    """Minimal stand-ins with the signatures of ComfyUI's folder_paths / model_management / utils."""
    calls = {"interrupt": 0, "bar": []}
    mm = types.ModuleType("comfy.model_management")
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.unet_offload_device = lambda: torch.device("cpu")
    mm.intermediate_device = lambda: torch.device("cpu")
    mm.soft_empty_cache = lambda force=False: None

    def interrupt():
        calls["interrupt"] += 1
    mm.throw_exception_if_processing_interrupted = interrupt
    utils = types.ModuleType("comfy.utils")

    class ProgressBar:
        def __init__(self, total, node_id=None):
            self.total = total

        def update(self, n):
            calls["bar"].append(n)
    utils.ProgressBar = ProgressBar
    comfy = types.ModuleType("comfy")
    comfy.model_management, comfy.utils = mm, utils
    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(tmp_path / "models")
    fp.folder_names_and_paths = {"checkpoints": ([str(tmp_path / "models" / "checkpoints")], {".safetensors"})}

    def add_model_folder_path(name, path, is_default=False):
        fp.folder_names_and_paths.setdefault(name, ([], set()))[0].append(path)
    fp.add_model_folder_path = add_model_folder_path
    fp.get_folder_paths = lambda name: fp.folder_names_and_paths[name][0]
    fp.get_filename_list = lambda name: ["m.safetensors"]
    for name, mod in (("comfy", comfy), ("comfy.model_management", mm), ("comfy.utils", utils), ("folder_paths", fp)):
        monkeypatch.setitem(sys.modules, name, mod)
    return calls, fp


def test_comfyui_branches(fake_comfy, tmp_path):
    calls, fp = fake_comfy
    bar = host.Progress(2)
    bar.update()
    bar.update()
    assert calls["bar"] == [1, 1] and calls["interrupt"] == 2
    host.register_model_folder("animatediff_models", ["safetensors", ".ckpt"])
    paths, exts = fp.folder_names_and_paths["animatediff_models"]
    assert paths == [str(tmp_path / "models" / "animatediff_models")] and {".safetensors", ".ckpt"} <= exts
    assert host.model_folders("nope") == []
    assert host.list_models("checkpoints") == ["m.safetensors"]
    with pytest.raises(host.ModelFileNotFound, match="models/checkpoints"):
        host.find_model("checkpoints", "x.safetensors")


def test_a_failed_comfyui_import_is_tried_once(monkeypatch):
    """Outside ComfyUI every progress step asks for comfy.model_management: the miss is remembered; a module
    that appears in sys.modules later (ComfyUI loaded after the pack) is still found."""
    calls = []
    real = host.importlib.import_module

    def counting(name, *a, **k):
        calls.append(name)
        return real(name, *a, **k)
    monkeypatch.setattr(host.importlib, "import_module", counting)
    monkeypatch.setattr(host, "_MISSING", set())
    name = "cvk_no_such_comfy_module"
    assert host._optional(name) is None and host._optional(name) is None
    assert calls == [name]
    late = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, late)
    assert host._optional(name) is late
