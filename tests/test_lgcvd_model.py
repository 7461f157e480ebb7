"""LGC-VD's networks and loading: the released layout strictly loaded (meta device), the official structure pinned
(parameter counts, attention placement and its up-path quirk, the GroupNorm group quirk, NIN's (in, out) matrix),
the frame-major channel layout of network() / encode(), the loader's errors and a tiny container round trip.

Each test names the one-line break it was checked against ("Break: ...")."""
import json
import os

import pytest
import torch

from cvk_testkit import ROOT
from consistent_video_kit.models import lgcvd as L
from consistent_video_kit.models import tiny
from consistent_video_kit.models.checkpoint import CheckpointError, empty_params, match_state_dict
from consistent_video_kit.models.loaders import LoadOptionError
from consistent_video_kit.samplers.lgcvd import cosine_alphas_cumprod
from consistent_video_kit.samplers.vp import VPDenoiser

MANIFESTS = os.path.join(os.path.dirname(ROOT), "shared", "fixtures", "checkpoints")
needs_manifests = pytest.mark.skipif(not os.path.isdir(MANIFESTS) and not os.environ.get("CI"),
                                     reason=f"the key manifests are not at {MANIFESTS} (the team's shared/ folder beside "
                                            f"the checkout); skipped")


def manifest():
    with open(os.path.join(MANIFESTS, "lgcvd_cityscapes.json")) as f:
        return json.load(f)["tensors"]


def meta_networks(dataset):
    with torch.device("meta"):
        return L.build_networks(L.read_config(dataset))


@pytest.fixture(scope="module")
def model():
    return tiny.tiny_lgcvd()


