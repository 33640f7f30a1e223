"""TensorRT engines from a bundle's ONNX graphs, through Polygraphy. Imports of TensorRT are lazy.

- The step graph becomes ONE engine with one static optimisation profile per scale (min = opt =
  max = that scale's shapes), so its weights exist once; the other graphs get one profile each.
- Engines are strongly typed builds: the precision is the bundle's (fp32, or the fp16 / int8 Q/DQ
  graphs of `depthart export --precision`), decided in the ONNX, the only mode TensorRT 11 has.
- A timing cache can be loaded and saved, so rebuilding the 10 profiles is fast.
- Each engine gets a sidecar `<name>.engine.json` (TensorRT version, GPU name, compute capability,
  precision, profiles, ONNX hash); `check_sidecar` refuses engines built elsewhere.
"""

from __future__ import annotations

import datetime
import json
import os

from ..errors import DepthartError
from ..fileio import atomic_write_bytes
from ..provenance import file_sha256
from ..runtime.backends.trt import gpu_info

def tensorrt_status() -> tuple[bool, str]:
    """(available, reason): TensorRT importable and a CUDA GPU visible."""
    try:
        import tensorrt as trt  # noqa: F401
    except Exception as e:  # ImportError, or a stub whose libraries are missing (OSError)
        return False, (f"TensorRT is not installed or cannot load ({type(e).__name__}: {e}). Install it from "
                       "NVIDIA's index (pip install tensorrt --extra-index-url https://pypi.nvidia.com) or use "
                       "JetPack's system TensorRT; PyPI alone carries only download stubs.")
    gpu = gpu_info()
    if gpu is None:
        return False, "TensorRT is installed but no NVIDIA GPU is visible (nvidia-smi found no device)."
    return True, f"TensorRT {trt.__version__} on {gpu['name']}"


def profile_shapes(manifest: dict, name: str, batch: int) -> list[dict]:
    """Per-profile {input: shape} for a graph: one profile per scale for the step graph, else one."""
    graph = manifest["graphs"][name]

    def concrete(shape, subs):
        return tuple(subs[d] if isinstance(d, str) else d for d in shape)

    inputs = graph["inputs"]
    if name == "step":
        return [{i["name"]: concrete(i["shape"], {"batch": batch, "tokens": s["tokens"], "past": s["past"]})
                 for i in inputs} for s in manifest["steps"]]
    return [{i["name"]: concrete(i["shape"], {"batch": batch}) for i in inputs}]


def make_sidecar(manifest: dict, name: str, precision: str, batch: int, trt_version: str, gpu: dict,
                 onnx_sha256: str) -> dict:
    return {
        "graph": name, "precision": precision, "batch": batch,
        "tensorrt": trt_version, "gpu": gpu["name"], "compute_capability": gpu["compute_capability"],
        "profiles": [{k: list(v) for k, v in p.items()} for p in profile_shapes(manifest, name, batch)],
        "onnx_sha256": onnx_sha256,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def build_engines(bundle_dir, manifest: dict, *, batch: int = 1, workspace_mb: int | None = None,
                  timing_cache=None, progress=None) -> dict:
    """Build `<graph>.engine` + sidecar for every graph of the bundle. Returns {graph: engine file}.

    Raises DepthartError if TensorRT or a GPU is missing (the ONNX bundle stays as it is).
    """
    ok, reason = tensorrt_status()
    if not ok:
        raise DepthartError(f"cannot build TensorRT engines: {reason} The ONNX bundle in {bundle_dir} is complete; "
                            "build the engines on the target GPU later with --trt.")
    import tensorrt as trt
    from polygraphy.backend.trt import CreateConfig, EngineFromNetwork, NetworkFromOnnxPath, Profile

    precision = manifest.get("precision", "fp32")
    gpu = gpu_info()
    say = progress or (lambda msg: None)
    engines = {}
    for name, graph in manifest["graphs"].items():
        onnx_path = os.path.join(bundle_dir, graph["file"])
        profiles = []
        for shapes in profile_shapes(manifest, name, batch):
            p = Profile()
            for inp, shape in shapes.items():
                p.add(inp, min=shape, opt=shape, max=shape)
            profiles.append(p)
        config_kw = {"profiles": profiles}
        if timing_cache:
            config_kw["load_timing_cache"] = os.fspath(timing_cache)
        if workspace_mb:
            config_kw["memory_pool_limits"] = {trt.MemoryPoolType.WORKSPACE: workspace_mb << 20}
        network = NetworkFromOnnxPath(onnx_path, strongly_typed=True)
        build = EngineFromNetwork(network, config=CreateConfig(**config_kw),
                                  save_timing_cache=os.fspath(timing_cache) if timing_cache else None)
        engine = build()
        data = bytes(engine.serialize())
        file = f"{name}.engine"
        atomic_write_bytes(os.path.join(bundle_dir, file), data)
        sidecar = make_sidecar(manifest, name, precision, batch, trt.__version__, gpu, file_sha256(onnx_path))
        atomic_write_bytes(os.path.join(bundle_dir, f"{file}.json"), json.dumps(sidecar, indent=2).encode())
        engines[name] = file
        say(f"{file}: {len(data) / 1e6:.1f} MB, {len(profiles)} profile(s)")
    return engines
