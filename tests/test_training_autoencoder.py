"""The 3-D video AE's training losses (training/autoencoder.py): the generator loss against a hand formula before
and after disc_start (the adaptive weight against a hand autograd computation, its clamp), the discriminator's hinge
and vanilla losses, the posterior sample from StepDraws, where gradients go, a short two-optimiser run, batch
(in)dependence (BatchNorm in train mode), the released layouts of the discriminator and LPIPS (manifest), and LPIPS
against a functional reference."""
import copy
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F

from consistent_video_kit.models.checkpoint import CheckpointError
from consistent_video_kit.models.lvdm.autoencoder3d import VideoAutoencoderKL
from consistent_video_kit.models.tiny import TINY_VIDEOAE
from consistent_video_kit.training import autoencoder as A
from consistent_video_kit.training.draws import StepDraws
from test_loaders import MANIFESTS, needs_manifests

S = 5          # disc_start in these tests


def make_ae(factors=(2, 2, 2), seed=0) -> VideoAutoencoderKL:
    """The tiny AE's config (n_hiddens 16), with smaller factors for speed unless given; random GroupNorm affines."""
    dd = copy.deepcopy(TINY_VIDEOAE["ddconfig"])
    dd["encoder"]["downsample"], dd["decoder"]["upsample"] = list(factors), list(factors)
    torch.manual_seed(seed)
    ae = VideoAutoencoderKL(dd, TINY_VIDEOAE["embed_dim"])
    with torch.no_grad():
        for m in ae.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return ae


def recipe(**kw) -> A.AERecipe:
    base = dict(disc_start=S, disc_ndf=8, perceptual_weight=0.0, kl_weight=0.3, logvar_init=0.2)
    return A.AERecipe(**{**base, **kw})


def make_disc(r: A.AERecipe, seed=1) -> A.PatchDiscriminator:
    torch.manual_seed(seed)
    d = A.PatchDiscriminator.from_recipe(r)
    with torch.no_grad():           # BatchNorm affines away from (1, 0) so that they matter
        for m in d.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return d


def video(b=2, seed=3, t=4, size=32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, size, size, generator=g) * 2 - 1


def smooth_video(b=2, t=4, size=32) -> torch.Tensor:
    """Moving sinusoids (something a tiny AE can learn in a few steps, unlike white noise)."""
    u = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    return 0.8 * torch.stack([torch.stack([torch.stack([torch.sin(3 * xx + 2 * c + 0.5 * f + i) * torch.cos(2 * yy - c)
                                                        for f in range(t)]) for c in range(3)]) for i in range(b)])


def draws(step, indices=(0, 1), seed=11) -> StepDraws:
    return StepDraws(seed, step, list(indices))


def hand_terms(ae, x, dr, r, perceptual=None):
    """nll and kl written frame by frame: (nll, kl, xrec)."""
    mean, logvar = ae.encode(x)
    eps = dr.randn("posterior", mean.shape[1:])
    xrec = ae.decode(mean + torch.exp(logvar / 2) * eps)
    b, _, t = x.shape[:3]
    nll = 0.0
    for i in range(b):
        for j in range(t):
            rec = r.pixelloss_weight * (x[i, :, j] - xrec[i, :, j]).abs()
            if perceptual is not None:
                rec = rec + r.perceptual_weight * perceptual(x[i, :, j][None], xrec[i, :, j][None]).reshape(())
            nll = nll + (rec / math.exp(r.logvar_init) + r.logvar_init).sum()
    nll = nll / (b * t)
    kl = sum(0.5 * (mean[i] ** 2 + logvar[i].exp() - 1 - logvar[i]).sum() for i in range(b)) / b
    return nll, kl, xrec


def frame_mse(x, y):
    return (x - y).square().mean(dim=(1, 2, 3))


# ---------------------------------------------------------------------- recipe and helpers

