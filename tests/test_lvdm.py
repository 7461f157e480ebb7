"""LVDM's 3-D-AE family as a CVK_VIDEO_MODEL: loading the released layouts (meta device) and tiny files written in
them (EMA mapping, aliases, wrong files), the noise table and grids, the latent space and its guards, the nodes."""
import json
import os

import numpy as np
import pytest
import torch

from cvk_testkit import ROOT
from consistent_video_kit.models import tiny
from consistent_video_kit.models.checkpoint import CheckpointError, match_state_dict
from consistent_video_kit.models.lvdm import model as lm
from consistent_video_kit.nodes.common import CVKInputError
from consistent_video_kit.nodes.lvdm import CVK_LVDMLoader, CVK_UnconditionalVideo
from consistent_video_kit.nodes.video import CVK_DecodeVideo, CVK_EncodeVideo, CVK_TextToVideo

MANIFESTS = os.path.join(os.path.dirname(ROOT), "shared", "fixtures", "checkpoints")
needs_manifests = pytest.mark.skipif(not os.path.isdir(MANIFESTS) and not os.environ.get("CI"),
                                     reason=f"the key manifests are not at {MANIFESTS} (the team's shared/ folder beside "
                                            f"the checkout); skipped")
LOADER = dict(ae="none", preset="sky", scale=0.0, shift=0.0, weights="ema", precision="auto", attention="sdpa")
UNCOND = dict(seed=0, steps=3, sampler="ddim", eta=1.0, frames=16, width=64, height=64)


def manifest(name):
    with open(os.path.join(MANIFESTS, name + ".json")) as f:
        return json.load(f)["tensors"]


def meta_sd(shapes):
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


@pytest.fixture(scope="module")
def tiny_lvdm():
    return tiny.tiny_lvdm()


@pytest.fixture
def tiny_configs(tmp_path):
    """A config root whose LVDM configs are the tiny ones (the loader builds the classes from these)."""
    d = tmp_path / "configs" / "lvdm"
    d.mkdir(parents=True)
    for fam in ("unet_short", "unet_pred", "unet_interp"):
        extra = {"unet_pred": dict(in_channels=5, num_classes=251),
                 "unet_interp": dict(in_channels=5, num_classes=251, temporal_length=5)}.get(fam, {})
        (d / f"{fam}.json").write_text(json.dumps(dict(tiny.TINY_LVDM_UNET, **extra)))
    (d / "videoae.json").write_text(json.dumps(tiny.TINY_VIDEOAE))
    return str(tmp_path / "configs")


def lightning_file(path, unet, ae, ema_unet=None, extra=None, alias=True, with_ae=True):
    """A Lightning-style LVDM checkpoint as the official code saves it: the UNet, its EMA copy under LitEma's
    mangled names, the AE with every SamePadConv3d weight also stored as ``<m>.weight``, the schedule buffers."""
    sd = {lm.UNET_PREFIX + k: v.clone() for k, v in unet.state_dict().items()}
    if ema_unet is not None:
        sd.update({lm.ema_key(lm.UNET_PREFIX + k): v.clone() for k, v in ema_unet.state_dict().items()})
        sd["model_ema.decay"] = torch.tensor(0.9999)
        sd["model_ema.num_updates"] = torch.tensor(10, dtype=torch.int32)
    if with_ae:
        for k, v in ae.state_dict().items():
            sd[lm.AE_PREFIX + k] = v.clone()
            if alias and k.endswith((".conv.weight", ".convt.weight")):
                sd[lm.AE_PREFIX + k.rsplit(".", 2)[0] + ".weight"] = sd[lm.AE_PREFIX + k]
    sd["alphas_cumprod"] = lm.ldm_alphas_cumprod().float()
    sd["betas"] = torch.zeros(1000)
    sd.update(extra or {})
    torch.save({"epoch": 3, "global_step": 100, "state_dict": sd}, path)
    return path


def perturbed(module, seed):
    import copy
    m = copy.deepcopy(module)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)
    return m


