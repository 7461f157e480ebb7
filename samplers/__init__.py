"""The algorithms, as pure functions over σ-space denoisers: no ComfyUI, no diffusers imports."""
