"""The LVDM/TATS 3-D video autoencoder's training losses, as the official code computes them
(``lvdm/models/autoencoder3d.py::AutoencoderKL.training_step`` with ``lvdm/models/losses/contperceptual.py::
LPIPSWithDiscriminator``, which takes its discriminator, LPIPS and GAN losses from taming-transformers;
configs ``configs/videoae/*.yaml``, YingqingHe/LVDM d251dcc).

One training step is two updates on the same batch:

- :func:`generator_loss` (the official ``optimizer_idx == 0``), for the AE's optimizer: the encoder's posterior is
  SAMPLED with noise from :class:`~.draws.StepDraws` (purpose ``"posterior"``), decoded, and every frame of the clip
  is scored on its own (``(B, C, T, H, W) → (B·T, C, H, W)``)::

      rec      = pixelloss_weight·|x − x̂| + perceptual_weight·P(x, x̂)        (per element; P per frame, broadcast)
      nll      = Σ (rec / e^logvar + logvar) / (B·T)
      kl       = Σ ½(μ² + σ² − 1 − log σ²) / B
      g        = −mean D(x̂)                                                    (D's parameters frozen)
      d_weight = disc_weight · clamp(‖∇_W nll‖ / (‖∇_W g‖ + 1e-4), 0, 1e4), detached; W = decoder.conv_out weight
      loss     = nll + kl_weight·kl + d_weight·f(step)·g,     f(step) = disc_factor if step ≥ disc_start else 0

- :func:`discriminator_loss` (``optimizer_idx == 1``), for the discriminator's optimizer: ``f(step)·hinge(D(x),
  D(x̂))`` with both inputs detached; D is called on the real and the fake frames separately (two BatchNorm batches,
  as the official).

``step`` is the engine's optimizer-step count, 0-based, counted once per pair of updates (pytorch-lightning 1.4's
``global_step``, which the official code reads; with gradient accumulation it counts optimizer steps, not
micro-batches).

Where this differs from the official code, and why:

- Before ``disc_start`` the official code still runs the discriminator on x̂ and takes the two gradients of the
  adaptive weight (a second backward through the decoder) only to multiply the result by 0, and runs the
  discriminator on both batches for a loss of 0. By default both are skipped (``AERecipe.gan_before_start``): the
  losses and the AE's gradients are bit-for-bit the same (``a + 0 == a``); only the ``d_weight``/``g_loss`` logs
  and the discriminator's BatchNorm running statistics (unused in training mode) differ. The skipped discriminator
  loss is a constant 0 without a graph: the engine skips the discriminator's optimizer step then (the official
  steps Adam on all-zero gradients, which changes nothing but Adam's step counter, i.e. its bias correction once
  the discriminator starts).
- ``pixelloss_weight`` is stored but never used by the official forward; here it scales the L1 term (1.0, the only
  value any config uses, gives the official loss).
- The official LPIPS is put in eval mode at construction, but Lightning's ``model.train()`` puts it back in train
  mode, so its linear heads see dropout(p=0.5) of the feature differences, drawn from the global RNG. The heads are
  linear, so that dropout leaves the loss's expectation unchanged and only adds noise; :class:`LPIPS` here has no
  dropout (the eval-mode LPIPS), so no randomness of a step escapes :class:`~.draws.StepDraws`.
- ``logvar`` is an ``nn.Parameter`` of the official loss, but the official AE optimizer holds only the encoder,
  decoder, quant_conv and post_quant_conv: it is never updated and stays at ``logvar_init`` (0). That is the
  default here (``AERecipe.learn_logvar = False``: a constant); with ``learn_logvar`` :func:`make_logvar` gives a
  parameter that :func:`make_optimizers` puts in the AE's optimizer.
- With several processes the official (Lightning DDP) computes the adaptive weight from each process's own
  gradients and the discriminator's BatchNorm statistics from each process's own frames, so the number of GPUs
  changes the training. Here both span every process's batch by default: the last layer's two gradients are averaged
  over the processes before their norms, and the BatchNorms are :class:`SyncBatchNorm2d` (torch's SyncBatchNorm runs
  on GPUs only); N processes with B samples each then compute what one process with N·B computes.
  ``AERecipe.per_process_gan_statistics`` keeps the official per-process behaviour. (Gradient accumulation stays
  per micro-batch, as Lightning's ``accumulate_grad_batches``.)

The discriminator update (the engine's second optimizer, :class:`~consistent_video_kit.training.tasks.AETask`)
re-encodes the batch with a fresh posterior sample (purpose ``"posterior/disc"``), as Lightning's second
``training_step`` call does, and passes that x̂ to :func:`discriminator_loss`.

The discriminator is taming's 2-D PatchGAN (``NLayerDiscriminator``) with BatchNorm: its training-mode outputs
depend on the whole batch of frames, and the adaptive weight is a ratio of gradient norms over the whole batch;
neither is a per-sample quantity (see above for several processes).

Only LPIPS needs weights that are not trained here: :func:`load_lpips` builds it in plain torch (no torchvision)
from a released LVDM AE checkpoint (its ``loss.perceptual_loss.*`` tensors), a saved taming/LPIPS state dict, or
torchvision's ``vgg16`` file plus the LPIPS linear heads (``vgg.pth`` of PerceptualSimilarity v0.1).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.checkpoint import CheckpointError, match_state_dict, read_state_dict
from .draws import StepDraws
from .engine import process_mean, world_size

DISC_LOSSES = ("hinge", "vanilla")
POSTERIOR = "posterior"          # the StepDraws purpose of the posterior sample's noise
GRAD_NORM_EPS = 1e-4             # calculate_adaptive_weight
D_WEIGHT_MAX = 1e4

Perceptual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AERecipe:
    """The AE training recipe, defaults from ``configs/videoae/{sky,ucf,taichi}.yaml`` (their ``lossconfig``:
    ``disc_start 50001, kl_weight 0.0, disc_weight 0.5``; the rest are ``LPIPSWithDiscriminator``'s defaults) and
    ``AutoencoderKL.configure_optimizers`` (two Adams, betas (0.5, 0.9), ``lr`` = ``base_learning_rate``: 3.6e-5 for
    sky and ucf (scale_lr False), 1.6e-5 for taichi; the configs accumulate 2 batches of 1)."""
    disc_start: int = 50001
    kl_weight: float = 0.0          # the class default is 1.0; every config sets 0.0
    disc_weight: float = 0.5        # the class default is 1.0; every config sets 0.5
    disc_factor: float = 1.0
    perceptual_weight: float = 1.0
    pixelloss_weight: float = 1.0
    logvar_init: float = 0.0
    learn_logvar: bool = False      # the official never optimises its logvar parameter (see the module docstring)
    disc_num_layers: int = 3
    disc_in_channels: int = 3
    disc_ndf: int = 64
    disc_loss: str = "hinge"
    lr: float = 3.6e-5
    betas: Tuple[float, float] = (0.5, 0.9)
    gan_before_start: bool = False  # True: run the discriminator before disc_start too, as the official (logs only)
    per_process_gan_statistics: bool = False  # True: d_weight and the BatchNorm statistics per process (official DDP)

    def __post_init__(self):
        if self.disc_loss not in DISC_LOSSES:
            raise ValueError(f"AERecipe: disc_loss must be one of {DISC_LOSSES}, got {self.disc_loss!r}")
        if not isinstance(self.disc_start, int) or isinstance(self.disc_start, bool) or self.disc_start < 0:
            raise ValueError(f"AERecipe: disc_start must be a whole number of steps ≥ 0, got {self.disc_start!r}")
        for name in ("kl_weight", "disc_weight", "disc_factor", "perceptual_weight", "pixelloss_weight", "lr"):
            if getattr(self, name) < 0:
                raise ValueError(f"AERecipe: {name} must be ≥ 0, got {getattr(self, name)!r}")
        if self.disc_num_layers < 1 or self.disc_ndf < 1 or self.disc_in_channels < 1:
            raise ValueError("AERecipe: disc_num_layers, disc_ndf and disc_in_channels must be ≥ 1")


def disc_factor_at(step: int, recipe: AERecipe) -> float:
    """taming's ``adopt_weight``: ``disc_factor`` from step ``disc_start`` on, 0 before."""
    return float(recipe.disc_factor) if step >= recipe.disc_start else 0.0


def gan_active(step: int, recipe: AERecipe) -> bool:
    """Whether the discriminator is run at ``step`` (always once it counts; before only with ``gan_before_start``)."""
    return recipe.disc_factor > 0 and (step >= recipe.disc_start or recipe.gan_before_start)


# ---------------------------------------------------------------------- the discriminator

class SyncBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training-mode statistics span every process's batch, on any device and backend (gloo
    on CPU too; torch's ``SyncBatchNorm`` runs on GPUs only): the per-channel sums, then the centred squares, go
    through ``torch.distributed.nn``'s differentiable ``all_reduce``. One process, eval mode or ``sync=False``:
    ``BatchNorm2d`` itself. Same keys and running-statistics update (momentum, unbiased variance) as
    ``BatchNorm2d`` on the processes' frames put together."""

    def __init__(self, num_features: int, sync: bool = True, **kw):
        super().__init__(num_features, **kw)
        self.sync = sync

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.sync and self.training and world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce
        c = x.shape[1]
        flat = x.transpose(0, 1).reshape(c, -1).float()       # (C, N·H·W); statistics in float32 (a half-precision
        count = torch.tensor([float(flat.shape[1])], device=x.device)           # count overflows at 65504)
        sums = all_reduce(torch.cat([flat.sum(1), count]))
        count = sums[-1]
        mean = sums[:c] / count
        var = all_reduce((flat - mean[:, None]).square().sum(1)) / count          # biased, for the normalisation
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), f)
                unbiased = var.detach() * count / (count - 1).clamp(min=1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), f)
        shape = (1, c, 1, 1)
        y = (x.float() - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + self.eps)
        if self.affine:
            y = y * self.weight.float().reshape(shape) + self.bias.float().reshape(shape)
        return y.to(x.dtype)


