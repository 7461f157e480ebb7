"""Recipes → runs: what ``scripts/train.py`` calls."""
from __future__ import annotations

import os
from typing import Optional

from .engine import LOSSES_FILE, TrainConfig, losses_fall, read_losses, train

RECIPES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes")


def recipe_path(name: str) -> str:
    """A recipe name (``training/recipes/<name>.json``) or a path to a recipe file."""
    if os.path.isfile(name):
        return name
    path = os.path.join(RECIPES, name + ".json")
    if not os.path.isfile(path):
        known = sorted(f[:-5] for f in os.listdir(RECIPES) if f.endswith(".json"))
        raise ValueError(f"unknown recipe {name!r}: expected one of {', '.join(known)} or a recipe file")
    return path


def micro_batch(dataset, step, global_batch, rank, world, seed, micro, accumulate, augment=True):
    """Micro-batch ``micro`` of process ``rank``: the global batch's slice of (micro·world + rank) among
    world·accumulate equal slices (see :mod:`.engine`)."""
    from .data import batch_at
    b = batch_at(dataset, step, global_batch, micro * world + rank, world * accumulate, seed, augment=augment)
    return b.clips, b.sample_indices


def build_dataset(cfg: TrainConfig):
    from .data import ClipDataset
    return ClipDataset(cfg.data, cfg.frames, cfg.size, stride=cfg.stride, sample_every=cfg.sample_every,
                       random_crop=cfg.random_crop, hflip=cfg.hflip)


def run_recipe(name: str, data: str, out: str, network: Optional[str] = None, log=print, stop_after=None, sets=(),
               **overrides) -> dict:
    """Train recipe ``name`` on ``data`` into ``out`` (resuming there); ``overrides``: :class:`TrainConfig` fields
    (None: the recipe's); ``sets``: dotted ``KEY=VALUE`` settings (:meth:`TrainConfig.from_file`). Returns the
    losses of the steps run."""
    from .tasks import make_task
    cfg = TrainConfig.from_file(recipe_path(name), sets=sets, data=data, out=out, network=network, **overrides)
    dataset = build_dataset(cfg)
    task = make_task(cfg.recipe)
    history = train(cfg, task, dataset, micro_batch, log=log, stop_after=stop_after)
    if int(os.environ.get("RANK", "0")) == 0:                 # the first process (torchrun, accelerate launch)
        steps = read_losses(cfg.out)
        for key in task.main_loss if len(steps) >= 2 else ():
            first, last, w = losses_fall(steps, key)
            log(f"{key}: {first:.4g} over the first {w} steps, {last:.4g} over the last {w} "
                f"(steps 1–{len(steps)}, {cfg.out}/{LOSSES_FILE})")
    return history


def write_shapes(folder: str, videos: int = 8, frames: int = 64, size: int = 64, seed: int = 0) -> str:
    """The synthetic moving-shapes set (folders of PNG frames) in ``folder``: 64 frames a video, enough for every
    recipe's clips (pred: 64)."""
    from .data import write_moving_shapes
    write_moving_shapes(folder, videos=videos, frames=frames, size=size, seed=seed)
    return folder
