"""The long-video nodes: what each feeds the sampler (modes, windows, prompts per window, NFE), equivalences with the
plain nodes, progress and Cancel. The algorithms themselves are tested in test_long_video.py."""
from __future__ import annotations

import pytest
import torch

from consistent_video_kit import host
from consistent_video_kit.models.tiny import tiny_lvdm
from consistent_video_kit.nodes.common import CVKInputError
from consistent_video_kit.nodes.long_video import CVK_ExtendVideo, CVK_InterpolateVideo, CVK_LongVideo
from consistent_video_kit.nodes.lvdm import CVK_UnconditionalVideo
from consistent_video_kit.nodes.video import CVK_TextToVideo

# model, prompt, negative, new_frames, context, s, w, cfg, steps, sampler, eta, seed, width, height
EXT = dict(prompt="", negative_prompt="", new_frames=32, context=0, s=100, w=0.1, cfg=7.5, steps=2, sampler="ddim",
           eta=1.0, seed=3, width=0, height=0)
TEXT = dict(EXT, prompt="a cat", w=0.0, new_frames=8, width=64, height=64, eta=0.0)
INTERP = dict(prompt="", negative_prompt="", s=100, w=0.1, cfg=7.5, steps=2, sampler="ddim", eta=1.0, seed=3)
LONG = dict(target_frames=64, stride=4, s=100, w=0.1, steps=2, sampler="ddim", eta=1.0, seed=3, width=0, height=0)


@pytest.fixture(scope="module")
def pred(pack):
    return tiny_lvdm(name="tiny-lvdm-pred")


@pytest.fixture(scope="module")
def interp(pack):
    return tiny_lvdm(name="tiny-lvdm-interp")


def record(monkeypatch, model, calls):
    """Count the network calls of ``model``: (batch, frames, label list or None, mask per frame or None)."""
    net = model.network

    def counting(z, t, cond):
        mask = cond.get("mask")
        calls.append((z.shape[0], z.shape[2], None if "label" not in cond else cond["label"].tolist(),
                      None if mask is None else mask[:, 0, :, 0, 0].tolist()))
        return net(z, t, cond)
    # on the instance's dict, so undoing removes it (a restored bound method would be copied into later clones)
    monkeypatch.setitem(vars(model), "network", counting)


def test_first_window_of_an_extension_from_nothing_is_text_to_video(tiny_animatediff):
    (t2v,) = CVK_TextToVideo().generate(tiny_animatediff, "a cat", "", 3, 2, "cfg", 7.5, "ddim", 0.0, 8, 64, 64)
    (ext,) = CVK_ExtendVideo().extend(tiny_animatediff, **dict(TEXT, new_frames=8, seed=3))
    assert torch.equal(ext["samples"], t2v["samples"])


def test_extension_keeps_the_video_so_far_and_prompts_one_line_per_window(tiny_animatediff, monkeypatch):
    (start,) = CVK_TextToVideo().generate(tiny_animatediff, "a cat", "", 0, 2, "cfg", 7.5, "ddim", 0.0, 8, 64, 64)
    encoded = []
    enc = tiny_animatediff.encode_prompt_pair
    monkeypatch.setitem(vars(tiny_animatediff), "encode_prompt_pair", lambda p, n: encoded.append(p) or enc(p, n))
    calls = []
    record(monkeypatch, tiny_animatediff, calls)
    # window 8, auto context 2 → 6 new latents per window: 14 new = 3 windows (the last one's surplus dropped)
    (out,) = CVK_ExtendVideo().extend(tiny_animatediff, latent=start, **dict(TEXT, new_frames=14,
                                                                           prompt="a cat\na dog\n\n"))
    x = out["samples"]
    assert x.shape == (1, 4, 22, 8, 8) and torch.equal(x[:, :, :8], start["samples"])
    assert encoded == ["a cat", "a dog"]          # equal lines encoded once; the last repeats for window 3
    assert [c[:2] for c in calls] == [(2, 8)] * 6   # CFG: one call of batch 2 per step, 3 windows × 2 steps
    with pytest.raises(CVKInputError, match="at most 3 lines"):
        CVK_ExtendVideo().extend(tiny_animatediff, latent=start, **dict(TEXT, new_frames=14, prompt="a\nb\nc\nd"))


