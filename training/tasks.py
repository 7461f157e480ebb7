"""What each recipe trains, for :func:`.engine.train`: the 3-D AE (:class:`AETask`) and the short / pred / interp
diffusion models on a trained AE's latents (:class:`DiffusionTask`). The networks are the pack's own classes, and
:meth:`export` writes files the pack's Load LVDM Model reads as they are: released key layouts, with the network
configs and the latent normalisation in the safetensors metadata (so tiny or custom sizes load too)."""
from __future__ import annotations

import json
import os
from typing import Optional

import torch

from ..models.checkpoint import match_state_dict, read_metadata, read_state_dict
from ..models.loaders import read_json
from ..models.lvdm.autoencoder3d import VideoAutoencoderKL
from ..models.lvdm.model import (AE_PREFIX, CONFIG_ROOT, EMA_PREFIX, FAMILIES, META_AE, META_FAMILY, META_SCALE,
                                 META_SHIFT, META_SIZE, META_STEP, META_UNET, UNET_PREFIX, _ae_tensors, ema_key,
                                 ldm_alphas_cumprod)
from ..models.lvdm.unet3d import build_unet
from ..models.tiny import TINY_LVDM_FAMILIES, TINY_LVDM_UNET, TINY_VIDEOAE
from .autoencoder import sample_posterior
from .draws import StepDraws
from .engine import EMA, Task, TrainConfig, checked_settings, weights_copy

FAMILY = {"short": "lvdm-short", "pred": "lvdm-pred", "interp": "lvdm-interp"}
TINY_NAME = {"short": "tiny-lvdm", "pred": "tiny-lvdm-pred", "interp": "tiny-lvdm-interp"}


def unet_config(kind: str, network: str) -> dict:
    """The UNet config of a diffusion recipe: the released architecture or the tiny one of the demos."""
    if network == "tiny":
        family, extra = TINY_LVDM_FAMILIES[TINY_NAME[kind]]
        cls = "LVDMUNet" if family == "lvdm-short" else "LVDMFrameInterpPredUNet"
        return {"_class_name": cls, **TINY_LVDM_UNET, **extra}
    return read_json(os.path.join(CONFIG_ROOT, "lvdm", FAMILIES[FAMILY[kind]]))


def ae_config(network: str) -> dict:
    if network == "tiny":
        return json.loads(json.dumps(TINY_VIDEOAE))
    return read_json(os.path.join(CONFIG_ROOT, "lvdm", "videoae.json"))


def _public(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if not k.startswith("_") or k == "_class_name"}


