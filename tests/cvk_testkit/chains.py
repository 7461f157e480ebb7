"""Consecutive node chains on one model, called as ComfyUI's executor calls them (one node after the other,
each output passed on), for counting how often the model's parts are loaded and moved:

- I4VGen: Anchor Candidates → Anchor Selector (a scorer) → NI-VSDS Animator → Regenerate → Decode Video;
- Text to Video → Decode Video.

:class:`ToCounter` counts ``nn.Module.to`` calls on the parts' networks (what moving a whole model between
devices costs); it works with any version of the pack that has ``model.unet``, ``model.text.model``,
``model.vae.vae`` and ``scorer.model``.
"""
from __future__ import annotations

from collections import Counter

import torch

PROMPT = "a red panda"


def networks(model, scorer=None) -> dict:
    """Role → network module of a ``CVK_VIDEO_MODEL`` (and a scorer)."""
    out = {"unet": model.unet, "text_encoder": model.text.model, "vae": model.vae.vae}
    if scorer is not None:
        out["scorer"] = scorer.model
    return out


def i4vgen_chain(model, scorer, steps: int = 3, frames: int = 4, size: int = 64, candidates: int = 2):
    """IMAGE frames of the I4VGen chain."""
    from consistent_video_kit.nodes.i4vgen import (CVK_AnchorCandidates, CVK_AnchorSelector, CVK_NIVSDSAnimator,
                                                   CVK_Regenerate, SCHEDULE_CHOICES)
    from consistent_video_kit.nodes.video import CVK_DecodeVideo
    images, latents = CVK_AnchorCandidates().generate(model, PROMPT, "", 1, candidates, steps, 7.5, size, size)
    _, anchor, _ = CVK_AnchorSelector().select(images, latents, PROMPT, "scorer", "", 0, scorer)
    (video,) = CVK_NIVSDSAnimator().animate(model, PROMPT, "", frames, steps, 0.6, list(SCHEDULE_CHOICES)[0], 7.5, 2,
                                             anchor_latent=anchor)
    (video,) = CVK_Regenerate().regenerate(model, video, PROMPT, "", 1.0, steps, "ddim", 7.5, 3)
    (frames_out,) = CVK_DecodeVideo().decode(model, video, 8)
    return frames_out


def t2v_chain(model, steps: int = 3, frames: int = 4, size: int = 64, seed: int = 4):
    """IMAGE frames of Text to Video → Decode Video."""
    from consistent_video_kit.nodes.video import CVK_DecodeVideo, CVK_TextToVideo
    (latent,) = CVK_TextToVideo().generate(model, PROMPT, "", seed, steps, "cfg", 7.5, "ddim", 0.0, frames, size, size)
    (frames_out,) = CVK_DecodeVideo().decode(model, latent, 8)
    return frames_out


class ToCounter:
    """Within the block, counts ``.to(...)`` calls on the given networks (role → module), per role."""

    def __init__(self, nets: dict):
        self.roles = {id(m): r for r, m in nets.items()}
        self.counts = Counter()

    def __enter__(self):
        self._to = torch.nn.Module.to
        counter, real = self, self._to

        def to(module, *args, **kwargs):
            role = counter.roles.get(id(module))
            if role is not None:
                counter.counts[role] += 1
            return real(module, *args, **kwargs)
        torch.nn.Module.to = to
        return self

    def __exit__(self, *exc):
        torch.nn.Module.to = self._to
