"""CVD's multi-view sampling (arXiv 2405.17414, ``pipeline_animation_epi*.py``): V videos of one scene, each
attending per frame to a partner video through the synchronisation modules.

- **Pairings.** In every network call each view attends to one partner. 2 views: each other, always. V > 2: a
  random permutation cut into pairs (the official perfect matching); with an odd V the last three views form a
  directed 3-cycle (a→b→c→a), so every view has a partner in every call and the cost formula holds.
- **Accumulate** (A): a step's prediction is the mean over A calls, each with a fresh pairing.
- **Multistep** (M): each step but the last is done M times; between repeats the result is re-noised back to the
  step's level, ``x ← x' + sqrt(σ² − σ'²)·ξ`` (the official VP form ``z_t = sqrt(ᾱ_t/ᾱ_{t−Δ})·z + sqrt(1 − ᾱ_t/ᾱ_{t−Δ})·ξ``
  in σ-space), RePaint-style; all views to the same level.
- DDIM η = 0 steps. Cost: ``(T − 1)·M·A + A`` NFE, one call over all views (CFG batched); a call split by
  ``views_per_batch`` into groups that keep every pairing group whole counts once.

All random choices come from the node's seed, each purpose its own generator: pairings (``"cvd-pairing"``), the
frame-0 pseudo-line angle (``"cvd-angle"``, one per pairing), the re-noise (``"cvd-renoise"``). The official code
uses unseeded global RNGs.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch

from .noise import generator, randn


class Pairing:
    """Who attends to whom: ``partner[v]`` is the view whose tokens view v attends to; ``groups`` are the sets that
    attend only among themselves (pairs, and one directed 3-cycle for odd V), so a call can be split along them."""

    def __init__(self, groups: Sequence[Sequence[int]]):
        self.groups = tuple(tuple(g) for g in groups)
        partner = {}
        for g in self.groups:
            for i, v in enumerate(g):
                partner[v] = g[(i + 1) % len(g)]           # a pair swaps; a 3-cycle goes round once
        self.partner = [partner[v] for v in range(len(partner))]

    def __eq__(self, other):
        return isinstance(other, Pairing) and self.partner == other.partner

    def __hash__(self):
        return hash(tuple(self.partner))

    def __repr__(self):
        return f"Pairing({[list(g) for g in self.groups]})"


def draw_pairing(views: int, gen: torch.Generator) -> Pairing:
    """A random pairing of ``views`` ≥ 2 views: the official ``perm.reshape(2, V/2)`` (column k pairs perm[k] with
    perm[V/2 + k]); for odd V, pairs of the permutation's first V − 3 entries and a 3-cycle of its last three."""
    if views < 2:
        raise ValueError(f"a pairing needs at least 2 views, got {views}")
    perm = torch.randperm(views, generator=gen).tolist()
    if views % 2 == 0:
        half = views // 2
        return Pairing([(perm[k], perm[half + k]) for k in range(half)])
    pairs = [(perm[2 * k], perm[2 * k + 1]) for k in range((views - 3) // 2)]
    return Pairing(pairs + [tuple(perm[-3:])])


def split_views(pairing: Pairing, views_per_batch: int) -> list[list[int]]:
    """The views of one call in batches of at most ``views_per_batch`` (0: all in one), each pairing group whole."""
    views = len(pairing.partner)
    if views_per_batch <= 0 or views_per_batch >= views:
        return [list(range(views))]
    biggest = max(len(g) for g in pairing.groups)
    if views_per_batch < biggest:
        raise ValueError(f"views_per_batch {views_per_batch} cannot keep a pairing group of {biggest} views together "
                         f"(each view needs its partner in the same call); use at least {biggest}")
    chunks, current = [], []
    for g in pairing.groups:
        if len(current) + len(g) > views_per_batch:
            chunks.append(current)
            current = []
        current = current + list(g)
    return chunks + [current]


def official_settings(views: int) -> tuple[float, int, int]:
    """The official (cfg, multistep, accumulate) for V views: 2 views 8.5, 1, 1 (``run_inference_simple.sh``);
    3–4 views 14, 3, 1; 5–6 views 14, 6, 2 (``run_inference_advanced.sh``). Above 6 (no official value) we keep
    6 views' M = 6 and A = 2: each view's partner changes 12 times a step either way."""
    if views < 2:
        raise ValueError(f"CVD needs at least 2 views, got {views}")
    if views == 2:
        return 8.5, 1, 1
    if views <= 4:
        return 14.0, 3, 1
    return 14.0, 6, 2


def nfe(steps: int, multistep: int, accumulate: int) -> int:
    """Network calls of a run: ``(T − 1)·M·A + A`` (the last step is done once)."""
    return (steps - 1) * multistep * accumulate + accumulate


def sample_sync(model_for: Callable, x: torch.Tensor, sigmas: torch.Tensor, multistep: int = 1, accumulate: int = 1,
                views_per_batch: int = 0, seed: int = 0, callback: Optional[Callable] = None) -> torch.Tensor:
    """The multi-view loop. ``x`` ``(V, C, F, h, w)`` at ``sigmas[0]``; returns x at ``sigmas[-1]``.

    ``model_for(pairing, theta)`` gives one network call's guided model ``call(x_views, sigma, views) ->
    Guided(x0, eps)`` for a subset ``views`` of the views (in that order, every partner among them); one
    ``model_for`` per NFE, called once per batch of views. ``callback(n, x, x0, sigma)`` after each NFE n."""
    if multistep < 1 or accumulate < 1:
        raise ValueError(f"multistep and accumulate must be ≥ 1, got {multistep} and {accumulate}")
    views = x.shape[0]
    pairings, angles, renoise = (generator(seed, p) for p in ("cvd-pairing", "cvd-angle", "cvd-renoise"))
    sig = [float(s) for s in sigmas]
    n = 0
    for i in range(len(sig) - 1):
        s, s_next = sig[i], sig[i + 1]
        repeats = multistep if i < len(sig) - 2 else 1
        for m in range(repeats):
            x0 = eps = 0
            for _ in range(accumulate):
                pairing = draw_pairing(views, pairings)
                theta = float(torch.rand((), generator=angles, dtype=torch.float64)) * math.pi
                call = model_for(pairing, theta)
                part_x0, part_eps = torch.empty_like(x), torch.empty_like(x)
                for batch in split_views(pairing, views_per_batch):
                    out = call(x[batch], s, batch)
                    part_x0[batch], part_eps[batch] = out.x0, out.eps
                x0, eps = x0 + part_x0, eps + part_eps
                if callback is not None:
                    callback(n, x, part_x0, s)
                n += 1
            x0, eps = x0 / accumulate, eps / accumulate
            x_next = x0 if s_next == 0 else x0 + s_next * eps
            if m < repeats - 1:       # back to this step's level, fresh noise, and again
                x = x_next + math.sqrt(s * s - s_next * s_next) * randn(x.shape, renoise, x.device, x.dtype)
            else:
                x = x_next
    return x
