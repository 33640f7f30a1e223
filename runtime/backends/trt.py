"""TensorRT on the runtime side: which GPU this is, and loading engines that were built for it.

Engines only run where they were built (same TensorRT version and GPU). Every engine has a sidecar
`<graph>.engine.json` written by `depthart export --trt`; `load_engine` checks it before
deserialising and refuses a mismatch with a message saying to rebuild on the target.

The TensorRT execution loop of DepthRuntime (device buffers, one execution context per scale
profile, CUDA graphs) is not written yet: `DepthRuntime(backend="trt")` says so. onnxruntime's
TensorRT execution provider (`--backend ort --device trt,cuda`) runs the same bundle meanwhile.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from ...errors import DepthartError
from ...provenance import file_sha256

REBUILD_HINT = "rebuild the engines on this machine: depthart export --checkpoint CKPT -o BUNDLE --trt --force"


def gpu_info() -> dict | None:
    """{"name", "compute_capability"} of GPU 0 via nvidia-smi; Jetson boards report their model."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
            if line:
                name, cc = [s.strip() for s in line.split(",", 1)]
                return {"name": name, "compute_capability": cc}
        except (OSError, subprocess.TimeoutExpired):
            pass
    model = "/proc/device-tree/model"  # Jetson
    if os.path.exists(model):
        with open(model, "rb") as f:
            return {"name": f.read().rstrip(b"\x00").decode(errors="replace"), "compute_capability": "unknown"}
    return None


def check_sidecar(sidecar: dict, trt_version: str, gpu: dict, onnx_sha256: str | None = None) -> None:
    """Refuse an engine built for another TensorRT version, GPU or graph. Raises DepthartError."""
    problems = []
    if sidecar.get("tensorrt") != trt_version:
        problems.append(f"built with TensorRT {sidecar.get('tensorrt')}, this machine has {trt_version}")
    if sidecar.get("gpu") != gpu.get("name") or sidecar.get("compute_capability") != gpu.get("compute_capability"):
        problems.append(f"built for {sidecar.get('gpu')} (compute {sidecar.get('compute_capability')}), this is "
                        f"{gpu.get('name')} (compute {gpu.get('compute_capability')})")
    if onnx_sha256 is not None and sidecar.get("onnx_sha256") != onnx_sha256:
        problems.append("built from a different ONNX graph than the bundle now holds")
    if problems:
        raise DepthartError(f"engine {sidecar.get('graph')}: " + "; ".join(problems) + f". TensorRT engines only "
                            f"run where they were built: {REBUILD_HINT}")


def load_engine(bundle_dir, manifest: dict, name: str):
    """Deserialise the engine of graph `name` after checking its sidecar against this machine."""
    try:
        import tensorrt as trt
    except Exception as e:
        raise DepthartError(f"TensorRT is not available here ({type(e).__name__}: {e})") from None
    entry = (manifest.get("engines") or {}).get(name)
    if entry is None:
        raise DepthartError(f"{bundle_dir}: no TensorRT engine for {name!r}; build them with depthart export --trt")
    with open(os.path.join(bundle_dir, entry["sidecar"])) as f:
        sidecar = json.load(f)
    gpu = gpu_info() or {"name": "none", "compute_capability": "none"}
    onnx_sha = file_sha256(os.path.join(bundle_dir, manifest["graphs"][name]["file"]))
    check_sidecar(sidecar, trt.__version__, gpu, onnx_sha)
    with open(os.path.join(bundle_dir, entry["file"]), "rb") as f:
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(f.read())
    if engine is None:
        raise DepthartError(f"{entry['file']}: TensorRT could not deserialise it; {REBUILD_HINT}")
    return engine
