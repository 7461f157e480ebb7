"""Example workflows: node types exist, widget counts match, the API copies agree with the UI files,
and the API copies run through an executor that follows ComfyUI's rules."""
import glob
import json
import os

import pytest
import torch

from cvk_testkit import ROOT
from cvk_testkit.core_nodes import CORE_NODES
from cvk_testkit.executor import Executor, WorkflowError
from cvk_testkit.workflows import check_ui_workflow, ui_to_api

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
    assert strip(ui_to_api(wf, classes)) == strip(api)


def test_widget_count_mismatch_is_caught(classes):
    with open(os.path.join(ROOT, "example_workflows", "cvk_text_to_video.json")) as f:
        wf = json.load(f)
    t2v = next(n for n in wf["nodes"] if n["type"] == "CVK_TextToVideo")
    t2v["widgets_values"].remove("fixed")          # as if the seed's control value were forgotten
    wf["nodes"].append({"id": 99, "type": "CVK_NoSuchNode", "widgets_values": []})
    problems = check_ui_workflow(wf, classes)
    assert any("CVK_TextToVideo" in p and "11 widget values, definition has 12" in p for p in problems)
    assert any("unknown type 'CVK_NoSuchNode'" in p for p in problems)


@pytest.mark.parametrize("path", UI_FILES, ids=os.path.basename)
def test_api_workflow_runs(path, classes, comfy_dirs):
    prompt = api_copy(path)
    for node in prompt.values():      # pictures a workflow loads (ComfyUI ships input/example.png, 768×768)
        if node["class_type"] == "LoadImage":
            from PIL import Image
            g = torch.Generator().manual_seed(0)
            arr = (torch.rand(96, 96, 3, generator=g) * 255).byte().numpy()
            Image.fromarray(arr).resize((768, 768)).save(comfy_dirs / "input" / node["inputs"]["image"])
    results = Executor(classes).run(prompt)
    saved = [img for r in results.values() if r["ui"] for img in r["ui"].get("images", [])]
    assert saved and all(os.path.exists(comfy_dirs / s["type"] / s["filename"]) for s in saved)


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
