"""Registry and ComfyUI-Manager rules, the dependency direction, and offline-only code."""
import ast
import os
import re
import subprocess
import sys
import tomllib

from cvk_testkit import ROOT

TORCH_FAMILY = re.compile(r"^\s*(torch|torchvision|torchaudio|xformers)\b", re.I)
PACK_TOP = {"nodes", "samplers", "camera", "models", "host"}


def pack_py_files():
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in ("tests", "bench", "scripts", "__pycache__")]
        out += [os.path.join(dirpath, f) for f in filenames if f.endswith(".py")]
    return out


def imports(path):
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield 0, a.name, node
        elif isinstance(node, ast.ImportFrom):
            yield node.level, node.module or "", node


def in_functions(path):
    """Line numbers of the import statements inside function bodies (run when called, not when imported)."""
    tree = ast.parse(open(path).read())
    return {n.lineno for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
            for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}


def test_requirements_match_pyproject():
    req = [l.strip() for l in open(os.path.join(ROOT, "requirements.txt")) if l.strip() and not l.startswith("#")]
    py = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))
    proj = py["project"]
    assert proj["dependencies"] == req
    assert not any(TORCH_FAMILY.match(r) for r in req)
    assert all(">=" in r and "==" not in r and "<" not in r for r in req), "lower bounds only"
    assert {r.split(">=")[0] for r in req} == {"diffusers", "transformers", "einops", "safetensors", "kornia", "numpy", "ftfy"}
    assert proj["name"] == "consistent-video-kit" and proj["version"] == "0.2.0"
    assert proj["requires-python"] == ">=3.10"
    assert "Operating System :: OS Independent" in proj["classifiers"]
    assert "Environment :: GPU :: NVIDIA CUDA" in proj["classifiers"]
    assert proj["optional-dependencies"] == {"xformers": ["xformers"], "training": ["accelerate>=1.15.0", "av>=18.1.0",
                                                                                      "h5py>=3.10", "tqdm>=4.66"]}
    assert "Repository" in proj["urls"]
    comfy = py["tool"]["comfy"]
    assert comfy["DisplayName"] == "Consistent Video Kit" and comfy["PublisherId"] and comfy["Icon"]
    assert py["tool"]["setuptools"]["packages"] == []


def test_dev_set_pins_torch_first_under_a_constraint():
    dev = [l.strip() for l in open(os.path.join(ROOT, "requirements-dev.txt")) if l.strip() and not l.startswith("#")]
    assert dev[0] == "torch==2.13.0" and all("==" in l for l in dev)
    assert not any(l.lower().startswith(("torchvision", "torchaudio", "xformers")) for l in dev)
    assert open(os.path.join(ROOT, "constraints.txt")).read().split() == ["torch==2.13.0"]
    assert "Apache License" in open(os.path.join(ROOT, "LICENSE")).read()


def test_registry_rules():
    assert not os.path.exists(os.path.join(ROOT, "install.py"))
    for path in pack_py_files():
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("eval", "exec"), f"{path}: {node.func.id}"
        src = open(path).read()
        for bad in ("pip install", "hf_hub_download", "snapshot_download", "urlretrieve", "requests.get"):
            assert bad not in src, f"{path} mentions {bad}"


def test_dependency_direction():
    for path in pack_py_files():
        rel = os.path.relpath(path, ROOT)
        top = rel.split(os.sep)[0].removesuffix(".py")
        for level, mod, node in imports(path):
            first = mod.split(".")[0]
            if level == 0:
                assert first not in PACK_TOP, f"{rel}: absolute import of the pack's own '{mod}' (use relative)"
                if first in ("comfy", "folder_paths", "comfy_api", "comfy_execution"):
                    # host.py, and the native-MODEL adapter inside its functions only (the pack imports without ComfyUI)
                    lazy = rel == os.path.join("models", "native.py") and node.lineno in in_functions(path)
                    assert rel == "host.py" or lazy, f"{rel}: only host.py (and models/native.py, lazily) may import ComfyUI"
            if top in ("samplers", "camera"):
                assert first not in ("diffusers", "transformers"), f"{rel} imports {mod}"
                if level >= 2:
                    assert first not in ("nodes", "models", "host", ""), f"{rel} imports ..{mod}"
            if top == "models" and level >= 2:
                assert first != "nodes", f"{rel} imports nodes"


def test_host_imports_comfyui_lazily_and_pack_imports_without_it():
    host_src = ast.parse(open(os.path.join(ROOT, "host.py")).read())
    top_level = [n for n in host_src.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any("comfy" in ast.unparse(n) or "folder_paths" in ast.unparse(n) for n in top_level)
    code = ("import sys; sys.path.insert(0, 'tests'); from cvk_testkit import load_pack; p = load_pack(); "
            "assert not any(m == 'comfy' or m.startswith('comfy.') or m == 'folder_paths' for m in sys.modules); "
            "print(len(p.NODE_CLASS_MAPPINGS))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip().splitlines()[-1]) >= 4
