"""The README's stated times: CPU seconds at one torch thread (``OMP_NUM_THREADS=1``) for the demo, the test
command and each example workflow on the tiny demo models, with the load average while measuring.

CPU seconds (``time.process_time`` in this process, ``RUSAGE_CHILDREN`` for the demo and the tests, which run
as child processes) do not grow when other work shares the machine the way wall time does; the load average
says how busy it was.

    .venv/bin/python bench/quickstart_times.py [--skip-tests]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_child(cmd: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child process run to completion (it must succeed)."""
    cpu, t0 = child_cpu(), time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return child_cpu() - cpu, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-tests", action="store_true", help="do not time the test command")
    args = ap.parse_args()
    py = os.path.join(ROOT, ".venv", "bin", "python")
    rows = []
    load = [os.getloadavg()[0]]
    rows.append(("demo (scripts/demo.py, setup done)", *run_child([py, "scripts/demo.py", "--out",
                                                                   tempfile.mkdtemp()])))
    load.append(os.getloadavg()[0])
    if not args.skip_tests:
        rows.append(("tests (pytest -q, no real ComfyUI)", *run_child([py, "-m", "pytest", "-q"])))
        load.append(os.getloadavg()[0])

    import torch
    from cvk_testkit import load_pack
    from cvk_testkit.core_nodes import CORE_NODES, DIRS
    from cvk_testkit.executor import Executor
    pack = load_pack()
    torch.set_num_threads(1)
    out = tempfile.mkdtemp()
    DIRS.output = DIRS.temp = out
    os.environ["CVK_OUTPUT_DIR"] = out
    DIRS.input = tempfile.mkdtemp()     # a 768×768 picture where an example loads one (ComfyUI's input/example.png)
    from PIL import Image
    Image.new("RGB", (768, 768), (200, 120, 60)).save(os.path.join(DIRS.input, "example.png"))
    run = Executor({**pack.NODE_CLASS_MAPPINGS, **CORE_NODES}).run
    from consistent_video_kit.models.tiny import TINY_MODELS, tiny_model
    cpu0 = time.process_time()
    for name in TINY_MODELS:
        tiny_model(name)
    rows.append(("building the tiny demo models (once)", time.process_time() - cpu0, float("nan")))
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "workflows", "*_api.json"))):
        with open(path) as f:
            prompt = json.load(f)
        cpu, t0 = time.process_time(), time.perf_counter()
        run(prompt)
        rows.append((f"workflow {os.path.basename(path)[:-9]}", time.process_time() - cpu, time.perf_counter() - t0))
        load.append(os.getloadavg()[0])
    print(f"torch {torch.__version__}, OMP_NUM_THREADS=1, {os.cpu_count()} CPUs; 1-minute load average "
          f"{min(load):.2f}–{max(load):.2f} while measuring")
    print(f"{'what':44} {'CPU s':>8} {'wall s':>8}")
    for what, cpu, wall in rows:
        print(f"{what:44} {cpu:8.1f} {wall:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
