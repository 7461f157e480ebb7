"""LVDM text-to-video and VideoCrafter2 as CVK_VIDEO_MODELs: the released layouts (meta device), tiny files written in
them and read back through Load Video Model, fps, and VideoCrafter2 as VideoGuide's guide (official timesteps,
inputs and fps under match_by="timestep", its own table and scale_arr under "sigma")."""
import json
import math
import os

import pytest
import torch

from cvk_testkit import ROOT
from consistent_video_kit.models import convert, tiny
from consistent_video_kit.models.checkpoint import CheckpointError, match_state_dict
from consistent_video_kit.models.lvdm import t2v
from consistent_video_kit.models.openclip_text import match_openclip_text
from consistent_video_kit.nodes.common import CVKInputError
from consistent_video_kit.nodes.video import CVK_TextToVideo, CVK_VideoModelLoader
from consistent_video_kit.nodes.videoguide import CVK_VideoGuideSampler
from consistent_video_kit.samplers.videoguide import default_timesteps

MANIFESTS = os.path.join(os.path.dirname(ROOT), "shared", "fixtures", "checkpoints")
needs_manifests = pytest.mark.skipif(not os.path.isdir(MANIFESTS) and not os.environ.get("CI"),
                                     reason=f"the key manifests are not at {MANIFESTS} (the team's shared/ folder beside "
                                            f"the checkout); skipped")
T2V_ARGS = dict(prompt="a cat", negative_prompt="", seed=0, steps=2, guidance="cfg", guidance_scale=7.5,
                sampler="ddim", eta=0.0, frames=4, width=64, height=64)
VG = dict(prompt="a cat", negative_prompt="", seed=3, steps=10, guided_steps=3, guide_steps=4, guide_grid=24,
          guide_weight=0.2, guidance="cfg", guidance_scale=7.5, guide_guidance="cfg++", guide_guidance_scale=0.8,
          filter="butterworth", filter_n=4, filter_d_s=0.125, filter_d_t=0.125, match_by="timestep", frames=4,
          width=64, height=64, grid="videoguide")


@pytest.fixture(scope="module")
def tiny_vc2():
    return tiny.tiny_model("tiny-videocrafter2")


@pytest.fixture(scope="module")
def tiny_t2v():
    return tiny.tiny_model("tiny-lvdm-t2v")


def manifest(name):
    with open(os.path.join(MANIFESTS, name + ".json")) as f:
        return json.load(f)["tensors"]


def meta_sd(shapes):
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


# ---------------------------------------------------------------- released layouts (meta device)

@needs_manifests
@pytest.mark.parametrize("name, family", [("lvdm_t2v", t2v.T2V), ("videocrafter2_base_512_v2", t2v.VC2)])
def test_released_layouts_load_strictly(name, family):
    from diffusers import AutoencoderKL
    from consistent_video_kit.models.loaders import CONFIG_ROOT, _strip_text_model, build_text_encoder, read_json
    from consistent_video_kit.models.openclip_text import build_openclip_text_model
    shapes = {k: tuple(v) for k, v in manifest(name).items()}
    assert t2v.text_family(shapes) == family
    unet_sd, vae_sd, text_sd = t2v._split(meta_sd(shapes), family, name)
    with torch.device("meta"):
        unet = t2v.build_unet(family)
        vae_cfg = read_json(os.path.join(CONFIG_ROOT, "sd15", "vae", "config.json"))
        vae = AutoencoderKL.from_config(vae_cfg)
        if family == t2v.T2V:
            text = build_text_encoder(os.path.join(CONFIG_ROOT, "sd15", "text_encoder"))
        else:
            text = build_openclip_text_model(**{k: v for k, v in read_json(
                os.path.join(CONFIG_ROOT, "lvdm", "vc2_text.json")).items() if not k.startswith("_")})
    assert set(match_state_dict(unet, unet_sd, "UNet")) == set(unet.state_dict())
    assert set(match_state_dict(vae, vae_sd, "VAE", convert.invert(convert.vae_key_map(vae_cfg), vae.state_dict()))) \
        == set(vae.state_dict())
    if family == t2v.T2V:
        got = match_state_dict(text, text_sd, "text", _strip_text_model, (r"embeddings\.position_ids$",))
    else:
        got = match_openclip_text(text, text_sd, "text")
    assert set(got) == set(text.state_dict()) - {"text_model.embeddings.position_ids", "embeddings.position_ids"}
    if family == t2v.VC2:
        assert shapes["scale_arr"] == (1400,)


def test_scale_arr_is_videocrafter2s():
    s = t2v.vc2_scale_arr()
    assert s.shape == (1400,) and s[0] == 1.0 and abs(s[399] - 0.7) < 1e-7 and (s[400:] == s[400]).all()
    assert abs(float(s[200]) - (1.0 - 0.3 * 200 / 399)) < 1e-7          # linspace(1, 0.7, 400)


# ---------------------------------------------------------------- tiny files in the released layouts

