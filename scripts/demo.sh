#!/usr/bin/env bash
# Quick start 1: set up .venv and run the example text-to-video workflow headless on the tiny demo
# model; frames and an animated GIF land in demo_output/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python scripts/demo.py "$@"
