#!/usr/bin/env bash
# Quick start 1: set up .venv and run the example text-to-video workflow headless on the tiny demo
# model; frames and an animated GIF land in demo_output/.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # one torch thread: faster than two on a busy 2-core machine
bash scripts/setup.sh
.venv/bin/python scripts/demo.py "$@"
