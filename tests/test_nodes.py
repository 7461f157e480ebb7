"""Node definitions and the errors artists see for bad input."""
import pytest
import torch

from consistent_video_kit.nodes.common import CVKInputError
from consistent_video_kit.nodes.video import (CVK_DecodeVideo, CVK_EncodeVideo, CVK_TextToVideo,
                                              CVK_VideoModelLoader)
from cvk_testkit.executor import input_specs

T2V_ARGS = dict(prompt="a cat", negative_prompt="", seed=0, steps=2, guidance="cfg", guidance_scale=7.5,
                sampler="ddim", eta=0.0, frames=2, width=64, height=64)


def test_every_node_is_documented(pack):
    assert pack.WEB_DIRECTORY == "./web"
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert node_id.startswith("CVK_") and node_id in pack.NODE_DISPLAY_NAME_MAPPINGS
        assert cls.CATEGORY.startswith("Consistent Video Kit/")
        assert cls.DESCRIPTION and hasattr(cls, cls.FUNCTION)
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
        for name, (_kind, opts, _req) in input_specs(cls).items():
            assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_loader_lists_the_untrained_demo_models():
    choices = CVK_VideoModelLoader.INPUT_TYPES()["required"]["model_name"][0]
    assert choices == ["tiny-animatediff (untrained demo)", "tiny-modelscope (untrained demo)",
                       "tiny-lvdm-t2v (untrained demo)", "tiny-videocrafter2 (untrained demo)"]
    with pytest.raises(CVKInputError, match=r"CVK_VideoModelLoader: input 'model_name' got 'sd15'"):
        CVK_VideoModelLoader().load("sd15")


@pytest.mark.parametrize("field,value,expected", [
    ("width", 100, "a positive multiple of 8"),
    ("height", 0, "an integer from 8 to 4096"),          # the declared range, checked before the node runs
    ("frames", 0, "an integer from 1 to 1024"),
    ("frames", 33, "at most 32 frames"),
    ("steps", 0, "an integer from 1 to 1000"),
    ("steps", 1001, "an integer from 1 to 1000"),
    ("eta", 0.5, "0 or 1 with sampler ddpm"),
])
def test_text_to_video_bad_inputs(tiny_animatediff, field, value, expected):
    args = dict(T2V_ARGS, **{field: value})
    if field == "eta":
        args["sampler"] = "ddpm"
    with pytest.raises(CVKInputError) as e:
        CVK_TextToVideo().generate(tiny_animatediff, **args)
    msg = str(e.value)
    assert msg.startswith(f"CVK_TextToVideo: input '{field}' got {value!r}") and expected in msg


def test_wrong_model_type_wired_in(tiny_animatediff):
    with pytest.raises(CVKInputError, match=r"CVK_TextToVideo: input 'model' got a dict with keys \['samples'\]; expected a CVK_VIDEO_MODEL"):
        CVK_TextToVideo().generate({"samples": torch.zeros(1)}, **T2V_ARGS)
    with pytest.raises(CVKInputError, match=r"CVK_DecodeVideo: input 'model' got 'model.safetensors'; expected a CVK_VIDEO_MODEL"):
        CVK_DecodeVideo().decode("model.safetensors", {"samples": torch.zeros(1, 4, 2, 8, 8)}, 8)


def test_latent_of_wrong_rank_or_channels(tiny_animatediff):
    with pytest.raises(CVKInputError, match=r"input 'latent' got a tensor of shape \(2, 4, 8, 8\); expected a 5-D video latent"):
        CVK_DecodeVideo().decode(tiny_animatediff, {"samples": torch.zeros(2, 4, 8, 8)}, 8)
    with pytest.raises(CVKInputError, match="4 latent channels"):
        CVK_DecodeVideo().decode(tiny_animatediff, {"samples": torch.zeros(1, 16, 2, 8, 8)}, 8)
    with pytest.raises(CVKInputError, match="a LATENT dict"):
        CVK_DecodeVideo().decode(tiny_animatediff, torch.zeros(1, 4, 2, 8, 8), 8)
    with pytest.raises(CVKInputError, match=r"input 'images' got a tensor of shape \(2, 64, 60, 3\); expected width and "
                                             r"height that are multiples of 8"):
        CVK_EncodeVideo().encode(tiny_animatediff, torch.zeros(2, 64, 60, 3), 8)


def test_text_to_video_is_seeded_and_decodes(tiny_animatediff):
    (a,) = CVK_TextToVideo().generate(tiny_animatediff, **T2V_ARGS)
    (b,) = CVK_TextToVideo().generate(tiny_animatediff, **T2V_ARGS)
    (c,) = CVK_TextToVideo().generate(tiny_animatediff, **dict(T2V_ARGS, seed=1))
    assert a["samples"].shape == (1, 4, 2, 8, 8)
    assert torch.equal(a["samples"], b["samples"]) and not torch.equal(a["samples"], c["samples"])
    (img,) = CVK_DecodeVideo().decode(tiny_animatediff, a, 1)
    assert img.shape == (2, 64, 64, 3) and 0 <= img.min() and img.max() <= 1
    (lat,) = CVK_EncodeVideo().encode(tiny_animatediff, img, 8)
    assert lat["samples"].shape == (1, 4, 2, 8, 8)


def test_ddpm_and_cfgpp_run_on_modelscope(tiny_modelscope):
    (a,) = CVK_TextToVideo().generate(tiny_modelscope, **dict(T2V_ARGS, sampler="ddpm", guidance="cfg++",
                                                             guidance_scale=0.8))
    (b,) = CVK_TextToVideo().generate(tiny_modelscope, **dict(T2V_ARGS, sampler="ddpm", guidance="cfg++",
                                                             guidance_scale=0.8))
    assert torch.equal(a["samples"], b["samples"]) and torch.isfinite(a["samples"]).all()
