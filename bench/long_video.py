"""Long videos (samplers/long_video.py): peak memory vs windows, time outside network calls, determinism.

    OMP_NUM_THREADS=1 .venv/bin/python bench/long_video.py [--parts memory,overhead,determinism] [--steps 2]
                                                           [--windows 2,8,32] [--jobs 2] [--profile]

Runs (untrained tiny models, batch B = 1, DDIM on the model's default grid; "latent" = one latent frame):

- ``ad-replace``: :func:`extend` on ``tiny-animatediff``, REPLACE conditioning, text CFG 7.5 (s = 100, η = 0),
  windows of 8 latents with 2 known → 6 new. Every network call carries batch 2 (uncond + cond) × 8 frames
  (UNetMotionModel sees 16 2-D samples).
- ``pred-exact``: :func:`extend` on ``tiny-lvdm-pred``, EXACT conditioning, unconditional guidance w = 0.1
  (s = 100, η = 1), windows of 4 latents with 1 known → 3 new (LVDM's pred chain). A call carries batch 2 (ε_c and
  ε_u in one call), except in the first window (nothing known: batch 1).
- ``interp-exact``: :func:`interpolate` on ``tiny-lvdm-interp``, EXACT, w = 0.1 (s = 100, η = 1), windows of 5
  latents with both ends known → 3 new per gap; batch 2 per call.
- ``interp-replace``: :func:`interpolate` on ``tiny-animatediff``, REPLACE, text CFG 7.5, windows of 8 latents
  with both ends known; batch 2 × 8 frames per call.

1. **Peak memory vs windows** (``ad-replace`` at 128×128 px = 16×16 latents, ``pred-exact`` at 256×256 px = 32×32
   latents, making 2, 8 and 32 windows, the video stored on the CPU, ``store=cpu``). Each (run, windows) is a fresh
   child process (one thread; ``--jobs`` of them at once: each measures only itself) with glibc serving every
   allocation ≥ 64 kB by ``mmap`` and returning it on free, so the resident set follows live tensors. The child
   builds the model, warms up (a 2-window run of 1 step: kernels, allocator, lazy tables), then measures the run
   alone (bench/_measure.py):

   - ``peak``: the kernel's peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs`` just before the run) − the
     RSS then. Exact (not sampled) and it counts everything the run touches, activations included. Why RSS and
     not an allocator hook: torch has no peak counter for CPU tensors (``max_memory_allocated`` is CUDA only) and
     tracemalloc does not see torch's allocations. Its noise is page- and heap-level, about 1–2 MiB here.
   - ``live@call``: the most bytes held in glibc's malloc (``mallinfo2``, exact to the byte) when a network call
     starts, − the same count before the run: what the run keeps between calls (the video so far, the window's
     state), without the transient activations. torch's CPU tensors come from malloc, so this is tensor bytes.
   - ``stored``: the bytes of the returned video (every latent kept, on the CPU).

   **Flat** (the criterion): peak − stored grows from 2 to 32 windows by at most ``max(2 MiB, 5 %)`` of its value
   at 2 windows (a drop passes: the video then fits in memory the run had touched anyway, e.g. heap holes). The summary also gives the growth per stored byte between 2 and 32 windows, Δpeak/Δstored
   (noisy: the stored video is ~1 MiB) and Δlive@call/Δstored (exact): 1.0 = only the video grows; above 1 = more
   than the kept latents is held per window. One window's activations (13–19 MiB at these sizes) dominate the
   RSS noise; the 64 px native size would not (under 1 MiB of activations).

2. **Time outside network calls**: the model's ``network`` (``VideoModel.network`` / ``LVDMModel.network``, what
   the VPDenoiser calls: the UNet plus its input casts and the mask concatenation) is wrapped with a timer; total
   wall time of the run, time inside those calls and the fraction outside (target ≤ 5 %), 4 windows / gaps of
   ``--steps`` steps, best (lowest fraction) of ``--repeats`` runs after a warm-up. Two sizes: the tiny models'
   native 64×64 px (8×8 latents: an LVDM call is ~30 ms, an AnimateDiff one ~0.1 s, so the sampler's Python work
   weighs as much as it ever will against the network) and a larger one (128×128 px for the AnimateDiff runs,
   256×256 px for the LVDM ones) where a call takes ~0.2–0.4 s, closer to a real model's proportions. Above 5 % (or with ``--profile``) the run
   is profiled with cProfile and the functions outside the network with the most own time are listed.

3. **Determinism**: :func:`long_video` (pred keyframes + interpolation, 64 px) twice with seed 0 → ``torch.equal``;
   seed 1 must differ (so the check can fail); ``ad-replace`` twice → ``torch.equal``; and, when the memory part
   ran, ``pred-exact`` (2 windows) in this process vs in its memory child (sha256 of the bytes: across processes).

Ratios, not absolute times: the machine is shared and noisy; everything compared is measured in one run.
"""
from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import MB, CallTimer, PeakRSS, load_pack, malloc_in_use, run_children  # noqa: E402