class PatchDiscriminator(nn.Module):
    """taming's ``NLayerDiscriminator`` (pix2pix PatchGAN) as LPIPSWithDiscriminator builds it (``use_actnorm``
    False): conv k4 s2 → LeakyReLU(0.2), then ``n_layers − 1`` × {conv k4 s2 (no bias) → BatchNorm2d → LeakyReLU}, one
    {conv k4 s1 (no bias) → BatchNorm2d → LeakyReLU}, conv k4 s1 → 1 channel; widths ``ndf·min(2^n, 8)``; all convs
    padding 1. Frames ``(N, C, H, W) → (N, 1, H/2^n_layers − 2, W/2^n_layers − 2)`` (H, W multiples of 2^n_layers);
    frames must be at least ``3·2^n_layers`` pixels (24 for the default 3 layers).

    Keys ``main.<i>.*`` as the released files' ``loss.discriminator.main.*`` (3 layers: convs 0, 2, 5, 8, 11,
    BatchNorms 3, 6, 9). Init as taming's ``weights_init``: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02)
    and biases 0; conv biases keep PyTorch's default init. The BatchNorms are :class:`SyncBatchNorm2d` (``sync``:
    statistics over every process's frames; the module docstring says why)."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, sync: bool = True):
        super().__init__()
        self.n_layers = n_layers
        layers = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2 if n < n_layers else 1, padding=1, bias=False),
                       SyncBatchNorm2d(ndf * mult, sync), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    @classmethod
    def from_recipe(cls, recipe: AERecipe) -> "PatchDiscriminator":
        return cls(recipe.disc_in_channels, recipe.disc_ndf, recipe.disc_num_layers,
                   sync=not recipe.per_process_gan_statistics)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0.0, 0.02)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.normal_(1.0, 0.02)
                m.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        smallest = 3 * 2 ** self.n_layers
        if x.ndim != 4 or min(x.shape[-2:]) < smallest:
            raise ValueError(f"PatchDiscriminator: expected frames (N, C, H, W) of at least {smallest}×{smallest} "
                             f"pixels ({self.n_layers} layers), got shape {tuple(x.shape)}")
        return self.main(x)


def load_discriminator(path: str, recipe: AERecipe = AERecipe()) -> PatchDiscriminator:
    """A :class:`PatchDiscriminator` (training mode) from a released LVDM AE checkpoint (``loss.discriminator.*``),
    or from a file of its own state dict (``main.*``, optionally under ``discriminator.``), strictly."""
    sd = read_state_dict(path)
    for prefix in ("loss.discriminator.", "discriminator."):
        if any(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            break
    disc = PatchDiscriminator.from_recipe(recipe)
    disc.load_state_dict(match_state_dict(disc, sd, "AE discriminator"))
    return disc


def _unwrapped(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper."""
    inner = getattr(module, "module", None)
    return inner if isinstance(inner, nn.Module) else module


