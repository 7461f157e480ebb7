"""The tiny training runs the tests (and CI's training stage) share: the moving-shapes set, then LVDM's AE (8-frame
clips, its discriminator from step 10: both phases run), the short, pred and interp models on its latents, and
LGC-VD's two-stage model (pixel space, 14-frame clips), ``STEPS`` steps each with the tiny networks at ``SIZE``
pixels, through the same ``run_recipe`` scripts/train.py calls. ``CVK_TRAINED_DIR`` (CI: written by its training stage with
``python -m cvk_testkit.tiny_training DIR``) is reused when it holds them.

    python -m cvk_testkit.tiny_training DIR
"""
from __future__ import annotations

import os
import sys
import time

from . import load_pack

KINDS = ("short", "pred", "interp")
STEPS = 20
SIZE = 32
DISC_START = 10
SETTINGS = dict(network="tiny", steps=STEPS, batch=2, accumulate=1, size=SIZE, save_every=STEPS, log_every=STEPS // 2,
                preview_every=STEPS)
AE_SETTINGS = dict(frames=8, sets=[f"extra.autoencoder.disc_start={DISC_START}"])


def trained_models(root: str, log=lambda s: None) -> dict:
    """{"root", "data", "ae", "short", "pred", "interp", "lgcvd"}: the data folder and the exported files, trained into
    ``root`` (or found in ``$CVK_TRAINED_DIR``); ``"seconds"``: each run's wall time when this call trained it."""
    load_pack()
    from consistent_video_kit.training.run import run_recipe, write_shapes
    root = os.environ.get("CVK_TRAINED_DIR") or root
    files = {"root": root, "data": os.path.join(root, "data"), "ae": os.path.join(root, "ae", "ae.safetensors"),
             **{k: os.path.join(root, k, f"{k}.safetensors") for k in KINDS},
             "lgcvd": os.path.join(root, "lgcvd", "lgcvd.safetensors"), "seconds": {}}
    if not os.path.isdir(files["data"]):
        write_shapes(files["data"], videos=4, frames=64, size=64)
    for kind in ("ae", *KINDS, "lgcvd"):
        if os.path.isfile(files[kind]):
            continue
        t0 = time.perf_counter()
        own = AE_SETTINGS if kind == "ae" else dict(mixed_precision="no") if kind == "lgcvd" else dict(ae=files["ae"])
        run_recipe("lgcvd_bair" if kind == "lgcvd" else kind, data=files["data"], out=os.path.join(root, kind),
                   log=log, **SETTINGS, **own)
        files["seconds"][kind] = time.perf_counter() - t0
    return files


if __name__ == "__main__":
    import torch
    torch.set_num_threads(1)
    out = trained_models(sys.argv[1], log=print)
    print("trainer seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in out["seconds"].items())
          + f"; total {sum(out['seconds'].values()):.1f}")
