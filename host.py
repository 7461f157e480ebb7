"""The ONE place that touches ComfyUI. Every import of ``comfy`` / ``folder_paths`` is lazy, with a
plain fallback, so the pack imports and runs without ComfyUI (tests, the headless demo).

- devices and dtypes: :func:`torch_device`, :func:`offload_device`, :func:`intermediate_device`
- progress and interrupt: :class:`Progress`, :func:`check_interrupt`
- model files: :func:`model_folders`, :func:`list_models`, :func:`find_model`, :func:`register_model_folder`
  (``folder_paths`` inside ComfyUI; otherwise ``CVK_MODELS_DIR`` laid out like ComfyUI's ``models/``)
- user files: :func:`input_directory`, :func:`output_directory`
- logging: :data:`log`
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from contextlib import contextmanager
from typing import Iterable, Optional

import torch

log = logging.getLogger("consistent_video_kit")

MODELS_DIR_ENV = "CVK_MODELS_DIR"


_MISSING: set[str] = set()


def _optional(name: str):
    """A ComfyUI module if we are inside ComfyUI, else None. A failed import is remembered (outside ComfyUI
    every progress step asks, and a failed import costs milliseconds); a module that appears in
    ``sys.modules`` later is still found."""
    module = sys.modules.get(name)
    if module is not None or name in _MISSING:
        return module
    try:
        return importlib.import_module(name)
    except ImportError:
        _MISSING.add(name)
        return None


def _mm():
    return _optional("comfy.model_management")


def _folder_paths():
    return _optional("folder_paths")


# ---------------------------------------------------------------- devices

def torch_device() -> torch.device:
    """Where models run: ComfyUI's device when present, else CUDA if available, else CPU."""
    mm = _mm()
    if mm is not None:
        return torch.device(mm.get_torch_device())
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def offload_device() -> torch.device:
    """Where idle models wait: ComfyUI's unet offload device when present, else CPU."""
    mm = _mm()
    if mm is not None:
        return torch.device(mm.unet_offload_device())
    return torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where node outputs (IMAGE, LATENT) live between nodes: CPU unless ComfyUI says otherwise."""
    mm = _mm()
    if mm is not None and hasattr(mm, "intermediate_device"):
        return torch.device(mm.intermediate_device())
    return torch.device("cpu")


def bf16_native(device: torch.device) -> bool:
    """Whether a device computes bf16 natively (CUDA compute capability ≥ 8: Ampere and later); older
    GPUs only emulate it, slowly, which ``torch.cuda.is_bf16_supported()`` counts as support."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8


@contextmanager
def on_device(*modules: torch.nn.Module, device: Optional[torch.device] = None):
    """Move modules to the run device for the duration of a block, then back to the offload device."""
    device = device or torch_device()
    off = offload_device()
    mm = _mm()
    if mm is not None and device.type != "cpu":
        # make room: ComfyUI evicts its own idle models for ours
        need = sum(t.numel() * t.element_size() for m in modules for t in list(m.parameters()) + list(m.buffers()))
        extra = mm.minimum_inference_memory() if hasattr(mm, "minimum_inference_memory") else 0
        mm.free_memory(int(need * 1.1) + extra, device)   # weights + room for activations
    for m in modules:
        m.to(device)
    try:
        yield device
    finally:
        if off != device:
            for m in modules:
                m.to(off)
            if device.type == "cuda":
                mm = _mm()
                if mm is not None:
                    mm.soft_empty_cache()


# ---------------------------------------------------------------- progress and interrupt