def test_pred_extension_is_exact_with_guidance_in_one_call(pred, monkeypatch):
    calls = []
    record(monkeypatch, pred, calls)
    (out,) = CVK_ExtendVideo().extend(pred, **EXT)       # 32 frames = 2 keyframes, kept from a 4-keyframe window
    assert out["samples"].shape == (1, 4, 2, 8, 8)
    assert calls == [(1, 4, [-1], [[0.0] * 4])] * 2      # nothing known: ε_c = ε_u, one call of batch 1
    calls.clear()
    (more,) = CVK_ExtendVideo().extend(pred, latent=out, **dict(EXT, new_frames=96))    # 6 keyframes: 2 windows
    assert more["samples"].shape == (1, 4, 8, 8, 8) and torch.equal(more["samples"][:, :, :2], out["samples"])
    # T_cond = 1: the last keyframe in slot 0, label s = 100 beside the unconditional branch (−1, zero mask)
    assert calls == [(2, 4, [-1, 100], [[0.0] * 4, [1.0, 0.0, 0.0, 0.0]])] * 4
    calls.clear()
    CVK_ExtendVideo().extend(pred, latent=out, **dict(EXT, new_frames=48, w=0.0))
    assert calls == [(1, 4, [100], [[1.0, 0.0, 0.0, 0.0]])] * 2          # w = 0: ε_c alone


def test_interpolation_fills_every_gap_and_keeps_the_keyframes(pred, interp, monkeypatch):
    (keys,) = CVK_UnconditionalVideo().generate(tiny_lvdm(), 0, 2, "ddim", 1.0, 12, 64, 64)   # 3 latents, 2 gaps
    calls = []
    record(monkeypatch, interp, calls)
    (out,) = CVK_InterpolateVideo().interpolate(interp, keys, **INTERP)
    x = out["samples"]
    assert x.shape == (1, 4, 9, 8, 8) and torch.equal(x[:, :, ::4], keys["samples"])
    assert calls == [(2, 5, [-1, 100], [[0.0] * 5, [1.0, 0.0, 0.0, 0.0, 1.0]])] * 4


def test_long_video_is_extension_then_interpolation(pred, interp):
    (long,) = CVK_LongVideo().generate(pred, interp, **dict(LONG, target_frames=88))          # 22 latents
    # 22 latents → 7 keyframes: the first window (4) and one more (3); 6 keyframes' worth of frames = 96 frames
    (keys,) = CVK_ExtendVideo().extend(pred, **dict(EXT, new_frames=112))
    (full,) = CVK_InterpolateVideo().interpolate(interp, keys, **INTERP)
    assert keys["samples"].shape[2] == 7 and full["samples"].shape[2] == 25
    assert torch.equal(long["samples"], full["samples"][:, :, :22])


def test_progress_counts_windows_times_steps_and_cancel_stops_the_node(pred, interp, monkeypatch):
    totals, ticks = [], []

    class Bar:
        def __init__(self, total, desc=""):
            totals.append(total)

        def update(self, n=1):
            ticks.append(n)
            host.check_interrupt()

        def close(self):
            pass
    monkeypatch.setattr(host, "Progress", Bar)
    # 16 latents want 5 keyframes: 2 pred windows make 7 (4 + 3), 6 gaps; 8 windows × 2 steps
    CVK_LongVideo().generate(pred, interp, **LONG)
    assert totals == [16] and len(ticks) == 16

    class Interrupted(Exception):
        pass

    def cancel():
        if len(ticks) >= 19:
            raise Interrupted
    monkeypatch.setattr(host, "check_interrupt", cancel)
    with pytest.raises(Interrupted):
        CVK_LongVideo().generate(pred, interp, **LONG)
    assert len(ticks) == 19     # stopped in the second run's third step, nothing returned


def test_same_seed_same_long_video_and_sizes(pred, interp):
    (a,) = CVK_LongVideo().generate(pred, interp, **dict(LONG, width=32, height=48))
    (b,) = CVK_LongVideo().generate(pred, interp, **dict(LONG, width=32, height=48))
    (c,) = CVK_LongVideo().generate(pred, interp, **dict(LONG, width=32, height=48, seed=4))
    assert a["samples"].shape == (1, 4, 16, 6, 4) and torch.equal(a["samples"], b["samples"])
    assert not torch.equal(a["samples"], c["samples"])


def test_replacement_extension_of_the_short_lvdm(monkeypatch):
    short = tiny_lvdm()
    calls = []
    record(monkeypatch, short, calls)
    (out,) = CVK_ExtendVideo().extend(short, **dict(EXT, new_frames=28, w=0.0))   # 7 latents: 4, then 3
    assert out["samples"].shape == (1, 4, 7, 8, 8)
    assert [c[:3] for c in calls] == [(1, 4, None)] * 4 and all(c[3] is None for c in calls)
    with pytest.raises(CVKInputError, match="input 'w' got 0.1; expected 0 for tiny-lvdm"):
        CVK_ExtendVideo().extend(short, **dict(EXT, new_frames=28))
