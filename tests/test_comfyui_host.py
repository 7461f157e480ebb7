"""The pack inside a real ComfyUI server (CPU). Runs only when COMFYUI_PATH points at a ComfyUI
source tree whose Python environment can run it (see shared/reference/comfyui-host-cpu.md):

    COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/venv/bin/python \
    COMFYUI_LD_LIBRARY_PATH=/path/to/torchvision-stubs .venv/bin/python -m pytest -m comfyui

The pack is linked into custom_nodes/ for the duration of the test; output, temp and user folders
are temporary. Checks: the pack loads without errors, every CVK_ node is in /object_info, the example
workflows are listed by /workflow_templates, and each API copy runs to a saved output.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from cvk_testkit import ROOT
from cvk_testkit import bad_inputs as bi
from cvk_testkit import tiny_files as tf
from cvk_testkit.workflows import EXAMPLE_VIDEOS

COMFY = os.environ.get("COMFYUI_PATH")
# CI (.ci/run) always builds the real host: there a missing COMFYUI_PATH fails instead of skipping
pytestmark = [pytest.mark.comfyui,
              pytest.mark.skipif(not COMFY and not os.environ.get("CI"),
                                 reason="COMFYUI_PATH is not set: no real ComfyUI to test inside (build one with "
                                        "../shared/tools/comfyui-host.sh, see the README)")]
FOLDER = "consistent_video_kit"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(base, path):
    with urllib.request.urlopen(base + path, timeout=30) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def server(tmp_path_factory, real_size_models):
    if not COMFY:
        pytest.fail("CI is set but COMFYUI_PATH is not: run the real-host tests through .ci/run, which builds ComfyUI")
    if not os.environ.get("COMFYUI_ADE_PATH"):
        pytest.fail("COMFYUI_ADE_PATH is not set: the native examples need AnimateDiff-Evolved (../shared/tools/"
                    "comfyui-host.sh builds it beside ComfyUI)")
    tmp = tmp_path_factory.mktemp("comfy")
    for sub in ("output", "temp", "user"):
        (tmp / sub).mkdir()
    models = tmp / "models"
    bi.write_files(str(models), str(tmp / "input"))      # tiny SD1.5 folder + motion module, broken files, poses
    shutil.copy(os.path.join(COMFY, "input", "example.png"), tmp / "input")   # the image-to-video example's picture
    tf.write_modelscope_folder(str(models / "diffusers" / "tiny_zeroscope"))
    for sub in ("checkpoints", "animatediff_models"):     # the native examples' SD1.5 and motion module
        for f in os.listdir(real_size_models / sub):
            os.symlink(real_size_models / sub / f, models / sub / f)
    (tmp / "extra_model_paths.yaml").write_text(f"cvk_test:\n    base_path: {models}\n" + "".join(
        f"    {sub}: {sub}\n" for sub in bi.MODEL_FOLDERS) + f"cvk_test_nodes:\n    custom_nodes: {_write_probe(tmp)}\n")
    link = os.path.join(COMFY, "custom_nodes", FOLDER)
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(ROOT, link)
    port = _free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")   # one torch thread: 2 busy cores
    if os.environ.get("COMFYUI_LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] = os.environ["COMFYUI_LD_LIBRARY_PATH"]
    log = open(tmp / "comfy.log", "w")
    proc = subprocess.Popen(
        [os.environ.get("COMFYUI_PYTHON", sys.executable), "main.py", "--cpu", "--listen", "127.0.0.1", "--port",
         str(port), "--disable-api-nodes", "--output-directory", str(tmp / "output"), "--temp-directory",
         str(tmp / "temp"), "--user-directory", str(tmp / "user"), "--input-directory", str(tmp / "input"),
         "--extra-model-paths-config", str(tmp / "extra_model_paths.yaml")],
        cwd=COMFY, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(480):
            if proc.poll() is not None:
                break
            try:
                _get(base, "/object_info/CVK_TextToVideo")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        else:
            pytest.fail("ComfyUI did not answer within 240 s")
        assert proc.poll() is None, open(tmp / "comfy.log").read()[-3000:]
        yield base, tmp
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        os.remove(link)


def test_pack_loads_and_every_node_is_listed(server, pack):
    base, tmp = server
    text = open(tmp / "comfy.log").read()
    assert "IMPORT FAILED" not in text or FOLDER not in text.split("IMPORT FAILED")[1].splitlines()[0], text[-3000:]
    info = _get(base, "/object_info")
    ours = {k for k in info if k.startswith("CVK_")}
    assert ours == set(pack.NODE_CLASS_MAPPINGS)
    assert info["CVK_TextToVideo"]["python_module"].startswith("custom_nodes.")
    assert any(e.endswith("/cvk.js") for e in _get(base, "/extensions"))
    assert "ADE_AnimateDiffLoaderGen1" in info, "AnimateDiff-Evolved did not load beside the pack"


def queue(base, prompt):
    """POST an API prompt: ``(prompt_id, None)``, or ``(None, the 400 answer)`` when validation refuses it."""
    req = urllib.request.Request(base + "/prompt", data=json.dumps({"prompt": prompt, "client_id": str(uuid.uuid4())}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        return json.load(urllib.request.urlopen(req, timeout=30))["prompt_id"], None
    except urllib.error.HTTPError as e:
        assert e.code == 400, e.code
        return None, json.load(e)


def wait(base, pid):
    """The history entry of a queued prompt once it has finished."""
    for _ in range(2400):
        hist = _get(base, f"/history/{pid}")
        if pid in hist and hist[pid].get("status", {}).get("completed") is not None:
            return hist[pid]
        time.sleep(0.25)
    pytest.fail(f"prompt {pid} did not finish within 600 s")


def run_prompt(base, tmp, prompt):
    """Queue an API prompt, wait for it, return the saved image entries (asserting success)."""
    pid, refused = queue(base, prompt)
    assert refused is None, json.dumps(refused)[-3000:]
    entry = wait(base, pid)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[-3000:]
    images = [img for out in entry["outputs"].values() for img in out.get("images", []) if img["type"] == "output"]
    assert images and all((tmp / "output" / i["subfolder"] / i["filename"]).exists() for i in images)
    return images


PYAV_PROBE = """
import json, sys
import av
with av.open(sys.argv[1]) as c:
    (v,) = c.streams.video
    frames = [f for f in c.decode(v)]
    print(json.dumps({"frames": len(frames), "width": v.codec_context.width, "height": v.codec_context.height,
                      "codec": v.codec_context.name, "fps": float(v.average_rate), "format": c.format.name}))