def test_recipe_defaults_are_the_official_config():
    r = A.AERecipe()
    assert (r.disc_start, r.kl_weight, r.disc_weight, r.disc_factor, r.perceptual_weight, r.pixelloss_weight,
            r.logvar_init, r.learn_logvar, r.disc_num_layers, r.disc_in_channels, r.disc_ndf, r.disc_loss, r.lr,
            r.betas) == (50001, 0.0, 0.5, 1.0, 1.0, 1.0, 0.0, False, 3, 3, 64, "hinge", 3.6e-5, (0.5, 0.9))
    assert [A.disc_factor_at(s, r) for s in (0, 50000, 50001, 10 ** 6)] == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="disc_loss"):
        A.AERecipe(disc_loss="wgan")
    with pytest.raises(ValueError, match="disc_start"):
        A.AERecipe(disc_start=-1)


def test_frames_are_sample_major():
    x = torch.randn(2, 3, 4, 5, 6)
    f = A.frames(x)
    assert f.shape == (8, 3, 5, 6)
    for i in range(2):
        for j in range(4):
            assert torch.equal(f[4 * i + j], x[i, :, j])


# ---------------------------------------------------------------------- generator loss

def test_generator_loss_before_start_is_rec_plus_kl():
    """Step < disc_start: loss = Σ(|x − x̂|/e^lv + lv)/(B·T) + kl_weight·Σkl/B on the pack's tiny AE, and a
    perceptual term enters per frame, broadcast over the pixels."""
    ae = VideoAutoencoderKL(TINY_VIDEOAE["ddconfig"], TINY_VIDEOAE["embed_dim"])
    x, dr = video(), draws(S - 1)
    for perceptual, weight, pixel in ((None, 0.0, 1.0), (frame_mse, 0.7, 1.3)):
        r = recipe(perceptual_weight=weight, pixelloss_weight=pixel)
        loss, xrec, logs = A.generator_loss(ae, make_disc(r), x, S - 1, r, dr, perceptual=perceptual)
        nll, kl, xrec_hand = hand_terms(ae, x, dr, r, perceptual)
        torch.testing.assert_close(xrec, xrec_hand)
        torch.testing.assert_close(loss, nll + r.kl_weight * kl)
        torch.testing.assert_close(logs["nll_loss"], nll.detach())
        torch.testing.assert_close(logs["kl_loss"], kl.detach())
        assert float(logs["disc_factor"]) == 0.0 and float(logs["d_weight"]) == 0.0


def test_gan_before_start_changes_logs_only():
    """Running the discriminator before disc_start (the official way) gives the same loss and AE gradients, bit for
    bit; only the logged adaptive weight differs."""
    x, dr = video(), draws(S - 1)
    out = []
    for before in (False, True):
        ae, r = make_ae(), recipe(gan_before_start=before)
        loss, _, logs = A.generator_loss(ae, make_disc(r), x, S - 1, r, dr)
        loss.backward()
        out.append((loss.detach(), [p.grad for p in ae.parameters()], logs))
    assert torch.equal(out[0][0], out[1][0])
    assert all(torch.equal(a, b) for a, b in zip(out[0][1], out[1][1]))
    assert float(out[0][2]["d_weight"]) == 0.0 and float(out[1][2]["d_weight"]) > 0.0


def hand_adaptive(ae, disc, x, dr, r):
    nll, kl, xrec = hand_terms(ae, x, dr, r)
    g = -disc(A.frames(xrec)).mean()
    w = ae.decoder.conv_out.conv.weight
    gn = torch.autograd.grad(nll, w, retain_graph=True)[0].flatten().norm()
    gg = torch.autograd.grad(g, w, retain_graph=True)[0].flatten().norm()
    return nll, kl, g, gn, gg


@pytest.mark.parametrize("disc_factor", [1.0, 2.5])
def test_generator_loss_after_start_adds_adaptive_gan_term(disc_factor):
    r = recipe(disc_factor=disc_factor)
    ae, disc, x, dr = make_ae(), make_disc(r), video(), draws(S)
    ae2, disc2 = copy.deepcopy(ae), copy.deepcopy(disc)
    loss, _, logs = A.generator_loss(ae, disc, x, S, r, dr)
    nll, kl, g, gn, gg = hand_adaptive(ae2, disc2, x, dr, r)
    d_weight = min(float(gn / (gg + 1e-4)), 1e4) * r.disc_weight
    assert 0 < d_weight < 1e4 * r.disc_weight          # the clamp is not what this case tests
    torch.testing.assert_close(float(logs["d_weight"]), d_weight, rtol=1e-5, atol=0)
    torch.testing.assert_close(float(logs["g_loss"]), float(g.detach()))
    torch.testing.assert_close(loss, nll + r.kl_weight * kl + d_weight * disc_factor * g)
    # the discriminator's batch statistics were updated as by the hand forward (training-mode BatchNorm)
    torch.testing.assert_close(disc.main[3].running_mean, disc2.main[3].running_mean)


