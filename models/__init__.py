"""Network code and adapters that turn a loaded network into a σ-space denoiser."""
