"""The ONE place that touches ComfyUI. Every import of ``comfy`` / ``folder_paths`` is lazy, with a
plain fallback, so the pack imports and runs without ComfyUI (tests, the headless demo).

- devices and dtypes: :func:`torch_device`, :func:`offload_device`, :func:`intermediate_device`
- model memory: :class:`ModelPart`, :func:`load_models` (ComfyUI's ModelPatcher and ``load_models_gpu``)
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


def offload_device(role: str = "diffusion") -> torch.device:
    """Where idle models of a role (:data:`ROLES`) wait: ComfyUI's offload device for it when present, else
    the CPU."""
    mm = _mm()
    if mm is not None:
        return torch.device(getattr(mm, _COMFY_DEVICES[role][1])())
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


# ---------------------------------------------------------------- model memory management
#
# Every network the pack loads (a UNet, a text encoder, a VAE, a scorer; later camera and sync modules) is a
# ModelPart. Inside ComfyUI a part is held by a ComfyUI ModelPatcher and loaded with
# comfy.model_management.load_models_gpu, so "Unload models" (POST /free), --lowvram/--highvram, partial loading
# and the manager's free-memory accounting act on it as on core models: a part stays on its load device after a
# node until the manager needs the room. Outside ComfyUI (tests, the headless demo) a part moves to the run
# device once, the first time it is needed, and stays there.

ROLES = ("diffusion", "text_encoder", "vae")
# where ComfyUI loads and offloads each role (comfy.model_management functions); the scorer, a CLIP model,
# takes the text encoders' devices as core's CLIP vision does
_COMFY_DEVICES = {"diffusion": ("get_torch_device", "unet_offload_device"),
                  "text_encoder": ("text_encoder_device", "text_encoder_offload_device"),
                  "vae": ("vae_device", "vae_offload_device")}


def _mp():
    """comfy.model_patcher, only when comfy.model_management is there too (real ComfyUI)."""
    return _optional("comfy.model_patcher") if _mm() is not None else None


def load_device(role: str = "diffusion") -> torch.device:
    """Where a part of this role runs: ComfyUI's device for it when present, else :func:`torch_device`."""
    mm = _mm()
    if mm is not None and _mp() is not None:
        return torch.device(getattr(mm, _COMFY_DEVICES[role][0])())
    return torch_device()


class ModelPart:
    """One loaded network (``module``) under the host's model management, in a ``role`` (:data:`ROLES`) that
    picks its load and offload devices.

    Parts are never changed in place once a node has returned them: :meth:`clone` and :meth:`with_object_patch`
    give new parts that share the weights (ComfyUI caches node outputs, and another branch of the graph may
    hold the same part). An object patch replaces an attribute of the network (``"down_blocks.0.attentions.0
    .transformer_blocks.0.attn1.processor"``) from the moment this part is loaded (:func:`load_models`) until a
    part with other patches, sharing the same weights, is loaded: that one gets its own attributes back. So
    load a part before computing with it (the nodes do)."""

    def __init__(self, module: torch.nn.Module, role: str, name: str = ""):
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        self.module = module
        self.role = role
        self.name = name or type(module).__name__
        self.object_patches: dict = {}
        self._patches_key = object()        # equal keys: the same object patches
        self._source: Optional[ModelPart] = None
        self._patcher = None

    def __repr__(self) -> str:
        patched = f", {len(self.object_patches)} object patches" if self.object_patches else ""
        return f"<ModelPart {self.name} ({self.role}{patched})>"

    def clone(self) -> "ModelPart":
        """A new part with the same weights and the same object patches."""
        n = ModelPart.__new__(ModelPart)
        n.module, n.role, n.name = self.module, self.role, self.name
        n.object_patches = dict(self.object_patches)
        n._patches_key = self._patches_key
        n._source, n._patcher = self, None
        return n

    def with_object_patch(self, name: str, obj) -> "ModelPart":
        """A clone whose network has attribute ``name`` (dotted, relative to the network) replaced by ``obj``
        while it computes; this part is left as it is."""
        n = self.clone()
        n.object_patches[name] = obj
        n._patches_key = object()
        return n

    def shares_weights(self, other: "ModelPart") -> bool:
        return self.module is other.module

    @property
    def device(self) -> torch.device:
        """Where this part computes (load it first with :func:`load_models`)."""
        if _mp() is not None:
            return torch.device(self.patcher().load_device)
        return torch_device()

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the network's weights (floating-point ones)."""
        for p in self.module.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    # -- inside ComfyUI
    def patcher(self):
        """This part's ComfyUI ModelPatcher (made on first use; a clone's patcher is a clone of its source's,
        so ComfyUI knows they share weights)."""
        if self._patcher is None:
            if self._source is not None:
                p = self._source.patcher().clone()
            else:
                mm = _mm()
                load, offload = (torch.device(getattr(mm, f)()) for f in _COMFY_DEVICES[self.role])
                p = _patcher_class()(_holder(self.module), load_device=load, offload_device=offload)
            for k, v in self.object_patches.items():
                p.add_object_patch(f"{HELD_NAME}.{k}", v)
            self._patcher = p
        return self._patcher

    # -- outside ComfyUI
    def _load_plain(self) -> None:
        device = torch_device()
        if any(t.device != device for t in _all_tensors(self.module)):
            self.module.to(device)
        active = self.module.__dict__.get("_cvk_active")
        if active is not None and active[0] is self._patches_key:
            return
        if active is not None:
            for k, old in reversed(active[1]):
                _set_attr(self.module, k, old)
        backups = [(k, _set_attr(self.module, k, v)) for k, v in self.object_patches.items()]
        self.module.__dict__["_cvk_active"] = (self._patches_key, backups)