# ---------------------------------------------------------------- released layouts (meta device)

@needs_manifests
@pytest.mark.parametrize("weights", ["ema", "raw"])
def test_short_sky_manifest_loads_strictly(weights):
    shapes = manifest("lvdm_sky_short_unet")
    assert lm.detect_family({k: tuple(v) for k, v in shapes.items()}, "short_sky.ckpt") == "lvdm-short"
    sd = meta_sd(shapes)
    with torch.device("meta"):
        unet = lm.build_unet("lvdm-short")
        ae = lm.build_ae()
    unet_sd = lm._unet_tensors(sd, weights, list(unet.state_dict()), "short_sky.ckpt")
    assert len(unet_sd) == 668
    assert len(match_state_dict(unet, unet_sd, "UNet")) == len(unet.state_dict())
    ae_sd = lm._ae_tensors(sd, lm.AE_PREFIX)
    assert len(ae_sd) == 96                                      # 122 keys = 96 tensors + 26 aliases
    assert len(match_state_dict(ae, ae_sd, "AE", ignore_file=lm.AE_IGNORED)) == len(ae.state_dict())
    others = [k for k in sd if not k.startswith((lm.UNET_PREFIX, lm.EMA_PREFIX, lm.AE_PREFIX))]
    assert others and set(others) <= set(lm.SCHEDULE_BUFFERS)


@needs_manifests
def test_videoae_manifest_loads_strictly_with_its_losses_ignored():
    sd = meta_sd(manifest("lvdm_sky_videoae"))
    assert any(k.startswith("loss.") for k in sd)
    with torch.device("meta"):
        ae = lm.build_ae()
    matched = match_state_dict(ae, lm._ae_tensors(sd, ""), "AE", ignore_file=lm.AE_IGNORED)
    assert set(matched) == set(ae.state_dict())
    with pytest.raises(CheckpointError, match="unexpected keys.*loss"):
        match_state_dict(ae, lm._ae_tensors(sd, ""), "AE")        # the ignore-list is what lets loss.* through


@needs_manifests
def test_the_ema_names_of_the_manifest_are_the_unet_keys_mangled():
    shapes = manifest("lvdm_sky_short_unet")
    unet_keys = [k for k in shapes if k.startswith(lm.UNET_PREFIX)]
    ema = {k for k in shapes if k.startswith(lm.EMA_PREFIX)} - {"model_ema.decay", "model_ema.num_updates"}
    assert {lm.ema_key(k) for k in unet_keys} == ema
    assert lm.ema_key("model.diffusion_model.input_blocks.1.0.in_layers.2.weight") == \
        "model_ema.diffusion_modelinput_blocks10in_layers2weight"


def test_pred_and_interp_are_told_apart_by_their_position_tables():
    base = {lm.UNET_PREFIX + "input_blocks.0.0.weight": (256, 5, 1, 3, 3), lm.UNET_PREFIX + "label_emb.weight": (251, 1024)}
    pred = dict(base, **{lm.UNET_PREFIX + "input_blocks.4.1.relative_position_k.embeddings_table": (9, 128)})
    interp = dict(base, **{lm.UNET_PREFIX + "input_blocks.4.1.relative_position_k.embeddings_table": (11, 128)})
    assert lm.detect_family(pred, "p") == "lvdm-pred"
    assert lm.detect_family(interp, "i") == "lvdm-interp"
    with pytest.raises(CheckpointError, match="is a VideoCrafter2 checkpoint"):
        lm.detect_family({lm.UNET_PREFIX + "input_blocks.1.1.proj_in.weight": (320, 320, 1, 1, 1),
                          lm.UNET_PREFIX + "input_blocks.1.0.temopral_conv.conv1.0.weight": (1,)}, "vc2.ckpt")
    with pytest.raises(CheckpointError, match="is an LVDM text-to-video checkpoint"):
        lm.detect_family({lm.UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn1_tmp.to_q.weight": (1,),
                          "cond_stage_model.transformer.text_model.embeddings.position_ids": (1, 77)}, "t2v.ckpt")
    with pytest.raises(CheckpointError, match=r"Stable Diffusion checkpoint: load it with Load Video Model \(CVK\)"):
        lm.detect_family({lm.UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
                          lm.UNET_PREFIX + "input_blocks.0.0.weight": (320, 4, 3, 3)}, "sd15.safetensors")
    with pytest.raises(CheckpointError, match="video autoencoder alone"):
        lm.detect_family({"encoder.conv_blocks.0.down.weight": (1,)}, "ae_sky.ckpt")


