"""Model loads and moves over consecutive node chains: how often each part's weights travel, how long the
moves take, and peak GPU memory. Run it on two checkouts to compare before/after.

    .venv/bin/python bench/model_loads.py [--repeats 2] [--steps 3] [--frames 4] [--size 64]
    COMFYUI_PATH=/path/to/ComfyUI $COMFYUI_PYTHON bench/model_loads.py --comfyui [--comfy-args "--lowvram"]

Chains (the nodes called one after the other, as ComfyUI's executor does; see tests/cvk_testkit/chains.py):
I4VGen (Anchor Candidates → Anchor Selector with the tiny CLIP scorer → NI-VSDS Animator → Regenerate →
Decode) then Text to Video → Decode, ``--repeats`` times (a second run is what a user's next queue costs).
Per role it reports ``.to()`` calls on the whole network (how the pack moved models before it used ComfyUI's
model management) and, with ``--comfyui``, ComfyUI ModelPatcher loads and unloads and the seconds spent in
them; with CUDA, peak allocated memory per run. Model: the tiny AnimateDiff, or ``--model`` (an SD1.5 file or
diffusers folder) with ``--motion-module`` for real sizes. ``--comfyui`` imports ComfyUI's modules into this
process (no server), with ``--comfy-args`` as its command line (``--cpu`` where there is no CUDA).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections import Counter, defaultdict

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def patcher_counter():
    """Wrap ComfyUI's ModelPatcher.load / unpatch_model / partially_unload: calls and seconds per held class."""
    import comfy.model_patcher as mp
    stats = defaultdict(Counter)

    def wrap(name, kind, when=lambda *a, **k: True):
        real = getattr(mp.ModelPatcher, name)

        def f(self, *a, **k):
            if not when(*a, **k):
                return real(self, *a, **k)
            t = time.perf_counter()
            try:
                return real(self, *a, **k)
            finally:
                key = type(self.model).__name__
                stats[key][kind] += 1
                stats[key][kind + "_s"] += time.perf_counter() - t
        setattr(mp.ModelPatcher, name, f)
    wrap("load", "load")
    wrap("unpatch_model", "unload", lambda device_to=None, unpatch_weights=True: unpatch_weights)
    wrap("partially_unload", "partial_unload")
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--model", default="tiny-animatediff")
    ap.add_argument("--motion-module", default=None)
    ap.add_argument("--comfyui", action="store_true", help="import ComfyUI from $COMFYUI_PATH into this process")
    ap.add_argument("--comfy-args", default=None, help="ComfyUI's command line (default: --cpu without CUDA)")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    stats = None
    if args.comfyui:
        from cvk_testkit.comfy_checks import import_comfy
        comfy_args = shlex.split(args.comfy_args if args.comfy_args is not None else
                                 ("" if torch.cuda.is_available() else "--cpu"))
        mm = import_comfy(os.environ["COMFYUI_PATH"], comfy_args)
        stats = patcher_counter()
        print(f"ComfyUI {comfy_args}: device {mm.get_torch_device()}, vram state {mm.vram_state.name}")
    from cvk_testkit import load_pack
    load_pack()
    from cvk_testkit.chains import ToCounter, i4vgen_chain, networks, t2v_chain
    from consistent_video_kit.models.scorers import tiny_clip_scorer
    from consistent_video_kit.models.tiny import tiny_model
    t0 = time.perf_counter()
    if args.model.startswith("tiny-"):
        model = tiny_model(args.model)
    else:
        from consistent_video_kit.models.loaders import folder_family, load_animatediff, load_modelscope
        path = args.model
        model = (load_modelscope(path) if os.path.isdir(path) and folder_family(path) == "modelscope"
                 else load_animatediff(path, args.motion_module))
    scorer = tiny_clip_scorer()
    print(f"{model.name}: built in {time.perf_counter() - t0:.2f} s; {args.steps} steps, {args.frames} frames at "
          f"{args.size}×{args.size}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    cuda = torch.cuda.is_available()
    for run in range(args.repeats):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        if stats is not None:
            stats.clear()
        with ToCounter(networks(model, scorer)) as moves:
            t = time.perf_counter()
            i4vgen_chain(model, scorer, args.steps, args.frames, args.size)
            t2v_chain(model, args.steps, args.frames, args.size)
            if cuda:
                torch.cuda.synchronize()
            wall = time.perf_counter() - t
        peak = f", peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if cuda else ""
        print(f"run {run + 1}: {wall:.2f} s{peak}; .to() on whole networks: {dict(moves.counts) or 'none'}")
        if stats is not None:
            for held, c in sorted(stats.items()):
                print(f"    {held}: {c['load']} loads ({c['load_s']:.3f} s), {c['unload']} unloads "
                      f"({c['unload_s']:.3f} s), {c['partial_unload']} partial unloads")
            if not stats:
                print("    no ModelPatcher load or unload")
    return 0


if __name__ == "__main__":
    sys.exit(main())