W_GUIDE, S_LEVEL, CFG = 0.1, 100, 7.5
# run -> (model, function, window length, known slots, mode, η, memory px, native px, large px)
RUNS = {"ad-replace": ("tiny-animatediff", "extend", 8, 2, "replace", 0.0, 128, 64, 128),
        "pred-exact": ("tiny-lvdm-pred", "extend", 4, 1, "exact", 1.0, 256, 64, 256),
        "interp-exact": ("tiny-lvdm-interp", "interpolate", 5, 2, "exact", 1.0, None, 64, 256),
        "interp-replace": ("tiny-animatediff", "interpolate", 8, 2, "replace", 0.0, None, 64, 128)}
MEMORY_RUNS = ("ad-replace", "pred-exact")
TIMED_RUNS = ("ad-replace", "pred-exact", "interp-exact", "interp-replace")
FLAT_MB, FLAT_REL = 2.0, 0.05


def _model(name):
    from consistent_video_kit.models.tiny import tiny_lvdm, tiny_model
    return tiny_lvdm(name=name) if "lvdm" in name else tiny_model(name)


def setup(run: str, px: int):
    """(model, timed denoiser, Conditioning, window shape) of ``run`` at ``px``×``px`` pixels."""
    from consistent_video_kit.samplers import long_video as lv
    name, _, length, _, mode, _, *_ = RUNS[run]
    model = _model(name)
    den = model.denoiser()
    den.network = CallTimer(den.network)
    if mode == lv.REPLACE:
        how = lv.Conditioning(lv.REPLACE, S_LEVEL, 0.0, (model.encode_prompt_pair("a cat", ""),), CFG)
    else:
        how = lv.Conditioning(lv.EXACT, S_LEVEL, W_GUIDE)
    frames = length * model.latent_format.temporal_factor
    return model, den, how, model.latent_shape(frames, px, px)


def make(run: str, model, den, how, shape, windows: int, steps: int, seed: int = 0) -> torch.Tensor:
    """``run`` making ``windows`` windows (extension from nothing) or gaps (interpolation of windows + 1 keyframes,
    drawn from a fixed generator), the video stored on the CPU."""
    from consistent_video_kit.samplers import long_video as lv
    _, fn, length, known, _, eta, *_ = RUNS[run]
    sigmas = model.sigmas(steps)
    cpu = torch.device("cpu")
    with model.loaded() as device:
        if fn == "extend":
            new = length + (windows - 1) * (length - known)
            assert lv.window_count(0, new, length, known) == windows
            return lv.extend(den, None, new, length, known, sigmas, how, shape, eta, seed, device, cpu)
        B, C, _, h, w = shape
        keys = torch.randn(B, C, windows + 1, h, w, generator=torch.Generator().manual_seed(1234))
        return lv.interpolate(den, keys, length, sigmas, how, eta, seed, device, cpu)


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]


# ---------------------------------------------------------------- 1. memory (child side)

def child(run: str, windows: int, steps: int) -> dict:
    torch.set_num_threads(1)
    load_pack()
    model, den, how, shape = setup(run, RUNS[run][6])
    make(run, model, den, how, shape, 2, 1)                       # warm-up
    timer, live = den.network, [0]

    def probed(*args, **kwargs):                                  # what is held when a network call starts
        live[0] = max(live[0], malloc_in_use() or 0)
        return timer(*args, **kwargs)
    den.network = probed
    timer.reset()
    meter = PeakRSS()
    meter.reset()
    base = malloc_in_use() or 0
    t = time.perf_counter()
    out = make(run, model, den, how, shape, windows, steps)
    seconds = time.perf_counter() - t
    peak = meter.peak()
    return {"peak": peak, "live": live[0] - base if base else None, "stored": out.numel() * out.element_size(),
            "shape": list(out.shape), "seconds": seconds, "calls": timer.calls, "sha": digest(out),
            "window": list(shape)}


