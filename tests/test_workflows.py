"""Example workflows: node types exist, widget counts match, the API copies agree with the UI files, they open
readable in the frontend and end in a video, and the API copies run through an executor that follows ComfyUI's
rules."""
import glob
import json
import os

import pytest
import torch

from cvk_testkit import ROOT
from cvk_testkit.core_nodes import CORE_DISPLAY_NAMES, CORE_NODES
from cvk_testkit.executor import Executor, WorkflowError
from cvk_testkit.workflows import (CANVAS, EXAMPLE_VIDEOS, LOW_DETAIL_ZOOM, MIN_ZOOM, NATIVE_API_CHANGES,
                                   check_ui_workflow, fit_view, native_api_copy, node_rects, title_problems, ui_to_api,
                                   video_endings, view_problems)

UI_FILES = sorted(glob.glob(os.path.join(ROOT, "example_workflows", "*.json")))
API_DIR = os.path.join(ROOT, "tests", "workflows")


@pytest.fixture(scope="module")
def classes(pack):
    return {**pack.NODE_CLASS_MAPPINGS, **CORE_NODES}


def api_copy(ui_path):
    name = os.path.splitext(os.path.basename(ui_path))[0]
    with open(os.path.join(API_DIR, name + "_api.json")) as f:
        return json.load(f)


def test_there_are_example_workflows():
    assert any(p.endswith("cvk_text_to_video.json") for p in UI_FILES)


@pytest.mark.parametrize("path", UI_FILES, ids=os.path.basename)
def test_ui_workflow_is_consistent(path, classes):
    with open(path) as f:
        wf = json.load(f)
    assert "nodes" in wf and "links" in wf, "example workflows must be in UI format"
    assert check_ui_workflow(wf, classes) == []
    assert os.path.exists(path[:-5] + ".jpg"), "the template browser wants a <name>.jpg thumbnail"
    api = api_copy(path)
    strip = lambda p: {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in p.items()}
    name = os.path.basename(path)[:-5]
    assert strip(native_api_copy(name, wf, classes)) == strip(api)      # the pack's own: ui_to_api exactly
    if name not in NATIVE_API_CHANGES:
        assert strip(ui_to_api(wf, classes)) == strip(api)


# The frontend's own "fit view" as measured (Templates dialog, 1280 × 800 window): node boxes, title bars included
# (x, y, w, h) → the view it chose. The first layouts of cvk_i4vgen and cvk_camera_paths.
FRONTEND_FITS = [
    ([(20, 30, 400, 160), (460, 30, 400, 450), (460, 530, 400, 90), (900, 30, 400, 330), (1340, 30, 400, 430),
      (1780, 30, 400, 410), (2220, 30, 300, 110), (2560, 30, 420, 490), (900, 410, 400, 330)],
     0.3221476510067114, [486.66666666666674, 856.6666666666667]),
    ([(20, 50, 340, 280), (400, 50, 640, 590), (1080, 50, 520, 330), (20, 370, 340, 110)],
     0.6, [256.66666666666674, 321.66666666666674]),
]


@pytest.mark.parametrize("rects,scale,offset", FRONTEND_FITS)
def test_fit_view_is_the_frontends(rects, scale, offset):
    got_scale, got_offset = fit_view(rects, CANVAS)
    assert got_scale == pytest.approx(scale, rel=1e-9) and got_offset == pytest.approx(offset, rel=1e-9)


@pytest.mark.parametrize("path", UI_FILES, ids=os.path.basename)
def test_workflow_opens_readable(path):
    """Opened from the Templates dialog (the frontend fits the view) it is zoomed to at least 0.6, above the
    frontend's low-detail threshold, where node text is drawn; opened directly (its saved view) every node is
    on screen, right of the sidebar, below the top bars and clear of the minimap, at a zoom of at least 0.6."""
    with open(path) as f:
        wf = json.load(f)
    assert MIN_ZOOM > LOW_DETAIL_ZOOM
    assert view_problems(wf) == []
    print(f"\n{os.path.basename(path)}: fit {fit_view(node_rects(wf))[0]:.3f}, saved view {wf['extra']['ds']}")


@pytest.mark.parametrize("path", UI_FILES, ids=os.path.basename)
def test_titles_are_whole(path, pack):
    """Every node is wide enough for its whole title (the frontend cuts titles short with "…"), and the demo
    loaders' titles end before their UNTRAINED DEMO badge."""
    with open(path) as f:
        wf = json.load(f)
    assert title_problems(wf, {**pack.NODE_DISPLAY_NAME_MAPPINGS, **CORE_DISPLAY_NAMES}) == []


