"""Per-sample random draws that do not depend on the number of processes.

Every random quantity of a training step (a sample's timestep t, its perturbation level s, its temporal mask, its
noise tensors, a data augmentation's flip) is drawn from a generator of its own, seeded from (run seed, step, the
sample's GLOBAL index in the step's batch, purpose). One process with batch 2B and two processes with batch B each
(global indices 0..B-1 and B..2B-1) therefore draw exactly the same numbers, and a resumed run draws what the
uninterrupted run would have drawn at that step without storing any generator state.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import torch


def sample_seed(seed: int, step: int, index: int, purpose: str) -> int:
    """A 63-bit seed for one purpose of one sample of one step (blake2b of the four, so nearby values do not give
    correlated streams)."""
    if step < 0 or index < 0:
        raise ValueError(f"step and index must be ≥ 0, got step {step}, index {index}")
    digest = hashlib.blake2b(f"{int(seed)}/{int(step)}/{int(index)}/{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def sample_generator(seed: int, step: int, index: int, purpose: str) -> torch.Generator:
    """A CPU generator for one purpose of one sample of one step."""
    return torch.Generator(device="cpu").manual_seed(sample_seed(seed, step, index, purpose))


class StepDraws:
    """The draws of one step for the samples this process holds: ``indices`` are their global indices in the step's
    batch (process rank r of w with per-process batch b holds ``range(r·b, (r+1)·b)``). Values are drawn on the CPU
    in float32 (noise) or int64 and stacked in ``indices`` order; move them to the device afterwards."""

    def __init__(self, seed: int, step: int, indices: Sequence[int]):
        self.seed, self.step, self.indices = int(seed), int(step), [int(i) for i in indices]

    def generators(self, purpose: str) -> list[torch.Generator]:
        return [sample_generator(self.seed, self.step, i, purpose) for i in self.indices]

    def randint(self, purpose: str, low: int, high: int) -> torch.Tensor:
        """One integer in [low, high) per sample: ``(B,)`` int64."""
        return torch.stack([torch.randint(low, high, (), generator=g) for g in self.generators(purpose)])

    def rand(self, purpose: str, shape: Sequence[int] = ()) -> torch.Tensor:
        """Uniform [0, 1) of ``shape`` per sample: ``(B, *shape)`` float32."""
        return torch.stack([torch.rand(tuple(shape), generator=g) for g in self.generators(purpose)])

    def randn(self, purpose: str, shape: Sequence[int]) -> torch.Tensor:
        """Standard normal of ``shape`` per sample: ``(B, *shape)`` float32."""
        return torch.stack([torch.randn(tuple(shape), generator=g) for g in self.generators(purpose)])


def process_indices(rank: int, world: int, per_process: int) -> range:
    """The global sample indices process ``rank`` of ``world`` holds in a step, with ``per_process`` samples each."""
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}")
    return range(rank * per_process, (rank + 1) * per_process)
