"""The LGC-VD nodes: what each hands the sampler (windows, NFE, progress), frames returned as given, sizes. The
sampler itself is tested in test_lgcvd_sampler.py, the networks and loading in test_lgcvd_model.py."""
from __future__ import annotations

import pytest
import torch

from consistent_video_kit import host
from consistent_video_kit.models.tiny import tiny_lgcvd
from consistent_video_kit.nodes.common import CVKInputError
from consistent_video_kit.nodes.lgcvd import (CVK_LGCVDGenerate, CVK_LGCVDInfill, CVK_LGCVDInterpolate,
                                              CVK_LGCVDLoader, CVK_LGCVDPredict)


@pytest.fixture(scope="module")
def model(pack):
    return tiny_lgcvd()


@pytest.fixture
def counted(model, monkeypatch):
    """Network and encoder calls of the tiny model, and the progress bar's total and ticks."""
    calls = {"network": 0, "encode": 0, "total": [], "ticks": 0}
    net, enc = model.network, model.encode

    def network(x, t, cond):
        calls["network"] += 1
        return net(x, t, cond)

    def encode(clip):
        calls["encode"] += 1
        return enc(clip)
    monkeypatch.setitem(vars(model), "network", network)     # the instance dict: undone without a trace
    monkeypatch.setitem(vars(model), "encode", encode)

    class Bar:
        def __init__(self, total, desc=""):
            calls["total"].append(total)

        def update(self, n=1):
            calls["ticks"] += n

        def close(self):
            pass
    monkeypatch.setattr(host, "Progress", Bar)
    return calls


def pictures(n, seed=0, size=32):
    return torch.rand(n, size, size, 3, generator=torch.Generator().manual_seed(seed))


def test_loader_gives_the_demo(model):
    (m,) = CVK_LGCVDLoader().load("tiny-lgcvd (untrained demo)", "auto (from the file name)", "ema", "auto")
    assert m is model and m.size == 32 and m.untrained


def test_prediction_of_one_picture_is_30_frames_in_5_windows(model, counted):
    img = pictures(1)
    img[0, 0, 0, 0] = 1e-8      # (2x − 1 + 1)/2 is 0 in float32 here: the picture must come back as given
    (out,) = CVK_LGCVDPredict().predict(model, img, 29, 3, "ddpm", 4)
    assert out.shape == (30, 32, 32, 3) and torch.equal(out[:1], img)       # the picture, bit for bit
    assert counted["network"] == 3 * 5 and counted["encode"] == 5           # NFE = steps × windows
    assert counted["total"] == [15] and counted["ticks"] == 15
    (again,) = CVK_LGCVDPredict().predict(model, img, 29, 3, "ddpm", 4)
    (other,) = CVK_LGCVDPredict().predict(model, img, 29, 3, "ddpm", 5)
    assert torch.equal(out, again) and not torch.equal(out, other)


def test_prediction_keeps_every_given_frame_and_continues_from_the_last_two(model, counted):
    clip = pictures(5, seed=1)
    (out,) = CVK_LGCVDPredict().predict(model, clip, 6, 2, "ddim", 0)
    assert out.shape == (11, 32, 32, 3) and torch.equal(out[:5], clip)
    assert counted["network"] == 2 * 1 and counted["total"] == [2]   # frames 3..10: one window, the last two given
    (changed,) = CVK_LGCVDPredict().predict(model, torch.cat([pictures(3, seed=9), clip[3:]]), 6, 2, "ddim", 0)
    assert torch.allclose(changed[5:], out[5:], atol=1e-6)   # only the last two given frames are the local context


def test_interpolation_returns_the_two_pictures_at_the_ends(model, counted):
    a, b = pictures(1, 2), pictures(1, 3)
    (out,) = CVK_LGCVDInterpolate().interpolate(model, a, b, 4, "ddpm", 0)
    assert out.shape == (8, 32, 32, 3) and torch.equal(out[0], a[0]) and torch.equal(out[7], b[0])
    assert counted["network"] == 4 and counted["encode"] == 1


def test_generation_and_infill_keep_the_known_frames(model, counted):
    (video,) = CVK_LGCVDGenerate().generate(model, 14, 2, "ddpm", 0)
    assert video.shape == (14, 32, 32, 3) and counted["network"] == 2 * 2
    counted["network"] = 0
    (filled,) = CVK_LGCVDInfill().infill(model, video, "0-1, 7, 13", 5, "ddpm", 1, 2, 2)
    assert filled.shape == video.shape
    assert torch.equal(filled[[0, 1, 7, 13]], video[[0, 1, 7, 13]])
    assert not torch.allclose(filled[2:7], video[2:7])
    # RePaint jumps: windows × (steps + (r − 1)·L·|range(0, steps − L, L)|) = 2 × (5 + 1·2·2) = 18
    assert counted["network"] == 18 and counted["total"][-1] == 18


@pytest.mark.parametrize("call, field, words", [
    (lambda m: CVK_LGCVDPredict().predict(m, pictures(1, size=64), 6, 2, "ddpm", 0), "images",
     "expected 32×32 pictures, tiny-lgcvd's native size"),
    (lambda m: CVK_LGCVDInterpolate().interpolate(m, pictures(2), pictures(1), 2, "ddpm", 0), "first",
     "expected one picture"),
    (lambda m: CVK_LGCVDInfill().infill(m, pictures(8), "2-9", 2, "ddpm", 0, 10, 1), "known",
     "expected indices from 0 to 7"),
    (lambda m: CVK_LGCVDInfill().infill(m, pictures(6), "0", 2, "ddpm", 0, 10, 1), "images",
     "of at least 8 frames"),
    (lambda m: CVK_LGCVDPredict().predict(object(), pictures(1), 6, 2, "ddpm", 0), "model",
     "expected a CVK_LGCVD_MODEL"),
])
def test_bad_inputs_name_the_input(model, call, field, words):
    with pytest.raises(CVKInputError, match=f"input '{field}' got .*{words}"):
        call(model)
