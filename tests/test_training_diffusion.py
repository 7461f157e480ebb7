"""training/diffusion.py: LVDM's training objective (masks, latent perturbation, input/target, L1) against hand
formulas, stub networks, per-sample independence and the tiny UNets."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from consistent_video_kit.models.lvdm.model import ldm_alphas_cumprod
from consistent_video_kit.models.tiny import _tiny_lvdm_networks
from consistent_video_kit.training import diffusion as D
from consistent_video_kit.training.draws import StepDraws

AC = ldm_alphas_cumprod()
TINY = {"short": "tiny-lvdm", "pred": "tiny-lvdm-pred", "interp": "tiny-lvdm-interp"}
FRAMES = {"short": 4, "pred": 4, "interp": 5}


def z0_for(kind, batch=2, seed=0):
    return torch.randn(batch, 4, FRAMES[kind], 8, 8, generator=torch.Generator().manual_seed(seed))


class Stub(torch.nn.Module):
    """A network that returns ``fn(x)`` and records its calls."""

    def __init__(self, fn):
        super().__init__()
        self.fn, self.calls = fn, []

    def forward(self, x, t, **kw):
        self.calls.append(dict(x=x, t=t, **kw))
        return self.fn(x)


def trainable(name):
    unet = copy.deepcopy(_tiny_lvdm_networks(name)[0])
    return unet.train().requires_grad_(True)


# ---------------------------------------------------------------- recipe


def test_official_recipes_are_the_released_configs():
    short, pred, interp = (D.DiffusionRecipe.official(k) for k in ("short", "pred", "interp"))
    for r in (short, pred, interp):
        assert (r.timesteps, r.linear_start, r.linear_end, r.max_noise_level, r.loss) == (1000, 0.0015, 0.0155, 250,
                                                                                          "l1")
        assert not r.mask_cond_loss and not r.uncond_no_s and r.interp_frame_stride is None
    assert (pred.p_interp, pred.p_pred, pred.n_prevs, pred.latent_frame_stride) == (0.0, 0.5, (1,), 4)
    assert (interp.p_interp, interp.p_pred, interp.latent_frame_stride) == (0.9, 0.0, None)
    assert (short.p_interp, short.p_pred, short.latent_frame_stride) == (0.0, 0.0, None)
    assert not short.conditioned and pred.conditioned and interp.conditioned
    assert torch.equal(pred.alphas_cumprod(), AC)
    assert D.DiffusionRecipe.official("pred", loss="l2").loss == "l2"


@pytest.mark.parametrize("bad", [dict(kind="long"), dict(kind="pred", loss="huber"),
                                 dict(kind="pred", p_interp=0.6, p_pred=0.5, n_prevs=(1,)),
                                 dict(kind="pred", p_pred=0.5), dict(kind="short", p_pred=0.5, n_prevs=(1,)),
                                 dict(kind="pred", max_noise_level=0), dict(kind="pred", latent_frame_stride=0)])
def test_bad_recipes_are_refused(bad):
    with pytest.raises(ValueError, match="DiffusionRecipe"):
        D.DiffusionRecipe(**bad)


# ---------------------------------------------------------------- masks


def _pattern_counts(masks):
    counts = {}
    for m in masks[:, 0, :, 0, 0]:
        key = tuple(int(v) for v in m.tolist())
        counts[key] = counts.get(key, 0) + 1
    return counts


def _within_4_se(count, n, p):
    se = math.sqrt(p * (1 - p) / n)
    return abs(count / n - p) <= 4 * se


@pytest.mark.parametrize("recipe, frames, expected", [
    (D.DiffusionRecipe.official("pred"), 4, {(1, 0, 0, 0): 0.5, (0, 0, 0, 0): 0.5}),
    (D.DiffusionRecipe.official("interp"), 5, {(1, 0, 0, 0, 1): 0.9, (0, 0, 0, 0, 0): 0.1}),
    (D.DiffusionRecipe("pred", p_interp=0.3, p_pred=0.4, n_prevs=(1, 2, 3)), 5,
     {(1, 0, 0, 0, 1): 0.3, (1, 0, 0, 0, 0): 0.4 / 3, (1, 1, 0, 0, 0): 0.4 / 3, (1, 1, 1, 0, 0): 0.4 / 3,
      (0, 0, 0, 0, 0): 0.3}),
    (D.DiffusionRecipe("interp", p_interp=0.7, interp_frame_stride=2), 5,
     {(1, 0, 1, 0, 1): 0.7, (0, 0, 0, 0, 0): 0.3}),
])
def test_mask_frequencies_and_slots(recipe, frames, expected):
    n = 4000
    masks = D.temporal_masks(StepDraws(11, 3, range(n)), n, frames, recipe)
    assert masks.shape == (n, 1, frames, 1, 1) and masks.dtype == torch.float32
    counts = _pattern_counts(masks)
    assert set(counts) <= set(expected), f"masks outside the official patterns: {set(counts) - set(expected)}"
    for pattern, p in expected.items():
        assert _within_4_se(counts.get(pattern, 0), n, p), (pattern, counts.get(pattern, 0) / n, p)


def test_masks_are_drawn_per_sample_from_their_global_index():
    r = D.DiffusionRecipe.official("pred")
    whole = D.temporal_masks(StepDraws(5, 7, range(64)), 64, 4, r)
    parts = torch.cat([D.temporal_masks(StepDraws(5, 7, [i]), 1, 4, r) for i in range(64)])
    assert torch.equal(whole, parts)
    assert not torch.equal(whole, D.temporal_masks(StepDraws(5, 8, range(64)), 64, 4, r))   # the step matters
    with pytest.raises(ValueError, match="must match"):
        D.temporal_masks(StepDraws(5, 7, range(3)), 4, 4, r)


# ---------------------------------------------------------------- latents


class FixedAE:
    """encode → a fixed (mean, logvar) pair of the latent shape, whatever the video."""

    def __init__(self, mean, logvar):
        self.mean, self.logvar = mean, logvar

    def encode(self, video):
        return self.mean[:video.shape[0]], self.logvar[:video.shape[0]]


def test_encode_latents_samples_the_posterior_with_the_draws():
    g = torch.Generator().manual_seed(1)
    mean, logvar = torch.randn(2, 4, 4, 2, 2, generator=g), torch.randn(2, 4, 4, 2, 2, generator=g)
    draws = StepDraws(0, 4, [6, 9])
    z = D.encode_latents(FixedAE(mean, logvar), torch.zeros(2, 3, 16, 16, 16), 0.33, 1.46, draws)
    eps = torch.stack([torch.randn(4, 4, 2, 2, generator=g) for g in draws.generators("posterior")])
    assert torch.allclose(z, 0.33 * (mean + torch.exp(logvar / 2) * eps + 1.46), atol=1e-6)
    assert (z - 0.33 * (mean + 1.46)).abs().max() > 0.1        # sampled, not the mode


def test_encode_latents_with_the_tiny_ae_and_select_frames():
    ae = _tiny_lvdm_networks("tiny-lvdm")[1]
    video = torch.rand(2, 3, 64, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    z = D.encode_latents(ae, video, 0.5, 0.1, StepDraws(0, 1, [0, 1]))
    assert z.shape == (2, 4, 16, 1, 1) and not z.requires_grad
    halves = torch.cat([D.encode_latents(ae, video[i:i + 1], 0.5, 0.1, StepDraws(0, 1, [i])) for i in (0, 1)])
    assert torch.allclose(z, halves, atol=1e-5)
    keys = D.select_frames(z, D.DiffusionRecipe.official("pred"))
    assert torch.equal(keys, z[:, :, [0, 4, 8, 12]])
    assert D.select_frames(z, D.DiffusionRecipe.official("interp")) is z


# ---------------------------------------------------------------- inputs and targets


def _hand(z0, indices, recipe, seed=3, step=17):
    """The inputs of each sample from its own draws, with scalar coefficients."""
    xs, targets, ts, labels = [], [], [], []
    for b, i in enumerate(indices):
        d = StepDraws(seed, step, [i])
        t = int(d.randint("t", 0, 1000))
        eps_t = d.randn("eps_t", z0.shape[1:])[0]
        z_t = math.sqrt(AC[t]) * z0[b] + math.sqrt(1 - AC[t]) * eps_t
        ts.append(t)
        if not recipe.conditioned:
            xs.append(z_t), targets.append(eps_t)
            continue
        m = D.temporal_masks(d, 1, z0.shape[2], recipe)[0]           # (1, T, 1, 1)
        s = int(d.randint("s", 0, 250))
        eps_s = d.randn("eps_s", z0.shape[1:])[0]
        z_s = math.sqrt(AC[s]) * z0[b] + math.sqrt(1 - AC[s]) * eps_s
        xs.append(torch.cat([torch.where(m > 0, z_s, z_t), m.expand(1, *z0.shape[2:])]))
        targets.append(torch.where(m > 0, eps_s, eps_t))
        labels.append(-1 if recipe.uncond_no_s and not m.any() else s)
    return torch.stack(xs), torch.stack(targets), torch.tensor(ts), (torch.tensor(labels) if labels else None)


@pytest.mark.parametrize("kind", ["short", "pred", "interp"])
def test_inputs_and_targets_are_the_hand_formula(kind):
    recipe = D.DiffusionRecipe.official(kind)
    indices = list(range(8))
    z0 = z0_for(kind, 8)
    inp = D.diffusion_inputs(z0, StepDraws(3, 17, indices), recipe, AC)
    x, target, t, label = _hand(z0, indices, recipe)
    assert torch.equal(inp.t, t)
    assert torch.allclose(inp.x, x, atol=1e-6) and torch.allclose(inp.target, target, atol=1e-6)
    if kind == "short":
        assert inp.x.shape[1] == 4 and inp.label is None and inp.mask is None
    else:
        assert inp.x.shape[1] == 5 and torch.equal(inp.label, label)
        assert torch.equal(inp.x[:, 4:], inp.mask.expand(8, 1, *z0.shape[2:]))
        n_given = inp.mask.flatten(1).any(1).sum()
        assert 0 < n_given < 8            # the batch holds both conditional and unconditional samples


def test_the_label_is_s_for_every_sample_unless_uncond_no_s():
    z0, draws = z0_for("pred", 16), StepDraws(3, 2, range(16))
    quirk = D.diffusion_inputs(z0, draws, D.DiffusionRecipe.official("pred"), AC)
    fixed = D.diffusion_inputs(z0, draws, D.DiffusionRecipe.official("pred", uncond_no_s=True), AC)
    s = draws.randint("s", 0, 250)
    given = quirk.mask.flatten(1).any(1)
    assert 0 < given.sum() < 16
    assert torch.equal(quirk.label, s)                               # official: unconditional samples get s too
    assert torch.equal(fixed.label, torch.where(given, s, -1))
    assert torch.equal(fixed.x, quirk.x) and torch.equal(fixed.target, quirk.target)


def test_unet_is_called_as_the_official_wrapper_calls_it():
    for kind in ("short", "pred"):
        z0, draws = z0_for(kind, 3), StepDraws(0, 0, range(3))
        stub = Stub(lambda x: torch.zeros_like(x[:, :4]))
        D.diffusion_loss(stub, z0, draws, D.DiffusionRecipe.official(kind), AC)
        (call,) = stub.calls
        assert torch.equal(call["t"], draws.randint("t", 0, 1000))
        if kind == "short":
            assert set(call) == {"x", "t"} and call["x"].shape[1] == 4
        else:
            assert torch.equal(call["y"], draws.randint("s", 0, 250)) and call["x"].shape[1] == 5


# ---------------------------------------------------------------- the loss


@pytest.mark.parametrize("kind", ["short", "pred", "interp"])
def test_a_network_returning_the_target_has_zero_loss(kind):
    recipe, z0, draws = D.DiffusionRecipe.official(kind), z0_for(kind, 4), StepDraws(1, 5, range(4))
    target = D.diffusion_inputs(z0, draws, recipe, AC).target
    loss, logs = D.diffusion_loss(Stub(lambda x: target.clone()), z0, draws, recipe, AC)
    assert loss.item() == 0.0 and logs["loss"].item() == 0.0


@pytest.mark.parametrize("kind, loss_type, mask_cond_loss", [
    ("short", "l1", False), ("pred", "l1", False), ("interp", "l1", False), ("pred", "l2", False),
    ("interp", "l1", True), ("interp", "l2", True)])
def test_a_network_returning_zero_has_the_mean_target_loss(kind, loss_type, mask_cond_loss):
    recipe = D.DiffusionRecipe.official(kind, loss=loss_type, mask_cond_loss=mask_cond_loss)
    z0, draws = z0_for(kind, 4), StepDraws(1, 5, range(4))
    inp = D.diffusion_inputs(z0, draws, recipe, AC)
    loss, logs = D.diffusion_loss(Stub(lambda x: torch.zeros_like(x[:, :4])), z0, draws, recipe, AC)
    per = inp.target.abs() if loss_type == "l1" else inp.target.square()
    if mask_cond_loss:
        per = per * (1 - inp.mask)
        assert inp.mask.any()
    assert torch.allclose(loss, per.mean(), rtol=1e-6)
    assert torch.allclose(logs["loss_simple"], per.mean(), rtol=1e-6)
    if inp.mask is not None:
        assert logs["given_slots"].item() == pytest.approx(inp.mask.mean().item())


@pytest.mark.parametrize("kind", ["pred", "interp"])
def test_a_batch_of_two_is_the_concatenation_of_two_batches_of_one(kind):
    recipe, unet = D.DiffusionRecipe.official(kind), _tiny_lvdm_networks(TINY[kind])[0]
    z0 = z0_for(kind, 2)
    both = D.diffusion_inputs(z0, StepDraws(9, 4, [0, 1]), recipe, AC)
    ones = [D.diffusion_inputs(z0[i:i + 1], StepDraws(9, 4, [i]), recipe, AC) for i in (0, 1)]
    for name in ("x", "t", "label", "target", "mask"):
        assert torch.equal(getattr(both, name), torch.cat([getattr(o, name) for o in ones])), name
    with torch.no_grad():
        loss2 = D.diffusion_loss(unet, z0, StepDraws(9, 4, [0, 1]), recipe, AC)[0]
        loss1 = [D.diffusion_loss(unet, z0[i:i + 1], StepDraws(9, 4, [i]), recipe, AC)[0] for i in (0, 1)]
    assert torch.allclose(loss2, (loss1[0] + loss1[1]) / 2, rtol=1e-5)


# ---------------------------------------------------------------- the tiny UNets


@pytest.mark.parametrize("kind", ["short", "pred", "interp"])
def test_tiny_unets_give_a_finite_loss_and_gradients_everywhere(kind):
    unet, recipe = trainable(TINY[kind]), D.DiffusionRecipe.official(kind)
    z0, draws = z0_for(kind, 4), StepDraws(2, 0, range(4))
    loss, _ = D.diffusion_loss(unet, z0, draws, recipe, AC)
    assert torch.isfinite(loss) and loss.requires_grad
    loss.backward()
    none = [n for n, p in unet.named_parameters() if p.grad is None or not p.grad.any()]
    assert none == [], f"parameters without gradient: {none}"
    # within the tables only the rows in use learn: label_emb the drawn s, the relative positions |Δ| ≤ T − 1
    if kind != "short":
        rows = unet.label_emb.weight.grad.abs().sum(1).nonzero().flatten()
        assert torch.equal(rows, draws.randint("s", 0, 250).unique())
    table = unet.input_blocks[3][1].relative_position_k.embeddings_table.grad
    assert table[0].abs().sum() == 0 and table[-1].abs().sum() == 0 and table[1:-1].abs().sum(1).all()


def test_unconditional_samples_train_no_label_under_uncond_no_s():
    unet = trainable(TINY["pred"])
    recipe = D.DiffusionRecipe("pred", p_pred=0.0, uncond_no_s=True)     # every mask empty
    loss, _ = D.diffusion_loss(unet, z0_for("pred", 2), StepDraws(0, 0, [0, 1]), recipe, AC)
    loss.backward()
    assert not unet.label_emb.weight.grad.any()
    unet.zero_grad()
    D.diffusion_loss(unet, z0_for("pred", 2), StepDraws(0, 0, [0, 1]), D.DiffusionRecipe("pred"), AC)[0].backward()
    assert unet.label_emb.weight.grad.any()                              # the official quirk: s trains anyway


@pytest.mark.parametrize("kind", ["short", "pred"])
def test_adam_steps_on_a_fixed_batch_lower_the_loss(kind):
    torch.manual_seed(0)
    unet, recipe = trainable(TINY[kind]), D.DiffusionRecipe.official(kind)
    z0, draws = z0_for(kind, 2), StepDraws(4, 0, [0, 1])
    opt = torch.optim.Adam(unet.parameters(), lr=2e-3)
    losses = []
    for _ in range(20):
        loss, _ = D.diffusion_loss(unet, z0, draws, recipe, AC)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