def load_models(parts: Iterable[ModelPart], memory_required: int = 0) -> None:
    """Make ``parts`` ready to compute on their devices (:attr:`ModelPart.device`), with about
    ``memory_required`` bytes left for activations. Inside ComfyUI: ``load_models_gpu`` with their patchers —
    parts already loaded stay as they are, others are loaded (partially where VRAM is short; the rest of the
    weights then stream in per layer), and idle models are unloaded to make room. Nothing is unloaded
    afterwards: the manager does that when it needs the memory. Outside ComfyUI a part moves to the run device
    the first time only. Parts sharing one network load once; with different object patches they cannot
    compute together (a ValueError)."""
    unique: list[ModelPart] = []
    for p in parts:
        same = next((u for u in unique if u.shares_weights(p)), None)
        if same is None:
            unique.append(p)
        elif same._patches_key is not p._patches_key:
            raise ValueError(f"{p.name}: two versions of one network with different patches cannot compute "
                             f"together (they share the weights and the patched attributes)")
    parts = unique      # clones with the same patches: one load serves them all
    if _mp() is not None:
        _mm().load_models_gpu([p.patcher() for p in parts], memory_required=int(memory_required))
        return
    for p in parts:
        p._load_plain()


HELD_NAME = "net"
_HOLDERS: dict = {}
_PATCHER_CLASS = None


def _holder(net: torch.nn.Module) -> torch.nn.Module:
    """The module a ModelPatcher holds: the network as its child ``net``. ModelPatcher sets ``device`` and its
    bookkeeping on the module it holds, which diffusers and transformers models refuse (their ``device`` is a
    read-only property). The holder's class is named ``CVK_<network class>``, which ComfyUI's log shows."""
    name = f"CVK_{type(net).__name__}"
    cls = _HOLDERS.get(name)
    if cls is None:
        cls = _HOLDERS[name] = type(name, (torch.nn.Module,), {"__module__": __name__, "__doc__": _holder.__doc__})
    held = cls()
    setattr(held, HELD_NAME, net)
    held.device = None
    return held