"""


def _probe_video(path):
    """Open a saved video with PyAV in ComfyUI's own Python (our test environment has no PyAV)."""
    run = subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable), "-c", PYAV_PROBE, str(path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_example_workflows_are_templates_and_run(server):
    """Every example is listed as a template and its API copy runs in the real server (the wall time is printed, not
    asserted: a shared machine makes it noisy; bench/quickstart_times.py measures CPU time); a video example's
    SaveVideo writes an MP4 that PyAV opens with the video's frames and size."""
    base, tmp = server
    templates = _get(base, "/workflow_templates")
    names = sorted(f[:-5] for f in os.listdir(os.path.join(ROOT, "example_workflows")) if f.endswith(".json"))
    assert sorted(templates[FOLDER]) == names
    for name in names:
        with open(os.path.join(ROOT, "tests", "workflows", name + "_api.json")) as f:
            prompt = json.load(f)
        t0 = time.perf_counter()
        saved = run_prompt(base, tmp, prompt)
        took = time.perf_counter() - t0
        videos = [s for s in saved if s["filename"].endswith(".mp4")]
        line = f"\n{name}: {took:.1f} s in the real host"
        if name in EXAMPLE_VIDEOS:
            assert len(videos) == 1, saved
            info = _probe_video(tmp / "output" / videos[0]["subfolder"] / videos[0]["filename"])
            frames, width, height = EXAMPLE_VIDEOS[name]
            assert (info["frames"], info["width"], info["height"]) == (frames, width, height), info
            assert info["codec"] == "h264" and info["fps"] == 8.0 and "mp4" in info["format"], info
            line += f"; {videos[0]['subfolder']}/{videos[0]['filename']}: {info}"
        else:
            assert videos == []
        print(line)


def test_loader_lists_and_loads_files_from_comfyui_model_folders(server):
    base, tmp = server
    spec = _get(base, "/object_info/CVK_VideoModelLoader")["CVK_VideoModelLoader"]["input"]
    assert {"diffusers/tiny_sd15", "diffusers/tiny_zeroscope"} <= set(spec["required"]["model_name"][0])
    assert "tiny_mm_v2.ckpt" in spec["optional"]["motion_module"][0]
    for i, (model, mm) in enumerate((("diffusers/tiny_sd15", "tiny_mm_v2.ckpt"), ("diffusers/tiny_zeroscope", "none"))):
        prompt = {"1": {"class_type": "CVK_VideoModelLoader", "inputs": {"model_name": model, "motion_module": mm}},
                  "2": {"class_type": "CVK_TextToVideo", "inputs": {
                      "model": ["1", 0], "prompt": "a cat", "negative_prompt": "", "seed": i, "steps": 2, "guidance": "cfg",
                      "guidance_scale": 7.5, "sampler": "ddim", "eta": 0.0, "frames": 3, "width": 64, "height": 64}},
                  "3": {"class_type": "CVK_DecodeVideo", "inputs": {"model": ["1", 0], "latent": ["2", 0], "frames_per_batch": 8}},
                  "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": f"cvk_files_{i}"}}}
        assert len(run_prompt(base, tmp, prompt)) == 3


