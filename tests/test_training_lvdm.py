"""LVDM training end to end on the synthetic moving-shapes set with the tiny networks: the AE, then the short, pred and
interp models on its latents, each for a few steps through ``training.run.run_recipe`` (what scripts/train.py runs);
their exports load in the pack's Load LVDM Model with preset 'from the file' and sample. The real-host workflow on
the same files is in test_comfyui_host.py. CI runs the trainers in a stage of their own (.ci/run) and points
``CVK_TRAINED_DIR`` at the result; without it this module trains them itself (about a minute)."""
import json
import os

import pytest
import torch

from cvk_testkit import load_pack
from cvk_testkit.tiny_training import DISC_START, KINDS, SIZE, STEPS

load_pack()


@pytest.fixture(scope="module")
def trained(tiny_trained):
    return tiny_trained


def test_each_trainer_writes_its_model_and_its_state(trained):
    for kind in ("ae", *KINDS):
        run = os.path.join(trained["root"], kind)
        assert os.path.isfile(os.path.join(run, "train_state.pt")), kind
        assert os.path.isfile(trained[kind]), kind
        st = torch.load(os.path.join(run, "train_state.pt"), map_location="cpu", weights_only=False)
        assert st["step"] == STEPS and st["config"]["recipe"] == kind


def test_trained_models_load_from_the_file_and_sample(trained):
    """Load LVDM Model's loader with preset 'from the file': the network configs and the latent normalisation come
    from the file's metadata; EMA and raw weights both load; a 2-step DDIM sample decodes to finite frames."""
    from consistent_video_kit.models.lvdm.model import FROM_FILE, load_lvdm
    from consistent_video_kit.samplers.sampling import sample
    from consistent_video_kit.training.tasks import META_SCALE, META_SHIFT, read_metadata
    for kind in KINDS:
        meta = read_metadata(trained[kind])
        model = load_lvdm(trained[kind], preset=FROM_FILE, precision="fp32")
        assert model.family == f"lvdm-{kind}"
        assert model.vae.scaling_factor == pytest.approx(float(meta[META_SCALE]))
        assert model.vae.shift == pytest.approx(float(meta[META_SHIFT]))
        raw = load_lvdm(trained[kind], preset=FROM_FILE, weights="raw", precision="fp32")
        assert any(not torch.equal(a, b) for a, b in zip(model.unet.parameters(), raw.unet.parameters()))
        shape = model.latent_shape(16, SIZE, SIZE)
        z = sample(model.denoiser(), shape, model.sigmas(2), {}, None, 1.0, "cfg", 0.0, 0, torch.device("cpu"))
        frames = model.vae.decode(z)
        assert frames.shape == (16, SIZE, SIZE, 3) and torch.isfinite(frames).all()


def test_the_normalisation_is_computed_on_the_data(trained):
    """shift = −mean(z_raw), scale = 1/std(z_raw + shift) of the trained AE's posterior samples: the normalised
    latents of the same clips have mean 0 and std 1."""
    from consistent_video_kit.training.draws import StepDraws
    from consistent_video_kit.training.data import ClipDataset
    from consistent_video_kit.training.autoencoder import sample_posterior
    from consistent_video_kit.training.tasks import META_SCALE, META_SHIFT, load_trained_ae, read_metadata
    meta = read_metadata(trained["short"])
    scale, shift = float(meta[META_SCALE]), float(meta[META_SHIFT])
    ae = load_trained_ae(trained["ae"])
    ds = ClipDataset(trained["data"], 16, SIZE)
    with torch.no_grad():
        z = torch.cat([sample_posterior(*ae.encode(ds[i][None]), StepDraws(0, 0, [i]), "normalisation")
                       for i in range(len(ds))])
    zn = scale * (z + shift)
    assert float(zn.mean()) == pytest.approx(0.0, abs=1e-4) and float(zn.std()) == pytest.approx(1.0, rel=1e-4)


def test_a_diffusion_recipe_without_an_autoencoder_is_refused(tmp_path, trained):
    from consistent_video_kit.training.run import run_recipe
    with pytest.raises(ValueError, match="give the trained AE with --ae"):
        run_recipe("short", data=trained["data"], out=str(tmp_path / "x"), network="tiny", steps=1, batch=1,
                   accumulate=1, size=64, log=lambda s: None)


def test_the_tiny_ae_run_trains_before_and_after_its_discriminator_starts(trained):
    """The AE's losses.jsonl: no adaptive weight and no discriminator loss before DISC_START, both after."""
    from consistent_video_kit.training.engine import LOSSES_FILE
    with open(os.path.join(trained["root"], "ae", LOSSES_FILE)) as f:
        steps = [json.loads(line) for line in f]
    assert [s["step"] for s in steps] == list(range(1, STEPS + 1))
    before, after = steps[:DISC_START], steps[DISC_START:]
    assert all(s["d_weight"] == 0 and "disc_loss" not in s for s in before)
    assert all(s["d_weight"] > 0 and s["disc_loss"] > 0 and s["disc_factor"] == 1 for s in after)
