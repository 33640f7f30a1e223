"""onnxruntime backend: one session per graph, created once; calls run on preallocated buffers.

Every call is an IOBinding whose inputs and outputs point at buffers the runtime owns (the KV
cache slices included), so steps write their new keys/values straight into the cache and nothing
is allocated per call. The bindings are built once per (graph call, batch size).

- On the CPU provider the buffers are the runtime's numpy arrays.
- On the CUDA / TensorRT providers they are device memory (the TensorRT backend's DeviceBuffers:
  one device twin per host array, views as offsets), bound as "cuda" memory, and the providers run
  on the runtime's own CUDA stream (`user_compute_stream`), so each step reads the KV prefix where
  it is instead of copying it host -> device (about 0.9 GB per d16 image) and the plan's uploads
  and downloads are ordered with the graphs.
- The CUDA provider runs fp32 MatMul/Conv in fp32 (`use_tf32` 0, onnxruntime's default is TF32);
  `tf32=True` allows TF32.
- The TensorRT provider gets an engine cache and a timing cache (`trt_cache`, default
  ~/.cache/depthart/ort-trt; rebuilt only when the graph or shapes change) and explicit profile
  ranges covering every scale's shapes and batch 1 .. the bundle's maximum.
"""

from __future__ import annotations

import os

import numpy as np

from ...errors import DepthartError
from ..manifest import check_io, ort_session_options

PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "trt": "TensorrtExecutionProvider"}
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def default_trt_cache() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "depthart", "ort-trt")


def trt_profile_shapes(manifest: dict, name: str) -> tuple[str, str, str]:
    """onnxruntime TensorRT-provider profile strings (min, opt, max) for graph `name`: "in:1x4x128,in2:...".

    Dynamic dimensions range over the bundle: batch 1 .. its maximum, and for the step graph tokens and
    past over all scales; opt is batch 1 at the largest scale.
    """
    steps = manifest["steps"]
    ranges = {"batch": (1, 1, int(manifest.get("batch", {}).get("max", 1))),
              "tokens": (min(s["tokens"] for s in steps), steps[-1]["tokens"], max(s["tokens"] for s in steps)),
              "past": (min(s["past"] for s in steps), steps[-1]["past"], max(s["past"] for s in steps))}
    out = []
    for which in range(3):
        out.append(",".join(f"{i['name']}:" + "x".join(str(ranges[d][which] if isinstance(d, str) else d)
                                                       for d in i["shape"])
                            for i in manifest["graphs"][name]["inputs"]))
    return tuple(out)


def provider_options(wanted: list[str], manifest: dict, name: str, *, tf32: bool = False, stream: int | None = None,
                     trt_cache: str | None = None) -> list[tuple[str, dict]]:
    """(provider, options) for graph `name`'s session, in `wanted` order."""
    out = []
    for p in wanted:
        opts = {}
        if p in GPU_PROVIDERS and stream is not None:
            opts.update(has_user_compute_stream="1", user_compute_stream=str(stream))
        if p == "CUDAExecutionProvider":
            opts["use_tf32"] = "1" if tf32 else "0"
        if p == "TensorrtExecutionProvider":
            cache = trt_cache or default_trt_cache()
            lo, opt, hi = trt_profile_shapes(manifest, name)
            opts.update(trt_engine_cache_enable="1", trt_engine_cache_path=cache, trt_timing_cache_enable="1",
                        trt_timing_cache_path=cache, trt_profile_min_shapes=lo, trt_profile_opt_shapes=opt,
                        trt_profile_max_shapes=hi)
        out.append((p, opts))
    return out


def _ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise DepthartError('the onnxruntime backend needs onnxruntime: pip install "depthart[ort]" '
                            '(or "depthart[ort-gpu]" on an x86_64 NVIDIA machine; never both)') from None
    return ort