def test_adaptive_weight_is_clamped():
    r = recipe()
    ae, disc, x, dr = make_ae(), make_disc(r), video(), draws(S)
    with torch.no_grad():
        disc.main[-1].weight.mul_(1e-12)     # the discriminator barely depends on its input: tiny ∇g
    _, _, logs = A.generator_loss(ae, disc, x, S, r, dr)
    assert float(logs["d_weight"]) == 1e4 * r.disc_weight


def test_no_adaptive_weight_without_autograd():
    """Validation under no_grad: d_weight 0, as the official's RuntimeError branch."""
    r = recipe()
    with torch.no_grad():
        loss, _, logs = A.generator_loss(make_ae(), make_disc(r), video(), S, r, draws(S))
    assert float(logs["d_weight"]) == 0.0
    torch.testing.assert_close(loss, logs["nll_loss"] + r.kl_weight * logs["kl_loss"])


# ---------------------------------------------------------------------- discriminator loss

@pytest.mark.parametrize("kind", ["hinge", "vanilla"])
def test_discriminator_loss_is_the_hand_formula(kind):
    r = recipe(disc_loss=kind, disc_factor=1.5)
    disc, x = make_disc(r), video()
    xrec = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    disc2 = copy.deepcopy(disc)
    loss, logs = A.discriminator_loss(disc, x, xrec, S, r)
    real = disc2(A.frames(x))                  # two separate batches, real first, as the official
    fake = disc2(A.frames(xrec))
    if kind == "hinge":
        hand = 0.5 * (torch.clamp(1 - real, min=0).mean() + torch.clamp(1 + fake, min=0).mean())
    else:
        hand = 0.5 * (torch.log1p(torch.exp(-real)).mean() + torch.log1p(torch.exp(fake)).mean())
    torch.testing.assert_close(loss, 1.5 * hand)
    torch.testing.assert_close(logs["logits_real"], real.detach().mean())
    torch.testing.assert_close(logs["logits_fake"], fake.detach().mean())
    for name in ("running_mean", "running_var"):
        torch.testing.assert_close(getattr(disc.main[6], name), getattr(disc2.main[6], name))


def test_discriminator_loss_before_start_is_zero():
    x = video()
    xrec = x.flip(0)
    loss, logs = A.discriminator_loss(make_disc(recipe()), x, xrec, S - 1, recipe())
    assert float(loss) == 0.0 and not loss.requires_grad and set(logs) == {"disc_loss"}
    r = recipe(gan_before_start=True)           # the official way: 0·d_loss, all-zero gradients
    disc = make_disc(r)
    loss, logs = A.discriminator_loss(disc, x, xrec, S - 1, r)
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(logs["logits_real"]) != 0.0
    assert all(p.grad is not None and not p.grad.any() for p in disc.parameters())


# ---------------------------------------------------------------------- draws, gradients, batches

def test_posterior_sample_comes_from_the_draws():
    r, x = recipe(), video()
    ae, disc = make_ae(), make_disc(r)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = A.generator_loss(ae, disc, x, S - 1, r, draws(S - 1))[0]
    assert torch.equal(torch.get_rng_state(), state)           # the global RNG is not used
    torch.manual_seed(999)
    b = A.generator_loss(ae, disc, x, S - 1, r, draws(S - 1))[0]
    assert torch.equal(a, b)
    c = A.generator_loss(ae, disc, x, S - 1, r, draws(S - 1, indices=(2, 3)))[0]
    d = A.generator_loss(ae, disc, x, S - 1, r, draws(S, ))[0]
    assert not torch.allclose(a, c) and not torch.allclose(a, d)
    with pytest.raises(ValueError, match="indices"):
        A.generator_loss(ae, disc, x, S - 1, r, draws(S - 1, indices=(0,)))


