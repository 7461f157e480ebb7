"""Evaluation metrics of the LVDM and LGC-VD papers (issue 22), as their official evaluation code computes them:
PSNR / SSIM / LPIPS with best-of-N over stochastic samples (LGC-VD ``eva.py``, the MCVD protocol), FVD and KVD on I3D
features (LVDM ``scripts/eval_cal_fvd_kvd.py``), FID and IS on the FID Inception. Never imported by the nodes.

:mod:`.metrics` (the formulas), :mod:`.i3d` and :mod:`.inception` (the feature networks, loading the user's weight
files strictly; nothing is downloaded), :mod:`.weights` (which file each metric needs, the clear refusal),
:mod:`.evaluate` (folders of videos → a table and JSON; run through ``scripts/evaluate.py``). LPIPS is
:class:`..autoencoder.LPIPS`.
"""