def save_strip(path: str, rows) -> str:
    """Videos ``(3, F, H, W)`` in [−1, 1], one row each, frames side by side, as a PNG."""
    import numpy as np
    from PIL import Image
    n = min(v.shape[1] for v in rows)                      # rows cut to the shortest
    strips = [torch.cat(list(v[:, :n].float().clamp(-1, 1).permute(1, 0, 2, 3)), dim=-1) for v in rows]  # (3,H,n·W)
    img = ((torch.cat(strips, dim=-2) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    Image.fromarray(np.ascontiguousarray(img)).save(path)
    return path


def save_safetensors(path: str, tensors: dict, metadata: dict) -> str:
    from safetensors.torch import save_file
    tmp = path + ".part.safetensors"
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, tmp,
              metadata={k: str(v) for k, v in metadata.items()})
    os.replace(tmp, path)
    return path


def load_trained_ae(path: str) -> VideoAutoencoderKL:
    """An AE file: this trainer's export (its config in the metadata) or a released ``ae_*.ckpt`` (the shipped
    config); loaded strictly, the alias weights dropped."""
    meta = read_metadata(path)
    cfg = json.loads(meta[META_AE]) if META_AE in meta else ae_config("official")
    ae = VideoAutoencoderKL(cfg["ddconfig"], cfg["embed_dim"])
    sd = _ae_tensors(read_state_dict(path), "")
    sd = {k: v for k, v in sd.items() if not k.startswith("loss.")}
    ae.load_state_dict(match_state_dict(ae, sd, f"'{os.path.basename(path)}' video autoencoder"))
    ae.config = cfg
    return ae


def latent_normalisation(ae: VideoAutoencoderKL, dataset, clips: int, seed: int, device) -> tuple[float, float]:
    """shift = −mean(z_raw), scale = 1/std(z_raw + shift) over posterior samples of the first ``clips`` clips
    (noise from :class:`.draws.StepDraws`, purpose "normalisation")."""
    zs = []
    n = min(clips, len(dataset))
    with torch.no_grad():
        for i in range(n):
            x = dataset.get(i, None)[None].to(device)
            zs.append(sample_posterior(*ae.encode(x), StepDraws(seed, 0, [i]), "normalisation").float().cpu())
    z = torch.cat(zs)
    shift = -float(z.mean())
    scale = 1.0 / float((z + shift).std())
    return scale, shift


class DiffusionTask(Task):
    """LVDM short / pred / interp on the latents of a trained AE (frozen), with LitEma."""

    def __init__(self, kind: str):
        if kind not in FAMILY:
            raise ValueError(f"diffusion recipe kind must be one of {tuple(FAMILY)}, got {kind!r}")
        self.kind = kind
        self.name = kind

    def build(self, cfg: TrainConfig, device, world: int, dataset=None, log=None) -> None:
        from .diffusion import DiffusionRecipe
        if not cfg.ae:
            raise ValueError(f"recipe '{cfg.recipe}' trains on an autoencoder's latents: give the trained AE with --ae "
                             f"(the ae recipe's <out>/ae.safetensors, or a released ae_*.ckpt)")
        self.cfg, self.device = cfg, device
        self.recipe = DiffusionRecipe.official(self.kind, **checked_settings(
            DiffusionRecipe, cfg.extra.get("diffusion", {}), "diffusion", exclude=("kind",)))
        self.ae = load_trained_ae(cfg.ae).to(device).eval().requires_grad_(False)
        self.unet_cfg = unet_config(self.kind, cfg.network)
        torch.manual_seed(cfg.seed)                 # the network's initial weights
        self.unet = build_unet(self.unet_cfg).to(device)
        self.ema = EMA(self.unet, cfg.ema_decay)
        self.alphas = ldm_alphas_cumprod(self.recipe.linear_start, self.recipe.linear_end, self.recipe.timesteps)
        norm = cfg.extra.get("normalisation")
        if norm:
            self.scale, self.shift = float(norm["scale"]), float(norm["shift"])
        else:
            self.scale, self.shift = latent_normalisation(self.ae, dataset, cfg.normalisation_clips, cfg.seed, device)
        self.optimizers = {"unet": self.unet}

    def loss(self, name, video, draws, step):
        from .diffusion import diffusion_loss, encode_latents, select_frames
        with torch.no_grad():
            z0 = select_frames(encode_latents(self.ae, video, self.scale, self.shift, draws), self.recipe)
        loss, logs = diffusion_loss(self.unet, z0, draws, self.recipe, self.alphas.to(video.device))
        return loss, {"loss": float(loss.detach()), **logs}

    def after_step(self, step):
        self.ema.update(self.unet)

    def state_dict(self):
        return {"unet": self.unet.state_dict(), "ema": self.ema.state_dict(), "scale": self.scale,
                "shift": self.shift}

    def load_state_dict(self, sd):
        self.unet.load_state_dict(sd["unet"])
        self.ema.load_state_dict(sd["ema"])
        self.scale, self.shift = sd["scale"], sd["shift"]

    def lvdm_model(self, ema: bool = True):
        """The current network (EMA weights by default) as the pack's ``LVDMModel``."""
        import copy
        from ..models.lvdm.model import LVDMModel
        from ..models.vae import VideoAE3D
        unet = weights_copy(self.unet, self.ema.shadow if ema else {})
        return LVDMModel(f"training {self.kind}", FAMILY[self.kind], unet,     # copies: the host may move them
                         VideoAE3D(copy.deepcopy(self.ae), self.scale, self.shift), self.alphas,
                         (self.cfg.size, self.cfg.size, 16))

    def preview(self, out, step, video):
        """An unconditional sample of the EMA network (DDIM 20 steps, η = 1, seed = the run's) beside the batch's
        first clip, as ``<out>/previews/<kind>_<step>.png``."""
        from ..samplers.sampling import sample
        model = self.lvdm_model()
        frames = 4 * (5 if self.kind == "interp" else 4)       # the latents one window of the model holds
        shape = model.latent_shape(frames, video.shape[-1], video.shape[-2])
        with torch.no_grad():
            z = sample(model.denoiser(), shape, model.sigmas(20), {}, None, 1.0, "cfg", 1.0, self.cfg.seed,
                       video.device)
            x = self.ae.decode(z.to(video.device) / self.scale - self.shift)
        os.makedirs(os.path.join(out, "previews"), exist_ok=True)
        return save_strip(os.path.join(out, "previews", f"{self.kind}_{step:07d}.png"), [video[0], x[0]])

    def export(self, out, step):
        t = {UNET_PREFIX + k: v for k, v in self.unet.state_dict().items()}
        t.update({ema_key(UNET_PREFIX + k): v for k, v in self.ema.shadow.items()})
        t[EMA_PREFIX + "decay"] = torch.tensor(self.ema.decay)
        t[EMA_PREFIX + "num_updates"] = torch.tensor(self.ema.num_updates)
        t.update({AE_PREFIX + k: v for k, v in self.ae.state_dict().items()})
        t["alphas_cumprod"] = self.alphas.to(torch.float32)
        meta = {META_FAMILY: FAMILY[self.kind], META_UNET: json.dumps(_public(self.unet_cfg)),
                META_AE: json.dumps(self.ae.config), META_SCALE: repr(self.scale), META_SHIFT: repr(self.shift),
                META_SIZE: self.cfg.size, META_STEP: step}
        return save_safetensors(os.path.join(out, f"{self.kind}.safetensors"), t, meta)


class AETask(Task):
    """The 3-D AE with its loss's discriminator (and learnable log-variance if the loss has one)."""
    name = "ae"
    main_loss = ("rec_loss",)

    def build(self, cfg: TrainConfig, device, world: int, dataset=None, log=None) -> None:
        from .autoencoder import AERecipe, PatchDiscriminator
        self.cfg, self.device = cfg, device
        self.recipe = AERecipe(**checked_settings(AERecipe, cfg.extra.get("autoencoder", {}), "autoencoder"))
        self.ae_cfg = ae_config(cfg.network)
        torch.manual_seed(cfg.seed)
        self.ae = VideoAutoencoderKL(self.ae_cfg["ddconfig"], self.ae_cfg["embed_dim"]).to(device)
        self.ae.config = self.ae_cfg
        self.disc = PatchDiscriminator.from_recipe(self.recipe).to(device)     # BatchNorms synchronised over processes
        self.perceptual = None
        if cfg.lpips:
            from .autoencoder import load_lpips
            self.perceptual = load_lpips(cfg.lpips, cfg.vgg).to(device)
        elif self.recipe.perceptual_weight > 0 and log is not None:
            log(f"warning: no LPIPS weights given (--lpips): the AE trains without its perceptual loss (the recipe's "
                f"perceptual_weight {self.recipe.perceptual_weight:g}); give a released LVDM AE checkpoint or "
                f"LPIPS' vgg.pth with --vgg torchvision's vgg16 file")
        self.optimizers = {"ae": self.ae, "disc": self.disc}

    def loss(self, name, video, draws, step):
        from .autoencoder import discriminator_loss, generator_loss
        if name == "ae":
            self.disc.requires_grad_(False)
            try:
                loss, _, logs = generator_loss(self.ae, self.disc, video, step, self.recipe, draws,
                                                perceptual=self.perceptual)
            finally:
                self.disc.requires_grad_(True)
            return loss, {"ae_loss": float(loss.detach()), **logs}
        from .autoencoder import gan_active
        if not gan_active(step, self.recipe):   # the official discriminator loss is a constant 0 before its start
            return None, {}
        with torch.no_grad():        # Lightning's second pass: the AE as the first optimizer left it, fresh noise
            z = sample_posterior(*self.ae.encode(video), draws, "posterior/disc")
            xrec = self.ae.decode(z)
        loss, logs = discriminator_loss(self.disc, video, xrec, step, self.recipe)
        return loss, {"disc_loss": float(loss.detach()), **logs}

    def preview(self, out, step, video):
        """The batch's first clip and its reconstruction (posterior mean), as ``<out>/previews/ae_<step>.png``."""
        with torch.no_grad():
            mean, _ = self.ae.encode(video[:1])
            x = self.ae.decode(mean)
        os.makedirs(os.path.join(out, "previews"), exist_ok=True)
        return save_strip(os.path.join(out, "previews", f"ae_{step:07d}.png"), [video[0], x[0]])

    def state_dict(self):
        return {"ae": self.ae.state_dict(), "disc": self.disc.state_dict()}

    def load_state_dict(self, sd):
        self.ae.load_state_dict(sd["ae"])
        self.disc.load_state_dict(sd["disc"])

    def export(self, out, step):
        t = dict(self.ae.state_dict())
        t.update({"loss.discriminator." + k: v for k, v in self.disc.state_dict().items()})
        return save_safetensors(os.path.join(out, "ae.safetensors"), t,
                                {META_AE: json.dumps(self.ae_cfg), META_STEP: step})


def make_task(recipe_kind: str) -> Task:
    if recipe_kind == "lgcvd":
        from .lgcvd import LGCVDTask
        return LGCVDTask()
    return AETask() if recipe_kind == "ae" else DiffusionTask(recipe_kind)