def test_per_sample_independence_of_the_generator_terms():
    """Before disc_start the loss is a mean over samples: a batch of 2 (global indices 0, 1) equals the mean of two
    batches of 1 with those indices (GroupNorm is per sample). After it the adaptive weight, a ratio of gradient
    norms over the batch, is not per sample (nor in the official)."""
    r, x = recipe(), video()
    ae, disc = make_ae(), make_disc(r)
    both, xrec, _ = A.generator_loss(ae, disc, x, S - 1, r, draws(S - 1, (0, 1)))
    singles = [A.generator_loss(ae, disc, x[i:i + 1], S - 1, r, draws(S - 1, (i,))) for i in (0, 1)]
    torch.testing.assert_close(both, (singles[0][0] + singles[1][0]) / 2)
    torch.testing.assert_close(xrec[1:], singles[1][1])


def test_generator_gradients_reach_the_ae_only():
    r = recipe(learn_logvar=True)
    ae, disc, logvar = make_ae(), make_disc(r), A.make_logvar(r)
    assert isinstance(logvar, torch.nn.Parameter) and float(logvar.detach()) == pytest.approx(0.2)
    loss, xrec, _ = A.generator_loss(ae, disc, video(), S, r, draws(S), logvar=logvar)
    loss.backward()
    assert all(p.grad is not None for p in ae.parameters())
    assert ae.decoder.conv_out.conv.weight.grad.abs().sum() > 0 and ae.encoder.conv_first.conv.weight.grad.any()
    assert logvar.grad is not None and logvar.grad != 0
    assert all(p.grad is None for p in disc.parameters())
    opt_ae, opt_d = A.make_optimizers(ae, disc, r, logvar)
    assert any(p is logvar for g in opt_ae.param_groups for p in g["params"])
    assert opt_ae.defaults["betas"] == (0.5, 0.9) and opt_d.defaults["lr"] == r.lr
    assert not isinstance(A.make_logvar(recipe()), torch.nn.Parameter)      # the official: never trained


def test_discriminator_gradients_reach_the_discriminator_only():
    r = recipe()
    ae, disc, x = make_ae(), make_disc(r), video()
    _, xrec, _ = A.generator_loss(ae, disc, x, S, r, draws(S))
    loss, _ = A.discriminator_loss(disc, x, xrec, S, r)        # xrec still has its graph: detached inside
    loss.backward()
    assert all(p.grad is not None for p in disc.parameters())
    assert sum(bool(p.grad.any()) for p in disc.parameters()) >= len(list(disc.parameters())) - 1
    assert all(p.grad is None for p in ae.parameters())


def test_two_optimisers_lower_the_reconstruction_loss():
    """30 steps on one fixed batch, the discriminator switching on at step 10."""
    r = recipe(disc_start=10, lr=1e-3)
    ae, disc, x = make_ae(), make_disc(r), smooth_video()
    opt_ae, opt_d = A.make_optimizers(ae, disc, r)
    rec, d_losses = [], []
    for step in range(30):
        opt_ae.zero_grad()
        loss, xrec, logs = A.generator_loss(ae, disc, x, step, r, draws(step))
        loss.backward()
        opt_ae.step()
        rec.append(float(logs["rec_loss"]))
        opt_d.zero_grad()
        d_loss, _ = A.discriminator_loss(disc, x, xrec.detach(), step, r)
        if d_loss.requires_grad:
            d_loss.backward()
            opt_d.step()
            d_losses.append(float(d_loss.detach()))
    assert len(d_losses) == 20 and all(math.isfinite(v) for v in d_losses)
    assert sum(rec[-3:]) / 3 < 0.7 * rec[0], rec