def memory(args) -> list:
    print(f"\n== 1. peak memory vs windows ({args.steps} steps, store=cpu, each row a fresh process; MiB above the "
          f"run's baseline)")
    print(f"{'run':12} {'px':>4} {'windows':>7} {'calls':>5} {'secs':>6} {'peak':>7} {'stored':>7} {'peak-stored':>11} "
          f"{'live@call':>9} {'live-stored':>11}")
    todo = [(run, n) for run in MEMORY_RUNS for n in args.windows]
    order = sorted(range(len(todo)), key=lambda i: -todo[i][1])        # longest first: the pool ends sooner
    cmds = [[sys.executable, os.path.abspath(__file__), "--child", todo[i][0], "--child-windows", str(todo[i][1]),
             "--steps", str(args.steps)] for i in order]
    got = dict(zip(order, run_children(cmds, args.jobs)))
    rows = []
    for i, (run, n) in enumerate(todo):
        r = got[i]
        r.update(run=run, windows=n)
        rows.append(r)
        live = (f"{r['live'] / MB:9.3f} {(r['live'] - r['stored']) / MB:11.3f}" if r["live"] is not None
                else f"{'n/a':>9} {'n/a':>11}")
        print(f"{run:12} {RUNS[run][6]:4d} {n:7d} {r['calls']:5d} {r['seconds']:6.1f} {r['peak'] / MB:7.2f} "
              f"{r['stored'] / MB:7.3f} {(r['peak'] - r['stored']) / MB:11.2f} {live}", flush=True)
    return rows


def flatness(rows: list) -> list:
    """Per memory run: (run, fewest, most windows, peak − stored at both (MiB), tolerance, flat?, Δpeak/Δstored,
    Δlive/Δstored)."""
    out = []
    for run in MEMORY_RUNS:
        rs = sorted((r for r in rows if r["run"] == run), key=lambda r: r["windows"])
        a, b = rs[0], rs[-1]
        first, last = (a["peak"] - a["stored"]) / MB, (b["peak"] - b["stored"]) / MB
        tol = max(FLAT_MB, FLAT_REL * first)
        d_stored = max(b["stored"] - a["stored"], 1)
        live = (b["live"] - a["live"]) / d_stored if a["live"] is not None else float("nan")
        out.append((run, a["windows"], b["windows"], first, last, tol, last - first <= tol,
                    (b["peak"] - a["peak"]) / d_stored, live))
    return out


# ---------------------------------------------------------------- 2. time outside network calls

def timed(run: str, px: int, windows: int, steps: int, repeats: int):
    model, den, how, shape = setup(run, px)
    make(run, model, den, how, shape, 2, 1)                       # warm-up
    best = None
    for _ in range(repeats):
        den.network.reset()
        t = time.perf_counter()
        make(run, model, den, how, shape, windows, steps)
        wall = time.perf_counter() - t
        r = (1 - den.network.seconds / wall, wall, den.network.seconds, den.network.calls)
        best = r if best is None or r[0] < best[0] else best
    return best


def profile(run: str, px: int, windows: int, steps: int, top: int = 12) -> None:
    model, den, how, shape = setup(run, px)
    make(run, model, den, how, shape, 2, 1)
    prof = cProfile.Profile()
    prof.enable()
    make(run, model, den, how, shape, windows, steps)
    prof.disable()
    s = io.StringIO()
    st = pstats.Stats(prof, stream=s)
    # own time outside the network: drop everything reached from CallTimer (the network and below)
    inside = set()
    stack = [f for f in st.stats if f[2] == "__call__" and f[0].endswith("_measure.py")]
    callees = {}
    for func, (_, _, _, _, callers) in st.stats.items():
        for c in callers:
            callees.setdefault(c, []).append(func)
    while stack:
        f = stack.pop()
        for g in callees.get(f, []):
            if g not in inside:
                inside.add(g)
                stack.append(g)
    rows = sorted(((v[2], v[3], k) for k, v in st.stats.items() if k not in inside), reverse=True)[:top]
    print(f"   cProfile of {run} at {px} px, {windows} windows × {steps} steps: own time outside the network")
    for tt, ct, (path, line, fn) in rows:
        print(f"     {tt * 1e3:8.1f} ms own {ct * 1e3:8.1f} ms cum  {os.path.relpath(path, os.getcwd()) if path.startswith('/') else path}:{line} {fn}")


