"""TensorRT engines from a bundle's ONNX graphs, with TensorRT's own builder API. Imports of TensorRT are lazy.

- The step graph becomes ONE engine with one static optimisation profile per scale (min = opt =
  max = that scale's shapes). Profiles 1.. ask for no weight memory of their own
  (`IOptimizationProfile.extra_memory_target = 0.0`; the default 1.0 lets TensorRT give each profile
  its own weight copy), and the sidecar records the engine size against the ONNX size, so "weights
  once" is measured on every build. The other graphs get one profile each.
- Engines are strongly typed builds: the precision is the bundle's (fp32, or the fp16 / int8 Q/DQ
  graphs of `depthart export --precision`), decided in the ONNX, the only mode TensorRT 11 has.
- The serialized engine (TensorRT's IHostMemory) is written to disk as it is: no engine object is
  deserialised and no bytes copy is made, so the build's peak host memory holds one engine.
- A timing cache can be loaded and saved, so rebuilding the 10 profiles is fast.
- Each engine gets a sidecar `<name>.engine.json` (TensorRT version, GPU name, compute capability,
  precision, profiles, ONNX hash and fingerprint, sizes); `check_sidecar` refuses engines built elsewhere.

Polygraphy is not used for the build: its `Profile` cannot set `extra_memory_target` and its
`EngineFromNetwork` deserialises and re-serialises the engine; the dozen builder calls below are
TensorRT's API as of 10.3 (JetPack 6) through 11.x, and tests/fake_tensorrt.py mirrors them on CPU.
"""

from __future__ import annotations

import datetime
import json
import os

from ..errors import DepthartError
from ..fileio import atomic_path, atomic_write_bytes
from ..runtime.backends.trt import TRT_INSTALL_HINT, _one_line, gpu_info, graph_fingerprint
from ..provenance import file_sha256

