"""The pack's model management against ComfyUI's own ``comfy.model_management`` and ``comfy.model_patcher``,
imported into this process (no server). Run under ComfyUI's Python, from ``tests/``:

    COMFYUI_PATH=... $COMFYUI_PYTHON -m cvk_testkit.comfy_checks <check> [<check> ...]

Each check prints one line ``CHECK <name> <json>`` with what it measured (or the error it raised); ``tests/test_comfyui_model_management.py``
runs them and asserts on the numbers. ComfyUI is started with ``--cpu`` (its load device is then the CPU, as
in the server tests); a partial load is what ComfyUI does when VRAM is short, forced here with a budget.
"""
from __future__ import annotations

import copy
import json
import os
import sys
import traceback
from collections import Counter
from contextlib import contextmanager

import torch

CHECKS = {}


def check(fn):
    CHECKS[fn.__name__] = fn
    return fn


def import_comfy(path: str, args=("--cpu",)):
    """ComfyUI's modules from the source tree at ``path``, its command line parsed from ``args``."""
    if path not in sys.path:
        sys.path.insert(0, path)
    argv, sys.argv = sys.argv, [sys.argv[0], *args]
    try:
        import comfy.options
        comfy.options.enable_args_parsing()
        import comfy.model_management
        import comfy.model_patcher  # noqa: F401
        import comfy.utils  # noqa: F401
    finally:
        sys.argv = argv
    return comfy.model_management


def _setup():
    mm = import_comfy(os.environ["COMFYUI_PATH"])
    from cvk_testkit import load_pack
    load_pack()
    from consistent_video_kit import host
    from consistent_video_kit.models.scorers import tiny_clip_scorer
    from consistent_video_kit.models.tiny import tiny_model
    assert host._mp() is not None, "the pack does not see ComfyUI"
    mm.unload_all_models()        # each check starts with nothing loaded
    return mm, host, tiny_model("tiny-animatediff"), tiny_clip_scorer()


def _parts(model, scorer=None):
    out = {"unet": model.unet_part, "text_encoder": model.text.part, "vae": model.vae.part}
    if scorer is not None:
        out["scorer"] = scorer.part
    return out


def _ours(mm, parts) -> list[str]:
    """Roles of ``parts`` whose patchers (or clones of them) are in ComfyUI's ``current_loaded_models``."""
    loaded = [lm.model for lm in mm.current_loaded_models if lm.model is not None]
    return sorted(r for r, p in parts.items() if any(m.model is p.patcher().model for m in loaded))


@contextmanager
def _count_patcher_moves(parts):
    """Per role: ModelPatcher.load calls (weights to the load device) and full / partial unloads (weights back to
    the offload device)."""
    import comfy.model_patcher as mp
    held = {id(p.patcher().model): r for r, p in parts.items()}
    counts = {"load": Counter(), "unload": Counter(), "partial_unload": Counter()}
    real = {k: getattr(mp.ModelPatcher, k) for k in ("load", "unpatch_model", "partially_unload")}

    def load(self, *a, **k):
        counts["load"][held.get(id(self.model), "other")] += 1
        return real["load"](self, *a, **k)

    def unpatch_model(self, device_to=None, unpatch_weights=True):
        if unpatch_weights:
            counts["unload"][held.get(id(self.model), "other")] += 1
        return real["unpatch_model"](self, device_to, unpatch_weights)

    def partially_unload(self, *a, **k):
        counts["partial_unload"][held.get(id(self.model), "other")] += 1
        return real["partially_unload"](self, *a, **k)
    mp.ModelPatcher.load, mp.ModelPatcher.unpatch_model, mp.ModelPatcher.partially_unload = \
        load, unpatch_model, partially_unload
    try:
        yield counts
    finally:
        for k, v in real.items():
            setattr(mp.ModelPatcher, k, v)


@contextmanager
def _budget(mm, share: float):
    """Every load_models_gpu load is partial, with ``share`` of the model's size as its weight budget: what
    ComfyUI does on a GPU too small for the model (on ``--cpu`` it always loads fully). As load_models_gpu
    computes it, the budget passed on is what is left after the weights already loaded (0.1 when nothing)."""
    real = mm.LoadedModel.model_load

    def model_load(self, lowvram_model_memory=0, force_patch_weights=False):
        left = int(self.model.model_size() * share) - self.model_loaded_memory()
        return real(self, left if left > 0 else 0.1, force_patch_weights)
    mm.LoadedModel.model_load = model_load
    try:
        yield
    finally:
        mm.LoadedModel.model_load = real