def test_view_problems_are_found():
    with open(os.path.join(ROOT, "example_workflows", "cvk_text_to_video.json")) as f:
        wf = json.load(f)
    wf["extra"]["ds"] = {"scale": 0.9, "offset": [0, 0]}           # every node from the window's top-left corner
    problems = view_problems(wf)
    assert any("under the sidebar" in p for p in problems) and any("under the top bars" in p for p in problems)
    wf["nodes"][-1]["pos"] = [4000, 0]                               # a node far away: the fit zooms out
    problems = view_problems(wf)
    assert any("as a template it is zoomed to" in p for p in problems) and any("past the window" in p for p in problems)
    for node in wf["nodes"]:
        node["size"][0] = 240                                     # Text to Video needs 60 + 8 · 19 = 212
    names = {"CVK_VideoModelLoader": "Load Video Model (CVK)", "CVK_TextToVideo": "Text to Video (CVK)"}
    assert [p.split(":")[0] for p in title_problems(wf, names)] == ["node 1 (CVK_VideoModelLoader)"]
    wf["nodes"][0]["widgets_values"][0] = "checkpoints/real.safetensors"     # no badge: 60 + 8 · 22 = 236
    assert title_problems(wf, names) == []


@pytest.mark.parametrize("path", UI_FILES, ids=os.path.basename)
def test_video_examples_end_in_a_video(path):
    """Decoded frames become a playable video (CreateVideo → SaveVideo), not a folder of PNG frames."""
    with open(path) as f:
        wf = json.load(f)
    name = os.path.basename(path)[:-5]
    assert video_endings(wf) == []
    assert any(n["type"] == "SaveVideo" for n in wf["nodes"]) == (name in EXAMPLE_VIDEOS)


def test_widget_count_mismatch_is_caught(classes):
    with open(os.path.join(ROOT, "example_workflows", "cvk_text_to_video.json")) as f:
        wf = json.load(f)
    t2v = next(n for n in wf["nodes"] if n["type"] == "CVK_TextToVideo")
    t2v["widgets_values"].remove("fixed")          # as if the seed's control value were forgotten
    wf["nodes"].append({"id": 99, "type": "CVK_NoSuchNode", "widgets_values": []})
    problems = check_ui_workflow(wf, classes)
    assert any("CVK_TextToVideo" in p and "12 widget values, definition has 13" in p for p in problems)
    assert any("unknown type 'CVK_NoSuchNode'" in p for p in problems)


@pytest.mark.parametrize("path", UI_FILES, ids=os.path.basename)
def test_api_workflow_runs(path, classes, comfy_dirs):
    if os.path.basename(path)[:-5] in NATIVE_API_CHANGES:
        pytest.skip("an example on native ComfyUI models runs in the real host only (tests/test_comfyui_host.py)")
    prompt = api_copy(path)
    for node in prompt.values():      # pictures a workflow loads (ComfyUI ships input/example.png, 768×768)
        if node["class_type"] == "LoadImage":
            from PIL import Image
            g = torch.Generator().manual_seed(0)
            arr = (torch.rand(96, 96, 3, generator=g) * 255).byte().numpy()
            Image.fromarray(arr).resize((768, 768)).save(comfy_dirs / "input" / node["inputs"]["image"])
    results = Executor(classes).run(prompt)
    saved = [img for r in results.values() if r["ui"] for img in r["ui"].get("images", [])]
    assert saved and all(os.path.exists(comfy_dirs / s["type"] / s["subfolder"] / s["filename"]) for s in saved)
    videos = [r["ui"]["images"][0] for nid, r in results.items() if prompt[nid]["class_type"] == "SaveVideo"]
    name = os.path.basename(path)[:-5]
    assert len(videos) == (name in EXAMPLE_VIDEOS)
    for v in videos:                              # the stand-in's animated PNG: every frame, at the video's size
        from PIL import Image
        with Image.open(comfy_dirs / "output" / v["subfolder"] / v["filename"]) as im:
            assert (im.n_frames, im.width, im.height) == EXAMPLE_VIDEOS[name]


