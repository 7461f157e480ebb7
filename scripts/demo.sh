#!/usr/bin/env bash
# Quick start 1: set up .venv and run the example text-to-video workflow headless on the tiny demo
# model; the video (an animated PNG from the test kit's Save Video stand-in) lands in demo_output/video/
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # one torch thread: faster than two on a busy 2-core machine
bash scripts/setup.sh
.venv/bin/python scripts/demo.py "$@"
