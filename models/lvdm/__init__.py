"""LVDM's own networks (arXiv 2211.13221; YingqingHe/LVDM), one module per network, built from the official
configs' ``params`` names so a tiny variant is the same class with smaller numbers:

- :mod:`.autoencoder3d`: the TATS-style 3-D video autoencoder (×4 time, ×8 space, 4 latent channels);
- :mod:`.unet3d`: the ADM-style 3-D UNet of the short unconditional models and its pred/interp variant;
- :mod:`.t2v_unet`: LVDM's text-to-video UNet (``t2v.ckpt``, spatial + temporal transformers per site);
- :mod:`.vc2_unet`: VideoCrafter2's text-to-video UNet (the LVDM family's successor; VideoGuide's guide model).

Bundles: :mod:`.model` (the 3-D-AE family), :mod:`.t2v` (LVDM T2V and VideoCrafter2). The shipped configs are in
``models/configs/lvdm/``.
"""