# ---------------------------------------------------------------- tiny files in the released layout

def test_ema_and_raw_weights_load_from_a_mangled_file(tmp_path, tiny_configs, tiny_lvdm):
    unet, ae = tiny._tiny_lvdm_networks()
    ema = perturbed(unet, 1)
    path = lightning_file(tmp_path / "short_tiny.ckpt", unet, ae, ema_unet=ema)
    dev = torch.device("cpu")
    m_ema = lm.load_lvdm(str(path), config_root=tiny_configs, device=dev)
    m_raw = lm.load_lvdm(str(path), weights="raw", config_root=tiny_configs, device=dev)
    for k, v in ema.state_dict().items():
        assert torch.equal(m_ema.unet.state_dict()[k], v), k
    for k, v in unet.state_dict().items():
        assert torch.equal(m_raw.unet.state_dict()[k], v), k
    assert not torch.equal(m_ema.unet.state_dict()["out.2.weight"], m_raw.unet.state_dict()["out.2.weight"])
    for k, v in ae.state_dict().items():
        assert torch.equal(m_ema.vae.ae.state_dict()[k], v), k
    assert m_ema.family == "lvdm-short" and m_ema.text is None
    assert torch.equal(m_ema.alphas_cumprod, lm.ldm_alphas_cumprod())


def test_a_separate_ae_file_replaces_the_bundled_one(tmp_path, tiny_configs):
    unet, ae = tiny._tiny_lvdm_networks()
    other = perturbed(ae, 2)
    path = lightning_file(tmp_path / "short.ckpt", unet, ae, ema_unet=unet)
    ae_sd = {k: v for k, v in other.state_dict().items()}
    ae_sd.update({k.rsplit(".", 2)[0] + ".weight": v for k, v in other.state_dict().items()
                  if k.endswith((".conv.weight", ".convt.weight"))})
    ae_sd["loss.logvar"] = torch.zeros(())
    torch.save({"epoch": 1, "state_dict": ae_sd}, tmp_path / "ae_tiny.ckpt")
    m = lm.load_lvdm(str(path), str(tmp_path / "ae_tiny.ckpt"), config_root=tiny_configs, device=torch.device("cpu"))
    for k, v in other.state_dict().items():
        assert torch.equal(m.vae.ae.state_dict()[k], v), k


@pytest.mark.parametrize("case, message", [
    ("no_ema", "holds no EMA weights.*choose weights 'raw'"),
    ("stray_ema", "EMA keys match no UNet parameter"),
    ("stray_key", "unexpected keys outside the UNet"),
    ("no_ae", "carries no video autoencoder"),
    ("bad_alias", "should alias its inner conv"),
    ("truncated", "truncated or not a model file"),
])
def test_wrong_files_get_clear_errors(tmp_path, tiny_configs, case, message):
    unet, ae = tiny._tiny_lvdm_networks()
    path = tmp_path / "m.ckpt"
    kw = dict(ema_unet=None if case == "no_ema" else unet)
    extra = {"stray_ema": {"model_ema.diffusion_modelnotalayerweight": torch.zeros(1)},
             "stray_key": {"model.extra_head.weight": torch.zeros(1)}}.get(case)
    lightning_file(path, unet, ae, extra=extra, with_ae=case != "no_ae", **kw)
    if case == "bad_alias":
        sd = torch.load(path, weights_only=True)
        key = next(k for k in sd["state_dict"] if k.startswith(lm.AE_PREFIX) and k.endswith(".conv.weight"))
        sd["state_dict"][key.rsplit(".", 2)[0] + ".weight"] = torch.zeros(1)
        torch.save(sd, path)
    if case == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=message):
        lm.load_lvdm(str(path), config_root=tiny_configs, device=torch.device("cpu"))


