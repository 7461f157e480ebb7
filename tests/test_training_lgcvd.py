"""LGC-VD's two-stage training (training/lgcvd.py): the task draw and its context against the official rules written
out by hand, the v-prediction loss against a hand formula (and a perfect network's zero loss), stage 2's inputs from
stage 1's x̂0, the official training ᾱ table, the EMA schedule, and the tiny run's export loading in the pack's
loader with its config from the file. Resume and the real-host workflow: test_training_runs.py,
test_comfyui_host.py. One step against the official code (run locally, not committed): see the README."""
import json
import os

import pytest
import torch

from cvk_testkit import load_pack

load_pack()
from consistent_video_kit.models.lgcvd import META_CONFIG, build_networks, load_lgcvd  # noqa: E402
from consistent_video_kit.models.checkpoint import read_metadata  # noqa: E402
from consistent_video_kit.models.tiny import TINY_LGCVD_CONFIG  # noqa: E402
from consistent_video_kit.samplers.lgcvd import cosine_alphas_cumprod  # noqa: E402
from consistent_video_kit.training import lgcvd as L  # noqa: E402
from consistent_video_kit.training.draws import StepDraws  # noqa: E402
from consistent_video_kit.training.engine import TrainConfig  # noqa: E402


def official_task(p):
    """Trainer.train's branches, as written there."""
    if p > 0.55:
        return "prediction"
    elif p > 0.15:
        return "unconditional"
    elif p > 0.1:
        return "interpolation"
    return "random"


def test_the_task_draw_follows_the_official_thresholds_per_sample():
    draws = StepDraws(3, 5, range(400))
    p = torch.stack([torch.rand((), generator=g) for g in draws.generators("task")])
    tasks = L.draw_tasks(draws, L.LGCVDRecipe())
    assert tasks == [official_task(float(v)) for v in p]
    freq = {k: tasks.count(k) / 400 for k in L.TASKS}
    assert abs(freq["prediction"] - 0.45) < 0.08 and abs(freq["unconditional"] - 0.40) < 0.08
    assert 0 < freq["interpolation"] < 0.12 and 0.03 < freq["random"] < 0.18
    assert L.draw_tasks(StepDraws(3, 5, [7]), L.LGCVDRecipe()) == [tasks[7]]      # per sample, not per batch


def test_positions_per_task_and_random_pairs_drawn_anew_each_stage():
    tasks = ["prediction", "unconditional", "interpolation"] + ["random"] * 60
    draws = StepDraws(0, 2, range(len(tasks)))
    s1, s2 = L.task_positions(tasks, draws, 1), L.task_positions(tasks, draws, 2)
    assert s1[:3] == s2[:3] == [(0, 1), (-1, -1), (0, 7)]
    rnd = s1[3:]
    assert all(a != b and -1 <= a <= 6 and -1 <= b <= 6 for a, b in rnd)
    assert len(set(rnd)) > 20 and s2[3:] != rnd                   # random.sample(range(-1, 7), 2), per stage
    assert {a for a, _ in rnd} == set(range(-1, 7))
    with pytest.raises(ValueError, match="unknown LGC-VD task 'x'"):
        L.task_positions(["x"], StepDraws(0, 0, [0]), 1)


def hand_context(clip01, pos):
    """The official cond in [0, 1] (zeros for an absent frame, (pos + 1)/9 maps), then normalize_img."""
    B, C, F, H, W = clip01.shape
    parts = []
    for p in pos:
        parts.append(torch.zeros(B, C, H, W) if p == -1 else clip01[:, :, p])
        parts.append(torch.ones(B, 1, H, W) * ((p + 1) / (F + 1)))
    return torch.cat(parts, dim=1) * 2 - 1


@pytest.mark.parametrize("pos", [(0, 1), (-1, -1), (0, 7), (3, -1), (-1, 5)])
def test_the_context_is_the_official_cond(pos):
    clip01 = torch.rand(2, 3, 8, 6, 5, generator=torch.Generator().manual_seed(0))
    ctx = L.stage_context(clip01 * 2 - 1, [pos, pos])
    torch.testing.assert_close(ctx, hand_context(clip01, pos), rtol=0, atol=1e-6)


def test_stage_two_of_a_prediction_takes_stage_ones_last_two_frames():
    window = torch.randn(3, 3, 8, 4, 4)
    x0 = torch.randn(3, 3, 8, 4, 4)
    src = L.stage_frames(window, ["prediction", "unconditional", "random"], x0)
    assert torch.equal(src[0, :, :2], x0[0, :, 6:]) and torch.equal(src[0, :, 2:], window[0, :, 2:])
    assert torch.equal(src[1:], window[1:])
    assert L.stage_frames(window, ["prediction"] * 3, None) is window


def tiny_nets():
    torch.manual_seed(0)
    nets = build_networks(TINY_LGCVD_CONFIG)
    with torch.no_grad():
        for p in nets.parameters():
            p.add_(torch.randn_like(p) * 0.02)     # the zero-initialised outputs too
    return nets


