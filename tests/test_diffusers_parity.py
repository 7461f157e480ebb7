"""Our σ-space DDIM against diffusers' DDIMScheduler loop on the tiny AnimateDiff.

Same z_T, same grid (25 steps, leading, steps_offset 1), same final level (ᾱ₀,
set_alpha_to_one=False), CFG 7.5 batched [uncond; cond]; for η = 1 the same per-step noise is passed
to diffusers as ``variance_noise``. Relative error ≤ 1e-5 on the final latent.
"""
import pytest
import torch

from consistent_video_kit.samplers.guidance import guidance
from consistent_video_kit.samplers.sampling import sample_ddim
from consistent_video_kit.samplers.vp import from_vp, to_vp

STEPS, FRAMES, SIZE, SCALE = 25, 4, 8, 7.5


def diffusers_loop(model, z_T, cond, uncond, eta, noises):
    from diffusers import DDIMScheduler
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", steps_offset=1,
                          clip_sample=False, set_alpha_to_one=False)
    sched.set_timesteps(STEPS)
    emb = torch.cat([uncond, cond]).repeat_interleave(FRAMES, dim=0)
    latents = z_T.clone()
    for i, t in enumerate(sched.timesteps):
        out = model.unet(torch.cat([latents] * 2), t, encoder_hidden_states=emb).sample
        e_u, e_c = out.chunk(2)
        e = e_u + SCALE * (e_c - e_u)
        kw = dict(eta=eta, variance_noise=noises[i]) if eta > 0 else {}
        latents = sched.step(e, t, latents, **kw).prev_sample
    return latents


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_matches_diffusers(tiny_animatediff, eta):
    m = tiny_animatediff
    g = torch.Generator().manual_seed(7)
    z_T = torch.randn(1, 4, FRAMES, SIZE, SIZE, generator=g)
    noise_seed = 1234
    ng = torch.Generator().manual_seed(noise_seed)
    noises = [torch.randn(z_T.shape, generator=ng) for _ in range(STEPS)]
    with torch.inference_mode():
        cond = m.encode_prompts(["a cat surfing"])
        uncond = m.encode_prompts([""])
        ref = diffusers_loop(m, z_T, cond["text"], uncond["text"], eta, noises)

        sigmas = m.sigmas(STEPS)           # leading, offset 1, final ᾱ₀: the model's defaults
        assert len(sigmas) == STEPS + 1 and sigmas[-1] > 0
        guided = guidance(m.denoiser(), cond, uncond, SCALE, "cfg")
        x = sample_ddim(guided, from_vp(z_T, float(sigmas[0])), sigmas, eta,
                        torch.Generator().manual_seed(noise_seed) if eta > 0 else None)
        ours = to_vp(x, float(sigmas[-1]))
    rel = ((ours - ref).norm() / ref.norm()).item()
    print(f"eta={eta}: relative error {rel:.2e}")
    assert rel <= 1e-5, rel