def test_an_lvdm_file_in_the_video_model_loader_names_the_lvdm_loader(tmp_path):
    from consistent_video_kit.models.loaders import detect_sd_file
    unet, ae = tiny._tiny_lvdm_networks()
    shapes = {lm.AE_PREFIX + k: tuple(v.shape) for k, v in ae.state_dict().items()}
    shapes.update({lm.UNET_PREFIX + k: tuple(v.shape) for k, v in unet.state_dict().items()})
    with pytest.raises(CheckpointError, match=r"Load LVDM Model \(CVK\)"):
        detect_sd_file(shapes, "short_sky.ckpt")


# ---------------------------------------------------------------- noise table, grids, normalisation

def test_noise_table_is_ldms_linear_schedule():
    betas = np.linspace(0.0015 ** 0.5, 0.0155 ** 0.5, 1000, dtype=np.float64) ** 2      # LDM make_beta_schedule
    want = np.cumprod(1.0 - betas).astype(np.float32).astype(np.float64)
    ac = lm.ldm_alphas_cumprod()
    assert np.array_equal(ac.numpy(), want)
    assert abs(ac[100].sqrt().item() - 0.910) < 5e-4 and abs(ac[249].sqrt().item() - 0.733) < 5e-4   # §1.5


def test_ddim_grid_is_uniform_plus_one_ending_at_alpha_0(tiny_lvdm):
    from consistent_video_kit.samplers.vp import sigmas_from_alphas_cumprod
    table = sigmas_from_alphas_cumprod(tiny_lvdm.alphas_cumprod)
    got = tiny_lvdm.sigmas(50)
    ts = list(range(0, 1000, 20))[::-1]                       # lvdm make_ddim_timesteps('uniform') …
    want = torch.cat([table[[t + 1 for t in ts]], table[:1]])  # … + 1, then α_prev of the last step = ᾱ₀
    assert torch.equal(got, want)
    ddpm = tiny_lvdm.sigmas(1000, "leading", "zero", offset=0)
    assert torch.equal(ddpm[:-1], table.flip(0)) and ddpm[-1] == 0


@pytest.mark.parametrize("preset", ["sky", "taichi", "ucf", "col", "kvasir", "cholec"])
def test_presets_normalise_as_their_configs(preset):
    p = lm.PRESETS[preset]
    official = {"sky": (0.33422927, 1.4606637), "taichi": (0.175733933, 0.03291025), "ucf": (0.220142075, 0.5837740898)}
    assert (p.scale, p.shift) == official.get(preset, official["sky"])
    assert p.size == (128 if preset in ("col", "kvasir", "cholec") else 256)


def test_decode_inverts_the_normalisation(tiny_lvdm):
    """decode(z) runs the AE on z/scale − shift: a latent made as scale·(r + shift) decodes like r does."""
    a, b = tiny.tiny_lvdm("sky"), tiny.tiny_lvdm("custom", 2.0, -0.5)
    r = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    za, zb = 0.33422927 * (r + 1.4606637), 2.0 * (r - 0.5)
    assert torch.allclose(a.vae.decode(za), b.vae.decode(zb), atol=1e-5)
    assert a.latent_format.tag != b.latent_format.tag


# ---------------------------------------------------------------- the network call

