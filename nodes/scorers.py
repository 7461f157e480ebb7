"""Anchor scorers for I4VGen's candidate selection: the loader node. The scoring itself is in
``models/scorers.py``; the selector node takes the scorer this node returns."""
from __future__ import annotations

import os

from .. import host
from ..models.checkpoint import CheckpointError
from ..models.scorers import (SCORER_EXTS, SCORER_FOLDER, TINY_CLIP_NAME, Scorer, load_clip_scorer,
                              tiny_clip_scorer)
from .common import CATEGORY_ROOT, CVKInputError, check_file_name

CATEGORY = f"{CATEGORY_ROOT}/I4VGen"
SCORER = Scorer.TYPE

host.register_model_folder(SCORER_FOLDER, SCORER_EXTS)


def scorer_choices() -> list[str]:
    """The tiny demo, then single ``.safetensors`` files and transformers folders (with ``config.json``) in
    ``models/scorers``; the weight files inside such a folder are not listed on their own."""
    folders = host.list_model_dirs(SCORER_FOLDER, "config.json")
    inside = tuple(d + os.sep for d in folders)
    files = [f for f in host.list_models(SCORER_FOLDER, SCORER_EXTS) if not f.startswith(inside)]
    return [TINY_CLIP_NAME] + files + folders


def load_scorer(node: str, choice: str, name: str = "scorer") -> Scorer:
    """The scorer behind a loader choice; a missing or unusable file is a CVKInputError naming the input."""
    if choice == TINY_CLIP_NAME:
        return tiny_clip_scorer()
    check_file_name(node, name, choice)
    try:
        return load_clip_scorer(host.find_model(SCORER_FOLDER, choice))
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
        "tokenizer). The official selector, ImageReward, is not available yet. The 'tiny CLIP' is an untrained "
        "demo built in code: its scores depend on prompt and image but mean nothing. Nothing is downloaded.")
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
                f"'{TINY_CLIP_NAME}': built in code, for trying workflows. Otherwise a CLIP model from "
                f"models/{SCORER_FOLDER}/: a single .safetensors file (CLIP ViT-L/14, transformers key layout) or "
                f"a transformers CLIP folder.")}),
        }}

    def load(self, scorer):
        return (load_scorer(self.NODE, scorer),)


NODE_CLASS_MAPPINGS = {"CVK_ScorerLoader": CVK_ScorerLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"CVK_ScorerLoader": "Load Anchor Scorer (CVK I4VGen)"}