def _frozen_call(disc: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``disc(x)`` with its parameters detached (the official generator update has the discriminator's parameters
    toggled off): gradients reach ``x`` only. Training-mode BatchNorm still uses (and updates) batch statistics."""
    disc = _unwrapped(disc)
    params = {name: p.detach() for name, p in disc.named_parameters()}
    return torch.func.functional_call(disc, params, (x,))


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """``½(mean relu(1 − D(x)) + mean relu(1 + D(x̂)))``."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def vanilla_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """``½(mean softplus(−D(x)) + mean softplus(D(x̂)))``."""
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


# ---------------------------------------------------------------------- LPIPS (VGG16), plain torch

_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)   # torchvision cfg "D"
_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))     # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


class _ScalingLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT)[None, :, None, None])
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE)[None, :, None, None])


class _LinHead(nn.Module):
    """A 1×1 conv to one channel, no bias; index 0 (the official dropout) is the identity here."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """LPIPS (VGG16, v0.1 linear heads) as taming's ``LPIPS`` computes it in eval mode: inputs in [−1, 1] are
    shifted/scaled, VGG16's relu1_2 … relu5_3 features are unit-normalised over channels (eps 1e-10), their squared
    differences go through the 1×1 heads, are averaged over space and summed over the five layers.
    ``(N, 3, H, W), (N, 3, H, W) → (N, 1, 1, 1)``. Keys as taming's module (``net.slice<k>.<i>.*`` at torchvision's
    ``features`` indices, ``lin<k>.model.1.weight``, ``scaling_layer.{shift,scale}``). Frozen; build it with
    :func:`load_lpips`."""

    def __init__(self):
        super().__init__()
        self.scaling_layer = _ScalingLayer()
        layers, c = [], 3
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
                c = v
        self.net = nn.Module()
        for k, (a, b) in enumerate(_SLICES):
            s = nn.Sequential()
            for i in range(a, b):
                s.add_module(str(i), layers[i])
            setattr(self.net, f"slice{k + 1}", s)
        for k, ch in enumerate(LPIPS_CHANNELS):
            setattr(self, f"lin{k}", _LinHead(ch))
        self.requires_grad_(False).eval()

    def features(self, x: torch.Tensor):
        h = (x - self.scaling_layer.shift) / self.scaling_layer.scale
        out = []
        for k in range(len(_SLICES)):
            h = getattr(self.net, f"slice{k + 1}")(h)
            out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = 0
        for k, (a, b) in enumerate(zip(self.features(x), self.features(y))):
            a = a / (a.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            total = total + getattr(self, f"lin{k}").model((a - b).square()).mean(dim=(2, 3), keepdim=True)
        return total


def _vgg_slice(index: int) -> int:
    for k, (a, b) in enumerate(_SLICES):
        if a <= index < b:
            return k + 1
    return 0


def _lpips_key(key: str) -> Optional[str]:
    """A file key → an :class:`LPIPS` key: torchvision's ``features.<i>.*`` go to their slice."""
    m = re.fullmatch(r"features\.(\d+)\.(weight|bias)", key)
    if m:
        s = _vgg_slice(int(m.group(1)))
        return f"net.slice{s}.{m.group(1)}.{m.group(2)}" if s else None
    return key