def test_pred_network_takes_the_mask_channel_and_the_label(tmp_path):
    from consistent_video_kit.models.lvdm.unet3d import LVDMUNet
    unet = tiny._seeded(5, lambda: LVDMUNet(**dict(tiny.TINY_LVDM_UNET, in_channels=5, num_classes=251)))
    _, ae = tiny._tiny_lvdm_networks()
    from consistent_video_kit.models.vae import VideoAE3D
    m = lm.LVDMModel("p", "lvdm-pred", unet, VideoAE3D(ae, 1.0, 0.0), lm.ldm_alphas_cumprod(), (64, 64, 16))
    g = torch.Generator().manual_seed(1)
    z, mask = torch.randn(2, 4, 4, 8, 8, generator=g), torch.zeros(2, 1, 4, 8, 8)
    mask[:, :, 0] = 1
    t, s = torch.tensor([500, 500]), torch.tensor([100, 100])
    with torch.no_grad():
        want = unet(torch.cat([z, mask], 1), t, y=s)
        uncond = unet(torch.cat([z, torch.zeros_like(mask)], 1), t, y=None)
        assert torch.equal(m.network(z, t, {"mask": mask, "label": s}), want)
        assert torch.equal(m.network(z, t, {}), uncond)                 # no mask, no label: the unconditional branch
        assert not torch.allclose(want, uncond)
    with pytest.raises(ValueError, match="cannot take.*text"):
        m.network(z, t, {"text": torch.zeros(1)})


# ---------------------------------------------------------------- nodes

def test_unconditional_video_samples_with_one_call_per_step(tiny_lvdm, monkeypatch):
    calls = []
    net = tiny_lvdm.network
    monkeypatch.setitem(vars(tiny_lvdm), "network", lambda z, t, c: calls.append(z.shape) or net(z, t, c))
    (lat,) = CVK_UnconditionalVideo().generate(tiny_lvdm, **UNCOND)
    assert lat["samples"].shape == (1, 4, 4, 8, 8)
    assert calls == [(1, 4, 4, 8, 8)] * 3
    (again,) = CVK_UnconditionalVideo().generate(tiny_lvdm, **UNCOND)
    assert torch.equal(lat["samples"], again["samples"])
    (other,) = CVK_UnconditionalVideo().generate(tiny_lvdm, **dict(UNCOND, seed=1))
    assert not torch.equal(lat["samples"], other["samples"])
    (images,) = CVK_DecodeVideo().decode(tiny_lvdm, lat, 8)
    assert images.shape == (16, 64, 64, 3) and 0 <= images.min() and images.max() <= 1


def test_decode_in_windows_equals_decoding_at_once(tiny_lvdm):
    z = torch.randn(1, 4, 18, 2, 2, generator=torch.Generator().manual_seed(3))
    (whole,) = CVK_DecodeVideo().decode(tiny_lvdm, {"samples": z}, 8, window=0, overlap=0)
    (windows,) = CVK_DecodeVideo().decode(tiny_lvdm, {"samples": z}, 8, window=14, overlap=12)
    (plain,) = CVK_DecodeVideo().decode(tiny_lvdm, {"samples": z}, 8, window=14, overlap=12, seams="plain")
    assert whole.shape == (72, 16, 16, 3)
    assert (whole - windows).abs().max() < 1e-5
    assert (whole - plain).abs().max() > 1e-4         # plain windows normalise over the window, not the video
    with pytest.raises(CVKInputError, match="input 'overlap' got 4; expected at least 12 latents with seams 'exact'"):
        CVK_DecodeVideo().decode(tiny_lvdm, {"samples": z}, 8, window=14, overlap=4)


