#!/usr/bin/env bash
# The GPU check of issues 17 and 29 (benchmarks/gpu_check.py): the rehearsal's VGGSound data
# (benchmarks/rehearsal_data.py: 10 s 480x360 H.264 + AAC clips) written, prepared and trained
# with the VGGSound recipe (joint and UMT, 32-true and bf16-mixed), then joint under 2-process
# DDP (two GPUs if there are two, else both on the one); prints one table (samples/s, GPU
# utilisation, the share of step time spent waiting for data), in under 10 minutes on one GPU.
# Needs the `video` extra (PyAV).
#
#   benchmarks/gpu_check.sh [--tiny] [--compile] [--steps N] [--out DIR] [--data PREPARED_DIR]
#
# --data: a folder already prepared, e.g. the rehearsal's (python -m benchmarks.rehearsal
# --keep K; then --data K/vggsound-large-prepared). SMALL=1 (or --tiny): tiny sizes that run on
# a CPU in a minute or two. PYTHON: the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=()
if [[ "${SMALL:-0}" == 1 ]]; then extra+=(--tiny); fi
export PYTHONPATH="src:.${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" -m benchmarks.gpu_check ${extra[@]+"${extra[@]}"} "$@"