def test_a_model_trained_here_samples_in_a_workflow(server, pack, tiny_trained):
    """The short model of the tiny training run (scripts/train.py's path; CI's training stage), copied into
    models/lvdm, is listed by Load LVDM Model and, with preset 'from the file' (configs and latent normalisation from
    its metadata), samples a video: Unconditional Video → Decode Video → Create Video → Save Video."""
    from consistent_video_kit.models.lvdm.model import FROM_FILE
    from cvk_testkit.tiny_training import SIZE
    base, tmp = server
    name = "lvdm/cvk_trained_short.safetensors"                    # as the loader lists it
    shutil.copy(tiny_trained["short"], tmp / "models" / name)
    spec = _get(base, "/object_info/CVK_LVDMLoader")["CVK_LVDMLoader"]["input"]["required"]
    assert name in spec["model_name"][0] and FROM_FILE in spec["preset"][0]
    prompt = {
        "1": {"class_type": "CVK_LVDMLoader", "inputs": {
            "model_name": name, "ae": "none", "preset": FROM_FILE, "scale": 0.0, "shift": 0.0, "weights": "ema",
            "precision": "auto", "attention": "sdpa"}},
        "2": {"class_type": "CVK_UnconditionalVideo", "inputs": {
            "model": ["1", 0], "seed": 3, "steps": 4, "sampler": "ddim", "eta": 1.0, "frames": 16, "width": SIZE,
            "height": SIZE}},
        "3": {"class_type": "CVK_DecodeVideo", "inputs": {
            "model": ["1", 0], "latent": ["2", 0], "frames_per_batch": 8, "window": 32, "overlap": 12,
            "seams": "exact"}},
        **_save_video("3", 4, "cvk_trained_short")}
    info = _run_video(base, tmp, prompt)
    assert (info["frames"], info["width"], info["height"]) == (16, SIZE, SIZE), info


def _save_video(images: str, at: int, prefix: str) -> dict:
    """Create Video (8 fps) → Save Video (mp4) of node ``images``' output, as nodes ``at`` and ``at + 1``."""
    return {str(at): {"class_type": "CreateVideo", "inputs": {"images": [images, 0], "fps": 8, "bit_depth": 8}},
            str(at + 1): {"class_type": "SaveVideo", "inputs": {"video": [str(at), 0], "format": "mp4",
                                                                "filename_prefix": f"video/{prefix}", "codec": "auto"}}}


def _run_video(base, tmp, prompt) -> dict:
    """Run a prompt that saves one MP4; PyAV's reading of it (frames, size, codec)."""
    saved = run_prompt(base, tmp, prompt)
    (video,) = [s for s in saved if s["filename"].endswith(".mp4")]
    return _probe_video(tmp / "output" / video["subfolder"] / video["filename"])


