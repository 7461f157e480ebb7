"""The algorithms, as pure functions over σ-space denoisers: no ComfyUI, no diffusers imports.

The denoiser contract
---------------------
A **denoiser** is a callable ``denoise(x, sigma, cond, timestep=None) -> x0``:

- ``x`` ``(B, C, F, h, w)``: a noisy latent in σ-space, ``x = x0 + σ·ε``; the result has its shape and dtype.
- ``sigma``: a Python float (one level for everything: the fast path every plain sampler uses), or a tensor
  of one level per sample ``(B,)``, or a tensor broadcastable to ``x`` such as ``(B, 1, F, 1, 1)`` — one level
  per frame (LVDM's long-video extension pastes context frames perturbed to a level s beside frames at the
  current level). Each frame's σ drives its own VP scaling ``z = x/sqrt(1 + σ²)`` and its own conversion of
  the network output to x0.
- ``timestep``: what the network is told — one per sample (``(B,)`` or a scalar), always. Left out, it is
  the timestep of σ on the model's own table; with σ that varies within a sample the caller must pass it
  (the choice of level is the method's, not the wrapper's), or the denoiser refuses.
- ``cond``: the model's conditioning, a tensor or a dict of tensors; model-specific extras (such as LVDM's
  noise-level label) travel in it, and a network that cannot take an entry refuses it with a clear error.

A **guided model** (:mod:`.guidance`) is ``guided(x, sigma, **extra) -> Guided(x0, eps)``: CFG or CFG++
over a denoiser, its cond and uncond halves batched into one call; ``extra`` (e.g. ``timestep``) is passed
on. Samplers (:mod:`.sampling`) are short loops over a guided model on a descending σ grid.

Cost is counted in **NFE = network forward calls**: one call of the network on one batch. CFG's cond and
uncond halves batched together count once; a call split into chunks counts once. Tests and benchmarks
state the batch each call carries.
"""