def _lpips_tensors(path: str) -> Dict[str, torch.Tensor]:
    sd = read_state_dict(path)
    prefix = "loss.perceptual_loss."                 # a released LVDM AE checkpoint (Lightning): LPIPS inside
    if any(k.startswith(prefix) for k in sd):
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return {k: v for k, v in sd.items() if not k.startswith("classifier.")}   # torchvision vgg16's classifier


def load_lpips(path: str, vgg_path: Optional[str] = None) -> LPIPS:
    """The LPIPS perceptual distance (frozen, eval mode) from user-provided weights (nothing is downloaded):

    - ``path`` = a released LVDM AE checkpoint (``ae_sky.ckpt`` …: its ``loss.perceptual_loss.*`` hold the VGG16
      features and the heads), or a saved taming/LPIPS state dict (``net.*``, ``lin*``, ``scaling_layer.*``); or
    - ``path`` = the LPIPS v0.1 VGG heads only (``lin0..4.model.1.weight``: PerceptualSimilarity's
      ``weights/v0.1/vgg.pth``, taming's ``vgg_lpips``) and ``vgg_path`` = torchvision's ImageNet ``vgg16`` weights
      (``features.<i>.*``, e.g. ``vgg16-397923af.pth``).

    Strict: every LPIPS weight must come from the files, and no file tensor may be left over (the scaling buffers
    are optional; when present they are used)."""
    sd = _lpips_tensors(path)
    if vgg_path is not None:
        vgg = _lpips_tensors(vgg_path)
        clash = sorted(set(map(_lpips_key, sd)) & set(map(_lpips_key, vgg)) - {None})
        if clash:
            raise CheckpointError(f"LPIPS: '{path}' and '{vgg_path}' both hold {', '.join(clash[:4])}"
                                  f"{' …' if len(clash) > 4 else ''}; pass the VGG16 weights once")
        sd = {**sd, **vgg}
    keys = {_lpips_key(k) or k for k in sd}
    if not any(k.startswith("lin") for k in keys):
        raise CheckpointError("LPIPS: no linear heads (lin0..lin4.model.1.weight) in the given file(s); they come "
                              "with a released LVDM AE checkpoint (loss.perceptual_loss.*) or as LPIPS v0.1's vgg.pth "
                              "(PerceptualSimilarity weights/v0.1/vgg.pth, taming's vgg_lpips)")
    if not any(k.startswith("net.") for k in keys):
        raise CheckpointError("LPIPS: no VGG16 feature weights in the given file(s); pass vgg_path= torchvision's "
                              "ImageNet vgg16 file (features.<i>.weight/bias, e.g. vgg16-397923af.pth) or use a "
                              "released LVDM AE checkpoint, which holds them (loss.perceptual_loss.net.*)")
    model = LPIPS()
    model.load_state_dict(match_state_dict(model, sd, "LPIPS", rename=_lpips_key,
                                           optional_model=(r"^scaling_layer\.",)), strict=False)
    return model.requires_grad_(False).eval()


