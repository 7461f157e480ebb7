"""Peak memory of loading the large released checkpoints, each rebuilt at full size from its manifest
(../shared/fixtures/checkpoints/*.json: the released keys and shapes, zeros, the released container):

- ``cameractrl``: ``CameraCtrl.ckpt`` (2.6 GB, two thirds of it AdamW state) for a full-size SD1.5 + v3 UNet
  built on the meta device, with ``models/cameractrl.py::load_cameractrl``;
- ``cvd``: CVD's synchronisation module ``CVD.ckpt`` (``unet_trainable_dict`` plus ``epoch``, ``global_step`` and
  an AdamW-shaped ``optimizer_state_dict``, as the training script writes it) onto the same meta UNet, with
  ``models/cvd.py::load_sync``;
- ``lvdm``: ``short_sky.ckpt`` (Lightning ``state_dict``: UNet, its EMA copy, the 3-D AE with every aliased conv
  weight stored once under two keys, the schedule buffers) with ``models/lvdm/model.py::load_lvdm`` on the CPU
  (EMA weights, the default), once with its bundled AE and once with a separate ``ae_sky.ckpt`` as ``ae_path``.

Each load runs in a fresh child process (one thread) whose resident memory (RSS, /proc/self/statm) is sampled
every 5 ms, and whose exact peak (the kernel's VmHWM, reset just before the load) is read as well. Reported per
load: the file size, the weights the loaded model keeps (parameters and buffers, each storage once), and the peak
RSS above the child's baseline (taken just before the load call) right after loading and after reading every
weight once (as a first network call would), with its sampled anonymous part (memory the process allocated, not
pages of the memory-mapped file). A loader that memory-maps the file and reads only what it keeps peaks at about
the weights' size once they have been read; one that reads a copy it drops (an unused EMA or optimizer state, an
alias taken twice) peaks above it.

The files take ~12 GB; they are written into a temporary folder and deleted afterwards, or written into / reused
from ``--keep DIR`` and kept.

    .venv/bin/python bench/load_memory.py [--model cameractrl|cvd|lvdm|all] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFESTS = os.path.join(os.path.dirname(ROOT), "shared", "fixtures", "checkpoints")
MODELS = ("cameractrl", "cvd", "lvdm")
# file name -> manifest
FILES = {"CameraCtrl.ckpt": "cameractrl_animatediff_v3.json", "CVD.ckpt": "cvd_sync_module.json",
         "short_sky.ckpt": "lvdm_sky_short_unet.json", "ae_sky.ckpt": "lvdm_sky_videoae.json"}
# model -> [(label, file, ae file or None)]
LOADS = {"cameractrl": [("cameractrl", "CameraCtrl.ckpt", None)],
         "cvd": [("cvd", "CVD.ckpt", None)],
         "lvdm": [("lvdm", "short_sky.ckpt", None), ("lvdm + ae_path", "short_sky.ckpt", "ae_sky.ckpt")]}

CHILD = r"""
import json, os, sys, threading, time, torch
torch.set_num_threads(1)
root, kind, path, ae_path = sys.argv[1], sys.argv[2], sys.argv[3], (sys.argv[4] or None)
sys.path.insert(0, os.path.join(root, "tests"))
from cvk_testkit import load_pack
load_pack()
page = os.sysconf("SC_PAGE_SIZE")
def rss():   # (resident, of it anonymous) in GiB; statm: size resident shared(file-backed) ...
    f = open("/proc/self/statm").read().split()
    return int(f[1]) * page / 1024 ** 3, (int(f[1]) - int(f[2])) * page / 1024 ** 3
def hwm():   # the kernel's peak RSS since the reset below (exact, not sampled), GiB; 0 where unsupported
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024 ** 2
    return 0.0
reset = False
if kind in ("cameractrl", "cvd"):
    from test_cameractrl import full_size_v3_unet
    unet = full_size_v3_unet()
if kind == "cameractrl":
    from consistent_video_kit.models.cameractrl import load_cameractrl
    load = lambda: [load_cameractrl(path, unet)]
elif kind == "cvd":
    from consistent_video_kit.models.cvd import load_sync
    load = lambda: [load_sync(path, unet)]
else:
    from consistent_video_kit.models.lvdm.model import load_lvdm
    def load():
        m = load_lvdm(path, ae_path=ae_path, device=torch.device("cpu"))
        return [m.unet, m.vae.ae]
base = rss()
try:
    open("/proc/self/clear_refs", "w").write("5")   # reset VmHWM to the current RSS
    reset = True
except OSError:
    pass
peak, stop = [0.0, 0.0], []
def watch():
    while not stop:
        r, a = rss()
        peak[0], peak[1] = max(peak[0], r), max(peak[1], a)
        time.sleep(0.005)