def test_executor_follows_comfy_validation(classes):
    ex = Executor(classes)
    base = {"1": {"class_type": "CVK_VideoModelLoader", "inputs": {"model_name": "tiny-animatediff (untrained demo)"}},
            "2": {"class_type": "CVK_TextToVideo", "inputs": {
                "model": ["1", 0], "prompt": "x", "negative_prompt": "", "seed": 0, "steps": 2, "guidance": "cfg",
                "guidance_scale": 7.5, "sampler": "ddim", "eta": 0.0, "frames": 2, "width": 64, "height": 64}},
            "3": {"class_type": "CVK_DecodeVideo", "inputs": {"model": ["1", 0], "latent": ["2", 0],
                                                               "frames_per_batch": 8}},
            "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "t"}}}
    assert ex.validate(base) == ["1", "2", "3", "4"]
    cases = [
        ({"4": None}, "prompt_no_outputs"),
        ({"2": {"steps": 0}}, "value_smaller_than_min"),
        ({"2": {"guidance": "pag"}}, "value_not_in_list"),
        ({"3": {"latent": ["1", 0]}}, "return_type_mismatch"),
        ({"3": {"latent": ["9", 0]}}, "bad_linked_input"),
        ({"2": {"prompt": 5}}, "invalid_input_type"),
    ]
    for change, kind in cases:
        p = json.loads(json.dumps(base))
        for nid, inputs in change.items():
            if inputs is None:
                del p[nid]
            else:
                p[nid]["inputs"].update(inputs)
        with pytest.raises(WorkflowError) as e:
            ex.validate(p)
        assert e.value.kind == kind
    p = json.loads(json.dumps(base))
    del p["2"]["inputs"]["seed"]
    with pytest.raises(WorkflowError, match="required input 'seed' missing"):
        ex.validate(p)


def test_load_encode_decode_graph(classes, comfy_dirs):
    """LoadImage (stand-in) → EncodeVideo → DecodeVideo → PreviewImage: a user's picture through the VAE."""
    from PIL import Image
    Image.new("RGB", (64, 48), (200, 30, 30)).save(comfy_dirs / "input" / "red.png")
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "red.png"}},
              "2": {"class_type": "CVK_VideoModelLoader", "inputs": {"model_name": "tiny-modelscope (untrained demo)"}},
              "3": {"class_type": "CVK_EncodeVideo", "inputs": {"model": ["2", 0], "images": ["1", 0],
                                                                 "frames_per_batch": 4}},
              "4": {"class_type": "CVK_DecodeVideo", "inputs": {"model": ["2", 0], "latent": ["3", 0],
                                                                 "frames_per_batch": 4}},
              "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}}}
    results = Executor(classes).run(prompt)
    assert results["3"]["result"][0]["samples"].shape == (1, 4, 1, 6, 8)
    assert results["4"]["result"][0].shape == (1, 48, 64, 3)
    assert (comfy_dirs / "temp" / results["5"]["ui"]["images"][0]["filename"]).exists()


def test_video_stand_ins_check_what_comfyui_needs(comfy_dirs):
    """CreateVideo → SaveVideo stand-ins: the frames written in order at the frame rate, in the prefix's subfolder,
    numbered on; refused where ComfyUI's encoder would fail (odd sizes for yuv420p, WebM without AV1, no frames)."""
    from PIL import Image
    from cvk_testkit.core_nodes import CreateVideo, SaveVideo
    frames = torch.linspace(0, 1, 5)[:, None, None, None].expand(5, 6, 10, 3).contiguous()   # 5 frames, 10 × 6
    (video,) = CreateVideo().execute(frames, 8.0)
    assert video.get_dimensions() == (10, 6)
    first = SaveVideo().save_video(video, "video/clip", "mp4", **{"format.codec": "auto"})
    second = SaveVideo().save_video(video, "video/clip", "mp4", **{"format.codec": "h264"})
    names = [r["ui"]["images"][0] for r in (first, second)]
    assert [n["filename"] for n in names] == ["clip_00001_.apng", "clip_00002_.apng"]
    assert all(n["subfolder"] == "video" and n["type"] == "output" for n in names) and first["ui"]["animated"] == (True,)
    with Image.open(comfy_dirs / "output" / "video" / "clip_00001_.apng") as im:
        assert (im.n_frames, im.size, im.info["duration"]) == (5, (10, 6), 125)
        im.seek(4)
        assert im.convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    for bad, words in [(frames[:, :5], "even sizes"), (frames[:0], "0 frames"),
                       (frames * 2, "0..1")]:
        with pytest.raises(ValueError, match=words):
            SaveVideo().save_video(CreateVideo().execute(bad, 8.0)[0], "v", "mp4", **{"format.codec": "auto"})
    with pytest.raises(ValueError, match="WebM output requires the AV1 codec"):
        SaveVideo().save_video(video, "v", "webm", **{"format.codec": "h264"})
    with pytest.raises(ValueError, match="IMAGE batch"):
        CreateVideo().execute(frames[0], 8.0)