def inputs(model, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = model.size
    x = torch.randn(batch, 3, 8, s, s, generator=g)
    ctx = torch.rand(batch, 8, s, s, generator=g) * 2 - 1
    clip = torch.rand(batch, 3, 8, s, s, generator=g) * 2 - 1
    return x, ctx, clip


# ---------------------------------------------------------------- the released layout (meta device)

@needs_manifests
@pytest.mark.parametrize("dataset", ["cityscapes", "bair"])
@pytest.mark.parametrize("weights", ["ema", "model"])
def test_the_released_layout_loads_strictly(dataset, weights):
    """Every tensor of the chosen copy maps to a parameter, only the 12 schedule buffers are left over, every
    parameter is covered; the other copy is not taken. Break: drop 'posterior_mean_coef2' from SCHEDULE_BUFFERS →
    'unexpected keys: posterior_mean_coef2'."""
    sd = {k: torch.empty(s, device="meta") for k, s in manifest().items()}
    nets = meta_networks(dataset)
    tensors = L.container_tensors(sd, weights, f"{dataset}.pt")
    assert len(tensors) == 450 and all(f"{weights}/{k}" in sd for k in tensors)
    matched = L.match_file(nets, tensors, "manifest")
    assert set(matched) == set(nets.state_dict())
    assert set(tensors) - set(matched) == set(L.SCHEDULE_BUFFERS)
    with pytest.raises(CheckpointError, match="unexpected keys.*alphas_cumprod"):
        match_state_dict(nets, tensors, "no ignore-list")      # the ignore-list is what lets the buffers through


@needs_manifests
def test_parameter_counts_are_the_reference_ones():
    """UNet 63.4M, encoder 33.1M (reference appendix); and the manifest's own totals per prefix. Break: never build
    Conv_2 (the conv shortcut) → 54.3M."""
    nets = meta_networks("cityscapes")
    unet = sum(p.numel() for p in nets.denoise_fn.parameters())
    enc = sum(p.numel() for p in nets.encoder_fn.parameters())
    assert round(unet / 1e6, 1) == 63.4 and round(enc / 1e6, 1) == 33.1
    shapes = manifest()
    count = lambda prefix: sum(torch.Size(s).numel() for k, s in shapes.items() if k.startswith("ema/" + prefix))  # noqa: E731
    assert (unet, enc) == (count(L.UNET_PREFIX), count(L.ENCODER_PREFIX))


# ---------------------------------------------------------------- structure and quirks

def test_nin_is_a_linear_map_with_its_matrix_stored_in_out():
    """NIN's ``W (in, out)`` acts like ``nn.Linear`` with weight ``Wᵀ`` on every pixel (non-square, so the orientation
    is pinned). Break: ``einsum("bchw,oc->bohw")`` (W read as (out, in)) → a shape error."""
    torch.manual_seed(0)
    nin = L.NIN(5, 3)
    with torch.no_grad():
        nin.b.copy_(torch.randn(3))
    lin = torch.nn.Linear(5, 3)
    with torch.no_grad():
        lin.weight.copy_(nin.W.t())
        lin.bias.copy_(nin.b)
    x = torch.randn(2, 5, 4, 6)
    ref = lin(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    torch.testing.assert_close(nin(x), ref, rtol=1e-6, atol=1e-6)
    assert tuple(nin.W.shape) == (5, 3)


@pytest.mark.parametrize("dataset, down, up", [("cityscapes", 32, 64), ("bair", 16, 32)])
def test_attention_placement_keeps_the_up_path_quirk(dataset, down, up):
    """Self-attention runs (traced on the meta device, the real config) at the listed resolution in the down path but
    one level finer in the up path (the up index counted from the bottleneck is looked up as a down level), plus the
    middle; the encoder's down path matches the UNet's. Break: look the up path up with ``2 ** (L - 1 - i)`` → up
    attention at 32 (16) and a key mismatch with the file."""
    nets = meta_networks(dataset)
    size = L.read_config(dataset)["size"]
    seen = []
    for net in (nets.denoise_fn, nets.encoder_fn):
        for n, m in net.named_modules():
            if type(m) is L.AttnBlock:
                m.register_forward_hook(lambda mod, i, o, n=n, net=net: seen.append(
                    ("enc" if net is nets.encoder_fn else "unet", n, i[0].shape[-1])))
    with torch.device("meta"):
        nets.denoise_fn(torch.empty(1, 24, size, size), torch.zeros(1, dtype=torch.long),
                        torch.empty(1, 8, size, size), torch.empty(1, 512, size // 8, size // 8))
        nets.encoder_fn(torch.empty(1, 24, size, size))
    assert seen == [("unet", "downs.2.1", down), ("unet", "downs.2.3", down), ("unet", "midblock2", size // 8),
                    ("unet", "ups.2.1", up), ("unet", "ups.2.3", up),
                    ("enc", "downs.2.1", down), ("enc", "downs.2.3", down), ("enc", "midblock2", size // 8)]


def test_resblock_group_count_quirk_and_heads(model):
    """GroupNorm_1 of a ResBlock takes ``min(out//4, 32)`` lowered until it divides the INPUT width: the tiny up level
    128 → 48 gets 8 groups (12 would divide 48). Heads = channels / n_head_channels. Break: ``_groups(out_ch)`` for
    GroupNorm_1 → 12."""
    block = model.unet.ups[0][0]
    assert (block.GroupNorm_0.num_channels, block.GroupNorm_1.num_channels) == (128, 48)
    assert (block.GroupNorm_0.num_groups, block.GroupNorm_1.num_groups) == (32, 8)
    assert model.unet.midblock4.n_heads == 4 and model.unet.downs[2][1].n_heads == 3
    with empty_params():
        real = L.build_networks(L.read_config("cityscapes"))
    assert real.denoise_fn.midblock4.n_heads == 4 and real.denoise_fn.ups[2][1].n_heads == 1


# ---------------------------------------------------------------- the model's interface

def test_network_and_encode_use_the_official_frame_major_stacking(model):
    """network() stacks frames as the official reshape4D does (channel 3·f + c), puts the context before the noisy
    channels, unstacks v the same way; encode() runs the encoder on the same stacking. Compared with hand-stacked
    calls of the raw modules. Break: ``video.reshape(B, C·F, H, W)`` in stack_frames ('(c f)' order) → mismatch."""
    x, ctx, clip = inputs(model)
    t = torch.tensor([3, 700])
    hand = lambda v: torch.cat([v[:, :, f] for f in range(v.shape[2])], dim=1)  # noqa: E731  official reshape4D
    with model.loaded(x.shape):
        feat = model.encode(clip)
        torch.testing.assert_close(feat, model.encoder(hand(clip)), rtol=0, atol=0)
        v = model.network(x, t, {"context": ctx, "feature": feat})
        raw = model.unet(hand(x), t, ctx, feat)
    assert feat.shape == (2, 64, 4, 4) and v.shape == x.shape and v.dtype == torch.float32
    for f in range(8):
        torch.testing.assert_close(v[:, :, f], raw[:, 3 * f:3 * f + 3], rtol=0, atol=0)
    # the context enters first: swapping it with the first 8 noisy channels changes the output
    assert not torch.allclose(model.unet(torch.cat([ctx, hand(x)[:, 8:]], 1), t, hand(x)[:, :8], feat), raw)


def test_network_takes_a_scalar_timestep_and_reacts_to_every_input(model):
    """A 0-d t equals the same t per sample; v depends on t, the context and the global feature (the cross-attention
    is live). Break: drop ``midblock4`` from forward → the feature no longer matters."""
    x, ctx, clip = inputs(model)
    with model.loaded():
        feat = model.encode(clip)
        cond = {"context": ctx, "feature": feat}
        v = model.network(x, torch.tensor(400), cond)
        torch.testing.assert_close(v, model.network(x, torch.tensor([400, 400]), cond), rtol=0, atol=0)
        for other in (model.network(x, torch.tensor(10), cond),
                      model.network(x, torch.tensor(400), {"context": -ctx, "feature": feat}),
                      model.network(x, torch.tensor(400), {"context": ctx, "feature": model.encode(-clip)})):
            assert (other - v).abs().max() > 1e-3


def test_network_refuses_wrong_conditioning_and_shapes(model):
    """Missing / extra cond keys, a context of the wrong width, a feature of the wrong size, a window of the wrong
    frame count: clear ValueErrors. Break: drop the cond-key check → KeyError instead."""
    x, ctx, clip = inputs(model)
    feat = model.encode(clip)
    with pytest.raises(ValueError, match="missing 'feature'"):
        model.network(x, torch.tensor(5), {"context": ctx})
    with pytest.raises(ValueError, match="cannot take 'text'"):
        model.network(x, torch.tensor(5), {"context": ctx, "feature": feat, "text": None})
    with pytest.raises(ValueError, match=r"cond\['context'\] must be \(B, 8, H, W\)"):
        model.network(x, torch.tensor(5), {"context": ctx[:, :4], "feature": feat})
    with pytest.raises(ValueError, match="bottleneck's shape"):
        model.network(x, torch.tensor(5), {"context": ctx, "feature": feat[..., :2, :2]})
    with pytest.raises(ValueError, match=r"must be \(B, 3, 8, H, W\)"):
        model.encode(clip[:, :, :6])


def test_denoiser_is_cosine_v_prediction(model):
    """x̂0 = √ᾱ z − √(1−ᾱ) v on the cosine table, z = x/√(1+σ²) (the VP wrapper), the network told the timestep.
    Break: ``VPDenoiser(..., 'epsilon')`` in denoiser() → fails."""
    den = model.denoiser()
    assert isinstance(den, VPDenoiser) and den.prediction_type == "v_prediction"
    torch.testing.assert_close(model.alphas_cumprod, cosine_alphas_cumprod(), rtol=0, atol=0)
    x, ctx, clip = inputs(model)
    t = 600
    ac = model.alphas_cumprod[t]
    sigma = float(((1 - ac) / ac).sqrt())
    cond = {"context": ctx, "feature": model.encode(clip)}
    x_noisy = x * (1 + sigma ** 2) ** 0.5
    x0 = den(x_noisy, torch.full((2,), sigma, dtype=torch.float64), cond)
    v = model.network(x, torch.tensor(t), cond)
    torch.testing.assert_close(x0, (ac.sqrt() * x - (1 - ac).sqrt() * v).float(), rtol=1e-5, atol=1e-5)


def test_tiny_model_is_an_untrained_demo(model):
    """Break: ``untrained=False`` in tiny_lgcvd → fails."""
    assert (model.name, model.dataset, model.size, model.frames, model.cond_frames) == ("tiny-lgcvd", "custom", 32, 8, 2)
    assert model.untrained and model.TYPE == "CVK_LGCVD_MODEL" and model.prediction_type == "v_prediction"
    assert model.unet_part.role == model.encoder_part.role == "diffusion"


# ---------------------------------------------------------------- files

@pytest.fixture
def tiny_config_root(tmp_path):
    """A config root whose cityscapes / bair configs are the tiny one (the loader builds the classes from these)."""
    d = tmp_path / "configs" / "lgcvd"
    d.mkdir(parents=True)
    for ds in L.DATASETS:
        (d / f"{ds}.json").write_text(json.dumps(dict(tiny.TINY_LGCVD_CONFIG, dataset=ds)))
    return str(tmp_path / "configs")


def wrapper_sd(model, shift=0.0):
    """The official SpacedDiffusion state dict of a model: prefixed networks + the 12 schedule buffers."""
    sd = {L.UNET_PREFIX + k: v.clone() + shift for k, v in model.unet.state_dict().items()}
    sd.update({L.ENCODER_PREFIX + k: v.clone() + shift for k, v in model.encoder.state_dict().items()})
    sd.update({b: torch.rand(1000) for b in L.SCHEDULE_BUFFERS})
    return sd


def container(path, model_sd=None, ema_sd=None, **extra):
    obj = {"step": 300000, "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                      "growth_interval": 2000, "_growth_tracker": 7}}
    if model_sd is not None:
        obj["model"] = model_sd
    if ema_sd is not None:
        obj["ema"] = ema_sd
    obj.update(extra)
    torch.save(obj, path)
    return str(path)


def test_round_trip_of_the_official_container(model, tmp_path, tiny_config_root):
    """The tiny model saved as the official code saves it ({step, model, ema, scaler}, wrapper keys + buffers) loads
    back: 'ema' (default) reproduces the model exactly, 'model' loads the other copy; the dataset comes from the name.
    Break: ``container_tensors`` returning the 'model' copy for 'ema' → outputs differ."""
    path = container(tmp_path / "my_bair_run.pt", wrapper_sd(model, shift=0.01), wrapper_sd(model))
    loaded = L.load_lgcvd(path, config_root=tiny_config_root, device=torch.device("cpu"))
    assert (loaded.dataset, loaded.size, loaded.frames, loaded.untrained) == ("bair", 32, 8, False)
    x, ctx, clip = inputs(model)
    t = torch.tensor([10, 990])
    with loaded.loaded():
        feat = loaded.encode(clip)
        torch.testing.assert_close(feat, model.encode(clip), rtol=0, atol=0)
        cond = {"context": ctx, "feature": feat}
        torch.testing.assert_close(loaded.network(x, t, cond), model.network(x, t, cond), rtol=0, atol=0)
    raw = L.load_lgcvd(path, dataset="cityscapes", weights="model", config_root=tiny_config_root,
                       device=torch.device("cpu"))
    assert raw.dataset == "cityscapes"
    torch.testing.assert_close(raw.unet.init_conv.bias, model.unet.init_conv.bias + 0.01)
    assert (raw.encode(clip) - feat).abs().max() > 1e-4


def test_load_errors_name_what_is_wrong(model, tmp_path, tiny_config_root):
    """Missing keys, extra keys, stray tensors, an absent copy, a file of another kind, an undeterminable dataset, a
    bad weights choice: each a clear error naming the keys or the input. Break: pass ``ignore_file=(".*",)`` in
    match_file → the extra key loads silently."""
    load = lambda p, **kw: L.load_lgcvd(p, config_root=tiny_config_root, device=torch.device("cpu"), **kw)  # noqa: E731
    ema = wrapper_sd(model)
    missing = {k: v for k, v in ema.items() if k != "denoise_fn.midblock4.NIN_1.W"}
    with pytest.raises(CheckpointError, match=r"1 missing keys: denoise_fn\.midblock4\.NIN_1\.W"):
        load(container(tmp_path / "city_a.pt", ema_sd=missing))
    with pytest.raises(CheckpointError, match=r"1 unexpected keys: encoder_fn\.extra\.weight"):
        load(container(tmp_path / "city_b.pt", ema_sd=dict(ema, **{"encoder_fn.extra.weight": torch.zeros(2)})))
    with pytest.raises(CheckpointError, match=r"shape mismatches: denoise_fn\.finial_conv\.bias"):
        load(container(tmp_path / "city_s.pt", ema_sd=dict(ema, **{"denoise_fn.finial_conv.bias": torch.zeros(3)})))
    with pytest.raises(CheckpointError, match="tensors outside the 'model' and 'ema' state dicts: opt/m"):
        load(container(tmp_path / "city_c.pt", ema_sd=ema, opt={"m": torch.zeros(1)}))
    with pytest.raises(CheckpointError, match="holds no 'model' weights.*choose weights 'ema'"):
        load(container(tmp_path / "city_d.pt", ema_sd=ema), weights="model")
    with pytest.raises(CheckpointError, match="is a bare LGC-VD state dict"):
        torch.save(ema, tmp_path / "city_e.pt")
        load(str(tmp_path / "city_e.pt"))
    with pytest.raises(CheckpointError, match="LDM-family checkpoint"):
        torch.save({"state_dict": {"model.diffusion_model.out.2.weight": torch.zeros(1)}}, tmp_path / "city_f.pt")
        load(str(tmp_path / "city_f.pt"))
    with pytest.raises(LoadOptionError, match="cannot tell from the file name 'weights.pt'") as e:
        load(container(tmp_path / "weights.pt", ema_sd=ema))
    assert e.value.input == "dataset"
    with pytest.raises(LoadOptionError, match="weights must be one of") as e:
        load(container(tmp_path / "city_g.pt", ema_sd=ema), weights="raw")
    assert e.value.input == "weights"


def test_dataset_from_the_file_name():
    """Break: keep the first hit only (``found = found[:1]``) → 'bair_vs_city.pt' is taken as BAIR silently."""
    assert L.dataset_from_name("cityscapes.pt") == "cityscapes"
    assert L.dataset_from_name("/models/lgcvd/BAIR.pt") == "bair"
    assert L.dataset_from_name("lgcvd_city_ema.pt") == "cityscapes"
    for bad in ("model-100.pt", "bair_vs_city.pt"):
        with pytest.raises(LoadOptionError):
            L.dataset_from_name(bad)
