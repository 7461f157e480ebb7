"""Train LVDM's 3-D video autoencoder or its short / pred / interp diffusion model on your own clips.

    python scripts/train.py <recipe> --data DIR --out DIR [--steps N] [--batch B] [--ae FILE] [--tiny] ...

<recipe>: a name in training/recipes/ (ae, short, pred, interp, and the endoscopy presets ae_endoscopy,
short_endoscopy) or a path to a recipe JSON. Runs unchanged under a multi-process launcher:

    torchrun --nproc_per_node 2 scripts/train.py short --data DIR --out DIR            (CPU: gloo, GPUs: NCCL)
    accelerate launch --num_processes 2 scripts/train.py short --data DIR --out DIR

Run again with the same --out to resume. --write-shapes DIR writes the synthetic moving-shapes set and exits.
Needs the training extra (the packages accelerate and av; see the README's training walk-through).
"""
from __future__ import annotations

import argparse
import sys

from launcher import load_pack, refuse  # scripts/launcher.py: the pack as one package, offline


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", nargs="?", help="recipe name (training/recipes/<name>.json) or a recipe file")
    ap.add_argument("--data", help="clips: folders of frames <DIR>/<video>/*.png|jpg, or video files")
    ap.add_argument("--out", help="run folder: checkpoints, previews, the exported model")
    ap.add_argument("--ae", help="diffusion recipes: the trained autoencoder (<ae run>/ae.safetensors)")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch", type=int, help="samples per step over all processes")
    ap.add_argument("--accumulate", type=int, help="micro-batches per step")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--size", type=int, help="frame size (pixels, square)")
    ap.add_argument("--frames", type=int, help="frames per clip (the recipe's: ae and short 16, pred 64, interp 20)")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"))
    ap.add_argument("--save-every", type=int)
    ap.add_argument("--preview-every", type=int)
    ap.add_argument("--log-every", type=int)
    ap.add_argument("--lpips", help="ae recipe: LPIPS weights for the perceptual loss (a released LVDM AE checkpoint, "
                    "or LPIPS v0.1's vgg.pth with --vgg); without: no perceptual loss")
    ap.add_argument("--vgg", help="with --lpips vgg.pth: torchvision's ImageNet vgg16 weights file")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="set any recipe setting by its dotted key, VALUE as JSON, e.g. --set extra.autoencoder."
                    "disc_start=100 (repeatable)")
    ap.add_argument("--tiny", action="store_true", help="the tiny networks (tests, a first run on CPU)")
    ap.add_argument("--write-shapes", metavar="DIR", help="write the synthetic moving-shapes set to DIR and exit")
    args = ap.parse_args(argv)

    load_pack()
    from consistent_video_kit.training.run import run_recipe, write_shapes

    if args.write_shapes:
        print(write_shapes(args.write_shapes))
        return 0
    if not (args.recipe and args.data and args.out):
        ap.error("a recipe, --data and --out are needed (or --write-shapes DIR)")
    try:
        run_recipe(args.recipe, data=args.data, out=args.out, ae=args.ae, steps=args.steps, batch=args.batch,
                   accumulate=args.accumulate, lr=args.lr, size=args.size, frames=args.frames, seed=args.seed,
                   mixed_precision=args.mixed_precision, save_every=args.save_every,
                   preview_every=args.preview_every, log_every=args.log_every, lpips=args.lpips, vgg=args.vgg,
                   sets=args.set, network="tiny" if args.tiny else None)
    except ValueError as e:               # bad data, settings or files: the message says what and where
        return refuse("train.py", e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
