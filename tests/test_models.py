"""The CVK_VIDEO_MODEL bundle and the two tiny demo models."""
import pytest
import torch

from consistent_video_kit.models import tiny


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_tiny_models_are_small_labelled_and_distinct(tiny_animatediff, tiny_modelscope):
    a, m = tiny_animatediff, tiny_modelscope
    for model in (a, m):
        assert model.untrained and "untrained" in repr(model)
        assert 0.5e6 < n_params(model.unet) < 5e6
        assert not any((p == 0).all() for p in model.unet.parameters())  # every weight matters
        assert not model.unet.training
    # one latent space, two noise tables, two text encoders
    assert a.vae is m.vae and a.latent_format == m.latent_format
    assert a.latent_format.channels == 4 and a.latent_format.scaling_factor == pytest.approx(0.18215)
    assert not torch.allclose(a.alphas_cumprod, m.alphas_cumprod)
    assert a.text.model is not m.text.model
    assert type(a.unet).__name__ == "UNetMotionModel" and type(m.unet).__name__ == "UNet3DConditionModel"
    assert a.max_frames == 32 and m.max_frames is None


def test_tiny_models_are_rebuilt_identically(tiny_animatediff):
    again = tiny._seeded(2001, lambda: tiny._tiny_animatediff_unet(2001))
    ref = tiny_animatediff.unet.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in again.state_dict().items())
    # building does not disturb the global RNG
    torch.manual_seed(3)
    x = torch.rand(1)
    torch.manual_seed(3)
    tiny._seeded(5, lambda: torch.nn.Linear(2, 2))
    assert torch.equal(torch.rand(1), x)


def test_text_encoder(tiny_animatediff):
    tok = tiny_animatediff.text.tokenizer
    assert tok.bos_token_id == len(tok) - 2 and tok.eos_token_id == len(tok) - 1
    emb = tiny_animatediff.text.encode(["a cat", ""])
    assert emb.shape == (2, 77, 32) and emb.dtype == torch.float32
    assert not torch.allclose(emb[0], emb[1])
    cond, uncond = tiny_animatediff.encode_prompt_pair("a cat", "")
    assert torch.allclose(cond["text"], emb[:1], atol=1e-6) and torch.allclose(uncond["text"], emb[1:], atol=1e-6)


@pytest.mark.parametrize("name", ["tiny_animatediff", "tiny_modelscope"])
def test_denoiser_on_5d_latents(name, request):
    model = request.getfixturevalue(name)
    cond = model.encode_prompts(["a cat"] * 2)
    x = torch.randn(2, 4, 3, 8, 8) * 5
    with model.loaded():
        x0 = model.denoiser()(x, 4.0, cond)
        # frames are not independent: changing frame 0 changes the others' prediction (motion/temporal layers)
        x2 = x.clone()
        x2[:, :, 0] += 1
        x0b = model.denoiser()(x2, 4.0, cond)
    assert x0.shape == x.shape and torch.isfinite(x0).all()
    assert not torch.allclose(x0[:, :, 1:], x0b[:, :, 1:])


def test_vae_slicing_is_exact_and_round_trips_shapes(tiny_animatediff):
    vae = tiny_animatediff.vae
    lat = torch.randn(2, 4, 3, 8, 8)
    whole = vae.decode(lat, chunk=6)
    sliced = vae.decode(lat, chunk=1)
    assert whole.shape == (6, 64, 64, 3)
    assert torch.allclose(whole, sliced, atol=1e-5)
    enc = vae.encode(whole[:3], chunk=2)
    assert enc.shape == (1, 4, 3, 8, 8)
    assert torch.allclose(enc, vae.encode(whole[:3], chunk=3), atol=1e-5)


def test_default_grid_follows_model_scheduler(tiny_animatediff, tiny_modelscope):
    """AnimateDiff ends at σ = 0 (the official DDIM leaves set_alpha_to_one at True); the ModelScope-style
    model keeps its scheduler's ᾱ₀ (set_alpha_to_one False); either final level can be asked for."""
    s = tiny_animatediff.sigmas(25)
    assert len(s) == 26 and s[-1] == 0 and s[-2] > 0
    ms = tiny_modelscope.sigmas(25)
    assert ms[-1] == tiny_modelscope.denoiser().sigma_min > 0
    assert tiny_animatediff.sigmas(25, final="sigma_min")[-1] == tiny_animatediff.denoiser().sigma_min


def test_interpolated_timesteps_reach_the_network(tiny_modelscope):
    """Between two table entries the interpolated mode feeds a fractional timestep; nearest rounds it."""
    m = tiny_modelscope
    seen = []
    net = m.network

    def spy(z, t, cond):
        seen.append(t)
        return net(z, t, cond)

    d_interp = m.denoiser("interpolated")
    d_interp.network = spy
    d_near = m.denoiser("nearest")
    d_near.network = spy
    mid = float((d_interp.sigmas[400].log() * 0.5 + d_interp.sigmas[401].log() * 0.5).exp())
    x = torch.randn(1, 4, 2, 8, 8)
    cond = m.encode_prompts(["a"])
    with m.loaded():
        a = d_interp(x, mid, cond)
        b = d_near(x, mid, cond)
    assert seen[0].item() == pytest.approx(400.5) and seen[1].item() in (400, 401)
    assert not torch.allclose(a, b)