def tiny_config_root(tmp_path, family):
    """Configs for the tiny models in the layout the loader reads (UNet, SD VAE, text encoder, tokenizer)."""
    root = tmp_path / "configs"
    (root / "lvdm").mkdir(parents=True)
    (root / "sd15" / "vae").mkdir(parents=True)
    (root / "sd15" / "text_encoder").mkdir(parents=True)
    unet_cfg = tiny.TINY_T2V_UNET if family == t2v.T2V else tiny.TINY_VC2_UNET
    (root / "lvdm" / t2v.UNET_CONFIGS[family]).write_text(json.dumps(unet_cfg))
    (root / "sd15" / "vae" / "config.json").write_text(json.dumps(dict(tiny.TINY_VAE)))
    model = tiny.tiny_model("tiny-lvdm-t2v" if family == t2v.T2V else "tiny-videocrafter2")
    if family == t2v.T2V:
        model.text.model.config.to_json_file(str(root / "sd15" / "text_encoder" / "config.json"))
    else:
        from consistent_video_kit.models.openclip_text import TINY_OPENCLIP_TEXT
        (root / "lvdm" / "vc2_text.json").write_text(json.dumps(dict(TINY_OPENCLIP_TEXT,
                                                                     vocab_size=len(model.text.tokenizer))))
    model.text.tokenizer.save_pretrained(str(root / "sd15" / "tokenizer"))
    return str(root), model


def write_ldm_file(path, model, family, wrapped=True):
    """The tiny model saved as the official code saves it: LDM names for the VAE, the CLIP / OpenCLIP names."""
    sd = {t2v.UNET_PREFIX + k: v for k, v in model.unet.state_dict().items()}
    sd.update(convert.to_original_state_dict(model.vae.vae.state_dict(), convert.vae_key_map(dict(tiny.TINY_VAE)),
                                             t2v.VAE_PREFIX, reshape_attention_to_conv=True))
    if family == t2v.T2V:
        sd.update({t2v.T2V_TEXT_PREFIX + "text_model." + k: v for k, v in model.text.model.state_dict().items()})
        sd[t2v.T2V_TEXT_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(77)[None]
    else:
        m = model.text.model.state_dict()
        oc = {"token_embedding.weight": m["embeddings.token_embedding.weight"],
              "positional_embedding": m["embeddings.position_embedding.weight"],
              "ln_final.weight": m["final_layer_norm.weight"], "ln_final.bias": m["final_layer_norm.bias"],
              "text_projection": torch.zeros(32, 32), "logit_scale": torch.zeros(())}
        for i in range(len(model.text.model.encoder.layers)):
            p = f"encoder.layers.{i}."
            r = f"transformer.resblocks.{i}."
            oc[r + "attn.in_proj_weight"] = torch.cat([m[p + f"self_attn.{n}_proj.weight"] for n in "qkv"])
            oc[r + "attn.in_proj_bias"] = torch.cat([m[p + f"self_attn.{n}_proj.bias"] for n in "qkv"])
            for a, b in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("attn.out_proj", "self_attn.out_proj"),
                         ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
                oc[r + a + ".weight"], oc[r + a + ".bias"] = m[p + b + ".weight"], m[p + b + ".bias"]
        sd.update({t2v.VC2_TEXT_PREFIX + k: v for k, v in oc.items()})
        sd["scale_arr"] = t2v.vc2_scale_arr().float()
    sd["alphas_cumprod"] = model.alphas_cumprod.float()
    sd["betas"] = torch.zeros(1000)
    torch.save({"state_dict": sd} if wrapped else sd, path)


@pytest.mark.parametrize("family, wrapped", [(t2v.T2V, True), (t2v.VC2, True), (t2v.VC2, False)])
def test_a_tiny_file_in_the_released_layout_loads_back_exactly(tmp_path, family, wrapped):
    root, model = tiny_config_root(tmp_path, family)
    path = tmp_path / "model.ckpt"
    write_ldm_file(path, model, family, wrapped)
    loaded = t2v.load_text_lvdm(str(path), family, config_root=root, device=torch.device("cpu"))
    for a, b in ((loaded.unet, model.unet), (loaded.vae.vae, model.vae.vae), (loaded.text.model, model.text.model)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sb if not k.endswith("position_ids")), type(a).__name__
    z = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    c, _ = loaded.encode_prompt_pair("a cat", "")
    c2, _ = model.encode_prompt_pair("a cat", "")
    assert torch.equal(c["text"], c2["text"])
    with torch.no_grad():
        assert torch.equal(loaded.network(z, torch.tensor(500), c), model.network(z, torch.tensor(500), c2))
    if family == t2v.VC2:
        assert torch.equal(loaded.signal_scale, model.signal_scale) and c["fps"] == 28


def test_a_stray_key_is_named(tmp_path):
    root, model = tiny_config_root(tmp_path, t2v.VC2)
    path = tmp_path / "model.ckpt"
    write_ldm_file(path, model, t2v.VC2)
    sd = torch.load(path, weights_only=True)
    sd["state_dict"]["model_ema.decay"] = torch.tensor(0.99)
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="unexpected keys outside the UNet, VAE and text encoder: model_ema.decay"):
        t2v.load_text_lvdm(str(path), t2v.VC2, config_root=root, device=torch.device("cpu"))