def test_encode_makes_one_latent_per_four_frames(tiny_lvdm):
    frames = torch.rand(16, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    (lat,) = CVK_EncodeVideo().encode(tiny_lvdm, frames, 16)
    assert lat["samples"].shape == (1, 4, 4, 8, 8)
    with pytest.raises(CVKInputError, match="'images' got '14 frames'.*multiple of 4"):
        CVK_EncodeVideo().encode(tiny_lvdm, frames[:14], 16)
    with pytest.raises(CVKInputError, match="'frames_per_batch' got 6.*multiple of 4"):
        CVK_EncodeVideo().encode(tiny_lvdm, frames, 6)


def test_the_two_latent_spaces_refuse_each_other(tiny_lvdm, tiny_animatediff):
    with pytest.raises(CVKInputError, match="CVK_UnconditionalVideo: input 'model'.*unconditional LVDM model"):
        CVK_UnconditionalVideo().generate(tiny_animatediff, **UNCOND)
    with pytest.raises(CVKInputError, match="CVK_TextToVideo: input 'model'.*text-conditioned"):
        CVK_TextToVideo().generate(tiny_lvdm, "a cat", "", 0, 2, "cfg", 7.5, "ddim", 0.0, 4, 64, 64)
    (lat,) = CVK_UnconditionalVideo().generate(tiny_lvdm, **dict(UNCOND, steps=1))
    with pytest.raises(CVKInputError, match="'latent' got 'a lvdm-3d latent.*decode it with the model that made it"):
        CVK_DecodeVideo().decode(tiny_animatediff, lat, 8)
    sd_lat = {"samples": torch.zeros(1, 4, 4, 8, 8), "cvk_space": tiny_animatediff.latent_format.tag}
    with pytest.raises(CVKInputError, match="'latent' got 'a SD VAE latent"):
        CVK_DecodeVideo().decode(tiny_lvdm, sd_lat, 8)


@pytest.mark.parametrize("kw, field, expected", [
    (dict(frames=18), "frames", "multiple of 4"),
    (dict(sampler="ddpm", eta=0.5), "eta", "1 with sampler ddpm"),
    (dict(steps=1000), "steps", "timesteps must lie in"),
    (dict(width=60), "width", "multiple of 8"),
])
def test_unconditional_video_bad_inputs(tiny_lvdm, kw, field, expected):
    with pytest.raises(CVKInputError, match=f"CVK_UnconditionalVideo: input '{field}'.*{expected}"):
        CVK_UnconditionalVideo().generate(tiny_lvdm, **dict(UNCOND, **kw))


def test_loader_gives_the_demo_and_refuses_inconsistent_normalisation():
    (m,) = CVK_LVDMLoader().load(tiny.TINY_LVDM + " (untrained demo)", **LOADER)
    assert m.untrained and m.latent_format.temporal_factor == 4 and m.latent_format.shift == pytest.approx(1.4606637)
    with pytest.raises(CVKInputError, match="input 'preset' got 'sky'.*'custom' to use your own"):
        CVK_LVDMLoader().load(tiny.TINY_LVDM + " (untrained demo)", **dict(LOADER, scale=0.5))
    with pytest.raises(CVKInputError, match="input 'scale' got 0.0.*scale > 0"):
        CVK_LVDMLoader().load(tiny.TINY_LVDM + " (untrained demo)", **dict(LOADER, preset="custom"))
    (c,) = CVK_LVDMLoader().load(tiny.TINY_LVDM + " (untrained demo)", **dict(LOADER, preset="custom", scale=0.5,
                                                                              shift=-1.0))
    assert (c.latent_format.scaling_factor, c.latent_format.shift) == (0.5, -1.0)


def test_an_ae_file_error_is_tagged_with_the_ae_input(tmp_path, tiny_configs):
    """The loader node names the input at fault from the error's role: the 'ae' file, or the model."""
    unet, ae = tiny._tiny_lvdm_networks()
    whole = lightning_file(tmp_path / "short.ckpt", unet, ae, ema_unet=unet)
    with pytest.raises(CheckpointError, match="is a whole LVDM model, not an AE file") as e:
        lm.load_lvdm(str(whole), str(whole), config_root=tiny_configs, device=torch.device("cpu"))
    assert e.value.role == "ae"
    bare = lightning_file(tmp_path / "bare.ckpt", unet, ae, ema_unet=unet, with_ae=False)
    with pytest.raises(CheckpointError, match="carries no video autoencoder") as e:
        lm.load_lvdm(str(bare), config_root=tiny_configs, device=torch.device("cpu"))
    assert e.value.role == "base"
