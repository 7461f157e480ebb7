"""Our σ-space DDIM against diffusers' DDIMScheduler loop on the tiny AnimateDiff.

The scheduler is built as the official AnimateDiff and I4VGen scripts build it: ``DDIMScheduler(**noise_scheduler_kwargs)``
from AnimateDiff's inference yaml (linear betas 0.00085–0.012, steps_offset 1, clip_sample false), which does
not set ``set_alpha_to_one``, so diffusers' default ``True`` applies and the last step lands on the clean
estimate (σ = 0). Same z_T, same grid (25 steps, leading), CFG 7.5 batched [uncond; cond]; for η = 1 the same
per-step noise is passed to diffusers as ``variance_noise``. Relative error ≤ 1e-5 on the final latent.
"""
import pytest
import torch

from consistent_video_kit.samplers.guidance import guidance
from consistent_video_kit.samplers.sampling import sample_ddim
from consistent_video_kit.samplers.vp import from_vp, to_vp

STEPS, FRAMES, SIZE, SCALE = 25, 4, 8, 7.5
# configs/inference/inference-v{1,2,3}.yaml, noise_scheduler_kwargs (guoyww/AnimateDiff; I4VGen copies them)
OFFICIAL_SCHEDULER_KWARGS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", steps_offset=1,
                                 clip_sample=False)


def diffusers_loop(model, z_T, cond, uncond, eta, noises):
    from diffusers import DDIMScheduler
    sched = DDIMScheduler(**OFFICIAL_SCHEDULER_KWARGS)
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
        cond, uncond = m.encode_prompt_pair("a cat surfing", "")
        ref = diffusers_loop(m, z_T, cond["text"], uncond["text"], eta, noises)

        sigmas = m.sigmas(STEPS)           # the model's defaults: leading, offset 1, final σ = 0
        assert len(sigmas) == STEPS + 1 and sigmas[-1] == 0
        guided = guidance(m.denoiser(), cond, uncond, SCALE, "cfg")
        x = sample_ddim(guided, from_vp(z_T, float(sigmas[0])), sigmas, eta,
                        torch.Generator().manual_seed(noise_seed) if eta > 0 else None)
        ours = to_vp(x, float(sigmas[-1]))
    assert torch.equal(ours, x)            # σ = 0: the output is the last clean estimate
    rel = ((ours - ref).norm() / ref.norm()).item()
    print(f"eta={eta}: relative error {rel:.2e}")
    assert rel <= 1e-5, rel
