"""Training the pack's models on one's own clips (LVDM's 3-D autoencoder and its short, pred and interp diffusion
models; LGC-VD's two-stage model) and evaluating them. Never imported by the nodes: ComfyUI does not need it, and its
extra dependencies (``accelerate``, ``av``, ``h5py``, ``tqdm``) are the ``[training]`` extra of ``pyproject.toml``,
not ``requirements.txt``.

Layout: :mod:`.draws` (per-sample random draws that do not depend on how many processes run), :mod:`.data` (clips
from frame folders and video files, the synthetic moving-shapes set), :mod:`.diffusion` (the LVDM diffusion losses:
temporal masks, conditional latent perturbation, L1), :mod:`.autoencoder` (the 3-D AE's losses and discriminator),
:mod:`.engine` (the loop: accelerate, mixed precision, accumulation, EMA, checkpoints and exact resume),
:mod:`.tasks` (the LVDM recipes' tasks and exports), :mod:`.lgcvd` (LGC-VD's two stages), :mod:`.eval` (PSNR, SSIM,
LPIPS, FVD/KVD, FID/IS), recipes in ``training/recipes/``. Run through ``scripts/train.py`` and
``scripts/evaluate.py``.
"""