def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel; a no-op outside ComfyUI."""
    mm = _mm()
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


class Progress:
    """Step progress: ComfyUI's ProgressBar (which also honours Cancel) when present, else tqdm,
    else a log line per step."""

    def __init__(self, total: int, desc: str = "Consistent Video Kit"):
        self.total = int(total)
        self._bar = None
        self._tqdm = None
        utils = _optional("comfy.utils")
        if utils is not None:
            self._bar = utils.ProgressBar(self.total)
        else:
            try:
                from tqdm.auto import tqdm
                self._tqdm = tqdm(total=self.total, desc=desc, leave=False, disable=None)   # none in logs
            except ImportError:
                pass
        self.n = 0
        self.desc = desc

    def update(self, n: int = 1) -> None:
        self.n += n
        check_interrupt()
        if self._bar is not None:
            self._bar.update(n)
        elif self._tqdm is not None:
            self._tqdm.update(n)
        else:
            log.debug("%s: %d/%d", self.desc, self.n, self.total)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()


# ---------------------------------------------------------------- model files

def register_model_folder(kind: str, extensions: Iterable[str]) -> None:
    """Register a pack model folder ``models/<kind>`` with ``folder_paths`` if ComfyUI does not know it
    yet (e.g. ``animatediff_models``). Outside ComfyUI every kind is ``$CVK_MODELS_DIR/<kind>`` already."""
    exts = {e if e.startswith(".") else "." + e for e in extensions}
    fp = _folder_paths()
    if fp is not None:
        if kind not in fp.folder_names_and_paths:
            fp.add_model_folder_path(kind, os.path.join(fp.models_dir, kind))
            paths, old = fp.folder_names_and_paths[kind]
            fp.folder_names_and_paths[kind] = (paths, set(old) | exts)


def model_folders(kind: str) -> list[str]:
    """Folders searched for one kind of model file (``checkpoints``, ``diffusers``, ...)."""
    fp = _folder_paths()
    if fp is not None:
        try:
            return list(fp.get_folder_paths(kind))
        except KeyError:
            return []
    root = os.environ.get(MODELS_DIR_ENV)
    return [os.path.join(root, kind)] if root else []


def list_models(kind: str, extensions: Optional[Iterable[str]] = None) -> list[str]:
    """File names (relative to their folder) of one kind: ComfyUI's own list when present and no
    ``extensions`` are given, else a walk of :func:`model_folders` keeping those extensions."""
    fp = _folder_paths()
    if fp is not None and extensions is None:
        try:
            return list(fp.get_filename_list(kind))
        except KeyError:
            return []
    exts = tuple(e.lower() for e in extensions) if extensions else None
    names = []
    for folder in model_folders(kind):
        if not os.path.isdir(folder):
            continue
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            rel = os.path.relpath(dirpath, folder)
            for f in filenames:
                if exts is None or f.lower().endswith(exts):
                    names.append(os.path.normpath(os.path.join(rel, f)))
    return sorted(set(names))


def list_model_dirs(kind: str, marker: str) -> list[str]:
    """Sub-folders (relative names) of the ``kind`` folders that contain ``marker`` (e.g. diffusers model
    folders holding ``model_index.json``), searched two levels deep."""
    names = []
    for folder in model_folders(kind):
        if not os.path.isdir(folder):
            continue
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            depth = os.path.relpath(dirpath, folder).count(os.sep)
            if marker in filenames and dirpath != folder:
                names.append(os.path.relpath(dirpath, folder))
                dirnames[:] = []
            elif depth >= 1:
                dirnames[:] = []
    return sorted(set(names))


def comfy_resource_dir(*parts: str) -> Optional[str]:
    """A folder shipped inside ComfyUI's ``comfy`` package (e.g. ``sd1_tokenizer``), if ComfyUI is present."""
    spec = importlib.util.find_spec("comfy") if _optional("comfy") is not None else None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    return path if os.path.isdir(path) else None


def input_directory() -> str:
    """ComfyUI's input folder; outside ComfyUI ``$CVK_INPUT_DIR`` or ``./input``."""
    fp = _folder_paths()
    return fp.get_input_directory() if fp is not None else os.environ.get("CVK_INPUT_DIR", os.path.abspath("input"))


def output_directory() -> str:
    """ComfyUI's output folder; outside ComfyUI ``$CVK_OUTPUT_DIR`` or ``./output``."""
    fp = _folder_paths()
    return fp.get_output_directory() if fp is not None else os.environ.get("CVK_OUTPUT_DIR", os.path.abspath("output"))


class ModelFileNotFound(FileNotFoundError):
    pass


def find_model(kind: str, name: str) -> str:
    """Full path of a model file or folder: an existing absolute/explicit path, or a name inside the
    ``kind`` folders. A miss raises an error that lists every folder searched."""
    if os.path.isabs(name) and os.path.exists(name):
        return name
    folders = model_folders(kind)
    for folder in folders:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    where = "\n  ".join(folders) if folders else (
        f"(no folder known for '{kind}': run inside ComfyUI, or set {MODELS_DIR_ENV} to a folder laid out "
        f"like ComfyUI's models/)")
    raise ModelFileNotFound(f"model file '{name}' not found. Put it in models/{kind}/. Searched:\n  {where}")
