"""onnxruntime backend: one session per graph, created once; calls run on preallocated host buffers.

Every call is an IOBinding whose inputs and outputs point at numpy arrays the runtime owns (the
KV cache slices included), so steps write their new keys/values straight into the cache and
nothing is allocated per call. The bindings are built once per (graph call, batch size).
"""

from __future__ import annotations

import os

import numpy as np

from ...errors import DepthartError
from ..manifest import check_io

PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "trt": "TensorrtExecutionProvider"}


def _ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise DepthartError('the onnxruntime backend needs onnxruntime: pip install "depthart[ort]" '
                            '(or "depthart[ort-gpu]" on an x86_64 NVIDIA machine; never both)') from None
    return ort


class OrtBackend:
    """Sessions for a bundle's graphs on the requested execution providers."""

    name = "ort"
    on_device = False  # the graphs read and write the runtime's host buffers directly

    def __init__(self, bundle_dir, manifest: dict, device: str = "cpu", threads: int | None = None):
        ort = _ort()
        wanted = [PROVIDER_ALIASES.get(p, p) for p in device.split(",")]
        if "CPUExecutionProvider" not in wanted:
            wanted.append("CPUExecutionProvider")
        available = ort.get_available_providers()
        unknown = [p for p in wanted if p not in available]
        if unknown:
            raise DepthartError(f"onnxruntime {ort.__version__} has no {unknown} (it has {available}); "
                                "for CUDA install depthart[ort-gpu] on an NVIDIA machine")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        # no busy-waiting between calls: the loop calls many small graphs, and other thread pools
        # (numpy, torch in `depthart bench`) share the cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sessions = {}
        for name, g in manifest["graphs"].items():
            sess = ort.InferenceSession(os.path.join(bundle_dir, g["file"]), opts, providers=wanted)
            check_io(name, g, [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()])
            self.sessions[name] = sess
        # what the sessions really use: a package may list CUDA and still fall back to CPU
        self.providers = self.sessions["step"].get_providers()
        if wanted[0] != "CPUExecutionProvider" and wanted[0] not in self.providers:
            raise DepthartError(f"onnxruntime could not create a {wanted[0]} session here (it fell back to "
                                f"{self.providers}); check the GPU driver and CUDA/cuDNN libraries")

    def describe(self) -> str:
        return f"onnxruntime {_ort().__version__} ({', '.join(self.providers)})"

    def bind(self, graph: str, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]):
        """A reusable call: `graph` reads `inputs` and writes `outputs` in place (all C-contiguous, host)."""
        sess = self.sessions[graph]
        binding = sess.io_binding()
        for name, arr in inputs.items():
            _check_contiguous(graph, name, arr)
            binding.bind_input(name, "cpu", 0, arr.dtype, list(arr.shape), arr.ctypes.data)
        for name, arr in outputs.items():
            _check_contiguous(graph, name, arr)
            binding.bind_output(name, "cpu", 0, arr.dtype, list(arr.shape), arr.ctypes.data)
        keep = (inputs, outputs)  # onnxruntime holds raw pointers only: the arrays must outlive the binding

        def call():
            sess.run_with_iobinding(binding)
            return keep

        return call

    def upload(self, *arrays: np.ndarray) -> None:
        """Nothing to do: onnxruntime reads the host buffers (the TensorRT backend copies them to the GPU)."""

    def download(self, *arrays: np.ndarray) -> None:
        """Nothing to do: onnxruntime writes the host buffers."""

    def bind_copy(self, dst: np.ndarray, src: np.ndarray):
        """A reusable `np.copyto(dst, src)` (a view of another bound buffer into a contiguous one)."""
        return lambda: np.copyto(dst, src)


def _check_contiguous(graph, name, arr):
    if not arr.flags.c_contiguous:
        raise ValueError(f"{graph}.{name}: buffers bound to onnxruntime must be C-contiguous")