def test_batchnorm_couples_the_batch_in_train_mode_only():
    r, x = recipe(), video(b=2)
    xrec = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    disc = make_disc(r)
    with torch.no_grad():                  # non-trivial running statistics
        for m in disc.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)

    def split_vs_joint(mode):
        d = copy.deepcopy(disc).train(mode)
        joint = A.discriminator_loss(d, x, xrec, S, r)[0]
        singles = [A.discriminator_loss(copy.deepcopy(disc).train(mode), x[i:i + 1], xrec[i:i + 1], S, r)[0]
                   for i in (0, 1)]
        return joint, (singles[0] + singles[1]) / 2

    torch.testing.assert_close(*split_vs_joint(False))          # eval: per sample
    joint, mean = split_vs_joint(True)
    assert not torch.allclose(joint, mean, rtol=1e-4, atol=0)     # train: batch statistics
    # one process: the synchronised BatchNorms are BatchNorm2d exactly (several: tests/test_training_runs.py)
    assert sum(isinstance(m, A.SyncBatchNorm2d) for m in disc.modules()) == 3
    plain = copy.deepcopy(disc)
    for i, m in enumerate(plain.main):
        if isinstance(m, A.SyncBatchNorm2d):
            plain.main[i] = torch.nn.BatchNorm2d(m.num_features)
    plain.load_state_dict(disc.state_dict())                      # same keys
    d = copy.deepcopy(disc)
    assert torch.equal(A.discriminator_loss(d, x, xrec, S, r)[0], A.discriminator_loss(plain, x, xrec, S, r)[0])
    assert all(torch.equal(a, b) for a, b in zip(d.state_dict().values(), plain.state_dict().values()))


def test_discriminator_architecture_and_init():
    torch.manual_seed(0)
    d = A.PatchDiscriminator()
    convs = [m for m in d.main if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0], c.bias is not None) for c in convs] == \
        [(3, 64, 2, True), (64, 128, 2, False), (128, 256, 2, False), (256, 512, 1, False), (512, 1, 1, True)]
    assert d(torch.zeros(2, 3, 64, 64)).shape == (2, 1, 6, 6)
    assert abs(float(convs[3].weight.detach().std()) - 0.02) < 1e-3
    bn = d.main[9]
    assert abs(float(bn.weight.detach().mean()) - 1.0) < 5e-3 and not bn.bias.any()
    with pytest.raises(ValueError, match="at least 24"):
        d(torch.zeros(1, 3, 16, 16))


# ---------------------------------------------------------------------- released layouts, LPIPS

def manifest_loss_tensors():
    with open(os.path.join(MANIFESTS, "lvdm_sky_videoae.json")) as f:
        tensors = json.load(f)["tensors"]
    return {k: tuple(v) for k, v in tensors.items() if k.startswith("loss.")}


@pytest.fixture(scope="module")
def released_loss_file(tmp_path_factory):
    """A Lightning-style file with the released AE's loss.* keys and shapes (random values) and one AE key."""
    g = torch.Generator().manual_seed(0)
    sd = {}
    for k, shape in manifest_loss_tensors().items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7)
        elif "scaling_layer" in k:
            sd[k] = {"shift": torch.tensor(A.LPIPS_SHIFT), "scale": torch.tensor(A.LPIPS_SCALE)}[k.rsplit(".", 1)[1]
                                                                                                ].reshape(shape)
        elif "running_var" in k or ".lin" in k:
            sd[k] = torch.rand(shape, generator=g) + 0.5
        else:
            fan = math.prod(shape[1:]) if len(shape) > 1 else 1
            sd[k] = torch.randn(shape, generator=g) / math.sqrt(fan)
    sd["encoder.conv_first.conv.bias"] = torch.zeros(16)
    path = str(tmp_path_factory.mktemp("released") / "ae_sky.ckpt")
    torch.save({"epoch": 3, "state_dict": sd}, path)
    return path, sd


@needs_manifests
def test_released_discriminator_layout(released_loss_file):
    path, sd = released_loss_file
    want = {k[len("loss.discriminator."):]: v for k, v in manifest_loss_tensors().items()
            if k.startswith("loss.discriminator.")}
    assert {k: tuple(v.shape) for k, v in A.PatchDiscriminator().state_dict().items()} == want
    d = A.load_discriminator(path)
    for k, v in d.state_dict().items():
        assert torch.equal(v, sd["loss.discriminator." + k])
    assert d.training and all(p.requires_grad for p in d.parameters())


