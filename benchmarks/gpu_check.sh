#!/usr/bin/env bash
# The GPU check of issue 17 (benchmarks/gpu_check.py): VGGSound-shaped clips written, prepared and
# trained with the VGGSound recipe (joint and UMT, 32-true and bf16-mixed), plus 2-process DDP on
# the one GPU; prints one table, in under 8 minutes on one GPU. Needs the `video` extra (PyAV).
#
#   benchmarks/gpu_check.sh [--tiny] [--compile] [--steps N] [--out DIR]
#
# SMALL=1 (or --tiny): tiny sizes that run on a CPU in a minute or two. PYTHON: the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=()
if [[ "${SMALL:-0}" == 1 ]]; then extra+=(--tiny); fi
export PYTHONPATH="src:.${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" -m benchmarks.gpu_check ${extra[@]+"${extra[@]}"} "$@"
