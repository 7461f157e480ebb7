"""LVDM's diffusion training objective (``lvdm/models/ddpm3d.py``: ``LatentDiffusion.p_losses``,
``FrameInterpPredLatentDiffusion.{add_frames_condition, p_losses}``, ``modules/util.py::random_temporal_masking``)
as short pure functions over one step's :class:`~.draws.StepDraws`.

The recipe, per sample (1 in the mask = a given, conditioning slot)::

    z0  = scale·(z_raw + shift),  z_raw ~ AE posterior (sampled, not its mode)     encode_latents, select_frames
    t ~ U{0..timesteps−1},  s ~ U{0..max_noise_level−1},  ε_t, ε_s ~ N(0, I)
    m   = random temporal mask (pred: first n slots, interp: first + last, or none)  temporal_masks
    x   = [ z_t·(1−m) + z_s·m ; m ]      z_t = q(z0, t; ε_t),  z_s = q(z0, s; ε_s)
    loss = mean |UNet(x, t, y=s) − (ε_t·(1−m) + ε_s·m)|   over every slot, given ones included

The short (unconditional) model is plain ε-prediction: ``mean |UNet(z_t, t) − ε_t|``, no mask, no label.
Reductions are the released configs': ``l_simple_weight`` 1, ``original_elbo_weight`` 0, ``learn_logvar`` off with
``logvar_init`` 0, so the official ``loss_simple / exp(logvar_t) + logvar_t`` weighting is the identity and the loss
is the per-sample mean over (C, T, h, w), averaged over the batch.

Every random number comes from ``draws`` (purposes ``"posterior"``, ``"t"``, ``"s"``, ``"eps_t"``, ``"eps_s"``,
``"mask"``), drawn per sample from its global index, so one process with batch 2B computes what two processes with
batch B compute (the loss of the big batch is the mean of the two halves' losses).

Deviations from the official code, on purpose:

- ``uncond_no_s=True`` drops the label of the samples whose mask is all zeros, per sample (label −1). The official
  ``uncondnoS`` tests ``mask.all() == 0`` over the whole batch, which is true for any batch with one zero slot, so it
  drops ``s`` for every sample and then perturbs nothing (clean conditioning latents, no label) — not copied.
- ``mask_cond_loss=True`` multiplies the loss by (1 − m) (the given slots do not count; the mean still runs over every
  slot). The official flag reaches ``LatentDiffusion.p_losses`` as ``cond_mask`` and is never used there.
- ``latent_frame_stride`` is honoured as given; the official ``get_input`` takes every 4th latent whatever
  ``latent_frame_strde`` says (the released pred config says 4).
- ``n_interp`` both-sides masks are one slot on each side (the official defaults ``n_interp1 = n_interp2 = 1``,
  never changed by a config); ``interp_frame_stride`` (None in every config) is kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import torch

from .draws import StepDraws

KINDS = ("short", "pred", "interp")
LOSSES = ("l1", "l2")


@dataclass(frozen=True)
class DiffusionRecipe:
    """What one LVDM model's training step computes. :meth:`official` gives the released configs' values
    (``configs/lvdm_short/*.yaml``, ``configs/lvdm_long/sky_{pred,interp}.yaml``).

    kind: ``"short"`` (unconditional, 4-channel input), ``"pred"`` or ``"interp"`` (4 latent + 1 mask channels and the
        label ``s``). timesteps, linear_start, linear_end: the LDM "linear" β schedule. max_noise_level: ``s`` is drawn
        from ``U{0..max_noise_level−1}``. p_interp, p_pred, n_prevs, interp_frame_stride: ``random_temporal_masking``.
    latent_frame_stride: keep every k-th latent (pred: 4), None: all. loss: ``"l1"`` or ``"l2"``.
    mask_cond_loss: leave the given slots out of the loss. uncond_no_s: no label for unconditional samples.
    """
    kind: str
    timesteps: int = 1000
    linear_start: float = 0.0015
    linear_end: float = 0.0155
    max_noise_level: int = 250
    p_interp: float = 0.0
    p_pred: float = 0.0
    n_prevs: tuple = field(default=())
    interp_frame_stride: Optional[int] = None
    latent_frame_stride: Optional[int] = None
    loss: str = "l1"
    mask_cond_loss: bool = False
    uncond_no_s: bool = False

    def __post_init__(self):
        object.__setattr__(self, "n_prevs", tuple(int(n) for n in (self.n_prevs or ())))
        if self.kind not in KINDS:
            raise ValueError(f"DiffusionRecipe: kind must be one of {KINDS}, got {self.kind!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"DiffusionRecipe: loss must be one of {LOSSES}, got {self.loss!r}")
        if self.timesteps < 1 or not 1 <= self.max_noise_level <= self.timesteps:
            raise ValueError(f"DiffusionRecipe: need timesteps ≥ 1 and 1 ≤ max_noise_level ≤ timesteps, got "
                             f"{self.timesteps}, {self.max_noise_level}")
        if not (0 <= self.p_interp <= 1 and 0 <= self.p_pred <= 1 and self.p_interp + self.p_pred <= 1):
            raise ValueError(f"DiffusionRecipe: p_interp, p_pred must lie in [0, 1] with sum ≤ 1, got "
                             f"{self.p_interp}, {self.p_pred}")
        if self.p_pred > 0 and (not self.n_prevs or min(self.n_prevs) < 1):
            raise ValueError(f"DiffusionRecipe: p_pred > 0 needs n_prevs, the choices of how many leading slots are "
                             f"given (each ≥ 1), got {self.n_prevs}")
        if self.kind == "short" and (self.p_interp or self.p_pred):
            raise ValueError("DiffusionRecipe: the short model has no mask channel; p_interp and p_pred must be 0, got "
                             f"{self.p_interp}, {self.p_pred}")
        for name in ("interp_frame_stride", "latent_frame_stride"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"DiffusionRecipe: {name} must be None or an int ≥ 1, got {v!r}")

    @classmethod
    def official(cls, kind: str, **changes) -> "DiffusionRecipe":
        """The released config of ``kind``, with ``changes`` applied."""
        base = {"short": cls("short"),
                "pred": cls("pred", p_interp=0.0, p_pred=0.5, n_prevs=(1,), latent_frame_stride=4),
                "interp": cls("interp", p_interp=0.9, p_pred=0.0)}
        if kind not in base:
            raise ValueError(f"DiffusionRecipe.official: kind must be one of {KINDS}, got {kind!r}")
        return replace(base[kind], **changes)

    @property
    def conditioned(self) -> bool:
        return self.kind != "short"

    def alphas_cumprod(self) -> torch.Tensor:
        """ᾱ ``(timesteps,)`` float64 (float32-rounded values, as the official buffer)."""
        from ..models.lvdm.model import ldm_alphas_cumprod
        return ldm_alphas_cumprod(self.linear_start, self.linear_end, self.timesteps)


@dataclass
class DiffusionInputs:
    """One step's network call and target. x: ``(B, 4 [+1 mask], T, h, w)``; t: ``(B,)`` int64; label: ``(B,)``
    int64 (−1: none) or None (short); target: ``(B, 4, T, h, w)``; mask: ``(B, 1, T, 1, 1)`` or None (short)."""
    x: torch.Tensor
    t: torch.Tensor
    label: Optional[torch.Tensor]
    target: torch.Tensor
    mask: Optional[torch.Tensor]


def _check_batch(draws: StepDraws, batch: int, who: str) -> None:
    if batch != len(draws.indices):
        raise ValueError(f"{who}: the batch holds {batch} samples but draws has {len(draws.indices)} indices "
                         f"{draws.indices}; they must match one to one")


def temporal_masks(draws: StepDraws, batch: int, frames: int, recipe: DiffusionRecipe) -> torch.Tensor:
    """``random_temporal_masking`` per sample: with r ~ U[0, 1) (purpose ``"mask"``), r < p_interp: slots 0 and
    T−1 given (or every ``interp_frame_stride``-th slot); p_interp ≤ r < p_interp + p_pred: the first n slots, n drawn
    uniformly from ``n_prevs`` (same generator); else none. Returns ``(B, 1, T, 1, 1)`` float32 on the CPU."""
    _check_batch(draws, batch, "temporal_masks")
    if frames < 1:
        raise ValueError(f"temporal_masks: frames must be ≥ 1, got {frames}")
    mask = torch.zeros(batch, frames)
    for i, g in enumerate(draws.generators("mask")):
        r = float(torch.rand((), generator=g))
        if r < recipe.p_interp:
            if recipe.interp_frame_stride is not None:
                mask[i, ::recipe.interp_frame_stride] = 1
            else:
                mask[i, 0] = mask[i, frames - 1] = 1
        elif r < recipe.p_interp + recipe.p_pred:
            n = recipe.n_prevs[int(torch.randint(len(recipe.n_prevs), (), generator=g))]
            mask[i, :n] = 1
    return mask[:, None, :, None, None]


def encode_latents(ae, video: torch.Tensor, scale: float, shift: float, draws: StepDraws) -> torch.Tensor:
    """Video ``(B, 3, F, H, W)`` in [−1, 1] → normalised latents ``scale·(z_raw + shift)`` ``(B, 4, F/4, H/8, W/8)``
    with ``z_raw = mean + exp(logvar/2)·ε`` sampled from the posterior ``ae.encode(video) = (mean, logvar)``, ε from
    ``draws`` (purpose ``"posterior"``). No gradient (the AE is frozen, as ``get_input`` runs under no_grad)."""
    _check_batch(draws, video.shape[0], "encode_latents")
    from .autoencoder import sample_posterior
    with torch.no_grad():
        return scale * (sample_posterior(*ae.encode(video), draws) + shift)


def select_frames(z: torch.Tensor, recipe: DiffusionRecipe) -> torch.Tensor:
    """The latents the model trains on: every ``latent_frame_stride``-th (pred: 16 latents → 4 keyframes) or all."""
    stride = recipe.latent_frame_stride
    return z[:, :, ::stride] if stride else z


def q_sample(z0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """``√ᾱ_t·z0 + √(1−ᾱ_t)·ε`` with one t ``(B,)`` per sample; the coefficients in float64, then z0's dtype."""
    ac = alphas_cumprod.detach().to("cpu", torch.float64)[t.cpu()]
    shape = (-1,) + (1,) * (z0.dim() - 1)
    a = ac.sqrt().reshape(shape).to(device=z0.device, dtype=z0.dtype)
    b = (1 - ac).sqrt().reshape(shape).to(device=z0.device, dtype=z0.dtype)
    return a * z0 + b * eps


def diffusion_inputs(z0: torch.Tensor, draws: StepDraws, recipe: DiffusionRecipe,
                     alphas_cumprod: torch.Tensor) -> DiffusionInputs:
    """The network input, timestep, label and target of one step for latents ``z0`` ``(B, 4, T, h, w)`` (the
    official ``p_losses`` with the draws of ``draws``)."""
    if z0.dim() != 5:
        raise ValueError(f"diffusion_inputs: z0 must be (B, C, T, h, w), got {tuple(z0.shape)}")
    B, C, T, h, w = z0.shape
    _check_batch(draws, B, "diffusion_inputs")
    if alphas_cumprod.shape != (recipe.timesteps,):
        raise ValueError(f"diffusion_inputs: alphas_cumprod must have shape ({recipe.timesteps},), got "
                         f"{tuple(alphas_cumprod.shape)}")
    dev, dt = z0.device, z0.dtype
    t = draws.randint("t", 0, recipe.timesteps)
    eps_t = draws.randn("eps_t", (C, T, h, w)).to(device=dev, dtype=dt)
    z_t = q_sample(z0, t, eps_t, alphas_cumprod)
    if not recipe.conditioned:
        return DiffusionInputs(z_t, t.to(dev), None, eps_t, None)
    mask = temporal_masks(draws, B, T, recipe).to(device=dev, dtype=dt)
    s = draws.randint("s", 0, recipe.max_noise_level)
    eps_s = draws.randn("eps_s", (C, T, h, w)).to(device=dev, dtype=dt)
    z_s = q_sample(z0, s, eps_s, alphas_cumprod)
    x = z_t * (1 - mask) + z_s * mask
    target = eps_t * (1 - mask) + eps_s * mask
    label = s
    if recipe.uncond_no_s:
        label = torch.where(mask.cpu().flatten(1).any(dim=1), s, torch.full_like(s, -1))
    x = torch.cat([x, mask.expand(B, 1, T, h, w)], dim=1)
    return DiffusionInputs(x, t.to(dev), label.to(dev), target, mask)


def diffusion_loss(unet, z0: torch.Tensor, draws: StepDraws, recipe: DiffusionRecipe,
                   alphas_cumprod: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The step's loss (0-d, in the network's dtype but at least float32, with grad through ``unet``) and its logs (detached 0-d tensors:
    ``loss_simple`` and ``loss`` as the official ``train/…`` keys, ``given_slots`` = fraction of given slots).
    ``unet(x, t)`` for the short model, ``unet(x, t, y=label)`` for pred / interp (the pack's ``LVDMUNet``)."""
    inp = diffusion_inputs(z0, draws, recipe, alphas_cumprod)
    out = unet(inp.x, inp.t) if inp.label is None else unet(inp.x, inp.t, y=inp.label)
    if out.shape != inp.target.shape:
        raise ValueError(f"diffusion_loss: the network returned {tuple(out.shape)}, expected "
                         f"{tuple(inp.target.shape)}")
    dtype = torch.promote_types(out.dtype, torch.float32)       # half-precision outputs: the loss in float32
    err = out.to(dtype) - inp.target.to(dtype)
    per = err.abs() if recipe.loss == "l1" else err.square()
    if recipe.mask_cond_loss and inp.mask is not None:
        per = per * (1 - inp.mask.to(dtype))
    loss = per.mean(dim=(1, 2, 3, 4)).mean()
    logs = {"loss_simple": loss.detach(), "loss": loss.detach(),
            "given_slots": (inp.mask.float().mean() if inp.mask is not None else torch.zeros(())).detach()}
    return loss, logs