def lpips_reference(sd, x, y):
    """LPIPS from the file's tensors with functional ops."""
    def w(i, kind):
        return next(v for k, v in sd.items() if k.startswith("loss.perceptual_loss.net.") and k.endswith(f".{i}.{kind}"))

    def feats(v):
        v = (v - torch.tensor(A.LPIPS_SHIFT).view(1, 3, 1, 1)) / torch.tensor(A.LPIPS_SCALE).view(1, 3, 1, 1)
        out = []
        for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28):
            if i in (5, 10, 17, 24):
                v = F.max_pool2d(v, 2)
            v = F.relu(F.conv2d(v, w(i, "weight"), w(i, "bias"), padding=1))
            if i in (2, 7, 14, 21, 28):
                out.append(v)
        return out

    total = 0
    for k, (a, b) in enumerate(zip(feats(x), feats(y))):
        a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        total = total + F.conv2d((a - b) ** 2, sd[f"loss.perceptual_loss.lin{k}.model.1.weight"]).mean(dim=(2, 3))
    return total.reshape(-1, 1, 1, 1)


@needs_manifests
def test_lpips_from_a_released_checkpoint(released_loss_file, tmp_path):
    path, sd = released_loss_file
    want = {k[len("loss.perceptual_loss."):]: v for k, v in manifest_loss_tensors().items()
            if k.startswith("loss.perceptual_loss.")}
    assert {k: tuple(v.shape) for k, v in A.LPIPS().state_dict().items()} == want
    lp = A.load_lpips(path)
    assert not lp.training and not any(p.requires_grad for p in lp.parameters())
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).requires_grad_()
    d = lp(x, y)
    torch.testing.assert_close(d, lpips_reference(sd, x, y.detach()), rtol=1e-4, atol=1e-6)
    assert torch.all(d > 0) and float(lp(x, x).abs().max()) == 0.0
    d.sum().backward()
    assert y.grad.any()
    # the same weights as torchvision's vgg16 file + the heads file
    vgg = {f"features.{k.rsplit('.', 2)[1]}.{k.rsplit('.', 1)[1]}": v for k, v in sd.items()
           if k.startswith("loss.perceptual_loss.net.")}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)
    heads = {k[len("loss.perceptual_loss."):]: v for k, v in sd.items() if ".lin" in k}
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(heads, tmp_path / "vgg.pth")
    lp2 = A.load_lpips(str(tmp_path / "vgg.pth"), vgg_path=str(tmp_path / "vgg16.pth"))
    torch.testing.assert_close(lp2(x, y.detach()), d.detach(), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="vgg_path"):
        A.load_lpips(str(tmp_path / "vgg.pth"))
    with pytest.raises(CheckpointError, match="linear heads"):
        A.load_lpips(str(tmp_path / "vgg16.pth"))
    del heads["lin4.model.1.weight"]
    torch.save(heads, tmp_path / "vgg.pth")
    with pytest.raises(CheckpointError, match="missing keys: lin4"):
        A.load_lpips(str(tmp_path / "vgg.pth"), vgg_path=str(tmp_path / "vgg16.pth"))


def test_generator_loss_with_lpips(tmp_path):
    """LPIPS as the perceptual callable: its per-frame distance enters the loss as the hand formula says."""
    torch.manual_seed(0)
    src = A.LPIPS()
    sd = {k: (torch.randn_like(v) * 0.05 if "net." in k else v.abs() if "lin" in k else v)
          for k, v in src.state_dict().items()}
    torch.save(sd, tmp_path / "lpips.pt")
    lp = A.load_lpips(str(tmp_path / "lpips.pt"))
    r = recipe(perceptual_weight=1.0)
    ae, x, dr = make_ae(), video(), draws(S - 1)
    loss, _, _ = A.generator_loss(ae, make_disc(r), x, S - 1, r, dr, perceptual=lp)
    nll, kl, _ = hand_terms(ae, x, dr, r, lp)
    torch.testing.assert_close(loss, nll + r.kl_weight * kl)
    loss0, _, _ = A.generator_loss(ae, make_disc(r), x, S - 1, r, dr, perceptual=None)
    assert float(loss.detach()) > float(loss0.detach())