def test_an_lgcvd_model_trained_here_predicts_in_a_workflow(server, tiny_trained):
    """The tiny LGC-VD run's export (training/lgcvd.py), copied into models/lgcvd, is listed and loads with dataset
    'auto' (its config from the file): Load Image → Upscale Image 32 px → LGC-VD Predict 13 new → Create/Save Video."""
    from cvk_testkit.tiny_training import SIZE
    base, tmp = server
    name = "cvk_trained_lgcvd.safetensors"
    shutil.copy(tiny_trained["lgcvd"], tmp / "models" / "lgcvd" / name)
    spec = _get(base, "/object_info/CVK_LGCVDLoader")["CVK_LGCVDLoader"]["input"]["required"]
    assert name in spec["model_name"][0]
    prompt = {
        "1": {"class_type": "CVK_LGCVDLoader", "inputs": {"model_name": name, "dataset": spec["dataset"][0][0],
                                                          "weights": "ema", "precision": "auto"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "3": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "area", "width": SIZE,
                                                     "height": SIZE, "crop": "center"}},
        "4": {"class_type": "CVK_LGCVDPredict", "inputs": {"model": ["1", 0], "images": ["3", 0], "new_frames": 13,
                                                           "steps": 4, "sampler": "ddpm", "seed": 5}},
        **_save_video("4", 5, "cvk_trained_lgcvd")}
    info = _run_video(base, tmp, prompt)
    assert (info["frames"], info["width"], info["height"]) == (14, SIZE, SIZE), info


def good_prompt(seed):
    """A small text-to-video that saves its frames: the server must still run it after any bad prompt."""
    graph = bi.t2v(seed=seed)
    graph["91"] = {"class_type": "SaveImage", "inputs": {"images": ["90", 0], "filename_prefix": "cvk_after_bad"}}
    return graph


def test_bad_inputs_are_refused_clearly_and_the_server_goes_on(server):
    """Every case of the bad-input suite, through the real server: refused by ComfyUI's validation (400, the
    input named) or by the node (execution_error, type 'CVKInputError', the node's message); then a good
    prompt runs."""
    base, tmp = server
    counts = {"validation": 0, "node": 0}
    for i, case in enumerate(bi.CASES):
        pid, refused = queue(base, case.prompt)
        if case.kind == "validation":
            assert pid is None, f"{case.id}: not refused by validation"
            errors = [(nid, err) for nid, ne in refused["node_errors"].items() for err in ne["errors"]]
            assert any(refused["node_errors"][nid]["class_type"] == case.class_type and err["type"] == case.words
                       and err["extra_info"]["input_name"] == case.input for nid, err in errors), (case.id, errors)
        else:
            assert refused is None, f"{case.id}: refused by validation: {json.dumps(refused)[-2000:]}"
            entry = wait(base, pid)
            assert entry["status"]["status_str"] == "error", f"{case.id}: ran to {entry['status']['status_str']}"
            (err,) = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
            msg = err["exception_message"].strip()
            assert err["node_type"] == case.class_type and err["exception_type"] == "CVKInputError", (case.id, err)
            assert msg.startswith(f"{case.class_type}: input '{case.input}' got ") and case.words in msg, (case.id, msg)
        counts[case.kind] += 1
        assert len(run_prompt(base, tmp, good_prompt(1000 + i))) == 2, case.id
    print(f"\nreal host: {counts['validation']} refused by validation, {counts['node']} by the node, "
          f"{len(bi.CASES)} good prompts after them")


# ---------------------------------------------------------------- the pack's models under ComfyUI's model management

PROBE = "CVKTestProbe_LoadedModels"
PROBE_SOURCE = f'''"""Test-only node (written by tests/test_comfyui_host.py into a temporary custom_nodes folder of its own,
never part of the pack): what comfy.model_management.current_loaded_models holds."""
import comfy.model_management as mm


class {PROBE}:
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "probe"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {{"required": {{"tag": ("STRING", {{"default": ""}})}}, "optional": {{"after": ("IMAGE",)}}}}

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")          # never cached: it reports the state at its run

    def probe(self, tag, after=None):
        models = []
        for lm in mm.current_loaded_models:
            patcher = lm.model
            if patcher is not None:
                held = patcher.model
                models.append({{"class": type(held).__name__, "module": type(held).__module__,
                                "patcher": type(patcher).__name__, "device": str(lm.device),
                                "loaded_bytes": int(patcher.loaded_size())}})
        return {{"ui": {{"models": models}}}}


NODE_CLASS_MAPPINGS = {{"{PROBE}": {PROBE}}}
'''


