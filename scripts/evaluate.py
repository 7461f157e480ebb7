"""Evaluate generated videos against real ones with the LVDM / LGC-VD papers' metrics.

    python scripts/evaluate.py GENERATED REAL [--psnr] [--ssim] [--lpips FILE] [--fvd I3D_FILE [--kvd]]
                               [--fid INCEPTION_FILE] [--is] [--samples N] [--skip K] [--json OUT.json]

GENERATED, REAL: folders of videos (frame folders <DIR>/<video>/*.png|jpg, or video files), paired in natural order
of their paths; with --samples N, generated videos i·N … i·N+N−1 are N samples of real video i and PSNR/SSIM/LPIPS
report the best of them per video (the MCVD protocol LGC-VD follows). Weight files are never downloaded: each metric
that needs a network names the file it wants when it is missing. Prints a table; --json writes every number.
"""
from __future__ import annotations

import argparse
import sys

from launcher import load_pack, refuse  # scripts/launcher.py: the pack as one package, offline


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("generated", help="folder of generated videos")
    ap.add_argument("real", help="folder of real (ground-truth) videos")
    ap.add_argument("--psnr", action="store_true", help="PSNR (best of N per real video)")
    ap.add_argument("--ssim", action="store_true", help="SSIM (best of N per real video)")
    ap.add_argument("--lpips", metavar="FILE", help="LPIPS (VGG) from a released LVDM AE checkpoint or LPIPS v0.1's "
                    "vgg.pth (then also --lpips-vgg)")
    ap.add_argument("--lpips-vgg", metavar="FILE", help="with --lpips vgg.pth: torchvision's vgg16 weights")
    ap.add_argument("--fvd", metavar="I3D_FILE", help="FVD with this I3D (pytorch-i3d state dict such as "
                    "i3d_pretrained_400.pt / rgb_imagenet.pt, or a TorchScript I3D)")
    ap.add_argument("--i3d-bn-eps", type=float, default=1e-5, help="the I3D state dict's BatchNorm eps: 1e-5 as "
                    "LVDM's copy (default), 1e-3 as piergiaj's pytorch-i3d computes rgb_imagenet.pt")
    ap.add_argument("--kvd", action="store_true", help="KVD on the FVD's I3D features (needs --fvd)")
    ap.add_argument("--fid", metavar="INCEPTION_FILE", help="FID on frames with this Inception "
                    "(pt_inception-2015-12-05-6726825d.pth, or a TorchScript Inception)")
    ap.add_argument("--is", dest="inception_score", action="store_true", help="Inception Score of the generated "
                    "frames (uses the --fid file, or --inception FILE)")
    ap.add_argument("--inception", metavar="FILE", help="the Inception file for --is alone")
    ap.add_argument("--samples", type=int, default=1, help="generated samples per real video (best-of-N), default 1")
    ap.add_argument("--skip", type=int, default=0, help="leave out the first K frames of every video (LGC-VD: 2, "
                    "its given context frames), default 0")
    ap.add_argument("--frames", type=int, help="use the first N frames of every video")
    ap.add_argument("--ssim-window", choices=("uniform", "gaussian"), default="uniform",
                    help="uniform: 7×7, sample covariance (skimage defaults, LGC-VD's eva.py; default); gaussian: "
                    "11×11 σ 1.5 (Wang et al., MCVD)")
    ap.add_argument("--psnr-average", choices=("frames", "mse"), default="frames",
                    help="frames: mean of per-frame PSNR (LGC-VD; default); mse: PSNR of the mean MSE (MCVD)")
    ap.add_argument("--i3d-resize", choices=("stretch", "crop"), help="stretch: frames to 224×224 (LVDM; default "
                    "for a state dict); crop: shorter side 224 + centre crop (LGC-VD; default for a TorchScript)")
    ap.add_argument("--kvd-subsets", type=int, help="KVD as the mean over K random subsets (StyleGAN-V's KID "
                    "scheme); default: the whole sets (LVDM)")
    ap.add_argument("--is-splits", type=int, default=10, help="IS splits, default 10")
    ap.add_argument("--device", default="cpu", help="torch device for the networks (cpu, cuda, …)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = ap.parse_args(argv)

    load_pack()
    from consistent_video_kit.training.eval.evaluate import evaluate_folders, format_table, write_json

    try:
        result = evaluate_folders(
            args.generated, args.real, psnr=args.psnr, ssim=args.ssim, lpips_file=args.lpips,
            lpips_vgg=args.lpips_vgg, fvd_file=args.fvd, kvd=args.kvd, fid_file=args.fid or args.inception,
            inception_score=args.inception_score, samples=args.samples, skip=args.skip, frames=args.frames,
            ssim_window=args.ssim_window, psnr_average=args.psnr_average, i3d_resize=args.i3d_resize,
            kvd_subsets=args.kvd_subsets, is_splits=args.is_splits, device=args.device,
            i3d_bn_eps=args.i3d_bn_eps)
        if args.fid is None and args.inception is not None:
            result.pop("fid", None)                   # --inception is for IS alone
        if args.json:
            write_json(result, args.json)
    except (ValueError, OSError) as e:        # bad folders, settings or files: the message says what and where
        return refuse("evaluate.py", e)
    print(format_table(result))
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