# ---------------------------------------------------------------------- the losses

def frames(video: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W) → (B·T, C, H, W)`` (sample-major, as ``'b c t h w -> (b t) c h w'``); 4-D is returned
    as it is."""
    if video.ndim == 4:
        return video
    if video.ndim != 5:
        raise ValueError(f"expected a video (B, C, T, H, W) or frames (N, C, H, W), got shape {tuple(video.shape)}")
    b, c, t, h, w = video.shape
    return video.transpose(1, 2).reshape(b * t, c, h, w)


def last_layer(ae: nn.Module) -> torch.Tensor:
    """The weight the adaptive discriminator weight differentiates against: the decoder's ``conv_out`` (the official
    ``get_last_layer``: ``decoder.conv_out.weight``, an alias of ``decoder.conv_out.conv.weight``)."""
    return _unwrapped(ae).decoder.conv_out.conv.weight


def make_logvar(recipe: AERecipe) -> torch.Tensor:
    """The loss's output log-variance: a trainable scalar parameter with ``learn_logvar``, else the constant
    ``logvar_init`` (what the official training leaves it at)."""
    value = torch.tensor(float(recipe.logvar_init))
    return nn.Parameter(value) if recipe.learn_logvar else value


def make_optimizers(ae: nn.Module, disc: nn.Module, recipe: AERecipe, logvar: Optional[torch.Tensor] = None):
    """``(opt_ae, opt_disc)``: the official two Adams (``lr``, ``betas`` of the recipe), the AE's over all its
    parameters (plus ``logvar`` when it is a trainable parameter), the discriminator's over its own."""
    ae_params = list(ae.parameters())
    if isinstance(logvar, nn.Parameter) and logvar.requires_grad:
        ae_params.append(logvar)
    return (torch.optim.Adam(ae_params, lr=recipe.lr, betas=tuple(recipe.betas)),
            torch.optim.Adam(disc.parameters(), lr=recipe.lr, betas=tuple(recipe.betas)))