def overhead(args) -> list:
    print(f"\n== 2. time outside network calls ({args.timing_windows} windows/gaps × {args.steps} steps, best of "
          f"{args.repeats}; target ≤ 5 %)")
    print(f"{'run':14} {'px':>4} {'latent':>6} {'calls':>5} {'total s':>8} {'network s':>9} {'ms/call':>7} {'outside':>8}")
    rows = []
    for size in ("native", "large"):
        for run in TIMED_RUNS:
            px = RUNS[run][7] if size == "native" else RUNS[run][8]
            frac, wall, net, calls = timed(run, px, args.timing_windows, args.steps, args.repeats)
            rows.append((run, px, frac, wall, net, calls))
            print(f"{run:14} {px:4d} {px // 8:4d}² {calls:5d} {wall:8.3f} {net:9.3f} {net / calls * 1e3:7.1f} "
                  f"{frac * 100:7.2f}%", flush=True)
            if frac > 0.05 or args.profile:
                profile(run, px, args.timing_windows, args.steps)
    return rows


# ---------------------------------------------------------------- 3. determinism

def determinism(args, mem_rows) -> list:
    from consistent_video_kit.samplers import long_video as lv
    print("\n== 3. determinism")
    pred, interp = _model("tiny-lvdm-pred"), _model("tiny-lvdm-interp")
    how = lv.Conditioning(lv.EXACT, S_LEVEL, W_GUIDE)
    shape = pred.latent_shape(16, 64, 64)

    def lvid(seed):
        with pred.loaded(also=[interp]) as device:
            return lv.long_video(pred.denoiser(), interp.denoiser(), 30, 4, 5, 1, 4, shape, pred.sigmas(args.steps),
                                 interp.sigmas(args.steps), how, how, 1.0, seed, device, torch.device("cpu"))
    a, b, c = lvid(0), lvid(0), lvid(1)
    checks = [(f"long_video seed 0 twice {tuple(a.shape)}", torch.equal(a, b), True),
              ("long_video seed 1 differs", not torch.equal(a, c), True)]
    model, den, how2, shape2 = setup("ad-replace", 64)
    x, y = (make("ad-replace", model, den, how2, shape2, 4, args.steps) for _ in range(2))
    checks.append((f"ad-replace seed 0 twice {tuple(x.shape)}", torch.equal(x, y), True))
    child_row = next((r for r in mem_rows if r["run"] == "pred-exact" and r["windows"] == 2), None)
    if child_row is not None:
        model, den, how3, shape3 = setup("pred-exact", RUNS["pred-exact"][6])
        z = make("pred-exact", model, den, how3, shape3, 2, args.steps)
        checks.append(("pred-exact 2 windows: here = memory child", digest(z) == child_row["sha"], True))
    for label, ok, _ in checks:
        print(f"   {label:48} {'equal' if 'differs' not in label else 'differs'}: {ok}")
    return checks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] + " See the module docstring for details.")
    ap.add_argument("--parts", default="memory,overhead,determinism", help="which parts to run (comma-separated)")
    ap.add_argument("--steps", type=int, default=2, help="DDIM steps per window (default 2)")
    ap.add_argument("--windows", default="2,8,32", help="window counts of the memory part (default 2,8,32)")
    ap.add_argument("--timing-windows", type=int, default=4, help="windows / gaps per timed run (default 4)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per config, best reported (default 2)")
    ap.add_argument("--jobs", type=int, default=2, help="memory children run at once (default 2; each measures "
                                                       "its own process, so only their seconds are affected)")
    ap.add_argument("--profile", action="store_true", help="cProfile every timed config, not only those over 5 %%")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-windows", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.child_windows, args.steps)))
        return 0
    args.windows = [int(v) for v in args.windows.split(",")]
    parts = args.parts.split(",")
    torch.set_num_threads(1)
    load_pack()
    t0 = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU, batch 1")
    mem = memory(args) if "memory" in parts else []
    over = overhead(args) if "overhead" in parts else []
    det = determinism(args, mem) if "determinism" in parts else []

    print("\n== summary")
    for run, lo, hi, first, last, tol, ok, growth, live in flatness(mem) if mem else []:
        print(f"memory   {run:14} peak-stored {first:6.2f} → {last:6.2f} MiB ({lo}→{hi} windows), Δ ≤ {tol:.2f}: "
              f"{'FLAT' if ok else 'GROWS'}; per stored byte: Δpeak {growth:5.2f}, Δlive@call {live:5.2f}")
    for run, px, frac, wall, net, calls in over:
        print(f"overhead {run:14} {px:4d} px  outside {frac * 100:5.2f} %  {'≤ 5 %' if frac <= 0.05 else '> 5 %'}")
    for label, ok, _ in det:
        print(f"determ.  {label:48} {'OK' if ok else 'FAIL'}")
    print(f"bench wall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
