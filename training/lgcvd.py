"""LGC-VD's two-stage training (exisas/LGC-VD ``video_diffusion_pytorch.py::Trainer.train``, ``diffusion.py::
GaussianDiffusion.{forward, p_losses}``; ``shared/reference/lvdm-lgcvd.md`` §3.6) as short pure functions over one
step's :class:`~.draws.StepDraws`, and the task the engine runs (:class:`LGCVDTask`) on the pack's own networks.

A sample is a clip of 14 frames in [−1, 1]; its two windows are frames 0–7 (stage 1) and 6–13 (stage 2). Per sample::

    task  ~ p = U[0, 1) (purpose "task", once for both stages):
            p > 0.55 prediction (0, 1) · p > 0.15 unconditional (−1, −1) · p > 0.10 interpolation (0, 7)
            · else "random": two distinct positions of {−1, …, 6}, drawn anew for each stage
    stage k (1, 2):
        context  = [y1, m1, y2, m2]: y = the window's frame at each position (−1 when absent), m = 2·(pos + 1)/9 − 1;
                   stage 2 of a prediction sample takes y from stage 1's x̂0 (its frames 6, 7 = window 2's 0, 1)
        feature  = E(previous clip): stage 1 the blank clip (0), stage 2 stage 1's x̂0 (detached, not clipped)
        t ~ U{0..999}, ε ~ N(0, I)                 (purposes "stage<k>/t", "stage<k>/eps")
        x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε,   v = √ᾱ_t·ε − √(1−ᾱ_t)·x0
        loss_k = mean |UNet(x_t, t, context, feature) − v|,    x̂0 = √ᾱ_t·x_t − √(1−ᾱ_t)·v̂
    the optimizer steps after each stage (two Adam steps per iteration, as the official loop)

The cosine ᾱ table is the official training diffusion's (:func:`training_alphas_cumprod`: ``SpacedDiffusion`` over
all 1000 steps rebuilds the sampler's float32 table once more from its own betas, 7e-7 away at most).

Deviations from the official code, on purpose:

- every draw is per sample, from :class:`~.draws.StepDraws` (seed, step, global sample index): the task, the random
  positions, t and ε. The official loop draws the task and positions once per process batch from Python's RNG and t,
  ε from torch's, and ``main.py`` seeds both alike on every rank, so its two GPUs (batch 1 each) train the same task
  with the same t and ε at each step; only their clips (numpy, unseeded) differ;
- clips are cut from each video at every start (``stride`` 1 in the recipes, each equally likely), where the
  official loader picks one random start per video per epoch, never the last one (``np.random.choice(len − 14)``);
- the EMA (decay 0.995, every 10 steps, a copy of the weights before step 2000, as the official) covers the
  parameters of both networks, as the official ``update_model_average``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from ..models.lgcvd import META_CONFIG, build_networks, read_config, stack_frames, unstack_frames
from ..models.lvdm.model import META_STEP
from ..models.tiny import TINY_LGCVD_CONFIG
from ..samplers.lgcvd import COND, F_WINDOW, blank_clip, cosine_alphas_cumprod, local_context
from .draws import StepDraws
from .engine import Task, TrainConfig, checked_settings, weights_copy

TASKS = ("prediction", "unconditional", "interpolation", "random")
CLIP_FRAMES = 2 * F_WINDOW - COND        # 14: two windows of 8 overlapping by the 2 context frames


@dataclass(frozen=True)
class LGCVDRecipe:
    """The official task thresholds (``p > prediction_above``: prediction, ``p > unconditional_above``:
    unconditional, ``p > interpolation_above``: interpolation, else random), loss and EMA schedule (the decay is the
    run's ``ema_decay``, 0.995 in the recipes)."""
    prediction_above: float = 0.55
    unconditional_above: float = 0.15
    interpolation_above: float = 0.10
    loss: str = "l1"
    ema_every: int = 10
    ema_start: int = 2000

    def __post_init__(self):
        if not 0 <= self.interpolation_above <= self.unconditional_above <= self.prediction_above <= 1:
            raise ValueError("LGCVDRecipe: need 0 ≤ interpolation_above ≤ unconditional_above ≤ prediction_above ≤ 1, "
                             f"got {self.interpolation_above}, {self.unconditional_above}, {self.prediction_above}")
        if self.loss not in ("l1", "l2"):
            raise ValueError(f"LGCVDRecipe: loss must be l1 or l2, got {self.loss!r}")
        if self.ema_every < 1 or self.ema_start < 0:
            raise ValueError("LGCVDRecipe: need ema_every ≥ 1 and ema_start ≥ 0")


def draw_tasks(draws: StepDraws, recipe: LGCVDRecipe) -> list[str]:
    """One task per sample from its uniform ``p`` (purpose ``"task"``)."""
    out = []
    for p in draws.rand("task").tolist():
        out.append("prediction" if p > recipe.prediction_above else "unconditional" if p > recipe.unconditional_above
                   else "interpolation" if p > recipe.interpolation_above else "random")
    return out


def task_positions(tasks: list[str], draws: StepDraws, stage: int, frames: int = F_WINDOW) -> list[tuple[int, int]]:
    """The two context positions of each sample at ``stage`` (1 or 2): prediction (0, 1), unconditional (−1, −1),
    interpolation (0, F−1), random: two distinct values of {−1, …, F−2} (``random.sample(range(-1, F-1), 2)``: the
    first two of a permutation, purpose ``"stage<k>/positions"``)."""
    out = []
    gens = draws.generators(f"stage{stage}/positions")
    for task, g in zip(tasks, gens):
        if task == "prediction":
            out.append((0, 1))
        elif task == "unconditional":
            out.append((-1, -1))
        elif task == "interpolation":
            out.append((0, frames - 1))
        elif task == "random":
            a, b = (torch.randperm(frames, generator=g)[:2] - 1).tolist()
            out.append((a, b))
        else:
            raise ValueError(f"unknown LGC-VD task {task!r}; expected one of {TASKS}")
    return out


def stage_context(src: torch.Tensor, positions: list[tuple[int, int]]) -> torch.Tensor:
    """The local context ``(B, 8, H, W)`` = ``[y1, m1, y2, m2]`` (the official ``cond``, normalised) with positions per
    sample: the sampler's :func:`~consistent_video_kit.samplers.lgcvd.local_context` of each sample's frames of ``src``
    ``(B, 3, F, H, W)`` in [−1, 1] (−1 everywhere when absent, constant position maps)."""
    B, C, Fr, H, W = src.shape
    frame = lambda i, pos: src[i:i + 1, :, pos] if pos >= 0 else None  # noqa: E731
    return torch.cat([local_context(frame(i, a), frame(i, b), (a, b), 1, H, W, Fr, src.device, src.dtype)
                      for i, (a, b) in enumerate(positions)])


def stage_frames(window: torch.Tensor, tasks: list[str], previous_x0: Optional[torch.Tensor]) -> torch.Tensor:
    """The clip each sample's context frames come from: the window itself (stage 1: ``previous_x0`` None), except in
    stage 2 a prediction sample, whose positions 0, 1 come from stage 1's x̂0 frames F−2, F−1 (the official
    ``pred_end``)."""
    if previous_x0 is None:
        return window
    src = window.clone()
    for i, task in enumerate(tasks):
        if task == "prediction":
            src[i, :, :COND] = previous_x0[i, :, -COND:]
    return src


def v_loss(unet, encoder, window: torch.Tensor, context: torch.Tensor, previous: torch.Tensor, t: torch.Tensor,
           eps: torch.Tensor, alphas_cumprod: torch.Tensor, loss: str = "l1") -> tuple[torch.Tensor, torch.Tensor]:
    """One stage's loss and its one-step x̂0 (the official ``p_losses``). ``window``, ``previous`` (the clip the
    encoder reads), ``eps`` ``(B, 3, F, H, W)`` in [−1, 1]; ``context`` ``(B, 8, H, W)``; ``t`` ``(B,)`` int64;
    ``alphas_cumprod`` ``(1000,)``. Returns ``(loss, x̂0 detached (B, 3, F, H, W))``."""
    # the official buffers: √ᾱ and √(1 − ᾱ) computed in float32, then in the window's dtype (float64 in tests)
    ac = alphas_cumprod.to(device=window.device, dtype=torch.float32)[t].reshape(-1, 1, 1, 1, 1)
    a, s = ac.sqrt().to(window.dtype), (1.0 - ac).sqrt().to(window.dtype)
    x_t = a * window + s * eps
    v = a * eps - s * window
    feature = encoder(stack_frames(previous))
    v_hat = unstack_frames(unet(stack_frames(x_t), t, context, feature), window.shape[1]).to(window.dtype)
    value = F.l1_loss(v_hat, v) if loss == "l1" else F.mse_loss(v_hat, v)
    return value, (a * x_t - s * v_hat).detach()


def training_alphas_cumprod() -> torch.Tensor:
    """ᾱ ``(1000,)`` float64 as the official training diffusion holds it: ``SpacedDiffusion`` keeping every step
    takes the base table (:func:`cosine_alphas_cumprod`, float32), makes betas ``1 − ᾱ_i/ᾱ_{i−1}`` of it in float32
    and builds ``cumprod(1 − β)`` again in float32."""
    base = cosine_alphas_cumprod().to(torch.float32)
    betas = 1 - base / torch.cat([base.new_ones(1), base[:-1]])
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float64)