def sample_posterior(mean: torch.Tensor, logvar: torch.Tensor, draws: StepDraws,
                     purpose: str = POSTERIOR) -> torch.Tensor:
    """LVDM's posterior sample ``mean + exp(logvar/2)·ε`` (``logvar`` as the AE's ``encode`` clamps it), ε of
    ``mean``'s shape drawn per sample from ``draws`` (``purpose``). The one posterior sampler of the trainers."""
    return mean + torch.exp(0.5 * logvar) * posterior_noise(mean, draws, purpose)


def posterior_noise(mean: torch.Tensor, draws: StepDraws, purpose: str = POSTERIOR) -> torch.Tensor:
    """The posterior sample's ε, ``mean``'s shape, one draw per sample from ``draws`` (purpose ``"posterior"``)."""
    if len(draws.indices) != mean.shape[0]:
        raise ValueError(f"posterior sample: the draws hold {len(draws.indices)} sample indices for a batch of "
                         f"{mean.shape[0]}")
    return draws.randn(purpose, mean.shape[1:]).to(mean.device, mean.dtype)


def adaptive_weight(nll_loss: torch.Tensor, g_loss: torch.Tensor, layer: torch.Tensor,
                    disc_weight: float, per_process: bool = False) -> torch.Tensor:
    """``disc_weight · clamp(‖∂nll/∂W‖ / (‖∂g/∂W‖ + 1e-4), 0, 1e4)``, detached (the official
    ``calculate_adaptive_weight``); the graph is kept for the backward of the loss. With several processes the two
    gradients are averaged over them first (the whole batch's gradients), unless ``per_process`` (the official DDP)."""
    nll_grad, = torch.autograd.grad(nll_loss, layer, retain_graph=True)
    g_grad, = torch.autograd.grad(g_loss, layer, retain_graph=True)
    if not per_process:
        nll_grad, g_grad = process_mean(nll_grad), process_mean(g_grad)
    ratio = torch.linalg.vector_norm(nll_grad) / (torch.linalg.vector_norm(g_grad) + GRAD_NORM_EPS)
    return ratio.clamp(0.0, D_WEIGHT_MAX).detach() * disc_weight