def test_v_loss_is_the_hand_formula_and_a_perfect_network_recovers_x0():
    nets = tiny_nets()
    g = torch.Generator().manual_seed(1)
    window, previous, eps = (torch.rand(2, 3, 8, 32, 32, generator=g) * 2 - 1 for _ in range(3))
    context = hand_context((window + 1) / 2, (0, 1))
    t = torch.tensor([3, 870])
    ac = L.training_alphas_cumprod()
    loss, x0 = L.v_loss(nets.denoise_fn, nets.encoder_fn, window, context, previous, t, eps, ac)
    a = ac.float()[t].sqrt().reshape(2, 1, 1, 1, 1)
    s = (1 - ac.float()[t]).sqrt().reshape(2, 1, 1, 1, 1)
    x_t = a * window + s * eps
    stack = lambda v: v.permute(0, 2, 1, 3, 4).reshape(2, 24, 32, 32)         # b c f h w -> b (f c) h w
    v_hat = nets.denoise_fn(stack(x_t), t, context, nets.encoder_fn(stack(previous)))
    v_hat = v_hat.reshape(2, 8, 3, 32, 32).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(loss, (v_hat - (a * eps - s * window)).abs().mean())
    torch.testing.assert_close(x0, a * x_t - s * v_hat)
    assert not x0.requires_grad and loss.requires_grad

    class Oracle(torch.nn.Module):                 # returns the true v: the loss is 0 and x̂0 is the clean window
        def forward(self, x, t_, ctx, feature):
            return stack(a * eps - s * window)
    loss, x0 = L.v_loss(Oracle(), lambda v: None, window, context, previous, t, eps, ac)
    assert float(loss) == 0.0
    torch.testing.assert_close(x0, window, rtol=0, atol=2e-6)


def test_the_training_table_is_the_official_spaced_rebuild():
    """SpacedDiffusion keeping all 1000 steps: betas 1 − ᾱ_i/ᾱ_{i−1} of the float32 base table, cumprod again, all
    in float32 — within float32 rounding of the base table, not equal to it."""
    base = cosine_alphas_cumprod().float()
    prev = 1.0
    betas = []
    for a in base.tolist():
        betas.append(1 - torch.tensor(a, dtype=torch.float32) / torch.tensor(prev, dtype=torch.float32))
        prev = a
    want = torch.cumprod(1 - torch.stack(betas), 0)
    got = L.training_alphas_cumprod()
    assert torch.equal(got.float(), want)
    rel = ((got - cosine_alphas_cumprod()) / cosine_alphas_cumprod()).abs().max()
    assert 0 < float(rel) < 1e-6


def test_ema_copies_before_its_start_then_blends_every_tenth_step(tmp_path):
    cfg = TrainConfig(recipe="lgcvd", data="", out=str(tmp_path), network="tiny", size=32, frames=14,
                      ema_decay=0.9, extra={"lgcvd": {"ema_start": 20}})
    task = L.LGCVDTask()
    task.build(cfg, torch.device("cpu"), 1)
    name, p = next(iter(task.nets.named_parameters()))
    with torch.no_grad():
        p.add_(1.0)
    task.after_step(3)                                   # not a multiple of 10: nothing
    assert not torch.equal(task.ema[name], p)
    task.after_step(10)                                  # before the start: a copy
    assert torch.equal(task.ema[name], p)
    before = task.ema[name].clone()
    with torch.no_grad():
        p.add_(1.0)
    task.after_step(20)                                  # from the start: 0.9·ema + 0.1·θ
    torch.testing.assert_close(task.ema[name], 0.9 * before + 0.1 * p.detach())


def test_a_wrong_size_or_clip_length_is_refused(tmp_path):
    cfg = TrainConfig(recipe="lgcvd", data="", out=str(tmp_path), network="tiny", size=64, frames=14)
    with pytest.raises(ValueError, match="built for 32 px frames .* the run says size 64"):
        L.network_config(cfg)
    cfg = TrainConfig(recipe="lgcvd", data="", out=str(tmp_path), network="tiny", size=32, frames=16)
    with pytest.raises(ValueError, match="clips of 14 frames .* the run says frames 16"):
        L.network_config(cfg)


def test_the_tiny_run_exports_a_file_the_loader_reads_with_its_own_config(tiny_trained):
    path = tiny_trained["lgcvd"]
    assert json.loads(read_metadata(path)[META_CONFIG]) == json.loads(json.dumps(TINY_LGCVD_CONFIG))
    ema, raw = load_lgcvd(path), load_lgcvd(path, weights="model")
    assert (ema.size, ema.frames, ema.dataset) == (32, 8, "custom")
    assert any(not torch.equal(a, b) for a, b in zip(ema.unet.parameters(), raw.unet.parameters()))
    with open(os.path.join(os.path.dirname(path), "losses.jsonl")) as f:
        steps = [json.loads(line) for line in f]
    assert len(steps) == 20 and all({"loss_stage1", "loss_stage2"} <= set(s) for s in steps)
