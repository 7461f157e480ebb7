"""Reading checkpoint files and strict state-dict matching.

Files: ``.safetensors`` (read directly) or pickled ``.ckpt`` / ``.pt`` / ``.pth`` / ``.bin`` (only through
``torch.load(..., weights_only=True)``: a file that needs code execution to unpickle is refused).

"Strict" loading (DESIGN.md): every tensor in the file maps to a model parameter or buffer, or is on
an explicit, documented ignore-list; every model parameter is covered (buffers the model computes itself
may be listed as optional); anything else is an error that names the missing and unexpected keys.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import threading
import zipfile
from contextlib import contextmanager
from typing import Callable, Iterable, Optional

import torch

PICKLE_EXTS = (".ckpt", ".pt", ".pth", ".bin")
SAFE_EXTS = (".safetensors", ".sft")
MODEL_EXTS = SAFE_EXTS + PICKLE_EXTS
SHOW_KEYS = 12


class CheckpointError(ValueError):
    """A model file that cannot be used: unreadable, the wrong kind, or keys that do not match.
    ``role`` says which file it was about (``"base"`` or ``"motion_module"``), for the node's message."""
    role = "base"


@contextmanager
def file_role(role: str):
    """Tag CheckpointErrors raised inside the block with the role of the file being read."""
    try:
        yield
    except CheckpointError as e:
        e.role = role
        raise