def network_config(cfg: TrainConfig) -> dict:
    """The networks' config: the tiny demo's, or the shipped ``cityscapes`` / ``bair`` config
    (``extra.lgcvd.config``), whose frame size must be the run's ``size``."""
    if cfg.network == "tiny":
        config = json.loads(json.dumps(TINY_LGCVD_CONFIG))
    else:
        config = read_config(cfg.extra.get("lgcvd", {}).get("config", "cityscapes"))
    if config["size"] != cfg.size:
        raise ValueError(f"recipe '{cfg.recipe}': the {config['dataset']} networks are built for {config['size']} px "
                         f"frames (their attention placement depends on it), the run says size {cfg.size}")
    if cfg.frames != CLIP_FRAMES:
        raise ValueError(f"recipe '{cfg.recipe}': LGC-VD trains on clips of {CLIP_FRAMES} frames (two windows of "
                         f"{F_WINDOW} sharing {COND}), the run says frames {cfg.frames}")
    return config


class LGCVDTask(Task):
    """LGC-VD's denoiser and context encoder, trained jointly in two stages per step (two optimizer passes)."""
    name = "lgcvd"
    passes = (("stage1", "model"), ("stage2", "model"))
    main_loss = ("loss_stage1", "loss_stage2")

    def build(self, cfg: TrainConfig, device, world: int, dataset=None, log=None) -> None:
        settings = {k: v for k, v in cfg.extra.get("lgcvd", {}).items() if k != "config"}
        self.cfg, self.device = cfg, device
        self.recipe = LGCVDRecipe(**checked_settings(LGCVDRecipe, settings, "lgcvd"))
        self.config = network_config(cfg)
        torch.manual_seed(cfg.seed)                      # the networks' initial weights
        self.nets = build_networks(self.config).to(device)
        self.ema = {k: p.detach().clone() for k, p in self.nets.named_parameters()}
        self.alphas = training_alphas_cumprod()
        self.optimizers = {"model": self.nets}
        self._stage1: dict = {}

    def loss(self, name, video, draws, step):
        B, _, _, H, W = video.shape
        key = tuple(draws.indices)
        tasks = draw_tasks(draws, self.recipe)
        stage = 1 if name == "stage1" else 2
        start = 0 if stage == 1 else F_WINDOW - COND
        window = video[:, :, start:start + F_WINDOW]
        previous = blank_clip(B, H, W, F_WINDOW, video.device, video.dtype) if stage == 1 else self._stage1.pop(key)
        src = stage_frames(window, tasks, None if stage == 1 else previous)
        context = stage_context(src, task_positions(tasks, draws, stage))
        t = draws.randint(f"stage{stage}/t", 0, len(self.alphas)).to(video.device)
        eps = draws.randn(f"stage{stage}/eps", window.shape[1:]).to(video.device, video.dtype)
        loss, x0 = v_loss(self.nets.denoise_fn, self.nets.encoder_fn, window, context, previous, t, eps, self.alphas,
                          self.recipe.loss)
        if stage == 1:
            self._stage1[key] = x0
        logs = {f"loss_stage{stage}": float(loss.detach())}
        return loss, logs

    def after_step(self, step):
        r, decay = self.recipe, self.cfg.ema_decay
        if step % r.ema_every:
            return
        with torch.no_grad():
            for k, p in self.nets.named_parameters():
                if step < r.ema_start:
                    self.ema[k].copy_(p.detach())
                else:
                    self.ema[k].mul_(decay).add_(p.detach(), alpha=1 - decay)

    def state_dict(self):
        return {"nets": self.nets.state_dict(), "ema": self.ema}

    def load_state_dict(self, sd):
        self.nets.load_state_dict(sd["nets"])
        self.ema = {k: v.clone() for k, v in sd["ema"].items()}

    def lgcvd_model(self, ema: bool = True):
        """The current networks (EMA weights by default) as the pack's ``LGCVDModel``."""
        from ..models.lgcvd import LGCVDModel
        nets = weights_copy(self.nets, self.ema if ema else {})
        c = self.config
        return LGCVDModel(f"training {c['dataset']}", c["dataset"], nets.denoise_fn, nets.encoder_fn, c["size"],
                          c["frames"], c["cond_frames"])

    def preview(self, out, step, video):
        """Prediction with the EMA networks (DDPM, 25 respaced steps): the clip's first two frames given, 12 new,
        below the clip itself, as ``<out>/previews/lgcvd_<step>.png``."""
        from ..samplers.lgcvd import predict, sampling_sigmas
        from .tasks import save_strip
        model = self.lgcvd_model()
        with torch.no_grad():
            x = predict(model.denoiser(), model.encode, video[:1, :, :COND], CLIP_FRAMES - COND,
                        sampling_sigmas(model.alphas_cumprod, 25), "ddpm", self.cfg.seed)
        os.makedirs(os.path.join(out, "previews"), exist_ok=True)
        return save_strip(os.path.join(out, "previews", f"lgcvd_{step:07d}.png"), [video[0], x[0]])

    def export(self, out, step):
        from .tasks import save_safetensors
        t = {f"model/{k}": v for k, v in self.nets.state_dict().items()}
        t.update({f"ema/{k}": v for k, v in self.ema.items()})
        meta = {META_CONFIG: json.dumps(self.config), META_STEP: step}
        return save_safetensors(os.path.join(out, "lgcvd.safetensors"), t, meta)