def _write_probe(tmp):
    """The probe node in a custom_nodes folder of the test's own, which the server also loads (through the
    ``custom_nodes`` key of its extra model paths file): test-only code stays out of the pack. AnimateDiff-Evolved
    goes there too."""
    folder = tmp / "custom_nodes"
    (folder / "cvk_test_probe").mkdir(parents=True)
    (folder / "cvk_test_probe" / "__init__.py").write_text(PROBE_SOURCE)
    os.symlink(os.environ["COMFYUI_ADE_PATH"], folder / "ComfyUI-AnimateDiff-Evolved")    # the native examples use it
    return folder


def _probe_graph(after=None, tag=""):
    inputs = {"tag": tag} if after is None else {"tag": tag, "after": after}
    return {"class_type": PROBE, "inputs": inputs}


def _pack_models(entry, node_id):
    """(holder class, patcher class) of the pack's models in the probe's report."""
    return sorted((m["class"], m["patcher"]) for m in entry["outputs"][node_id]["models"]
                  if m["module"].endswith(".host") and m["class"].startswith("CVK_"))


def _run_with_probe(base, tmp, graph, probe_after=None):
    graph = dict(graph, probe=_probe_graph(probe_after, uuid.uuid4().hex))
    pid, refused = queue(base, graph)
    assert refused is None, json.dumps(refused)[-3000:]
    entry = wait(base, pid)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[-3000:]
    return entry


def _frames(tmp, entry):
    import numpy as np
    from PIL import Image
    images = [img for out in entry["outputs"].values() for img in out.get("images", []) if img["type"] == "output"]
    return [np.asarray(Image.open(tmp / "output" / i["subfolder"] / i["filename"])) for i in images]


def _post(base, path, obj):
    req = urllib.request.Request(base + path, data=json.dumps(obj).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def _unload_models(base, tmp):
    """POST /free with unload_models, then the pack's models still loaded. The server unloads between prompts
    (after the prompt running, or at once when idle): by the second probe-only prompt it has happened."""
    assert _post(base, "/free", {"unload_models": True}) == 200
    _run_with_probe(base, tmp, {})
    return _pack_models(_run_with_probe(base, tmp, {}), "probe")


def test_unload_models_unloads_the_packs_models_and_the_next_run_loads_them_again(server):
    """A pack workflow (a diffusers SD1.5 folder + motion module: Text to Video → Decode → Save) leaves its UNet,
    text encoder and VAE in ComfyUI's current_loaded_models, held by the pack's ModelPatcher; POST /free with
    unload_models takes them out of it; the same workflow then runs again (its outputs are no longer cached: a
    run with another seed came between), loads them again and saves the same frames."""
    base, tmp = server
    graph = lambda seed: dict(bi.t2v(seed=seed, steps=2, frames=3) | {"1": bi._loader(bi.SD_FOLDER, motion_module=bi.MM)},  # noqa: E731
                              **{"91": {"class_type": "SaveImage", "inputs": {"images": ["90", 0],
                                                                              "filename_prefix": f"cvk_free_{seed}"}}})
    want = [("CVK_AutoencoderKL", "CVKModelPatcher"), ("CVK_CLIPTextModel", "CVKModelPatcher"),
            ("CVK_UNetMotionModel", "CVKModelPatcher")]
    assert _unload_models(base, tmp) == []            # what earlier tests left loaded
    first = _run_with_probe(base, tmp, graph(1), ["90", 0])
    assert _pack_models(first, "probe") == want
    _run_with_probe(base, tmp, graph(2), ["90", 0])
    assert _unload_models(base, tmp) == []
    again = _run_with_probe(base, tmp, graph(1), ["90", 0])
    assert _pack_models(again, "probe") == want
    a, b = _frames(tmp, first), _frames(tmp, again)
    assert len(a) == len(b) == 3 and all((x == y).all() for x, y in zip(a, b))
    print(f"\nreal host: {len(want)} pack models loaded after a workflow, none after POST /free, loaded again by "
          f"the next run, same frames")