def _short(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    more = f" … and {len(keys) - SHOW_KEYS} more" if len(keys) > SHOW_KEYS else ""
    return ", ".join(keys[:SHOW_KEYS]) + more


def read_state_dict(path: str, skip: Iterable[str] = (), nested: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file on the CPU (a ``{"state_dict": ...}`` wrapper is unwrapped;
    non-tensor entries such as epoch counters are dropped). Keys matching a ``skip`` regex (parts the caller
    ignores anyway, e.g. an EMA copy) are never read: safetensors reads the rest one tensor at a time,
    pickles are memory-mapped. ``nested``: top-level dicts of tensors (a file that holds several state dicts)
    are kept too, their keys as ``<top-level key>/<key>``; ``skip`` applies to the top-level keys first."""
    skipped = [re.compile(p) for p in skip]
    keep = (lambda k: not any(r.search(k) for r in skipped)) if skipped else (lambda k: True)
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"'{path}' is not a file")
    lower = name.lower()
    if lower.endswith(SAFE_EXTS):
        from safetensors import SafetensorError, safe_open
        try:
            with safe_open(path, "pt", device="cpu") as f:
                sd = {k: f.get_tensor(k) for k in f.keys() if keep(k)}
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"'{name}' could not be read as safetensors ({e}); the file is truncated "
                                  f"or not a model file — download it again") from None
    elif lower.endswith(PICKLE_EXTS):
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
        except pickle.UnpicklingError as e:
            raise CheckpointError(
                f"'{name}' needs code execution to unpickle, which this pack refuses (torch.load with "
                f"weights_only=True): {str(e).splitlines()[0]} Convert it to .safetensors with a trusted tool, "
                f"or use the .safetensors release of the model") from None
        except Exception as e:   # torch's unpickler on a file that is no pickle: IndexError, KeyError, EOFError, …
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(f"'{name}' could not be read ({type(e).__name__}: {reason}); the file is truncated "
                                  f"or not a model file — download it again") from None
    else:
        raise CheckpointError(f"'{name}': unsupported file type; expected one of {', '.join(MODEL_EXTS)}")
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"'{name}' does not hold a state dict (got {type(sd).__name__})")
    out = {k: v for k, v in sd.items() if torch.is_tensor(v) and keep(k)}
    if nested:
        for top, inner in sd.items():
            if isinstance(inner, dict) and keep(top):
                out.update({f"{top}/{k}": v for k, v in inner.items() if torch.is_tensor(v)})
    return out


def read_metadata(path: str) -> dict[str, str]:
    """A safetensors file's metadata (the pack's trainers keep their network configs and latent normalisation there);
    {} for other files or none."""
    if not path.lower().endswith(SAFE_EXTS):
        return {}
    from safetensors import safe_open
    try:
        with safe_open(path, "pt") as f:
            return dict(f.metadata() or {})
    except Exception:
        return {}               # read_state_dict raises the clear error


def read_shapes(path: str) -> dict[str, tuple]:
    """Key → shape of a checkpoint file; for safetensors from the header alone (no tensor is read)."""
    if path.lower().endswith(SAFE_EXTS):
        from safetensors import safe_open
        try:
            with safe_open(path, "pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception:
            pass   # read_state_dict raises the clear error
    return {k: tuple(v.shape) for k, v in read_state_dict(path).items()}


def read_folder_weights(folder: str, *stems: str) -> dict[str, torch.Tensor]:
    """Weights of one diffusers / transformers component folder: the first of ``<stem>[.fp16].safetensors``,
    its sharded ``.index.json``, or the pickled ``<stem>[.fp16].bin`` (and its index), over the stems given
    (diffusers: ``diffusion_pytorch_model``; transformers: ``model``, ``pytorch_model``)."""
    tried = []
    for stem in stems:
        for variant in ("", ".fp16"):
            for ext in (".safetensors", ".bin"):
                path = os.path.join(folder, stem + variant + ext)
                index = path + ".index.json"
                tried.append(os.path.basename(path))
                if os.path.isfile(path):
                    return read_state_dict(path)
                if os.path.isfile(index):
                    with open(index) as f:
                        shards = sorted(set(json.load(f)["weight_map"].values()))
                    sd = {}
                    for shard in shards:
                        sd.update(read_state_dict(os.path.join(folder, shard)))
                    return sd
    raise CheckpointError(f"no weights in '{folder}': expected one of {', '.join(tried)} (or a sharded index)")


def _linear_vs_1x1(a: tuple, b: tuple) -> bool:
    """``(out, in)`` against ``(out, in, 1, 1)``, either way round: the only reshape strict loading allows."""
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return len(short) == 2 and len(long) == 4 and long[:2] == short and long[2:] == (1, 1)


def match_state_dict(model: torch.nn.Module, file_sd: dict[str, torch.Tensor], what: str,
                     rename: Optional[Callable[[str], Optional[str]]] = None,
                     ignore_file: Iterable[str] = (), optional_model: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Map a file's tensors onto a model's state-dict keys, strictly.

    ``rename(file_key) -> model_key or None``; ``ignore_file`` and ``optional_model`` are regexes (searched)
    for file keys that are deliberately dropped and model keys (buffers the model computes) that the
    file need not provide. Shapes must agree, except a 1×1-conv ↔ linear reshape of equal size.
    Returns ``{model_key: tensor}``; raises :class:`CheckpointError` naming missing / unexpected keys.
    """
    model_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ign = [re.compile(p) for p in ignore_file]
    opt = [re.compile(p) for p in optional_model]
    out, unexpected, bad_shape = {}, [], []
    for fk, t in file_sd.items():
        mk = rename(fk) if rename else fk
        if mk is None or mk not in model_shapes:
            if not any(p.search(fk) for p in ign):
                unexpected.append(fk)
            continue
        want = model_shapes[mk]
        if tuple(t.shape) != want:
            if _linear_vs_1x1(tuple(t.shape), want):
                t = t.reshape(want)   # attention projections stored as 1×1 convs (or vice versa)
            else:
                bad_shape.append(f"{fk} {tuple(t.shape)} vs model {want}")
                out[mk] = None   # present, but unusable: reported as a mismatch, not as missing
                continue
        out[mk] = t
    missing = [k for k in model_shapes if k not in out and not any(p.search(k) for p in opt)]
    if missing or unexpected or bad_shape:
        parts = [f"{what}: the file does not match the model"]
        if missing:
            parts.append(f"{len(missing)} missing keys: {_short(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_short(unexpected)}")
        if bad_shape:
            parts.append(f"{len(bad_shape)} shape mismatches: {_short(bad_shape)}")
        raise CheckpointError(". ".join(parts))
    return out


_EMPTY_LOCK = threading.RLock()


@contextmanager
def empty_params():
    """Create module parameters on the meta device (no memory, no init time); buffers stay real, so
    tables a model computes itself (positional encodings, position ids) keep their values.
    It patches ``nn.Module.register_parameter`` for the duration (under a lock, so two loads do not
    interleave); keep the block to model construction."""
    _EMPTY_LOCK.acquire()
    original = torch.nn.Module.register_parameter

    def register(module, name, param):
        original(module, name, param)
        if param is not None:
            p = module._parameters[name]
            module._parameters[name] = torch.nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)
    torch.nn.Module.register_parameter = register
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = original
        _EMPTY_LOCK.release()


def load_into(model: torch.nn.Module, matched: dict[str, torch.Tensor], dtype: Optional[torch.dtype] = None
              ) -> torch.nn.Module:
    """Assign matched tensors (from :func:`match_state_dict`) to a model built under :func:`empty_params`."""
    if dtype is not None:
        matched = {k: v.to(dtype) if v.is_floating_point() else v for k, v in matched.items()}
    model.load_state_dict(matched, strict=False, assign=True)
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise CheckpointError(f"parameters left without weights: {_short(left)}")
    if dtype is not None:
        model.to(dtype)
    return model.eval().requires_grad_(False)