def generator_loss(ae: nn.Module, disc: nn.Module, x: torch.Tensor, step: int, recipe: AERecipe,
                   draws: StepDraws, perceptual: Optional[Perceptual] = None,
                   logvar: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
    """The AE's loss for one step (the official ``optimizer_idx == 0`` branch; formula in the module docstring).

    ``ae``: a :class:`~consistent_video_kit.models.lvdm.autoencoder3d.VideoAutoencoderKL` (``encode`` → posterior
    ``(mean, logvar)``, ``decode``); ``x`` ``(B, 3, T, H, W)`` in [−1, 1]; ``draws`` the step's draws for these B
    samples; ``perceptual(x_frames, xrec_frames)`` → one distance per frame (``(B·T,)`` or ``(B·T, 1, 1, 1)``, e.g.
    :func:`load_lpips`), ``None`` = no perceptual term (weight 0); ``logvar`` from :func:`make_logvar` (``None``: the
    constant ``logvar_init``). Gradients reach the AE (and a trainable ``logvar``), never the discriminator's
    parameters. Without autograd (validation under ``no_grad``) ``d_weight`` is 0, as the official.

    Returns ``(loss, xrec, logs)``: ``xrec`` ``(B, 3, T, H, W)`` with its graph (detach it for
    :func:`discriminator_loss`); ``logs`` detached scalars ``total_loss, logvar, kl_loss, nll_loss, rec_loss,
    d_weight, disc_factor, g_loss`` (the official names, without the ``train/`` prefix)."""
    if x.ndim != 5:
        raise ValueError(f"generator_loss: expected a video batch (B, C, T, H, W), got shape {tuple(x.shape)}")
    mean, post_logvar = ae.encode(x)
    z = sample_posterior(mean, post_logvar, draws)
    xrec = ae.decode(z)
    xf, rf = frames(x), frames(xrec)
    n = xf.shape[0]

    rec = (xf - rf).abs()
    if recipe.pixelloss_weight != 1.0:
        rec = recipe.pixelloss_weight * rec
    if perceptual is not None and recipe.perceptual_weight > 0:
        p = perceptual(xf.contiguous(), rf.contiguous())
        if p.numel() != n:
            raise ValueError(f"generator_loss: perceptual must give one distance per frame ({n}), got shape "
                             f"{tuple(p.shape)}")
        rec = rec + recipe.perceptual_weight * p.reshape(n, 1, 1, 1)
    if logvar is None:
        logvar = torch.tensor(float(recipe.logvar_init))
    logvar = logvar.to(rec.device)
    nll_loss = (rec / torch.exp(logvar) + logvar).sum() / n
    kl = 0.5 * (mean.square() + torch.exp(post_logvar) - 1.0 - post_logvar)
    kl_loss = kl.sum() / mean.shape[0]

    factor = disc_factor_at(step, recipe)
    zero = torch.zeros((), device=nll_loss.device, dtype=nll_loss.dtype)
    d_weight, g_loss = zero, zero
    loss = nll_loss + recipe.kl_weight * kl_loss
    if gan_active(step, recipe):
        g_loss = -_frozen_call(disc, rf.contiguous()).mean()
        if torch.is_grad_enabled() and rf.requires_grad:
            d_weight = adaptive_weight(nll_loss, g_loss, last_layer(ae), recipe.disc_weight,
                                       recipe.per_process_gan_statistics)
        loss = loss + d_weight * factor * g_loss
    logs = {"total_loss": loss.detach(), "logvar": logvar.detach(), "kl_loss": kl_loss.detach(),
            "nll_loss": nll_loss.detach(), "rec_loss": rec.detach().mean(), "d_weight": d_weight.detach(),
            "disc_factor": torch.tensor(factor), "g_loss": g_loss.detach()}
    return loss, xrec, logs


def discriminator_loss(disc: nn.Module, x: torch.Tensor, xrec: torch.Tensor, step: int,
                       recipe: AERecipe) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """The discriminator's loss for one step (the official ``optimizer_idx == 1`` branch):
    ``f(step) · d_loss(D(x), D(x̂))`` (hinge or vanilla), inputs detached, D called on the real frames, then on the
    fake ones. ``x``, ``xrec`` ``(B, C, T, H, W)`` (or frames). Gradients reach the discriminator only.

    Before ``disc_start`` (``f = 0``) without ``gan_before_start``: a constant 0 without a graph (skip the optimizer
    step; the official's loss is ``0 · d_loss``, with all-zero gradients). Returns ``(loss, logs)``, logs
    ``disc_loss`` and, when D ran, ``logits_real``, ``logits_fake`` (means)."""
    factor = disc_factor_at(step, recipe)
    if not gan_active(step, recipe):
        loss = torch.zeros((), device=x.device, dtype=xrec.dtype)
        return loss, {"disc_loss": loss}
    logits_real = disc(frames(x).contiguous().detach())
    logits_fake = disc(frames(xrec).contiguous().detach())
    d_loss = hinge_d_loss if recipe.disc_loss == "hinge" else vanilla_d_loss
    loss = factor * d_loss(logits_real, logits_fake)
    return loss, {"disc_loss": loss.detach(), "logits_real": logits_real.detach().mean(),
                  "logits_fake": logits_fake.detach().mean()}
