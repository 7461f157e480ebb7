"""Peak memory of loading a full-size CameraCtrl.ckpt: the released file is 2.6 GB, two thirds of it AdamW state
(``optimizer_state_dict``) that inference never needs. The loader memory-maps the pickle and reads only the pose
encoder and the merges.

The file is rebuilt from the checkpoint manifest (../shared/fixtures/checkpoints/cameractrl_animatediff_v3.json:
the released keys and shapes, zeros, plus an AdamW-shaped optimizer state) in a temporary folder, then loaded
in a fresh process for a full-size SD1.5 + v3 UNet built on the meta device. Reported: file size, the weights'
size, and the loading process's peak resident memory (sampled) above its baseline, right after loading and after reading every
weight once (as a first network call would).

    .venv/bin/python bench/cameractrl_load.py [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join(os.path.dirname(ROOT), "shared", "fixtures", "checkpoints", "cameractrl_animatediff_v3.json")

CHILD = r"""
import os, sys, threading, time, torch
sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
from cvk_testkit import load_pack
load_pack()
from test_cameractrl import full_size_v3_unet
from consistent_video_kit.models.cameractrl import load_cameractrl
page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page / 1024 ** 3   # current RSS, GiB
unet = full_size_v3_unet()
base, peak, stop = rss(), [0.0], []
def watch():
    while not stop:
        peak[0] = max(peak[0], rss())
        time.sleep(0.005)
t = threading.Thread(target=watch)
t.start()
cc = load_cameractrl(sys.argv[2], unet)
loaded = max(peak[0], rss())
total = sum(float(p.double().sum()) for p in cc.parameters())   # touch every weight
stop.append(1)
t.join()
print(base, loaded - base, max(peak[0], rss()) - base, sum(p.numel() * p.element_size() for p in cc.parameters()) / 1024 ** 3)
"""


def write_file(path: str) -> None:
    import torch
    with open(MANIFEST) as f:
        shapes = json.load(f)["tensors"]
    dicts = {"pose_encoder_state_dict": {}, "attention_processor_state_dict": {}}
    for key, shape in shapes.items():
        top, k = key.split("/", 1)
        dicts[top][k] = torch.zeros(shape)
    trainable = [v for d in dicts.values() for k, v in d.items() if not k.endswith("pos_encoder.pe")]
    optim = {"state": {i: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(v), "exp_avg_sq": torch.zeros_like(v)}
                       for i, v in enumerate(trainable)}, "param_groups": [{"params": list(range(len(trainable)))}]}
    torch.save({"epoch": 0, "global_step": 0, **dicts, "optimizer_state_dict": optim}, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", help="write the file into this folder and keep it (default: a temporary folder)")
    args = ap.parse_args()
    if not os.path.isfile(MANIFEST):
        print(f"needs the checkpoint manifest at {MANIFEST} (../shared beside the checkout)")
        return 1
    folder = args.keep or tempfile.mkdtemp()
    path = os.path.join(folder, "CameraCtrl.ckpt")
    if not os.path.isfile(path):
        write_file(path)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", CHILD, ROOT, path], env=env, check=True, capture_output=True, text=True)
    base, loaded, touched, weights = map(float, out.stdout.split()[-4:])
    print(f"file {os.path.getsize(path) / 1024 ** 3:.2f} GiB, weights {weights:.2f} GiB (pose encoder + merges)")
    print(f"peak RSS above the process's baseline ({base:.2f} GiB, sampled every 5 ms): {loaded:.2f} GiB while "
          f"loading, {touched:.2f} GiB once every weight has been read (as a first network call would)")
    if not args.keep:
        os.remove(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