# ---------------------------------------------------------------- fps and text to video

def test_fps_reaches_videocrafter2_and_only_it(tiny_vc2, tiny_t2v, monkeypatch):
    seen = []
    net = tiny_vc2.unet_part.module.forward
    monkeypatch.setattr(tiny_vc2.unet_part.module, "forward", lambda *a, **k: seen.append(k["fps"]) or net(*a, **k))
    (a,) = CVK_TextToVideo().generate(tiny_vc2, **T2V_ARGS)
    (b,) = CVK_TextToVideo().generate(tiny_vc2, **T2V_ARGS, fps=8)
    assert [f.tolist() for f in seen] == [[28, 28]] * 2 + [[8, 8]] * 2       # cond and uncond in one call
    assert not torch.equal(a["samples"], b["samples"])
    with pytest.raises(CVKInputError, match="CVK_TextToVideo: input 'fps' got 8; expected 0 for tiny-lvdm-t2v"):
        CVK_TextToVideo().generate(tiny_t2v, **T2V_ARGS, fps=8)
    (c,) = CVK_TextToVideo().generate(tiny_t2v, **T2V_ARGS)
    assert c["samples"].shape == (1, 4, 4, 8, 8)


def test_the_demo_choices_load():
    names = [n for n in CVK_VideoModelLoader.INPUT_TYPES()["required"]["model_name"][0] if "untrained" in n]
    assert "tiny-lvdm-t2v (untrained demo)" in names and "tiny-videocrafter2 (untrained demo)" in names
    (m,) = CVK_VideoModelLoader().load("tiny-videocrafter2 (untrained demo)")
    assert m.family == t2v.VC2 and m.takes_fps


# ---------------------------------------------------------------- VideoCrafter2 as VideoGuide's guide

def spy(model, monkeypatch):
    calls = []
    net = model.network

    def record(z, t, cond):
        calls.append((z.detach().clone(), t.clone(), cond.get("fps")))
        return net(z, t, cond)
    monkeypatch.setitem(model.__dict__, "network", record)
    return calls


def test_vc2_guide_gets_the_official_timesteps_inputs_and_fps(tiny_animatediff, tiny_vc2, monkeypatch):
    """match_by timestep, as VideoGuide's code: VC2 gets the sampler's integer sub-grid timesteps, fps 8, and the
    sampler's VP latent (built with AnimateDiff's ᾱ, not corrected by VC2's table or scale_arr: the same inputs as
    for a guide without scale_arr)."""
    s_calls, g_calls = spy(tiny_animatediff, monkeypatch), spy(tiny_vc2, monkeypatch)
    CVK_VideoGuideSampler().sample(tiny_animatediff, guide=tiny_vc2, **VG)
    grid = default_timesteps(10)
    want = [int(v) for t in grid[:3] for v in torch.linspace(0, int(t), 25, dtype=torch.float64).round()[1:].flip(0)[:4]]
    assert [int(t) for _, t, _ in g_calls] == want
    assert {f for *_, f in g_calls} == {8}
    monkeypatch.setattr(tiny_vc2, "signal_scale", None)
    first = g_calls[0][0]
    g_calls.clear()
    CVK_VideoGuideSampler().sample(tiny_animatediff, guide=tiny_vc2, **VG)
    assert torch.equal(g_calls[0][0], first)


def test_vc2_guide_by_sigma_uses_its_table_and_scale(tiny_animatediff, tiny_vc2):
    """match_by sigma: the guide denoiser works on VC2's own table σ_t = √(1−ᾱ_t)/(√ᾱ_t·s_t) and feeds the network
    z = a_t·x with a_t = √ᾱ_t·s_t; match_by timestep: the sampler's table, z = x/√(1+σ²), no scale."""
    from consistent_video_kit.samplers.videoguide import guide_denoiser
    seen = []

    def net(z, t, cond):
        seen.append((z, int(t)))
        return torch.zeros_like(z)
    s_ac, g_ac, s = tiny_animatediff.alphas_cumprod, tiny_vc2.alphas_cumprod, tiny_vc2.signal_scale[:1000]
    x = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    by_sigma = guide_denoiser("sigma", net, g_ac, "epsilon", s_ac, tiny_vc2.signal_scale)
    assert torch.allclose(by_sigma.sigmas, ((1 - g_ac) / g_ac).sqrt() / s, rtol=1e-12)
    for t in (150, 700):
        by_sigma(x, float(by_sigma.sigmas[t]), {})
        assert seen[-1][1] == t and torch.allclose(seen[-1][0], x * math.sqrt(g_ac[t]) * float(s[t]), rtol=1e-5)
    by_t = guide_denoiser("timestep", net, g_ac, "epsilon", s_ac, tiny_vc2.signal_scale)
    sigma = math.sqrt((1 - s_ac[150]) / s_ac[150])
    by_t(x, sigma, {})
    assert seen[-1][1] == 150 and torch.allclose(seen[-1][0], x / math.sqrt(1 + sigma ** 2), rtol=1e-6)