def _weights_back(net) -> bool:
    """Every parameter of ``net`` is a Parameter again (a streamed layer computes with temporary copies)."""
    return all(isinstance(t, torch.nn.Parameter) for m in net.modules() for t in m._parameters.values() if t is not None)


def _diff(a, b) -> float:
    return float((a.float() - b.float()).abs().max())


@check
def moves():
    """Loads and unloads per part over a consecutive I4VGen chain then Text to Video → Decode; then POST /free's
    unload_all_models, and the chain again."""
    from cvk_testkit.chains import i4vgen_chain, t2v_chain
    mm, host, model, scorer = _setup()
    parts = _parts(model, scorer)
    out = {}
    with _count_patcher_moves(parts) as c:
        i4vgen_chain(model, scorer)
        out["i4vgen"] = {k: dict(v) for k, v in c.items()}
        for v in c.values():
            v.clear()
        first = t2v_chain(model)
        out["t2v_decode"] = {k: dict(v) for k, v in c.items()}
        out["loaded_after_chains"] = _ours(mm, parts)
        out["devices"] = {r: [str(p.patcher().load_device), str(p.patcher().offload_device)] for r, p in parts.items()}
        for v in c.values():
            v.clear()
        mm.unload_all_models()
        out["unload_all"] = {k: dict(v) for k, v in c.items()}
        out["loaded_after_unload"] = _ours(mm, parts)
        for v in c.values():
            v.clear()
        again = t2v_chain(model)
        out["t2v_decode_after_unload"] = {k: dict(v) for k, v in c.items()}
        out["loaded_after_rerun"] = _ours(mm, parts)
        out["rerun_max_diff"] = _diff(first, again)
    return out