def tensorrt_status() -> tuple[bool, str]:
    """(available, reason): TensorRT importable and a CUDA GPU visible."""
    try:
        import tensorrt as trt  # noqa: F401
    except Exception as e:  # ImportError, or a stub whose libraries are missing (OSError)
        return False, f"TensorRT is not installed or cannot load ({type(e).__name__}: {e}). {TRT_INSTALL_HINT}"
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
                 onnx_sha256: str, **sizes) -> dict:
    """The engine's sidecar; `sizes`: onnx_fingerprint, onnx_bytes, engine_bytes (added as they are)."""
    return {
        "graph": name, "precision": precision, "batch": batch,
        "tensorrt": trt_version, "gpu": gpu["name"], "compute_capability": gpu["compute_capability"],
        "profiles": [{k: list(v) for k, v in p.items()} for p in profile_shapes(manifest, name, batch)],
        "onnx_sha256": onnx_sha256, **sizes,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


WEIGHTS_ONCE_LIMIT = 1.5  # engine bytes / ONNX bytes above which the step engine likely holds weights per profile


def build_engines(bundle_dir, manifest: dict, *, batch: int = 1, workspace_mb: int | None = None,
                  timing_cache=None, progress=None, device=None, tf32: bool = False) -> dict:
    """Build `<graph>.engine` + sidecar for every graph of the bundle. Returns {graph: engine file}.

    tf32: let fp32 layers use TF32 (TensorRT's default; about 1e-3 relative error). Defaults to False: fp32.

    device: the CUDA device wrapper whose identity goes into the sidecars (default: a new
        runtime.backends.trt.CudaDevice, i.e. the current CUDA device).

    Raises DepthartError if TensorRT or a GPU is missing or a build fails (the ONNX bundle stays as it is).
    """
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or a stub whose libraries are missing (OSError)
        raise DepthartError(f"cannot build TensorRT engines: TensorRT is not installed or cannot load "
                            f"({type(e).__name__}: {e}). {TRT_INSTALL_HINT} The ONNX bundle in {bundle_dir} is "
                            "complete; build the engines on the target GPU later with --trt.") from None
    if device is None:
        from ..runtime.backends.trt import CudaDevice

        try:
            device = CudaDevice()
        except DepthartError as e:
            raise DepthartError(f"cannot build TensorRT engines: {e}. The ONNX bundle in {bundle_dir} is complete; "
                                "build the engines on the target GPU later with --trt.") from None
    gpu = device.identity()
    precision = manifest.get("precision", "fp32")
    if (manifest.get("calibration") or {}).get("int8_format") == "u8s8":
        raise DepthartError(f"{bundle_dir}: a u8s8 int8 bundle (uint8 activations, for onnxruntime's CPU provider) "
                            "cannot become TensorRT engines; calibrate with --int8-format s8s8")
    say = progress or (lambda msg: None)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    cache_bytes = None
    if timing_cache and os.path.exists(timing_cache):
        with open(timing_cache, "rb") as f:
            cache_bytes = f.read()
    engines = {}
    for name, graph in manifest["graphs"].items():
        onnx_path = os.path.join(bundle_dir, graph["file"])
        config = builder.create_builder_config()
        if not tf32 and hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)  # on by default in TensorRT
        if workspace_mb:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
        cache = None
        if timing_cache:
            cache = config.create_timing_cache(cache_bytes if cache_bytes is not None else b"")
            config.set_timing_cache(cache, False)
        network, parser = _parse_onnx(trt, builder, logger, onnx_path)  # the parser owns the weights: keep it
        shapes = profile_shapes(manifest, name, batch)
        for i, prof_shapes in enumerate(shapes):
            profile = builder.create_optimization_profile()
            for inp, shape in prof_shapes.items():
                profile.set_shape(inp, shape, shape, shape)
            if i > 0:
                profile.extra_memory_target = 0.0  # share the first profile's weights (a hint TensorRT may miss)
            if config.add_optimization_profile(profile) < 0:
                raise DepthartError(f"{graph['file']}: TensorRT rejected optimisation profile {i} {prof_shapes}")
        try:
            blob = builder.build_serialized_network(network, config)
        except (RuntimeError, MemoryError) as e:
            raise DepthartError(f"TensorRT failed to build {graph['file']} ({_one_line(e)})") from None
        if blob is None:
            raise DepthartError(f"TensorRT failed to build {graph['file']} (see its log above; out of memory? try "
                                "--workspace-mb, or a smaller --batch)")
        file = f"{name}.engine"
        with atomic_path(os.path.join(bundle_dir, file)) as tmp, open(tmp, "wb") as f:
            f.write(memoryview(blob))  # IHostMemory has the buffer protocol: written without a copy
        engine_bytes = blob.nbytes
        del blob, network, parser
        if cache is not None:
            cache_bytes = bytes(memoryview(config.get_timing_cache().serialize()))
        fingerprint = graph_fingerprint(bundle_dir, graph)
        onnx_bytes = sum(size for _, size, _ in fingerprint)
        sidecar = make_sidecar(manifest, name, precision, batch, trt.__version__, gpu, file_sha256(onnx_path),
                               onnx_fingerprint=fingerprint, onnx_bytes=onnx_bytes, engine_bytes=engine_bytes,
                               tf32=tf32)
        atomic_write_bytes(os.path.join(bundle_dir, f"{file}.json"), json.dumps(sidecar, indent=2).encode())
        engines[name] = file
        ratio = engine_bytes / max(onnx_bytes, 1)
        note = ""
        if len(shapes) > 1 and ratio > WEIGHTS_ONCE_LIMIT:
            note = (f"; WARNING: {ratio:.1f}x the ONNX size, TensorRT seems to keep weights per profile "
                    "(extra_memory_target is only a hint)")
        say(f"{file}: {engine_bytes / 1e6:.1f} MB ({ratio:.2f}x the ONNX), {len(shapes)} profile(s){note}")
    if timing_cache and cache_bytes is not None:
        atomic_write_bytes(timing_cache, cache_bytes)
    return engines


def _parse_onnx(trt, builder, logger, onnx_path):
    """(network, parser): a strongly typed network from an ONNX file (external data is read from beside it)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if flag is None else 1 << int(flag))  # TensorRT 11: always strongly typed
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.fspath(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise DepthartError(f"TensorRT could not parse {os.path.basename(onnx_path)}: {errors or 'no detail'}")
    return network, parser
