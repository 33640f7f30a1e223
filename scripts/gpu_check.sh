#!/usr/bin/env bash
# The GPU path in one run (under 10 minutes): environment, the fake-TensorRT loop on real device memory,
# onnxruntime CUDA vs CPU (fp32 and TF32), device- vs host-bound KV cache, torch CUDA eager vs the runtime
# (small, d16; random weights), and the real TensorRT build + loop + `pytest -m trt` where TensorRT imports.
# Writes one results file (JSON, rewritten after every step). Details: docs/export.md, "Checking a GPU machine".
#
#   scripts/gpu_check.sh [--dry-run] [--out FILE] [--budget SECONDS]
#
# --dry-run: CPU only (tiny preset, fake TensorRT on host memory): proves the script without a GPU.
# Uses the active Python environment (or .venv); depthart must be importable (pip install -e ".[torch,test]";
# on the GPU machine add onnxruntime-gpu and, for the TensorRT steps, tensorrt + polygraphy>=0.53.6).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
if ! python -c "import depthart.runtime, depthart.export" 2>/dev/null; then
  echo "[gpu_check] depthart is not importable here; trying an offline editable install (no dependencies)" >&2
  python -m pip install -q --no-deps --no-build-isolation -e . >&2 || true
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
# the whole run is bounded: python keeps to --budget (540 s by default), the timeout is the backstop
timeout --signal=INT 590 python scripts/gpu_check.py "$@"