@check
def partial_equals_full():
    """The I4VGen chain and Text to Video → Decode with every part fully loaded, then with every part partially
    loaded (40 % and 10 % of its weights), then after ComfyUI partially unloads a fully loaded UNet."""
    from cvk_testkit.chains import i4vgen_chain, t2v_chain
    mm, host, model, scorer = _setup()
    parts = _parts(model, scorer)
    full = (i4vgen_chain(model, scorer), t2v_chain(model))
    out = {"full_streamed": {r: len(host.streamed_modules(p.patcher().model)) for r, p in parts.items()}}
    for share in (0.4, 0.1):
        mm.unload_all_models()
        with _budget(mm, share):
            got = (i4vgen_chain(model, scorer), t2v_chain(model))
        out[f"partial_{share}"] = {
            "max_diff": max(_diff(a, b) for a, b in zip(full, got)),
            "loaded_share": {r: p.patcher().loaded_size() / p.patcher().model_size() for r, p in parts.items()},
            "lowvram": {r: bool(p.patcher().model.model_lowvram) for r, p in parts.items()},
            "streamed": {r: len(host.streamed_modules(p.patcher().model)) for r, p in parts.items()},
            "modules": {r: sum(1 for m in p.module.modules() if m._parameters or m._buffers) for r, p in parts.items()},
            "weights_back": {r: _weights_back(p.module) for r, p in parts.items()},
        }
    mm.unload_all_models()
    out["after_unload_streamed"] = {r: len(host.streamed_modules(p.patcher().model)) for r, p in parts.items()}
    # ComfyUI frees memory from a loaded model (free_memory → partially_unload), then the model computes
    z = torch.randn(2, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    t, cond = torch.tensor([500, 500]), {"text": torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(1))}
    with model.loaded(z.shape):
        ref = model.network(z, t, cond)
    unet = model.unet_part.patcher()
    freed = unet.partially_unload(unet.offload_device, unet.model_size() // 2)
    with torch.inference_mode():
        got = model.network(z, t, cond)
    out["partially_unloaded"] = {"freed_share": freed / unet.model_size(),
                                 "streamed": len(host.streamed_modules(unet.model)), "max_diff": _diff(ref, got)}
    return out


@check
def meta_device():
    """Partial loads to the meta device, a stand-in for a GPU that mixes with no CPU tensor: ComfyUI moves the
    modules that fit, the rest stay on the CPU (the offload device) and stream in; any layer computing with a
    CPU weight would raise. Copies of the tiny parts (moving to meta drops the values)."""
    mm, host, model, scorer = _setup()
    meta, cpu = torch.device("meta"), torch.device("cpu")
    m = copy.deepcopy(model)
    s = copy.deepcopy(scorer)
    parts = _parts(m, s)
    for r, p in parts.items():
        patcher = host._patcher_class()(host._holder(p.module), load_device=meta, offload_device=cpu)
        p._patcher = patcher
        patcher.partially_load(meta, extra_memory=int(patcher.model_size() * 0.4))
    before = {r: p.module.state_dict(keep_vars=True) for r, p in parts.items()}
    out = {}
    with torch.inference_mode():
        z = torch.zeros(2, 4, 3, 8, 8, device=meta)
        unet_out = m.network(z, torch.tensor([500, 500]), {"text": torch.zeros(2, 77, 32, device=meta)})
        ids = m.text.tokenizer(["a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
        text_out = m.text.model(ids.to(meta)).last_hidden_state
        img = m.vae.vae.decode(torch.zeros(2, 4, 8, 8, device=meta)).sample
        enc = m.vae.vae.encode(torch.zeros(1, 3, 64, 64, device=meta)).latent_dist.mode()
        tokens = s.tokenize("a cat")
        pooled = s.model.text_model(input_ids=tokens["input_ids"].to(meta)).pooler_output
        vis = s.model.visual_projection(s.model.vision_model(pixel_values=torch.zeros(1, 3, 32, 32, device=meta)).pooler_output)
    out["outputs"] = {k: [str(v.device), list(v.shape)] for k, v in dict(unet=unet_out, text=text_out, decode=img, encode=enc,
                                                                          scorer_text=pooled, scorer_image=vis).items()}
    after = {r: p.module.state_dict(keep_vars=True) for r, p in parts.items()}
    out["parts"] = {}
    for r, p in parts.items():
        where = Counter(t.device.type for t in after[r].values())
        out["parts"][r] = {"on_meta": where["meta"], "on_cpu": where["cpu"],
                           "streamed": len(host.streamed_modules(p.patcher().model)),
                           "tensors_restored": all(after[r][n] is t for n, t in before[r].items())}
    return out


@check
def clones():
    """A clone with an object patch (``conv_out`` doubled) and its source, loaded one after the other: one set of
    weights, each computes its own function, and switching restores the original."""
    mm, host, model, scorer = _setup()
    from cvk_testkit.patches import Doubled
    z = torch.randn(2, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500, 500])
    cond = {"text": torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(1))}
    patched = model.with_unet(model.unet_part.with_object_patch("conv_out", Doubled(model.unet.conv_out)))
    outs = []
    for which in (model, patched, model, patched):
        with which.loaded(z.shape):
            outs.append(which.network(z, t, cond))
    a, b = model.unet_part.patcher(), patched.unet_part.patcher()
    held_patched = type(model.unet.conv_out).__name__               # the patch is in while the clone is loaded
    with model.loaded(z.shape):
        restored = model.unet.conv_out is patched.unet_part.object_patches["conv_out"].inner
    return {"while_patched": held_patched, "restored": restored,"orig_again": _diff(outs[0], outs[2]), "patched_again": _diff(outs[1], outs[3]),
            "patched_vs_double": _diff(outs[1], 2 * outs[0]), "orig_vs_patched": _diff(outs[0], outs[1]),
            "same_held": a.model is b.model, "is_clone": a.is_clone(b), "parent": b.parent is a,
            "loaded": [type(lm.model.model).__name__ for lm in mm.current_loaded_models if lm.model is not None]}


def main(argv) -> int:
    """Runs the checks in turn; one that raises reports ``{"error": <traceback>}`` and the others still run."""
    torch.set_num_threads(1)
    for name in argv or list(CHECKS):
        try:
            result = CHECKS[name]()
        except Exception:
            result = {"error": traceback.format_exc()}
        print(f"CHECK {name} {json.dumps(result)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
