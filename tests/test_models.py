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


def test_tiny_unet_is_diffusers_init_from_its_seed(tiny_modelscope):
    """The tiny ModelScope UNet is diffusers' UNet3DConditionModel(**TINY_UNET3D) as initialised right after
    torch.manual_seed(2002): every parameter that init leaves non-zero is exactly that; the ones it leaves at
    exactly zero (zero-initialised output projections) hold small random values instead (|w| ≲ 0.1)."""
    from diffusers import UNet3DConditionModel
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2002)
        ref = UNet3DConditionModel(**tiny.TINY_UNET3D).state_dict()
    got = dict(tiny_modelscope.unet.named_parameters())
    assert set(got) <= set(ref)
    zero = [k for k in got if not ref[k].any()]
    assert zero and len(zero) < len(got) / 2
    for k, v in got.items():
        if k in zero:
            assert v.all() and 0 < v.abs().max() < 0.1, k
        else:
            assert torch.equal(v, ref[k]), k


def test_tiny_models_depend_on_their_seed_alone(tiny_animatediff):
    """Rebuilding under a different global RNG state gives the same weights, and building leaves the global
    RNG where it was (a stated invariant: the demo models are the same in every process and workflow)."""
    torch.manual_seed(12345)
    torch.rand(1000)
    again = tiny._seeded(2001, lambda: tiny._tiny_animatediff_unet(2001))
    ref = tiny_animatediff.unet.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in again.state_dict().items())
    # building does not disturb the global RNG
    torch.manual_seed(3)
    x = torch.rand(1)
    torch.manual_seed(3)
    tiny._seeded(5, lambda: torch.nn.Linear(2, 2))
    assert torch.equal(torch.rand(1), x)


def char_ids(prompt: str, length: int = 77) -> list[int]:
    """Token ids of the character-level CLIP tokenizer, written out from its documented vocabulary: the 256
    byte characters (printable ASCII first, '!' = 0), then the same with '</w>' (word ends), then
    <|startoftext|> = 512 and <|endoftext|> = 513, which also pads. Words split on spaces."""
    ids = [512]
    for word in prompt.split():
        ids += [ord(c) - 33 for c in word[:-1]] + [256 + ord(word[-1]) - 33]
    ids.append(513)
    return ids + [513] * (length - len(ids))


def test_text_encoder(tiny_animatediff):
    """Prompts are padded to 77 tokens and run through the CLIP text model without an attention mask, as
    diffusers' SD pipelines do: the reference calls transformers' CLIPTextModel directly on ids written out
    here."""
    tok = tiny_animatediff.text.tokenizer
    assert tok.bos_token_id == len(tok) - 2 == 512 and tok.eos_token_id == len(tok) - 1 == 513
    assert char_ids("a cat")[:7] == [512, 320, 66, 64, 339, 513, 513]
    emb = tiny_animatediff.text.encode(["a cat", ""])
    assert emb.shape == (2, 77, 32) and emb.dtype == torch.float32
    with torch.no_grad():
        ref = tiny_animatediff.text.model(input_ids=torch.tensor([char_ids("a cat"), char_ids("")])).last_hidden_state
    torch.testing.assert_close(emb, ref, rtol=0, atol=1e-5)
    assert not torch.allclose(emb[0], emb[1])
    cond, uncond = tiny_animatediff.encode_prompt_pair("a cat", "")
    torch.testing.assert_close(cond["text"], ref[:1], rtol=0, atol=1e-5)
    torch.testing.assert_close(uncond["text"], ref[1:], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny_animatediff", "tiny_modelscope"])
def test_denoiser_on_5d_latents(name, request):
    model = request.getfixturevalue(name)
    cond = {"text": model.text.encode(["a cat"] * 2)}
    x = torch.randn(2, 4, 3, 8, 8) * 5
    with model.loaded():
        x0 = model.denoiser()(x, 4.0, cond)
        # frames are not independent: changing frame 0 changes the others' prediction (motion/temporal layers)
        x2 = x.clone()
        x2[:, :, 0] += 1
        x0b = model.denoiser()(x2, 4.0, cond)
    assert x0.shape == x.shape and torch.isfinite(x0).all()
    assert not torch.allclose(x0[:, :, 1:], x0b[:, :, 1:])


def test_vae_is_diffusers_autoencoder_frame_by_frame_in_any_slices(tiny_animatediff):
    """decode: latents (B, C, F, h, w) / scaling factor through diffusers' AutoencoderKL.decode frame by frame,
    mapped from [−1, 1] to [0, 1], as IMAGE frames (B·F, H, W, 3) batch-major; encode: images mapped to [−1, 1],
    the posterior mean times the scaling factor, as (1, C, F, h, w). Any slice size gives that result."""
    vae = tiny_animatediff.vae
    ae = vae.vae
    lat = torch.randn(2, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = torch.stack([torch.stack([ae.decode(lat[b, :, f][None] / 0.18215).sample[0] for f in range(3)])
                           for b in range(2)])                           # (B, F, 3, H, W)
    ref = (ref / 2 + 0.5).clamp(0, 1).permute(0, 1, 3, 4, 2).reshape(6, 64, 64, 3)
    for chunk in (6, 4, 1):
        torch.testing.assert_close(vae.decode(lat, chunk=chunk), ref, rtol=0, atol=1e-5)
    img = ref[:3]
    with torch.no_grad():
        mean = torch.stack([ae.encode(img[f].permute(2, 0, 1)[None] * 2 - 1).latent_dist.mean[0] for f in range(3)])
    want = (mean * 0.18215).permute(1, 0, 2, 3)[None]                   # (1, C, F, h, w)
    for chunk in (3, 2):
        torch.testing.assert_close(vae.encode(img, chunk=chunk), want, rtol=0, atol=1e-5)


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
    cond = {"text": m.text.encode(["a"])}
    with m.loaded():
        a = d_interp(x, mid, cond)
        b = d_near(x, mid, cond)
    assert seen[0].item() == pytest.approx(400.5) and seen[1].item() in (400, 401)
    assert not torch.allclose(a, b)


def test_no_empty_float32_notice_from_diffusers():
    """diffusers logs "modules … should be kept in float32: []" on from_unet2d / .to(dtype): an empty list,
    silenced; its other warnings are not."""
    import logging
    from diffusers import UNetMotionModel
    from cvk_testkit import tiny_files as tf
    logger = logging.getLogger("diffusers.models.modeling_utils")
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        unet, _, _ = tf.tiny_sd_models()
        UNetMotionModel.from_unet2d(unet, tf.tiny_motion_adapter(False))
        logger.warning("another diffusers warning")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert seen == ["another diffusers warning"]
