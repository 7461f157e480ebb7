"""The training loop: one process on CPU or GPU, or several under ``torchrun`` / ``accelerate launch``.

``accelerate`` places the models, runs autocast and the fp16 gradient scaler, and starts the process group from the
launcher's environment (gloo on CPU, NCCL on GPUs). The gradients are averaged over processes by hand after each
backward pass (:func:`all_reduce_grads`), so a loss may be any function of the modules (the AE's adaptive weight takes
``autograd.grad`` of its last layer) and a step sees the gradient of the global batch's mean loss, as one process
with the whole batch would.

A step's samples and their random draws depend on (seed, step, global sample index) only (:mod:`.draws`,
:func:`.data.batch_at`): one process with batch 2B, two with B each, and a run resumed from a checkpoint compute
the same thing. The global batch of a step is ``batch`` samples, split over ``world`` processes and ``accumulate``
micro-batches; micro-batch ``m`` of process ``r`` holds the global indices ``m·batch/accumulate + r·b … + b − 1``.

Every step's losses (averaged over the processes) go to ``<out>/losses.jsonl``; on a terminal a progress bar runs.
Checkpoints (``<out>/train_state.pt``, written atomically every ``save_every`` steps and at the end) hold every model,
optimizer, EMA and scaler state, the step and the RNG states; a run started again with the same ``--out`` resumes
from it. Each save also exports the loader-ready file (``<out>/<name>.safetensors``, see the task's ``export``) that
the pack's Load LVDM Model reads as it is.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch

from .draws import StepDraws

STATE_FILE = "train_state.pt"
#: the groups of a recipe's ``extra``: the optimizer, each task's own settings, a given latent normalisation
EXTRA_GROUPS = ("optimizer", "autoencoder", "diffusion", "lgcvd", "normalisation")
LOSSES_FILE = "losses.jsonl"     # one line per step: {"step": n (1-based), loss name: value, …}


@dataclass
class TrainConfig:
    """One run. ``batch``: samples per optimizer step over all processes and micro-batches."""
    recipe: str
    data: str
    out: str
    steps: int = 1000
    batch: int = 8
    accumulate: int = 1
    lr: float = 1e-4
    seed: int = 0
    mixed_precision: str = "no"          # "no", "fp16", "bf16"
    save_every: int = 1000
    preview_every: int = 0               # 0: no previews; else every so many steps and at the last
    log_every: int = 10
    size: int = 256
    frames: int = 16
    stride: Optional[int] = None         # clip starts in a video (None: the clip's length, no overlap)
    sample_every: int = 1
    hflip: bool = False
    random_crop: bool = False
    network: str = "official"            # "official" (the released architecture) or "tiny" (tests, walk-through)
    ae: Optional[str] = None             # diffusion recipes: the trained AE file
    lpips: Optional[str] = None          # the AE recipe: LPIPS weights (a released LVDM AE file, or LPIPS' vgg.pth …)
    vgg: Optional[str] = None            # … with torchvision's vgg16 file); none: no perceptual loss
    normalisation_clips: int = 64        # clips encoded to compute the latent's shift and scale
    ema_decay: float = 0.9999
    extra: dict = field(default_factory=dict)   # the task's own settings (loss weights, masks, …)

    @classmethod
    def from_file(cls, path: str, sets=(), **overrides) -> "TrainConfig":
        """The recipe file, then ``overrides`` (fields; None: the file's), then ``sets``: ``"a.b.c=VALUE"`` strings
        (``--set`` of scripts/train.py) that set a dotted key of the recipe, VALUE read as JSON (else a string),
        e.g. ``extra.autoencoder.disc_start=100``."""
        with open(path) as f:
            raw = json.load(f)
        raw = {k: v for k, v in raw.items() if not k.startswith("_")}
        raw.update({k: v for k, v in overrides.items() if v is not None})
        for item in sets:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. extra.autoencoder.disc_start=100")
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
            *parents, last = key.split(".")
            node = raw
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ValueError(f"--set {item!r}: '{part}' is not a group of settings")
            node[last] = value
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"recipe '{path}': unknown settings {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        odd = sorted(set(raw.get("extra", {})) - set(EXTRA_GROUPS))
        if odd:
            raise ValueError(f"recipe '{path}': unknown settings {', '.join('extra.' + k for k in odd)}; known groups: "
                             f"{', '.join('extra.' + k for k in EXTRA_GROUPS)}")
        return cls(**raw)


def checked_settings(cls, settings: dict, where: str, exclude: tuple = ()) -> dict:
    """``settings`` (a recipe's ``extra.<where>``) checked against the fields of the dataclass ``cls``: an unknown key
    is a ValueError naming it and the known ones (a misspelt ``--set`` would otherwise end as a TypeError)."""
    from dataclasses import fields
    known = sorted(f.name for f in fields(cls) if f.name not in exclude)
    odd = sorted(set(settings) - set(known))
    if odd:
        raise ValueError(f"unknown settings {', '.join(f'extra.{where}.{k}' for k in odd)}; known: "
                         f"{', '.join(known)}")
    return dict(settings)


class EMA:
    """LitEma (LDM's ``ldm/modules/ema.py``): shadow ← shadow − (1 − d)·(shadow − θ) with
    d = min(decay, (1 + n)/(10 + n)) after n updates, over the trainable parameters."""

    def __init__(self, module: torch.nn.Module, decay: float = 0.9999):
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow = {k: p.detach().clone().float() for k, p in module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for k, p in module.named_parameters():
            if k in self.shadow:
                self.shadow[k].sub_((1.0 - d) * (self.shadow[k] - p.detach().float()))

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, sd: dict) -> None:
        self.decay, self.num_updates = float(sd["decay"]), int(sd["num_updates"])
        self.shadow = {k: v.clone() for k, v in sd["shadow"].items()}


def all_reduce_grads(params, world: int) -> None:
    """Average the gradients over the processes (nothing with one)."""
    if world <= 1:
        return
    import torch.distributed as dist
    params = list(params)
    if not params:
        return
    # every process must make the same calls: first agree which parameters have a gradient anywhere (those with none
    # on any process stay None, as with one process); where another process has one, a missing one counts as 0
    have = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
    dist.all_reduce(have, op=dist.ReduceOp.SUM)
    for p, n in zip(params, have.tolist()):
        if n == 0:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(world)


def world_size() -> int:
    """The number of processes of the running process group (1 without one)."""
    import torch.distributed as dist
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def process_mean(t: torch.Tensor) -> torch.Tensor:
    """``t`` averaged over the processes (``t`` itself with one); not differentiable."""
    world = world_size()
    if world == 1:
        return t
    import torch.distributed as dist
    t = t.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / world


class Task:
    """What a recipe trains. The engine calls :meth:`build` once; each step, for each pass (:attr:`passes`; by
    default one per optimizer in :attr:`optimizers` order), :meth:`loss` on every micro-batch (backward each), the
    gradient averaging and the pass's optimizer update; :meth:`after_step` once per step (EMA); :meth:`export` at
    each save."""
    name = "task"
    main_loss = ("loss",)      #: the logs the run's summary and progress bar report

    def build(self, cfg: TrainConfig, device: torch.device, world: int, dataset=None, log=None) -> None:
        raise NotImplementedError

    #: {optimizer name: module whose parameters it updates}, in update order
    optimizers: dict
    #: (pass name, optimizer name) in order, each pass a forward/backward over the step's micro-batches and its
    #: optimizer's update; empty: one pass per optimizer, named as it
    passes: tuple = ()

    def loss(self, name: str, video: torch.Tensor, draws: StepDraws, step: int) -> tuple:
        """(loss, logs) of pass ``name`` on one micro-batch; a loss of None skips that optimizer's update. The
        loss must not put gradients on another optimizer's parameters."""
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        pass

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, sd: dict) -> None:
        raise NotImplementedError

    def export(self, out: str, step: int) -> str:
        raise NotImplementedError

    def preview(self, out: str, step: int, video: torch.Tensor) -> Optional[str]:
        return None


def make_optimizer(params, lr: float, spec: dict) -> torch.optim.Optimizer:
    """``spec``: ``kind`` adamw (LDM's diffusion models: torch's defaults, weight decay 0.01) or adam (the AE and its
    discriminator: betas (0.5, 0.9)), optional ``betas``, ``weight_decay`` and ``eps`` (torch's 1e-8 by default)."""
    odd = sorted(set(spec) - {"kind", "betas", "weight_decay", "eps"})
    if odd:
        raise ValueError(f"unknown settings {', '.join('extra.optimizer.' + k for k in odd)}; known: betas, eps, "
                         f"kind, weight_decay")
    kind = spec.get("kind", "adamw")
    betas = tuple(spec.get("betas", (0.9, 0.999)))
    eps = float(spec.get("eps", 1e-8))
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=spec.get("weight_decay", 0.01))
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=spec.get("weight_decay", 0.0))
    raise ValueError(f"optimizer kind must be adamw or adam, got {kind!r}")


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: str, payload: dict) -> None:
    tmp = path + ".part"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def train(cfg: TrainConfig, task: Task, dataset, batch_fn: Callable, log: Callable[[str], None] = print,
          stop_after: Optional[int] = None) -> dict:
    """Run ``cfg`` (resuming from ``<out>/train_state.pt`` when there). ``batch_fn(dataset, step, global_batch,
    rank, world, seed, micro, accumulate)`` → (video on the CPU, global indices). ``stop_after``: stop (without
    saving) after this many steps of this call — tests interrupt a run with it. Returns the history of logged
    losses ``{step: {name: value}}`` of the steps this call ran."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state()       # accelerate's settings are process-wide: a later run may change them
    precision = cfg.mixed_precision
    if precision == "fp16" and not torch.cuda.is_available():   # accelerate would ignore it without a word
        precision = "no"
        if int(os.environ.get("RANK", "0")) == 0:
            log("warning: fp16 mixed precision needs a GPU: training in float32 on the CPU (--mixed-precision bf16 "
                "autocasts on a CPU)")
    accel = Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available())
    rank, world, device = accel.process_index, accel.num_processes, accel.device
    if cfg.batch % (world * cfg.accumulate):
        raise ValueError(f"batch {cfg.batch} must be divisible by processes × accumulate = {world} × {cfg.accumulate} "
                         f"(set --batch or --accumulate)")
    os.makedirs(cfg.out, exist_ok=True)
    task.build(cfg, device, world, dataset, log=log if rank == 0 else None)
    params = {name: [p for p in module.parameters() if p.requires_grad] for name, module in task.optimizers.items()}
    opts = {name: make_optimizer(ps, cfg.lr, cfg.extra.get("optimizer", {})) for name, ps in params.items()}
    passes = task.passes or tuple((n, n) for n in task.optimizers)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    start = 0
    state_path = os.path.join(cfg.out, STATE_FILE)
    if os.path.exists(state_path):
        st = torch.load(state_path, map_location="cpu", weights_only=False)
        if st["config"]["recipe"] != cfg.recipe:
            raise ValueError(f"'{cfg.out}' holds a '{st['config']['recipe']}' run; choose another --out for "
                             f"'{cfg.recipe}'")
        task.load_state_dict(st["task"])
        for name, opt in opts.items():
            opt.load_state_dict(st["optimizers"][name])
        if scaler is not None and st.get("scaler") is not None:
            scaler.load_state_dict(st["scaler"])
        _set_rng_state(st["rng"][rank] if rank < len(st["rng"]) else st["rng"][0])
        start = int(st["step"])
        log(f"resumed '{cfg.out}' at step {start}")
    losses_path = os.path.join(cfg.out, LOSSES_FILE)
    if rank == 0:
        keep = []
        if start and os.path.exists(losses_path):              # drop the steps an interruption lost
            with open(losses_path) as f:
                keep = [line for line in f if line.strip() and json.loads(line)["step"] <= start]
        with open(losses_path, "w") as f:
            f.writelines(keep)
    history = {}
    ran = 0
    t0 = time.perf_counter()
    bar = progress_bar(cfg, start) if rank == 0 else None
    if bar is not None:                      # log lines go above the bar
        plain_log = log

        def log(s):
            with bar.external_write_mode():
                plain_log(s)
    try:
        for step in range(start, cfg.steps):
            if stop_after is not None and ran >= stop_after:
                break
            micro_batches = [batch_fn(dataset, step, cfg.batch, rank, world, cfg.seed, m, cfg.accumulate)
                             for m in range(cfg.accumulate)]
            logs_sum: dict = {}
            # as Lightning's automatic optimisation: one pass after another, each on its own forward pass and
            # followed by its optimizer's update (the later passes see the updated models)
            for name, opt_name in passes:
                opt = opts[opt_name]
                opt.zero_grad(set_to_none=True)
                stepped = False
                for video, indices in micro_batches:
                    draws = StepDraws(cfg.seed, step, indices)
                    with accel.autocast():
                        loss, logs = task.loss(name, video.to(device), draws, step)
                    if loss is None:
                        continue
                    loss = loss / cfg.accumulate
                    (scaler.scale(loss) if scaler is not None else loss).backward()
                    stepped = True
                    for k, v in logs.items():
                        logs_sum[k] = logs_sum.get(k, 0.0) + float(v) / cfg.accumulate
                if not stepped:
                    continue
                all_reduce_grads(params[opt_name], world)
                if scaler is not None:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
            task.after_step(step)
            reduced = {k: float(process_mean(torch.tensor(v, device=device))) for k, v in logs_sum.items()}
            history[step] = reduced
            ran += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str("  ".join(f"{k} {reduced.get(k, float('nan')):.4g}" for k in task.main_loss))
            done = step + 1
            if rank == 0:
                with open(losses_path, "a") as f:
                    f.write(json.dumps({"step": done, **reduced}) + "\n")
            if rank == 0 and (done % cfg.log_every == 0 or done == cfg.steps):
                rate = ran / max(time.perf_counter() - t0, 1e-9)
                log(f"step {done}/{cfg.steps}  " + "  ".join(f"{k} {v:.4g}" for k, v in sorted(reduced.items()))
                    + f"  ({rate:.2f} steps/s)")
            if rank == 0 and cfg.preview_every and (done % cfg.preview_every == 0 or done == cfg.steps):
                path = task.preview(cfg.out, done, micro_batches[0][0][:1].to(device))
                if path:
                    log(f"preview: {path}")
            if done % cfg.save_every == 0 or done == cfg.steps:
                rngs = [None] * world
                if world > 1:
                    import torch.distributed as dist
                    dist.all_gather_object(rngs, _rng_state())
                else:
                    rngs = [_rng_state()]
                if rank == 0:
                    save_state(state_path, {
                        "config": asdict(cfg), "step": done, "task": task.state_dict(),
                        "optimizers": {n: o.state_dict() for n, o in opts.items()},
                        "scaler": scaler.state_dict() if scaler is not None else None, "rng": rngs})
                    exported = task.export(cfg.out, done)
                    log(f"saved step {done}: {state_path}, {exported}")
    finally:
        if bar is not None:
            bar.close()
    return history


def weights_copy(module: torch.nn.Module, weights: dict) -> torch.nn.Module:
    """A copy of ``module`` in eval mode with its parameters replaced by ``weights`` where it names them (an EMA's
    shadow): what a preview or an export samples with, leaving the trained module as it is."""
    import copy
    out = copy.deepcopy(module).eval()
    with torch.no_grad():
        for k, p in out.named_parameters():
            if k in weights:
                p.copy_(weights[k])
    return out


def progress_bar(cfg: TrainConfig, start: int):
    """A tqdm bar over the run's steps on a terminal (None otherwise: logs and CI keep plain lines)."""
    import sys
    if not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm
    return tqdm(total=cfg.steps, initial=start, desc=cfg.recipe, unit="step", dynamic_ncols=True)


def read_losses(out: str) -> dict:
    """``<out>/losses.jsonl`` as ``{step (1-based): {name: value}}``."""
    with open(os.path.join(out, LOSSES_FILE)) as f:
        return {rec.pop("step"): rec for rec in (json.loads(line) for line in f if line.strip())}


def losses_fall(history: dict, key: str, window: int = 20) -> tuple[float, float, int]:
    """(mean of ``key`` over the first ``w`` logged steps, over the last ``w``, ``w``): ``w = window``, fewer when the
    run is short."""
    vals = [h[key] for _, h in sorted(history.items()) if key in h]
    if not vals:
        raise ValueError(f"no '{key}' in the losses")
    w = max(1, min(window, len(vals) // 2))
    return sum(vals[:w]) / w, sum(vals[-w:]) / w, w
