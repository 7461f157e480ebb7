"""The bad-input suite: malformed or hostile API prompts over every node, each with the node, the input and
the words its error must carry. Run through the test kit's executor (tests/test_bad_inputs.py) and through a
real ComfyUI server (tests/test_comfyui_host.py), where after each bad prompt the server must still run a
good one.

A case is refused either by validation before anything runs (``"validation"``: ComfyUI's own 400, the test
kit's ``WorkflowError``; the value is outside the declared range or list) or by the node itself
(``"node"``: a ``CVKInputError`` ``CVK_<Node>: input '<name>' got <value>; expected …``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from . import tiny_files as tf

NAN = float("nan")
TINY = "tiny-animatediff (untrained demo)"
TINY_MS = "tiny-modelscope (untrained demo)"
SD_FOLDER, MM, BROKEN_MM = "diffusers/tiny_sd15", "tiny_mm_v2.ckpt", "broken_mm.ckpt"
TEXT_CKPT, MM_AS_BASE = "checkpoints/notes.ckpt", "checkpoints/motion_module_as_base.ckpt"
BAD_SCORER, GOOD_POSES, BAD_POSES = "not_a_model.safetensors", "cvk_poses.txt", "cvk_bad_poses.txt"
BAD_CAMERACTRL, BAD_SYNC = "not_a_cameractrl.ckpt", "not_a_sync_module.ckpt"
TINY_LVDM, BAD_LVDM = "tiny-lvdm (untrained demo)", "not_an_lvdm.ckpt"
BAD_LGCVD, FRAME_PNG = "not_an_lgcvd.pt", "cvk_frame.png"
IR_NO_VOCAB, IR_WRONG_SIZE = "ImageReward_no_vocab", "ImageReward_tiny_weights"   # folders in models/scorers
TINY_CAMERACTRL, TINY_SYNC = "tiny CameraCtrl (untrained demo)", "tiny CVD sync module (untrained demo)"
MODEL_FOLDERS = ("checkpoints", "diffusers", "animatediff_models", "scorers", "cameractrl", "cvd", "lvdm", "lgcvd")


def write_files(models: str, inputs: str) -> None:
    """The model and input files the cases name: a tiny SD1.5 folder and motion module, and broken files."""
    for sub in MODEL_FOLDERS:
        os.makedirs(os.path.join(models, sub), exist_ok=True)
    os.makedirs(inputs, exist_ok=True)
    tf.write_sd_folder(os.path.join(models, SD_FOLDER))
    tf.write_motion_module(os.path.join(models, "animatediff_models", MM), mid_block=True)
    tf.write_motion_module(os.path.join(models, MM_AS_BASE), mid_block=False)
    for path in (os.path.join(models, "animatediff_models", BROKEN_MM), os.path.join(models, TEXT_CKPT),
                 os.path.join(models, "scorers", BAD_SCORER), os.path.join(models, "cameractrl", BAD_CAMERACTRL),
                 os.path.join(models, "cvd", BAD_SYNC), os.path.join(models, "lvdm", BAD_LVDM),
                 os.path.join(models, "lgcvd", BAD_LGCVD)):
        with open(path, "w") as f:
            f.write("this is a text file, not a model\n")
    # ImageReward folders: the tiny model's file without its vocab.txt; and with a vocabulary, but tiny weights that
    # the full-size ImageReward-v1.0 network does not fit
    tf.write_imagereward(os.path.join(models, "scorers", IR_NO_VOCAB), vocab=False)
    tf.write_imagereward(os.path.join(models, "scorers", IR_WRONG_SIZE), vocab=False)
    with open(os.path.join(models, "scorers", IR_WRONG_SIZE, "vocab.txt"), "w") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"t{i}" for i in range(30517)]) + "\n")
    from PIL import Image
    Image.new("RGB", (40, 40), (200, 120, 60)).save(os.path.join(inputs, FRAME_PNG))   # a picture to load
    rows = "".join(f"{i} 0.5 0.9 0.5 0.5 0 0 1 0 0 {0.1 * i} 0 1 0 0 0 0 1 0\n" for i in range(3))
    with open(os.path.join(inputs, GOOD_POSES), "w") as f:
        f.write("https://example.invalid/clip\n" + rows)
    with open(os.path.join(inputs, BAD_POSES), "w") as f:
        f.write("https://example.invalid/clip\n" + rows + "3 0.5 0.9 0.5 0.5 0 0 1 0 0\n")   # a short row


@dataclass(frozen=True)
class Case:
    id: str
    prompt: dict
    kind: str          # "validation" or "node"
    class_type: str
    input: str
    words: str         # in the message ("node") or the ComfyUI/test-kit error type ("validation")


# ---------------------------------------------------------------- graph pieces (API format)

def _n(class_type, **inputs):
    return {"class_type": class_type, "inputs": inputs}


def _loader(name=TINY, **kw):
    return _n("CVK_VideoModelLoader", model_name=name, **kw)


T2V = dict(prompt="a cat", negative_prompt="", seed=0, steps=1, guidance="cfg", guidance_scale=7.5, sampler="ddim",
           eta=0.0, frames=2, width=64, height=64)
VG = dict(prompt="a cat", negative_prompt="", seed=42, steps=4, guided_steps=1, guide_steps=2, guide_grid=4,
          guide_weight=0.2, guidance="cfg++", guidance_scale=0.8, guide_guidance="cfg++", guide_guidance_scale=0.8,
          filter="butterworth", filter_n=4, filter_d_s=0.125, filter_d_t=0.125, match_by="sigma", frames=2, width=64,
          height=64, grid="videoguide")
AC = dict(prompt="a cat", negative_prompt="", seed=0, num_candidates=3, steps=1, cfg=7.5, width=64, height=64)
NI = dict(prompt="a cat", negative_prompt="", frames=2, steps=2, p_ni_vsds=0.5,
          step_sizes="animatediff (10, 10, 10, then 1)", cfg=7.5, seed=0)
RE = dict(prompt="a cat", negative_prompt="", p_re=1.0, steps=2, sampler="ddim", cfg=7.5, seed=0)
TRAJ = dict(trajectory="circle", views=2, frames=3, distance=0.5, speed=1.0, fov=0.0, width=64, height=64)


def _latent_out(graph: dict, latent_link) -> dict:
    """Decode a latent with model "1" and preview it: an output node, so the graph runs."""
    return {**graph, "90": _n("CVK_DecodeVideo", model=["1", 0], latent=latent_link, frames_per_batch=8),
            "91": _n("PreviewImage", images=["90", 0])}


LOADER_LVDM = dict(model_name=TINY_LVDM, ae="none", preset="sky", scale=0.0, shift=0.0, weights="ema", precision="auto",
                   attention="sdpa")
UNCOND = dict(seed=0, steps=1, sampler="ddim", eta=1.0, frames=4, width=32, height=32)


def lvdm(loader=None, **over):
    """Load the tiny LVDM, sample unconditionally, decode with the 3-D AE ("60" is the model)."""
    g = {"60": _n("CVK_LVDMLoader", **dict(LOADER_LVDM, **(loader or {}))),
         "61": _n("CVK_UnconditionalVideo", model=["60", 0], **dict(UNCOND, **over))}
    return g | {"90": _n("CVK_DecodeVideo", model=["60", 0], latent=["61", 0], frames_per_batch=8),
                "91": _n("PreviewImage", images=["90", 0])}


TINY_PRED, TINY_INTERP = "tiny-lvdm-pred (untrained demo)", "tiny-lvdm-interp (untrained demo)"
EXT = dict(prompt="", negative_prompt="", new_frames=16, context=0, s=100, w=0.1, cfg=7.5, steps=1, sampler="ddim",
           eta=1.0, seed=0, width=32, height=32)
EXT_TEXT = dict(EXT, prompt="a cat", w=0.0, new_frames=2, width=64, height=64)
INTERP = dict(prompt="", negative_prompt="", s=100, w=0.1, cfg=7.5, steps=1, sampler="ddim", eta=1.0, seed=0)
LONG = dict(target_frames=8, stride=4, s=100, w=0.1, steps=1, sampler="ddim", eta=1.0, seed=0, width=32, height=32)


def long_video_graph(node: dict, decoder: str = "62") -> dict:
    """The tiny pred ("62"), interp ("63") and short ("60") LVDMs and the text model ("1") beside ``node`` ("64"), its
    latent decoded by ``decoder``."""
    return {"1": _loader(), "60": _n("CVK_LVDMLoader", **LOADER_LVDM),
            "62": _n("CVK_LVDMLoader", **dict(LOADER_LVDM, model_name=TINY_PRED)),
            "63": _n("CVK_LVDMLoader", **dict(LOADER_LVDM, model_name=TINY_INTERP)), "64": node,
            "90": _n("CVK_DecodeVideo", model=[decoder, 0], latent=["64", 0], frames_per_batch=8),
            "91": _n("PreviewImage", images=["90", 0])}


def extend(model="62", **over):
    return long_video_graph(_n("CVK_ExtendVideo", model=[model, 0], **dict(EXT if model != "1" else EXT_TEXT, **over)),
                            model)


def interpolate(model="63", latent_frames=8, **over):
    g = long_video_graph(_n("CVK_InterpolateVideo", model=[model, 0], latent=["61", 0], **dict(INTERP, **over)), model)
    return g | {"61": _n("CVK_UnconditionalVideo", model=["60", 0], **dict(UNCOND, frames=latent_frames))}


def long_video(pred="62", interp="63", **over):
    return long_video_graph(_n("CVK_LongVideo", pred_model=[pred, 0], interp_model=[interp, 0], **dict(LONG, **over)))


TINY_LGCVD = "tiny-lgcvd (untrained demo)"
LG_LOADER = dict(model_name=TINY_LGCVD, dataset="auto (from the file name)", weights="ema", precision="auto")
LG_TASK = dict(steps=2, sampler="ddpm", seed=0)


def lgcvd(node: dict, loader=None, size: int = 32) -> dict:
    """The tiny LGC-VD ("70"), a 32 px picture batch ("71": LoadImage → ImageScale), ``node`` ("72") previewed."""
    return {"70": _n("CVK_LGCVDLoader", **dict(LG_LOADER, **(loader or {}))),
            "73": _n("LoadImage", image=FRAME_PNG),
            "71": _n("ImageScale", image=["73", 0], upscale_method="area", width=size, height=size, crop="center"),
            "72": node, "91": _n("PreviewImage", images=["72", 0])}


def lg_predict(size=32, loader=None, **over):
    return lgcvd(_n("CVK_LGCVDPredict", model=["70", 0], images=["71", 0], **dict(LG_TASK, new_frames=2) | over),
                 loader, size)


def lg_infill(**over):
    g = lgcvd(_n("CVK_LGCVDInfill", model=["70", 0], images=["74", 0],
                 **dict(LG_TASK, known="0, 7", jump_length=10, jump_n_sample=1) | over))
    return g | {"74": _n("CVK_LGCVDGenerate", model=["70", 0], frames=8, **LG_TASK)}


def t2v(**over):
    return _latent_out({"1": _loader(), "2": _n("CVK_TextToVideo", model=["1", 0], **dict(T2V, **over))}, ["2", 0])


def loader_only(name, **kw):
    return t2v() | {"1": _loader(name, **kw)}


def videoguide(guide=TINY_MS, **over):
    return _latent_out({"1": _loader(), "3": _n("CVK_GuideModelLoader", model_name=guide),
                        "2": _n("CVK_VideoGuideSampler", model=["1", 0], guide=["3", 0], **dict(VG, **over))}, ["2", 0])


def candidates(**over):
    return {"1": _loader(), "4": _n("CVK_AnchorCandidates", model=["1", 0], **dict(AC, **over)),
            "91": _n("PreviewImage", images=["4", 0])}


def selector(**over):
    sel = dict(images=["4", 0], latent=["4", 1], prompt="a cat", selection="index", external_scores="", index=0)
    g = candidates() | {"5": _n("CVK_AnchorSelector", **dict(sel, **over))}
    return g | {"91": _n("PreviewImage", images=["5", 0])}


def animator(anchor: dict, **over):
    g = selector() | {"6": _n("CVK_NIVSDSAnimator", model=["1", 0], **dict(NI, **over), **anchor)}
    return _latent_out(g, ["6", 0])


def regenerate(**over):
    g = animator({"anchor_latent": ["5", 1]}) | {"7": _n("CVK_Regenerate", model=["1", 0], latent=["6", 0],
                                                        **dict(RE, **over))}
    return _latent_out(g, ["7", 0])


def trajectory(**over):
    return {"10": _n("CVK_CameraTrajectory", **dict(TRAJ, **over)),
            "11": _n("CVK_CameraPreview", camera=["10", 0], size=128, projections="top,front")}


def save_poses(prefix):
    return {"10": _n("CVK_CameraTrajectory", **TRAJ), "12": _n("CVK_SaveCameraPoses", camera=["10", 0],
                                                               filename_prefix=prefix)}


def concat(b: dict, c: dict | None = None):
    g = {"10": _n("CVK_CameraTrajectory", **TRAJ), "13": _n("CVK_CameraTrajectory", **dict(TRAJ, **b))}
    inputs = dict(camera_a=["10", 0], camera_b=["13", 0])
    if c is not None:
        g["14"] = _n("CVK_CameraTrajectory", **dict(TRAJ, **c))
        inputs["camera_c"] = ["14", 0]
    return g | {"15": _n("CVK_CameraConcat", **inputs),
                "11": _n("CVK_CameraPreview", camera=["15", 0], size=128, projections="top,front")}


def load_poses(**over):
    inputs = dict(pose_file=GOOD_POSES, width=64, height=64, pose_width=0, pose_height=0, relative=True)
    return {"16": _n("CVK_LoadCameraPoses", **dict(inputs, **over)),
            "11": _n("CVK_CameraPreview", camera=["16", 0], size=128, projections="top,front")}


def cameractrl_round_trip(frames_b: int):
    move = dict(TRAJ, trajectory="pan left", views=1)
    return {"17": _n("CVK_CameraTrajectory", **move), "18": _n("CVK_CameraTrajectory", **dict(move, frames=frames_b)),
            "19": _n("CVK_CameraToCameraCtrlPoses", camera=["17", 0], view=0),
            "20": _n("CVK_CameraToCameraCtrlPoses", camera=["18", 0], view=0),
            "21": _n("CVK_CameraFromCameraCtrlPoses", poses=["19", 0], poses_1=["20", 0], width=64, height=64,
                     relative=True),
            "11": _n("CVK_CameraPreview", camera=["21", 0], size=128, projections="top,front")}


def encode_odd_size():
    g = t2v() | {"30": _n("ImageScale", image=["90", 0], upscale_method="bilinear", width=60, height=60, crop="disabled"),
                 "31": _n("CVK_EncodeVideo", model=["1", 0], images=["30", 0], frames_per_batch=8)}
    return g | {"92": _n("CVK_DecodeVideo", model=["1", 0], latent=["31", 0], frames_per_batch=8),
                "93": _n("PreviewImage", images=["92", 0])}


def decode_image_latent():
    return {"1": _loader(), "32": _n("EmptyLatentImage", width=64, height=64, batch_size=1),
            "90": _n("CVK_DecodeVideo", model=["1", 0], latent=["32", 0], frames_per_batch=8),
            "91": _n("PreviewImage", images=["90", 0])}


def cameractrl(loader: dict | None = None, traj: dict | None = None, **over):
    inputs = dict(view=0, prompt="a cat", negative_prompt="", seed=0, steps=1, cfg=7.5, sampler="ddim")
    g = {"1": _loader(), "40": _n("CVK_CameraCtrlLoader", **dict(dict(model=["1", 0], cameractrl=TINY_CAMERACTRL,
                                                                     strength=1.0), **(loader or {}))),
         "41": _n("CVK_CameraTrajectory", **dict(TRAJ, **dict(dict(trajectory="orbit left", views=1, frames=4),
                                                             **(traj or {})))),
         "42": _n("CVK_CameraCtrlSampler", **dict(dict(model=["40", 0], camera=["41", 0], **inputs), **over))}
    return _latent_out(g, ["42", 0])


def cvd(loader: dict | None = None, traj: dict | None = None, **over):
    inputs = dict(prompt="a cat", negative_prompt="", seed=0, steps=1, cfg=0.0, multistep=0, accumulate_step=0,
                  views_per_batch=0)
    g = {"1": _loader(), "40": _n("CVK_CameraCtrlLoader", model=["1", 0], cameractrl=TINY_CAMERACTRL, strength=1.0),
         "44": _n("CVK_CVDSyncLoader", **dict(dict(model=["40", 0], sync_module=TINY_SYNC), **(loader or {}))),
         "41": _n("CVK_CameraTrajectory", **dict(TRAJ, **dict(dict(frames=4), **(traj or {})))),
         "45": _n("CVK_EpipolarSyncSampler", **dict(dict(model=["44", 0], camera=["41", 0], **inputs), **over))}
    return _latent_out(g, ["45", 0])


def view_grid(views):
    return cvd() | {"46": _n("CVK_ViewGrid", images=["90", 0], views=views), "91": _n("PreviewImage", images=["46", 0])}


def _nan(node, name):
    return f"CVK_{node}: input '{name}' got nan; expected a finite number"


CASES = [
    # Text to Video
    Case("t2v-guidance-scale-nan", t2v(guidance_scale=NAN), "node", "CVK_TextToVideo", "guidance_scale",
         _nan("TextToVideo", "guidance_scale")),
    Case("t2v-eta-nan", t2v(eta=NAN), "node", "CVK_TextToVideo", "eta", _nan("TextToVideo", "eta")),
    Case("t2v-width-not-multiple", t2v(width=100), "node", "CVK_TextToVideo", "width", "got 100; expected a positive "
                                                                                       "multiple of 8"),
    Case("t2v-too-many-frames", t2v(frames=33), "node", "CVK_TextToVideo", "frames", "got 33; expected at most 32 frames"),
    Case("t2v-ddpm-eta", t2v(sampler="ddpm", eta=0.5), "node", "CVK_TextToVideo", "eta", "0 or 1 with sampler ddpm"),
    Case("t2v-seed-negative", t2v(seed=-1), "validation", "CVK_TextToVideo", "seed", "value_smaller_than_min"),
    Case("t2v-steps-0", t2v(steps=0), "validation", "CVK_TextToVideo", "steps", "value_smaller_than_min"),
    # Load Video Model
    Case("loader-text-file-as-ckpt", loader_only(TEXT_CKPT), "node", "CVK_VideoModelLoader", "model_name",
         "'notes.ckpt' could not be read"),
    Case("loader-corrupt-motion-module", loader_only(SD_FOLDER, motion_module=BROKEN_MM), "node", "CVK_VideoModelLoader",
         "motion_module", "'broken_mm.ckpt' could not be read"),
    Case("loader-motion-module-as-base", loader_only(MM_AS_BASE), "node", "CVK_VideoModelLoader", "model_name",
         "is an AnimateDiff motion module, not a base model"),
    Case("loader-base-without-motion-module", loader_only(SD_FOLDER), "node", "CVK_VideoModelLoader", "motion_module",
         "AnimateDiff also needs a motion module"),
    Case("loader-tiny-with-motion-module", loader_only(TINY, motion_module=MM), "node", "CVK_VideoModelLoader",
         "motion_module", "'none' for the tiny demo models"),
    Case("loader-fp16-on-cpu", loader_only(SD_FOLDER, motion_module=MM, precision="fp16"), "node",
         "CVK_VideoModelLoader", "precision", "fp16 does not run on the CPU"),
    Case("loader-xformers-on-cpu", loader_only(SD_FOLDER, motion_module=MM, attention="xformers"), "node",
         "CVK_VideoModelLoader", "attention", "xformers needs a CUDA GPU"),
    Case("loader-path-traversal", loader_only("checkpoints/../../secret.ckpt"), "validation", "CVK_VideoModelLoader",
         "model_name", "value_not_in_list"),
    # Decode / Encode
    Case("decode-image-latent", decode_image_latent(), "node", "CVK_DecodeVideo", "latent", "expected a 5-D video latent"),
    Case("decode-frames-per-batch-0", t2v() | {"90": _n("CVK_DecodeVideo", model=["1", 0], latent=["2", 0],
                                                        frames_per_batch=0)},
         "validation", "CVK_DecodeVideo", "frames_per_batch", "value_smaller_than_min"),
    Case("encode-odd-size", encode_odd_size(), "node", "CVK_EncodeVideo", "images",
         "expected width and height that are multiples of 8"),
    # VideoGuide
    Case("vg-guide-weight-nan", videoguide(guide_weight=NAN), "node", "CVK_VideoGuideSampler", "guide_weight",
         _nan("VideoGuideSampler", "guide_weight")),
    Case("vg-guidance-scale-nan", videoguide(guidance_scale=NAN), "node", "CVK_VideoGuideSampler", "guidance_scale",
         _nan("VideoGuideSampler", "guidance_scale")),
    Case("vg-filter-cutoff-nan", videoguide(filter_d_s=NAN), "node", "CVK_VideoGuideSampler", "filter_d_s",
         _nan("VideoGuideSampler", "filter_d_s")),
    Case("vg-guided-more-than-steps", videoguide(guided_steps=5), "node", "CVK_VideoGuideSampler", "guided_steps",
         "expected at most steps (4)"),
    Case("vg-guide-steps-over-grid", videoguide(guide_steps=5), "node", "CVK_VideoGuideSampler", "guide_steps",
         "expected at most guide_grid (4)"),
    Case("vg-guided-step-too-late", videoguide(guided_steps=4, guide_grid=900), "node", "CVK_VideoGuideSampler",
         "guided_steps", "too low for a guide sub-grid of 900 points"),
    Case("vg-seed-negative", videoguide(seed=-1), "validation", "CVK_VideoGuideSampler", "seed", "value_smaller_than_min"),
    Case("guide-loader-text-file-as-ckpt", videoguide(guide=TEXT_CKPT), "node", "CVK_GuideModelLoader", "model_name",
         "'notes.ckpt' could not be read"),
    Case("vg-too-many-frames", videoguide(frames=40), "node", "CVK_VideoGuideSampler", "frames",
         "got 40; expected at most 32 frames"),
    # I4VGen
    Case("candidates-cfg-nan", candidates(cfg=NAN), "node", "CVK_AnchorCandidates", "cfg", _nan("AnchorCandidates", "cfg")),
    Case("candidates-width", candidates(width=60), "node", "CVK_AnchorCandidates", "width",
         "got 60; expected a positive multiple of 8"),
    Case("selector-scores-not-numbers", selector(selection="external scores", external_scores="1, x, 2"), "node",
         "CVK_AnchorSelector", "external_scores", "score 2 of 3, 'x', is not a number"),
    Case("selector-scores-count", selector(selection="external scores", external_scores="1, 2"), "node",
         "CVK_AnchorSelector", "external_scores", "2 scores given for 3 candidates"),
    Case("selector-scores-nan", selector(selection="external scores", external_scores="nan, 1, 2"), "node",
         "CVK_AnchorSelector", "external_scores", "'nan', is not a finite number"),
    Case("selector-index-out-of-range", selector(index=5), "node", "CVK_AnchorSelector", "index",
         "index 5 is out of range for 3 candidates"),
    Case("selector-no-scorer", selector(selection="scorer"), "node", "CVK_AnchorSelector", "scorer",
         "expected a CVK_SCORER"),
    Case("animator-p-nan", animator({"anchor_latent": ["5", 1]}, p_ni_vsds=NAN), "node", "CVK_NIVSDSAnimator",
         "p_ni_vsds", _nan("NIVSDSAnimator", "p_ni_vsds")),
    Case("animator-cfg-nan", animator({"anchor_latent": ["5", 1]}, cfg=NAN), "node", "CVK_NIVSDSAnimator", "cfg",
         _nan("NIVSDSAnimator", "cfg")),
    Case("animator-two-anchors", animator({"anchor_latent": ["5", 1], "anchor_image": ["5", 0]}), "node",
         "CVK_NIVSDSAnimator", "anchor_latent", "expected exactly one anchor"),
    Case("animator-image-batch", animator({"anchor_image": ["4", 0]}), "node", "CVK_NIVSDSAnimator", "anchor_image",
         "a batch of 3 pictures would keep only one"),
    Case("animator-too-many-frames", animator({"anchor_latent": ["5", 1]}, frames=33), "node", "CVK_NIVSDSAnimator",
         "frames", "expected at most 32 frames"),
    Case("regenerate-p-nan", regenerate(p_re=NAN), "node", "CVK_Regenerate", "p_re", _nan("Regenerate", "p_re")),
    Case("regenerate-cfg-nan", regenerate(cfg=NAN), "node", "CVK_Regenerate", "cfg", _nan("Regenerate", "cfg")),
    Case("scorer-text-file", selector(selection="scorer", scorer=["8", 0]) | {"8": _n("CVK_ScorerLoader",
                                                                                      scorer=BAD_SCORER)},
         "node", "CVK_ScorerLoader", "scorer", "could not be read"),
    Case("imagereward-no-vocab", selector(selection="scorer", scorer=["8", 0]) | {"8": _n("CVK_ScorerLoader",
                                                                                          scorer=IR_NO_VOCAB)},
         "node", "CVK_ScorerLoader", "scorer",
         os.path.join("scorers", IR_NO_VOCAB, "vocab.txt") + "')"),   # the file, in its folder
    Case("imagereward-tiny-weights", selector(selection="scorer", scorer=["8", 0]) | {"8": _n("CVK_ScorerLoader",
                                                                                              scorer=IR_WRONG_SIZE)},
         "node", "CVK_ScorerLoader", "scorer", "shape mismatches"),
    # Camera
    Case("trajectory-fov-nan", trajectory(fov=NAN), "node", "CVK_CameraTrajectory", "fov", _nan("CameraTrajectory", "fov")),
    Case("trajectory-distance-nan", trajectory(distance=NAN), "node", "CVK_CameraTrajectory", "distance",
         _nan("CameraTrajectory", "distance")),
    Case("trajectory-speed-nan", trajectory(trajectory="pan left", views=1, speed=NAN), "node", "CVK_CameraTrajectory",
         "speed", _nan("CameraTrajectory", "speed")),
    Case("trajectory-pattern-one-view", trajectory(views=1), "node", "CVK_CameraTrajectory", "views",
         "at least 2 for the multi-view pattern 'circle'"),
    Case("trajectory-move-three-views", trajectory(trajectory="dolly in", views=3), "node", "CVK_CameraTrajectory",
         "views", "1 for the move 'dolly in'"),
    Case("trajectory-orbit-radius-0", trajectory(trajectory="orbit left", views=1, distance=0.0), "node",
         "CVK_CameraTrajectory", "distance", "a positive orbit radius"),
    Case("concat-third-size-differs", concat({}, {"width": 128}), "node", "CVK_CameraConcat", "camera_c",
         "need the same image size"),
    Case("concat-second-views-differ", concat({"views": 3}), "node", "CVK_CameraConcat", "camera_b",
         "need the same number of views"),
    Case("poses-malformed-file", load_poses(pose_file=BAD_POSES), "node", "CVK_LoadCameraPoses", "pose_file", "line 5"),
    Case("poses-half-a-size", load_poses(pose_width=1280), "node", "CVK_LoadCameraPoses", "pose_width",
         "both pose_width and pose_height set, or both 0"),
    Case("save-prefix-nul", save_poses("cvk\x00poses"), "node", "CVK_SaveCameraPoses", "filename_prefix",
         "expected a file name without folders"),
    Case("save-prefix-300-chars", save_poses("p" * 300), "node", "CVK_SaveCameraPoses", "filename_prefix",
         "at most 255 characters per part"),
    Case("save-prefix-escapes", save_poses("../escaped"), "node", "CVK_SaveCameraPoses", "filename_prefix",
         "expected a file name without folders"),
    Case("cameractrl-views-of-different-length", cameractrl_round_trip(5), "node", "CVK_CameraFromCameraCtrlPoses",
         "poses_1", "all views need the same number of frames"),
    Case("cameractrl-view-out-of-range", {"10": _n("CVK_CameraTrajectory", **TRAJ),
                                          "19": _n("CVK_CameraToCameraCtrlPoses", camera=["10", 0], view=2),
                                          "21": _n("CVK_CameraFromCameraCtrlPoses", poses=["19", 0], width=64,
                                                   height=64, relative=True),
                                          "11": _n("CVK_CameraPreview", camera=["21", 0], size=128,
                                                   projections="top,front")},
         "node", "CVK_CameraToCameraCtrlPoses", "view", "got 2; expected a view index below 2"),
    # CameraCtrl
    Case("cameractrl-on-modelscope", cameractrl(loader={"model": ["43", 0]}) | {"43": _loader(TINY_MS)}, "node",
         "CVK_CameraCtrlLoader", "model", "expected an AnimateDiff model"),
    Case("cameractrl-strength-nan", cameractrl(loader={"strength": NAN}), "node", "CVK_CameraCtrlLoader", "strength",
         _nan("CameraCtrlLoader", "strength")),
    Case("cameractrl-text-file", cameractrl(loader={"cameractrl": BAD_CAMERACTRL}), "node", "CVK_CameraCtrlLoader",
         "cameractrl", "'not_a_cameractrl.ckpt' could not be read"),
    Case("cameractrl-sampler-without-cameractrl", cameractrl(model=["1", 0]), "node", "CVK_CameraCtrlSampler", "model",
         "expected a model with CameraCtrl"),
    Case("cameractrl-camera-too-long", cameractrl(traj={"frames": 17}), "node", "CVK_CameraCtrlSampler", "camera",
         "expected a path of at most 16 frames"),
    Case("cameractrl-camera-size", cameractrl(traj={"width": 72, "height": 72}), "node", "CVK_CameraCtrlSampler",
         "camera", "width and height are multiples of 16"),
    Case("cameractrl-sampler-view", cameractrl(view=1), "node", "CVK_CameraCtrlSampler", "view",
         "got 1; expected a view index below 1"),
    Case("cameractrl-cfg-nan", cameractrl(cfg=NAN), "node", "CVK_CameraCtrlSampler", "cfg",
         _nan("CameraCtrlSampler", "cfg")),
    # CVD
    Case("cvd-without-cameractrl", cvd(loader={"model": ["1", 0]}), "node", "CVK_CVDSyncLoader", "model",
         "expected a model with CameraCtrl"),
    Case("cvd-text-file", cvd(loader={"sync_module": BAD_SYNC}), "node", "CVK_CVDSyncLoader", "sync_module",
         "'not_a_sync_module.ckpt' could not be read"),
    Case("cvd-one-view", cvd(traj={"trajectory": "pan left", "views": 1}), "node", "CVK_EpipolarSyncSampler",
         "camera", "expected a path of at least 2 views"),
    Case("cvd-too-many-prompt-lines", cvd(prompt="a\nb\nc"), "node", "CVK_EpipolarSyncSampler", "prompt",
         "got '3 lines'; expected at most 2 lines"),
    Case("cvd-odd-views-per-batch", cvd(traj={"views": 3}, views_per_batch=2), "node", "CVK_EpipolarSyncSampler",
         "views_per_batch", "got 2; expected 0 or at least 3 for 3 views"),
    Case("cvd-cfg-nan", cvd(cfg=NAN), "node", "CVK_EpipolarSyncSampler", "cfg", _nan("EpipolarSyncSampler", "cfg")),
    Case("cvd-sampler-without-cvd", cvd(model=["40", 0]), "node", "CVK_EpipolarSyncSampler", "model",
         "with CameraCtrl and CVD"),
    Case("view-grid-views-do-not-divide", view_grid(3), "node", "CVK_ViewGrid", "views",
         "got 3; expected a number that divides the 8 frames given"),
    Case("view-grid-zero-views", view_grid(0), "validation", "CVK_ViewGrid", "views", "value_smaller_than_min"),
    # LVDM
    Case("lvdm-text-file", lvdm(loader={"model_name": "lvdm/" + BAD_LVDM}), "node", "CVK_LVDMLoader", "model_name",
         "'not_an_lvdm.ckpt' could not be read"),
    Case("lvdm-custom-without-scale", lvdm(loader={"preset": "custom"}), "node", "CVK_LVDMLoader", "scale",
         "expected a scale > 0 with preset 'custom'"),
    Case("lvdm-demo-from-the-file", lvdm(loader={"preset": "from the file"}), "node", "CVK_LVDMLoader", "preset",
         "a named preset or 'custom' for the tiny demo"),
    Case("lvdm-scale-with-named-preset", lvdm(loader={"scale": 0.5}), "node", "CVK_LVDMLoader", "preset",
         "expected 'custom' to use your own scale and shift"),
    Case("lvdm-demo-with-ae", lvdm(loader={"ae": BAD_LVDM}), "node", "CVK_LVDMLoader", "ae",
         "expected 'none' for the tiny demo"),
    Case("lvdm-frames-not-multiple-of-4", lvdm(frames=6), "node", "CVK_UnconditionalVideo", "frames",
         "got 6; expected a multiple of 4"),
    Case("lvdm-text-model", lvdm() | {"61": _n("CVK_UnconditionalVideo", model=["1", 0], **UNCOND), "1": _loader()},
         "node", "CVK_UnconditionalVideo", "model", "expected an unconditional LVDM model"),
    Case("lvdm-model-in-text-to-video", t2v() | {"2": _n("CVK_TextToVideo", model=["60", 0], **T2V),
                                                 "60": _n("CVK_LVDMLoader", **LOADER_LVDM)},
         "node", "CVK_TextToVideo", "model", "expected a text-conditioned model"),
    Case("lvdm-latent-into-sd-decoder", lvdm() | {"90": _n("CVK_DecodeVideo", model=["1", 0], latent=["61", 0],
                                                           frames_per_batch=8), "1": _loader()},
         "node", "CVK_DecodeVideo", "latent", "decode it with the model that made it"),
    Case("lvdm-decode-odd-overlap", lvdm(frames=8) | {"90": _n("CVK_DecodeVideo", model=["60", 0], latent=["61", 0],
                                                               frames_per_batch=8, window=1, overlap=3)},
         "node", "CVK_DecodeVideo", "overlap", "got 3; expected an even number"),
    Case("t2v-fps-on-a-model-without-fps", t2v(fps=8), "node", "CVK_TextToVideo", "fps",
         "got 8; expected 0 for tiny-animatediff, which is not conditioned on fps"),
    Case("lvdm-eta-nan", lvdm(eta=NAN), "node", "CVK_UnconditionalVideo", "eta", _nan("UnconditionalVideo", "eta")),
    # long videos
    Case("extend-w-on-a-replacement-model", extend("1", w=0.1), "node", "CVK_ExtendVideo", "w",
         "got 0.1; expected 0 for tiny-animatediff: unconditional guidance needs a model with a frame-unconditional"),
    Case("extend-with-the-interp-model", extend("63"), "node", "CVK_ExtendVideo", "model", "use Interpolate Video"),
    Case("extend-pred-frames-not-keyframes", extend(new_frames=20), "node", "CVK_ExtendVideo", "new_frames",
         "got 20; expected a multiple of 16 for tiny-lvdm-pred"),
    Case("extend-prompt-on-an-unconditional-model", extend(prompt="a cat"), "node", "CVK_ExtendVideo", "prompt",
         "expected an empty prompt: tiny-lvdm-pred is an unconditional model"),
    Case("extend-s-beyond-the-trained-levels", extend(s=250), "node", "CVK_ExtendVideo", "s",
         "got 250; expected a level from 0 to 249"),
    Case("extend-context-as-long-as-the-window", extend("1", context=8), "node", "CVK_ExtendVideo", "context",
         "got 8; expected fewer than the window of 8 latents"),
    Case("extend-more-prompt-lines-than-windows", extend("1", prompt="a\nb"), "node", "CVK_ExtendVideo", "prompt",
         "got '2 lines'; expected at most 1 lines"),
    Case("extend-width-of-another-size", extend("1", width=96) | {"64": _n("CVK_ExtendVideo", model=["1", 0],
                                                                          latent=["2", 0], **dict(EXT_TEXT, width=96)),
                                                                  "2": _n("CVK_TextToVideo", model=["1", 0], **T2V)},
         "node", "CVK_ExtendVideo", "width", "got 96; expected 0 or 64"),
    Case("extend-w-nan", extend(w=NAN), "node", "CVK_ExtendVideo", "w", _nan("ExtendVideo", "w")),
    Case("interpolate-with-the-pred-model", interpolate("62"), "node", "CVK_InterpolateVideo", "model",
         "use Extend Video"),
    Case("interpolate-one-keyframe", interpolate(latent_frames=4), "node", "CVK_InterpolateVideo", "latent",
         "got '1 latent'; expected at least 2 keyframe latents"),
    Case("interpolate-ddpm-with-eta", interpolate(sampler="ddpm", eta=0.5), "node", "CVK_InterpolateVideo", "eta",
         "got 0.5; expected 1 with sampler ddpm"),
    Case("long-video-stride-not-a-power", long_video(stride=3), "node", "CVK_LongVideo", "stride",
         "stride 3 must be a power (≥ 1) of 4"),
    Case("long-video-models-swapped", long_video("63", "62"), "node", "CVK_LongVideo", "pred_model",
         "expected LVDM's pred model"),
    Case("long-video-target-not-whole-latents", long_video(target_frames=6), "node", "CVK_LongVideo", "target_frames",
         "got 6; expected a multiple of 4"),
    Case("long-video-zero-steps", long_video(steps=0), "validation", "CVK_LongVideo", "steps",
         "value_smaller_than_min"),
    # LGC-VD
    Case("lgcvd-text-file", lg_predict(loader={"model_name": BAD_LGCVD}), "node", "CVK_LGCVDLoader", "model_name",
         "'not_an_lgcvd.pt' could not be read"),
    Case("lgcvd-demo-with-a-dataset", lg_predict(loader={"dataset": "bair"}), "node", "CVK_LGCVDLoader", "dataset",
         "expected 'auto (from the file name)' for the tiny demo"),
    Case("lgcvd-picture-of-another-size", lg_predict(size=48), "node", "CVK_LGCVDPredict", "images",
         "expected 32×32 pictures, tiny-lgcvd's native size"),
    Case("lgcvd-video-model-into-predict", lg_predict() | {"72": _n("CVK_LGCVDPredict", model=["1", 0],
                                                                    images=["71", 0], new_frames=2, **LG_TASK),
                                                          "1": _loader()},
         "validation", "CVK_LGCVDPredict", "model", "return_type_mismatch"),
    Case("lgcvd-zero-new-frames", lg_predict(new_frames=0), "validation", "CVK_LGCVDPredict", "new_frames",
         "value_smaller_than_min"),
    Case("lgcvd-generate-too-short", lgcvd(_n("CVK_LGCVDGenerate", model=["70", 0], frames=6, **LG_TASK)),
         "validation", "CVK_LGCVDGenerate", "frames", "value_smaller_than_min"),
    Case("lgcvd-interpolate-a-batch", lgcvd(_n("CVK_LGCVDInterpolate", model=["70", 0], first=["74", 0],
                                              last=["71", 0], **LG_TASK))
         | {"74": _n("CVK_LGCVDGenerate", model=["70", 0], frames=8, **LG_TASK)},
         "node", "CVK_LGCVDInterpolate", "first", "expected one picture"),
    Case("lgcvd-infill-index-out-of-range", lg_infill(known="0, 8"), "node", "CVK_LGCVDInfill", "known",
         "got '0, 8'; expected indices from 0 to 7"),
    Case("lgcvd-infill-nothing-known", lg_infill(known=" , "), "node", "CVK_LGCVDInfill", "known",
         "expected at least one known frame"),
    Case("lgcvd-infill-words", lg_infill(known="first and last"), "node", "CVK_LGCVDInfill", "known",
         "expected frame indices such as '0, 1, 7'"),
    Case("lgcvd-infill-short-video", lg_infill() | {"74": _n("CVK_LGCVDPredict", model=["70", 0], images=["71", 0],
                                                              new_frames=3, **LG_TASK)},
         "node", "CVK_LGCVDInfill", "images", "of at least 8 frames"),
    Case("lgcvd-sampler-unknown", lg_predict(sampler="euler"), "validation", "CVK_LGCVDPredict", "sampler",
         "value_not_in_list"),
    # native models
    # (one output only: ComfyUI runs a prompt whose other outputs validate, so the bad node must feed the only one)
    Case("extend-native-with-a-pack-model", {"1": _loader(), "2": _n("CVK_TextToVideo", model=["1", 0], **T2V),
                                             "80": _n(
        "CVK_ExtendVideoNative", model=["1", 0], positive=["1", 0], negative=["1", 0], latent=["2", 0], new_frames=2,
        window=4, context=0, s=100, cfg=5.0, steps=1, sampler_name="euler", scheduler="normal", seed=0),
        "81": _n("CVK_DecodeVideo", model=["1", 0], latent=["80", 0], frames_per_batch=8),
        "82": _n("PreviewImage", images=["81", 0])},
         "validation", "CVK_ExtendVideoNative", "model", "return_type_mismatch"),
    Case("nivsds-native-with-a-pack-model", {
        "1": _loader(), "32": _n("EmptyLatentImage", width=64, height=64, batch_size=1),
        "80": _n("CVK_NIVSDSNative", model=["1", 0], positive=["1", 0], negative=["1", 0], anchor_latent=["32", 0],
                 frames=2, steps=2, p_ni_vsds=0.5, step_sizes="animatediff", cfg=7.5, scheduler="ddim_uniform", seed=0),
        "81": _n("CVK_DecodeVideo", model=["1", 0], latent=["80", 0], frames_per_batch=8),
        "82": _n("PreviewImage", images=["81", 0])},
         "validation", "CVK_NIVSDSNative", "model", "return_type_mismatch"),
    # (a SAMPLER is consumed only by core SamplerCustomAdvanced; the checkpoint only has to validate, it never loads)
    Case("videoguide-native-with-a-pack-model", {
        "1": _loader(), "90": _n("CheckpointLoaderSimple", ckpt_name=os.path.basename(TEXT_CKPT)),
        "91": _n("CLIPTextEncode", text="a cat", clip=["90", 1]), "92": _n("CLIPTextEncode", text="", clip=["90", 1]),
        "93": _n("CFGGuider", model=["90", 0], positive=["91", 0], negative=["92", 0], cfg=7.5),
        "94": _n("RandomNoise", noise_seed=0),
        "95": _n("BasicScheduler", model=["90", 0], scheduler="normal", steps=2, denoise=1.0),
        "32": _n("EmptyLatentImage", width=64, height=64, batch_size=2),
        "80": _n("CVK_VideoGuideNativeSampler", sampler_name="euler", guide=["1", 0], guide_positive=["91", 0],
                 guide_negative=["92", 0], guided_steps=1, guide_steps=2, guide_grid=4, guide_weight=0.2,
                 guide_cfg=7.5, filter="butterworth", filter_n=4, filter_d_s=0.125, filter_d_t=0.125,
                 match_by="sigma", seed=0),
        "81": _n("SamplerCustomAdvanced", noise=["94", 0], guider=["93", 0], sampler=["80", 0], sigmas=["95", 0],
                 latent_image=["32", 0]),
        "82": _n("VAEDecode", samples=["81", 0], vae=["90", 2]),
        "83": _n("PreviewImage", images=["82", 0])},
         "validation", "CVK_VideoGuideNativeSampler", "guide", "return_type_mismatch"),
    Case("preview-size-too-small", trajectory() | {"11": _n("CVK_CameraPreview", camera=["10", 0], size=64,
                                                           projections="top,front")},
         "validation", "CVK_CameraPreview", "size", "value_smaller_than_min"),
]