def _patcher_class():
    """ComfyUI's ModelPatcher, plus: after every load or unload of weights, the modules left off the load
    device stream their weights in for each call (:func:`sync_streaming`). ComfyUI's partial loading casts such
    weights on the fly only for its own ``comfy.ops`` layers; diffusers and transformers layers are plain
    torch ones."""
    global _PATCHER_CLASS
    if _PATCHER_CLASS is None:
        base = _mp().ModelPatcher

        class CVKModelPatcher(base):
            def load(self, device_to=None, *args, **kwargs):
                out = base.load(self, device_to, *args, **kwargs)
                if self.model.model_loaded_weight_memory < self.model_size():
                    # ComfyUI flags a partial load only when it offloaded comfy.ops layers; so that it tops the
                    # load up when memory frees (partially_load) and accounts it as partial, flag ours too
                    self.model.model_lowvram = True
                sync_streaming(self.model, self.load_device, partial=self.model.model_lowvram)
                return out

            def partially_unload(self, *args, **kwargs):
                out = base.partially_unload(self, *args, **kwargs)
                sync_streaming(self.model, self.load_device, partial=True)
                return out

            def unpatch_model(self, device_to=None, unpatch_weights=True):
                out = base.unpatch_model(self, device_to, unpatch_weights)
                if unpatch_weights:   # all weights back on the offload device: nothing computes until a load
                    stop_streaming(self.model)
                return out

        CVKModelPatcher.__module__ = __name__
        _PATCHER_CLASS = CVKModelPatcher
    return _PATCHER_CLASS


# ---------------------------------------------------------------- streaming the weights of offloaded layers

def _own_tensors(m: torch.nn.Module) -> list:
    return [t for t in (*m._parameters.values(), *m._buffers.values()) if t is not None]


def _all_tensors(m: torch.nn.Module):
    yield from m.parameters()
    yield from m.buffers()


def _set_attr(root, dotted: str, value):
    """Set ``root.<dotted>`` to ``value``; returns the old value."""
    *path, last = dotted.split(".")
    obj = root
    for p in path:
        obj = getattr(obj, p)
    old = getattr(obj, last)
    setattr(obj, last, value)
    return old


def streamed_modules(root: torch.nn.Module) -> list[str]:
    """Names of the modules under ``root`` that stream their weights in per call (for tests and logs)."""
    return [n for n, m in root.named_modules() if "_cvk_stream" in m.__dict__]


def sync_streaming(root: torch.nn.Module, device, partial: bool = False) -> None:
    """After ``root`` was loaded to ``device``: every module whose own parameters or buffers are elsewhere gets
    a forward hook pair that brings them to ``device`` for the call and puts the originals back after it (even
    when the call raises); modules whose weights are all on ``device`` lose such hooks.

    After a ``partial`` load ComfyUI's own record decides too: a module with parameters that ComfyUI did not
    load (no ``comfy_patched_weights``) streams although its weights may sit on ``device`` already (a CPU host
    loads to the CPU), so a CPU run goes through the same hooks as a GPU would."""
    device = torch.device(device)
    for m in root.modules():
        own = _own_tensors(m)
        away = any(t.device != device for t in own) or (
            partial and len(m._parameters) > 0 and not getattr(m, "comfy_patched_weights", False))
        hooks = m.__dict__.get("_cvk_stream")
        if away and (hooks is None or hooks[2] != device):
            if hooks is not None:
                _remove_stream(m)
            pre = m.register_forward_pre_hook(_stream_in(device))
            post = m.register_forward_hook(_stream_out, always_call=True)
            m.__dict__["_cvk_stream"] = (pre, post, device)
            m.__dict__["_cvk_stash"] = []
        elif not away and hooks is not None:
            _remove_stream(m)


def stop_streaming(root: torch.nn.Module) -> None:
    for m in root.modules():
        if "_cvk_stream" in m.__dict__:
            _remove_stream(m)


def _remove_stream(m: torch.nn.Module) -> None:
    pre, post, _ = m.__dict__.pop("_cvk_stream")
    pre.remove()
    post.remove()
    m.__dict__.pop("_cvk_stash", None)


def _stream_in(device: torch.device):
    def hook(m, args):
        moved = []
        for table in (m._parameters, m._buffers):
            for k, t in table.items():
                if t is not None:
                    moved.append((table, k, t))
                    table[k] = t.to(device, copy=True)
        m.__dict__["_cvk_stash"].append(moved)
    return hook


def _stream_out(m, args, output):
    stash = m.__dict__.get("_cvk_stash")
    if stash:
        for table, k, t in stash.pop():
            table[k] = t


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