def make_session_options(ort, options: dict):
    """onnxruntime.SessionOptions from the manifest's session options (`runtime.manifest.ort_session_options`)."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    level = options["graph_optimization_level"]
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                            "ORT_DISABLE_ALL" if level == "disable" else f"ORT_ENABLE_{level.upper()}")
    if options["intra_op_num_threads"]:
        opts.intra_op_num_threads = options["intra_op_num_threads"]
    # without spinning, idle intra-op threads sleep between the loop's many small calls instead of
    # busy-waiting (other thread pools, numpy or torch in `depthart bench`, share the cores)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if options["allow_spinning"] else "0")
    return opts


class OrtBackend:
    """Sessions for a bundle's graphs on the requested execution providers."""

    name = "ort"

    def __init__(self, bundle_dir, manifest: dict, device: str = "cpu", threads: int | None = None,
                 tf32: bool = False, trt_cache: str | None = None, cuda_device=None, host_buffers: bool = False,
                 profile_dir: str | None = None):
        """device: providers in order ("cpu", "cuda", "trt", comma-separated). tf32: let the CUDA provider use
        TF32 (default: fp32). trt_cache: the TensorRT provider's engine/timing cache folder. cuda_device: the
        device memory to bind (CudaDevice's interface; default: a CudaDevice for the CUDA/TensorRT providers,
        none for the CPU provider; tests pass a fake to run the device path on CPU). host_buffers: bind host
        memory even on a GPU provider, so every call copies its inputs (the KV prefix) to the device and its
        outputs back: the old behaviour, for measuring what device binding saves (scripts/gpu_check.py).
        profile_dir: turn on onnxruntime's profiler, one JSON file per graph there (`end_profiling`; for
        `depthart bench --profile`: it slows every call)."""
        ort = _ort()
        wanted = [PROVIDER_ALIASES.get(p, p) for p in device.split(",")]
        if "CPUExecutionProvider" not in wanted:
            wanted.append("CPUExecutionProvider")
        if wanted[0] in GPU_PROVIDERS and (manifest.get("calibration") or {}).get("int8_format") == "u8s8":
            raise DepthartError(f"{bundle_dir}: a u8s8 int8 bundle (uint8 activations) runs on onnxruntime's CPU "
                                "provider only; for a GPU make one with depthart calibrate --int8-format s8s8")
        available = ort.get_available_providers()
        unknown = [p for p in wanted if p not in available]
        if unknown:
            raise DepthartError(f"onnxruntime {ort.__version__} has no {unknown} (it has {available}); "
                                "for CUDA install depthart[ort-gpu] on an NVIDIA machine")
        gpu = wanted[0] in GPU_PROVIDERS and not host_buffers
        if cuda_device is None and gpu:
            from .trt import CudaDevice

            cuda_device = CudaDevice()
        self.device = cuda_device
        self.memory = None
        self.on_device = cuda_device is not None  # the plan must upload what the host writes, download what it reads
        self._kind = "cuda" if gpu else "cpu"  # onnxruntime's name for the memory the buffers live in
        self.session_options = ort_session_options(manifest, os.path.join(os.fspath(bundle_dir), "manifest.json"))
        if threads:
            self.session_options["intra_op_num_threads"] = threads
        opts = make_session_options(ort, self.session_options)
        stream = getattr(cuda_device, "stream", None) if gpu else None  # the providers' own stream otherwise
        self.sessions = {}
        for name, g in manifest["graphs"].items():
            providers = provider_options(wanted, manifest, name, tf32=tf32, stream=stream, trt_cache=trt_cache)
            if profile_dir:
                opts.enable_profiling = True
                opts.profile_file_prefix = os.path.join(profile_dir, name)
            sess = ort.InferenceSession(os.path.join(bundle_dir, g["file"]), opts, providers=providers)
            check_io(name, g, [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()])
            self.sessions[name] = sess
        # what the sessions really use: a package may list CUDA and still fall back to CPU
        self.providers = self.sessions["step"].get_providers()
        if wanted[0] != "CPUExecutionProvider" and wanted[0] not in self.providers:
            raise DepthartError(f"onnxruntime could not create a {wanted[0]} session here (it fell back to "
                                f"{self.providers}); check the GPU driver and CUDA/cuDNN libraries")
        if self.on_device:
            from .trt import DeviceBuffers

            self.memory = DeviceBuffers(cuda_device)

    def describe(self) -> str:
        return f"onnxruntime {_ort().__version__} ({', '.join(self.providers)})"

    def bind(self, graph: str, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]):
        """A reusable call: `graph` reads `inputs` and writes `outputs` in place (all C-contiguous; on a GPU
        provider their device twins)."""
        sess = self.sessions[graph]
        binding = sess.io_binding()
        address = self.memory.address if self.memory is not None else (lambda a: a.ctypes.data)
        for name, arr in inputs.items():
            _check_contiguous(graph, name, arr)
            binding.bind_input(name, self._kind, 0, arr.dtype, list(arr.shape), address(arr))
        for name, arr in outputs.items():
            _check_contiguous(graph, name, arr)
            binding.bind_output(name, self._kind, 0, arr.dtype, list(arr.shape), address(arr))
        keep = (inputs, outputs)  # onnxruntime holds raw pointers only: the arrays must outlive the binding

        def call():
            sess.run_with_iobinding(binding)
            return keep

        return call

    def end_profiling(self) -> dict:
        """Stop the profiler of every session (profile_dir given); returns {graph: its JSON file}."""
        return {name: sess.end_profiling() for name, sess in self.sessions.items()}

    def upload(self, *arrays: np.ndarray) -> None:
        """Host -> device where the buffers are on a device; else nothing (onnxruntime reads the host buffers)."""
        if self.memory is not None:
            self.memory.upload(*arrays)

    def download(self, *arrays: np.ndarray) -> None:
        """Device -> host where the buffers are on a device; else nothing (onnxruntime wrote the host buffers)."""
        if self.memory is not None:
            self.memory.download(*arrays)

    def bind_copy(self, dst: np.ndarray, src: np.ndarray):
        """A reusable `np.copyto(dst, src)` (a view of another bound buffer into a contiguous one)."""
        if self.memory is not None:
            return self.memory.bind_copy(dst, src)
        return lambda: np.copyto(dst, src)

    def __del__(self):  # free the device twins with the backend (the sessions are idle by then)
        memory, self.memory = getattr(self, "memory", None), None
        if memory is not None:
            try:
                self.device.synchronize()
                memory.close()
            except Exception:  # at interpreter exit CUDA may already be gone
                pass


def _check_contiguous(graph, name, arr):
    if not arr.flags.c_contiguous:
        raise ValueError(f"{graph}.{name}: buffers bound to onnxruntime must be C-contiguous")
