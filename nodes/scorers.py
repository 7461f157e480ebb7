"""Anchor scorers for I4VGen's candidate selection: the loader node. The scoring itself is in
``models/scorers.py``; the selector node takes the scorer this node returns."""
from __future__ import annotations

import os

from .. import host
from ..models.checkpoint import CheckpointError
from ..models.imagereward import (TINY_IMAGEREWARD_NAME, VOCAB_NAME, WEIGHTS_NAME, imagereward_weights,
                                  load_imagereward, tiny_imagereward_scorer)
from ..models.scorers import (SCORER_EXTS, SCORER_FOLDER, TINY_CLIP_NAME, Scorer, load_clip_scorer,
                              tiny_clip_scorer)
from .common import CATEGORY_ROOT, CVKInputError, check_file_name

CATEGORY = f"{CATEGORY_ROOT}/I4VGen"
SCORER = Scorer.TYPE

host.register_model_folder(SCORER_FOLDER, SCORER_EXTS)


TINY_SCORERS = {TINY_CLIP_NAME: tiny_clip_scorer, TINY_IMAGEREWARD_NAME: tiny_imagereward_scorer}


def imagereward_folders() -> list[str]:
    """Sub-folders of ``models/scorers`` (two levels deep, no ``config.json``) holding an ImageReward checkpoint,
    recognised by its keys (``blip.visual_encoder.*`` and ``mlp.layers.*``)."""
    names = []
    for root in host.model_folders(SCORER_FOLDER):
        if not os.path.isdir(root):
            continue
        for dirpath, dirnames, _ in os.walk(root, followlinks=True):
            depth = os.path.relpath(dirpath, root).count(os.sep)
            if dirpath != root and imagereward_weights(dirpath) is not None:
                names.append(os.path.relpath(dirpath, root))
                dirnames[:] = []
            elif depth >= 1:
                dirnames[:] = []
    return sorted(set(names))


def scorer_choices() -> list[str]:
    """The tiny demos, then single ``.safetensors`` files, transformers folders (with ``config.json``) and
    ImageReward folders in ``models/scorers``; the weight files inside such folders are not listed on their own."""
    folders = host.list_model_dirs(SCORER_FOLDER, "config.json")
    ir_folders = [d for d in imagereward_folders() if d not in folders]
    inside = tuple(d + os.sep for d in folders + ir_folders)
    files = [f for f in host.list_models(SCORER_FOLDER, SCORER_EXTS) if not f.startswith(inside)]
    return list(TINY_SCORERS) + files + folders + ir_folders


def load_scorer(node: str, choice: str, name: str = "scorer") -> Scorer:
    """The scorer behind a loader choice; a missing or unusable file is a CVKInputError naming the input."""
    if choice in TINY_SCORERS:
        return TINY_SCORERS[choice]()
    check_file_name(node, name, choice)
    try:
        path = host.find_model(SCORER_FOLDER, choice)
        if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
            return load_imagereward(path)
        return load_clip_scorer(path)
    except host.ModelFileNotFound as e:
        raise CVKInputError(node, name, choice, problem=str(e)) from None
    except CheckpointError as e:
        raise CVKInputError(node, name, choice, problem=str(e)) from None


class CVK_ScorerLoader:
    DESCRIPTION = (
        "Loads an anchor scorer for I4VGen's candidate selection: it scores each candidate image against the "
        "prompt, and the selector keeps the best. CLIP score (100 · cosine of the image and text embeddings) "
        "with a full CLIP model from models/scorers: a transformers folder (config.json, model.safetensors, "
        "tokenizer files), or a single .safetensors file of CLIP ViT-L/14 in the transformers layout (e.g. "
        "openai/clip-vit-large-patch14's model.safetensors; its tokenizer comes from ComfyUI's own CLIP "
        "tokenizer). ImageReward-v1.0, the official selector: a folder in models/scorers holding the released "
        f"{WEIGHTS_NAME} and bert-base-uncased's {VOCAB_NAME} (its normalised reward, higher is better). The "
        "'tiny' choices are untrained demos built in code: their scores depend on prompt and image but mean "
        "nothing. Nothing is downloaded.")
    CATEGORY = CATEGORY
    RETURN_TYPES = (SCORER,)
    RETURN_NAMES = ("scorer",)
    OUTPUT_TOOLTIPS = ("The scorer (prompt + images → one score each), for the anchor selector.",)
    FUNCTION = "load"
    NODE = "CVK_ScorerLoader"
    FILE_INPUTS = ("scorer",)   # checked by load_scorer (missing files named)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "scorer": (scorer_choices(), {"tooltip": (
                f"'{TINY_CLIP_NAME}', '{TINY_IMAGEREWARD_NAME}': built in code, for trying workflows. Otherwise "
                f"from models/{SCORER_FOLDER}/: a CLIP model (a single .safetensors file of CLIP ViT-L/14 in the "
                f"transformers key layout, or a transformers CLIP folder), or an ImageReward folder "
                f"({WEIGHTS_NAME} + bert-base-uncased's {VOCAB_NAME}).")}),
        }}

    def load(self, scorer):
        return (load_scorer(self.NODE, scorer),)


NODE_CLASS_MAPPINGS = {"CVK_ScorerLoader": CVK_ScorerLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"CVK_ScorerLoader": "Load Anchor Scorer (CVK I4VGen)"}
