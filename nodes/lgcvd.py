"""LGC-VD nodes (arXiv 2306.02562): load the pixel-space model, and its tasks — prediction (and one-picture
animation), unconditional generation, interpolation and infilling. The algorithms are in :mod:`..samplers.lgcvd`."""
from __future__ import annotations

import torch

from .. import host
from ..models.checkpoint import MODEL_EXTS, CheckpointError
from ..models.lgcvd import DATASETS, LGCVD_FOLDER, WEIGHTS, LGCVDModel, load_lgcvd
from ..models.loaders import PRECISIONS, LoadOptionError
from ..models.tiny import TINY_LGCVD, tiny_lgcvd
from .common import CATEGORY_ROOT, CVKInputError, check_file_name

CATEGORY = f"{CATEGORY_ROOT}/LGC-VD"
LGCVD_MODEL = LGCVDModel.TYPE
UNTRAINED = " (untrained demo)"
AUTO = "auto (from the file name)"

host.register_model_folder(LGCVD_FOLDER, MODEL_EXTS)


def model_choices() -> list[str]:
    return [TINY_LGCVD + UNTRAINED] + host.list_models(LGCVD_FOLDER, MODEL_EXTS)


def check_lgcvd(node: str, model, name: str = "model") -> LGCVDModel:
    if not isinstance(model, LGCVDModel):
        raise CVKInputError(node, name, model, f"a {LGCVD_MODEL} (from 'Load LGC-VD Model (CVK)')")
    return model


def video_in(node: str, model: LGCVDModel, images, name: str = "images", at_least: int = 1) -> torch.Tensor:
    """An IMAGE batch ``[frames, H, W, 3]`` in [0, 1] at the model's native size → a video ``(1, 3, frames, H, W)`` in
    [−1, 1] (the official ``normalize_img``)."""
    what = f"an IMAGE batch [frames, {model.size}, {model.size}, 3]"
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[-1] < 3:
        raise CVKInputError(node, name, images, what)
    if images.shape[0] < at_least:
        raise CVKInputError(node, name, images, f"{what} of at least {at_least} frame{'s' if at_least > 1 else ''}")
    if tuple(images.shape[1:3]) != (model.size, model.size):
        raise CVKInputError(node, name, images, f"{model.size}×{model.size} pictures, {model.name}'s native size "
                                                f"({model.dataset}); resize them first (e.g. Upscale Image)")
    x = images[..., :3].to(torch.float32).permute(3, 0, 1, 2).unsqueeze(0)
    return x * 2.0 - 1.0


def video_out(video: torch.Tensor) -> torch.Tensor:
    """A video ``(1, 3, F, H, W)`` in [−1, 1] → an IMAGE batch ``[F, H, W, 3]`` in [0, 1]."""
    return ((video[0].permute(1, 2, 3, 0) + 1.0) / 2.0).clamp(0, 1).to(host.intermediate_device())


class CVK_LGCVDLoader:
    DESCRIPTION = ("Loads LGC-VD (arXiv 2306.02562), a pixel-space video diffusion model for prediction, generation, "
                   "interpolation and infilling with local and global context: cityscapes.pt (128×128) or bair.pt "
                   "(64×64) from models/lgcvd (the authors' Google Drive folder, linked from exisas/LGC-VD). The tiny "
                   "demo is untrained, built in code (32×32); its output is noise-like.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (LGCVD_MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The LGC-VD model (denoiser and context encoder), for the LGC-VD task nodes.",)
    FUNCTION = "load"
    NODE = "CVK_LGCVDLoader"
    FILE_INPUTS = ("model_name",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_name": (model_choices(), {"tooltip": (
                f"cityscapes.pt or bair.pt from models/{LGCVD_FOLDER}/, or the tiny untrained demo.")}),
            "dataset": ([AUTO, *DATASETS], {"default": AUTO, "tooltip": (
                "What the file was trained on, which sets its native size and attention placement: cityscapes "
                "128 px, bair 64 px. The two files share one layout; auto reads it from the file name.")}),
            "weights": (list(WEIGHTS), {"default": "ema", "tooltip": (
                "ema: the EMA weights, as the official test samples with them. model: the raw trained weights.")}),
            "precision": (list(PRECISIONS), {"default": "auto", "tooltip": (
                "auto: fp32 on CPU, fp16 on a GPU (bf16 where fp16 is missing).")}),
        }}

    def load(self, model_name, dataset, weights, precision):
        node = self.NODE
        if model_name == TINY_LGCVD + UNTRAINED:
            for field, value, ok in (("dataset", dataset, AUTO), ("weights", weights, "ema"),
                                     ("precision", precision, "auto")):
                if value != ok and not (field == "precision" and value == "fp32"):
                    raise CVKInputError(node, field, value, f"'{ok}' for the tiny demo (built in code, fp32)")
            return (tiny_lgcvd(),)
        check_file_name(node, "model_name", model_name)
        try:
            path = host.find_model(LGCVD_FOLDER, model_name)
            return (load_lgcvd(path, None if dataset == AUTO else dataset, weights, precision),)
        except host.ModelFileNotFound as e:
            raise CVKInputError(node, "model_name", model_name, problem=str(e)) from None
        except CheckpointError as e:
            raise CVKInputError(node, "model_name", model_name, problem=str(e)) from None
        except LoadOptionError as e:
            value = {"dataset": dataset, "weights": weights, "precision": precision}.get(e.input, model_name)
            raise CVKInputError(node, e.input, value, problem=str(e)) from None


NODE_CLASS_MAPPINGS = {"CVK_LGCVDLoader": CVK_LGCVDLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"CVK_LGCVDLoader": "Load LGC-VD Model (CVK)"}