t = threading.Thread(target=watch)
t.start()
modules = load()
r, a = rss()
loaded = (max(peak[0], r, hwm() if reset else 0.0) - base[0], max(peak[1], a) - base[1])
seen, weights = set(), 0
for mod in modules:
    for w in (*mod.parameters(), *mod.buffers()):
        key = w.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            weights += w.untyped_storage().nbytes()
        float(w.sum())                                   # touch every weight (no copy for float32)
r, a = rss()
stop.append(1)
t.join()
touched = (max(peak[0], r, hwm() if reset else 0.0) - base[0], max(peak[1], a) - base[1])
print(json.dumps({"base": base[0], "loaded": loaded, "touched": touched, "weights": weights / 1024 ** 3}))
"""


def _manifest(name: str) -> dict:
    with open(os.path.join(MANIFESTS, name)) as f:
        return json.load(f)


def _adamw(trainable: list) -> dict:
    """An AdamW-shaped ``optimizer_state_dict`` for ``trainable`` (as ``torch.optim.AdamW.state_dict()``)."""
    import torch
    return {"state": {i: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(v), "exp_avg_sq": torch.zeros_like(v)}
                      for i, v in enumerate(trainable)}, "param_groups": [{"params": list(range(len(trainable)))}]}


def _tensors(m: dict) -> dict:
    """Zeros of the manifest's shapes and dtypes; the keys of each ``aliases`` group share one tensor."""
    import torch
    dtypes = {k: getattr(torch, v.split(".", 1)[1]) for k, v in m.get("tensor_dtypes", {}).items()}
    sd = {k: torch.zeros(s, dtype=dtypes.get(k, torch.float32)) for k, s in m["tensors"].items()}
    for group in m.get("aliases", []):
        for k in group[1:]:
            assert sd[k].shape == sd[group[0]].shape, k
            sd[k] = sd[group[0]]
    return sd


def write_file(name: str, path: str) -> None:
    import torch
    m = _manifest(FILES[name])
    sd = _tensors(m)
    if name == "CameraCtrl.ckpt":
        dicts = {"pose_encoder_state_dict": {}, "attention_processor_state_dict": {}}
        for key, v in sd.items():
            top, k = key.split("/", 1)
            dicts[top][k] = v
        trainable = [v for d in dicts.values() for k, v in d.items() if not k.endswith("pos_encoder.pe")]
        obj = {"epoch": 0, "global_step": 0, **dicts, "optimizer_state_dict": _adamw(trainable)}
    elif name == "CVD.ckpt":   # every saved tensor is a trained parameter (the coords buffers are not saved)
        obj = {"epoch": 0, "global_step": 0, "unet_trainable_dict": sd,
               "optimizer_state_dict": _adamw(list(sd.values()))}
    else:                      # Lightning, weights only
        obj = {"epoch": 0, "global_step": 0, "state_dict": sd}
    torch.save(obj, path)


def measure(label: str, path: str, ae_path: str | None) -> dict:
    kind = label.split()[0]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", CHILD, ROOT, kind, path, ae_path or ""], env=env, check=True,
                         capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["file"] = (os.path.getsize(path) + (os.path.getsize(ae_path) if ae_path else 0)) / 1024 ** 3
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=(*MODELS, "all"), default="all")
    ap.add_argument("--keep", help="write the files into this folder (reusing any already there) and keep them "
                                   "(default: a temporary folder, deleted afterwards)")
    args = ap.parse_args()
    models = MODELS if args.model == "all" else (args.model,)
    loads = [load for m in models for load in LOADS[m]]
    names = sorted({f for _, p, a in loads for f in (p, a) if f}, key=list(FILES).index)
    missing = [FILES[n] for n in names if not os.path.isfile(os.path.join(MANIFESTS, FILES[n]))]
    if missing:
        print(f"needs the checkpoint manifests {', '.join(missing)} in {MANIFESTS} (../shared beside the checkout)")
        return 1
    folder = args.keep or tempfile.mkdtemp(prefix="cvk_load_memory_")
    os.makedirs(folder, exist_ok=True)
    last = {n: i for i, (_, name, ae) in enumerate(loads) for n in (name, ae) if n}   # a file's last load
    try:
        print("GiB; peak RSS above the loading process's baseline (VmHWM and 5 ms samples; the sampled anonymous part "
              "in brackets)")
        print(f"{'load':<16} {'file':>6} {'weights':>8} {'loading':>15} {'weights read':>15}")
        for i, (label, name, ae) in enumerate(loads):
            for n in (name, ae):
                if n and not os.path.isfile(os.path.join(folder, n)):
                    write_file(n, os.path.join(folder, n))
            r = measure(label, os.path.join(folder, name), ae and os.path.join(folder, ae))
            fmt = lambda p: f"{p[0]:.2f} ({p[1]:.2f})"   # noqa: E731
            print(f"{label:<16} {r['file']:>6.2f} {r['weights']:>8.2f} {fmt(r['loaded']):>15} "
                  f"{fmt(r['touched']):>15}", flush=True)
            if not args.keep:
                for n in (name, ae):
                    if n and last[n] == i:
                        os.remove(os.path.join(folder, n))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
