"""TensorRT on the runtime side: engines checked against this machine, and the native scale loop.

Engines only run where they were built (same TensorRT version and GPU). Every engine has a sidecar
`<graph>.engine.json` written by `depthart export --trt`; `load_engine` checks it before
deserialising and refuses a mismatch with a message saying to rebuild on the target.

`TrtBackend` runs DepthRuntime's plan (runtime.py `_Plan`, the same plan as onnxruntime) on the
engines. Nothing is imported from TensorRT or CUDA until it is created.

- Memory: `DeviceBuffers` gives every host array the plan binds a device twin, one device
  allocation per owning numpy array; a view (a KV-cache prefix `cache[:a]` or the new slots
  `cache[a:b]`) maps to the same offset inside its owner's allocation, so the cache exists once on
  the device and steps write their new keys/values straight into it. Nothing is allocated per call.
- Host <-> device traffic is explicit: the plan uploads what the host writes (the image, the zeroed
  f_hat, a sampler's tokens and code vectors) and downloads what it reads (depth and tokens at the
  end, the logits before a sampler), and copies step 0's code-vector tail on the device.
- Contexts: one execution context per bound call, i.e. one per optimisation profile of the step
  engine (chosen by matching the bound input shapes against the profiles, which are static) and
  one per other engine. All contexts share one scratch allocation (USER_MANAGED device memory,
  sized to the largest profile), which is safe because every call runs in order on one stream.
  Shapes and tensor addresses are set once at bind time; a call is one `execute_async_v3`.
- One stream synchronisation per greedy prediction (before the final download); a host sampler
  adds one per scale, as it must read the logits.
- CUDA through Polygraphy's ctypes wrapper (`polygraphy.cuda`): cudaMalloc, cudaMemcpyAsync, one stream.
- Version tolerance (TensorRT 10.3 .. 11.x): per-profile memory sizes and `set_device_memory`
  where present (10.1+), else the older `device_memory` attribute.

Not done: CUDA-graph capture of the loop. It needs page-locked host buffers (a pageable
cudaMemcpyAsync cannot be captured), a capture API that Polygraphy's wrapper lacks (cuda-python
or more ctypes) and a first uncaptured run; the loop is launch-bound for small scales, so it is
the next step once this path has been measured on a GPU. Engines have the batch size they were
built with (`--batch`); DepthRuntime pads smaller batches and splits larger ones.

Status: tested on a machine without a GPU: address mapping, copies and the plan's hooks against a
simulated device (tests/test_runtime_trt.py), and the whole backend against a fake TensorRT that
mirrors the 10.x API and runs each engine's ONNX with onnxruntime (tests/test_fake_trt.py). Real
TensorRT and CUDA have not run it yet: scripts/gpu_check.sh and `pytest -m trt` on a GPU do.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import subprocess

import numpy as np

from ...errors import DepthartError
from ...provenance import file_sha256
from ..manifest import check_io

REBUILD_HINT = "rebuild the engines on this machine: depthart export --checkpoint CKPT -o BUNDLE --trt --force"


def gpu_info() -> dict | None:
    """{"name", "compute_capability"} of GPU 0 via nvidia-smi; Jetson boards report their model.

    A cheap "is there a GPU" probe (no CUDA library loaded). Engines are checked against the CUDA device
    they actually run on (`CudaDevice.identity()`), which CUDA_VISIBLE_DEVICES may make another one.
    """
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


def graph_fingerprint(bundle_dir, graph: dict) -> list:
    """[[file, size, mtime_ns], ...] of a graph's ONNX file and its external data files: a cheap "unchanged" test."""
    from ..integrity import fingerprint

    return [[file, *fingerprint(os.path.join(bundle_dir, file))] for file in [graph["file"], *graph.get("data_files", [])]]


def graph_sha256(bundle_dir, graph: dict, sidecar: dict | None = None) -> str:
    """sha256 of a graph's ONNX file; the sidecar's recorded hash when the files' sizes and times are unchanged.

    Hashing a d16 step graph reads 1.2 GB, so an engine's start hashes only a graph that changed since the
    engine was built (or whose sidecar records no fingerprint).
    """
    if sidecar and sidecar.get("onnx_sha256") and sidecar.get("onnx_fingerprint") == graph_fingerprint(bundle_dir, graph):
        return sidecar["onnx_sha256"]
    return file_sha256(os.path.join(bundle_dir, graph["file"]))


def load_engine(bundle_dir, manifest: dict, name: str, runtime=None, gpu: dict | None = None):
    """Deserialise the engine of graph `name` after checking its sidecar against this machine.

    runtime: a `tensorrt.Runtime` to deserialise with (keep it alive as long as the engine);
        default: a new one.
    gpu: {"name", "compute_capability"} of the CUDA device the engine will run on (`CudaDevice.identity()`);
        default: GPU 0 as nvidia-smi reports it.

    The engine file is memory-mapped, not read: TensorRT takes any buffer, and a copy in a `bytes` object
    would double the peak host memory (an 8 GB Jetson holds a d16 engine once, not twice).
    """
    try:
        import tensorrt as trt
    except Exception as e:
        raise DepthartError(f"TensorRT is not available here ({type(e).__name__}: {e})") from None
    entry = (manifest.get("engines") or {}).get(name)
    if entry is None:
        raise DepthartError(f"{bundle_dir}: no TensorRT engine for {name!r}; build them with depthart export --trt")
    with open(os.path.join(bundle_dir, entry["sidecar"])) as f:
        sidecar = json.load(f)
    gpu = gpu or gpu_info() or {"name": "none", "compute_capability": "none"}
    check_sidecar(sidecar, trt.__version__, gpu, graph_sha256(bundle_dir, manifest["graphs"][name], sidecar))
    runtime = runtime or trt.Runtime(trt.Logger(trt.Logger.WARNING))
    try:
        with open(os.path.join(bundle_dir, entry["file"]), "rb") as f, \
                mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as blob:
            engine = runtime.deserialize_cuda_engine(blob)
    except (OSError, ValueError, RuntimeError, MemoryError) as e:  # unreadable or empty file; out of GPU memory
        raise DepthartError(f"{entry['file']}: TensorRT could not load it ({_one_line(e)}); {REBUILD_HINT}") from None
    if engine is None:
        raise DepthartError(f"{entry['file']}: TensorRT could not deserialise it (see its log above; out of GPU "
                            f"memory, or a corrupt file); {REBUILD_HINT}")
    return engine


# --- host arrays -> device memory (no TensorRT or CUDA needed: the device is passed in) ---------

TENSOR_ALIGNMENT = 256  # bytes; TensorRT requires tensor addresses aligned to this


def owner_of(arr: np.ndarray) -> np.ndarray:
    """The array that owns `arr`'s memory: the end of its chain of numpy `.base` arrays."""
    root = arr
    while isinstance(root.base, np.ndarray):
        root = root.base
    return root


def host_runs(arr: np.ndarray) -> list[tuple[int, int]]:
    """(host address, nbytes) of the contiguous pieces of `arr`, in C order.

    One piece for a C-contiguous array; `h[:, -n:]` of a (B, L, C) array gives B pieces of n * C
    items. Raises ValueError for negative strides.
    """
    if arr.size == 0:
        return []
    if any(s < 0 for s in arr.strides):
        raise ValueError(f"an array with negative strides {arr.strides} cannot be copied on the device")
    block, d = arr.itemsize, arr.ndim  # trailing dims [d:] form one contiguous block of `block` bytes
    while d > 0 and (arr.shape[d - 1] == 1 or arr.strides[d - 1] == block):
        block *= arr.shape[d - 1]
        d -= 1
    start, strides = arr.ctypes.data, arr.strides[:d]
    return [(start + sum(i * s for i, s in zip(idx, strides)), block) for idx in np.ndindex(*arr.shape[:d])]


class DeviceBuffers:
    """Device twins of host numpy arrays: one allocation per owning array; a view maps inside it.

    A view's device address is its owner's allocation + (view address - owner address), so slices
    of the KV cache are slices of one device cache and nothing is allocated after binding. A twin
    starts as a copy of its host array (fresh device memory is garbage, and some host values are
    read but never written by a graph: the KV cache's null slot 0); after that, only `upload`,
    `download` and `bind_copy` move data.

    Args:
        device: alloc(nbytes) -> address, free(address), htod(dst, src, nbytes),
            dtoh(dst, src, nbytes), dtod(dst, src, nbytes) (stream-ordered) and synchronize().
            `CudaDevice` is the real one; the tests pass stand-ins.
    """

    def __init__(self, device):
        self.device = device
        self._owners: dict[int, tuple[np.ndarray, int]] = {}  # id(owner) -> (owner, device address)

    @property
    def allocations(self) -> int:
        return len(self._owners)

    def _owner(self, arr: np.ndarray) -> tuple[np.ndarray, int]:
        owner = owner_of(arr)
        entry = self._owners.get(id(owner))  # the entry keeps the owner alive, so its id stays unique
        if entry is None:
            if not owner.flags.c_contiguous:
                raise ValueError(f"the array owning a {arr.shape} buffer is not C-contiguous")
            entry = (owner, self.device.alloc(owner.nbytes))
            self._owners[id(owner)] = entry
            self.device.htod(entry[1], owner.ctypes.data, owner.nbytes)
        return entry

    def _translate(self, arr: np.ndarray, host_address: int, nbytes: int) -> int:
        owner, device_address = self._owner(arr)
        offset = host_address - owner.ctypes.data
        if offset < 0 or offset + nbytes > owner.nbytes:
            raise ValueError(f"bytes [{offset}, {offset + nbytes}) lie outside their owner ({owner.nbytes} bytes)")
        return device_address + offset

    def address(self, arr: np.ndarray) -> int:
        """Device address of a C-contiguous host array (allocating its owner's twin on first use)."""
        if not arr.flags.c_contiguous:
            raise ValueError(f"a {arr.shape} array with strides {arr.strides} is not C-contiguous: only contiguous "
                             "arrays and contiguous views of them (e.g. slices along axis 0) get a device address")
        return self._translate(arr, arr.ctypes.data, arr.nbytes)

    def upload(self, *arrays: np.ndarray) -> None:
        """Host -> device, queued on the stream."""
        for a in arrays:
            self.device.htod(self.address(a), a.ctypes.data, a.nbytes)

    def download(self, *arrays: np.ndarray) -> None:
        """Device -> host; returns when the host arrays hold the data (one stream synchronisation)."""
        for a in arrays:
            self.device.dtoh(a.ctypes.data, self.address(a), a.nbytes)
        self.device.synchronize()

    def bind_copy(self, dst: np.ndarray, src: np.ndarray):
        """A reusable device-side `np.copyto(dst, src)`: one memcpy per contiguous piece of `src`."""
        if dst.shape != src.shape or dst.dtype != src.dtype:
            raise ValueError(f"copy of a {src.dtype}{src.shape} array into a {dst.dtype}{dst.shape} one")
        moves, at = [], self.address(dst)
        for host, nbytes in host_runs(src):
            moves.append((at, self._translate(src, host, nbytes), nbytes))
            at += nbytes
        dtod = self.device.dtod

        def copy():
            for d, s, n in moves:
                dtod(d, s, n)

        return copy

    def close(self) -> None:
        for _, device_address in self._owners.values():
            self.device.free(device_address)
        self._owners.clear()


def choose_profile(profiles: list[dict], shapes: dict) -> int | None:
    """Index of the first profile whose [min, max] range holds every input shape, else None.

    profiles: per profile, {input name: (min shape, max shape)}; shapes: {input name: shape}.
    """
    for i, prof in enumerate(profiles):
        if all(name in prof and len(prof[name][0]) == len(shape)
               and all(lo <= s <= hi for lo, s, hi in zip(prof[name][0], shape, prof[name][1]))
               for name, shape in shapes.items()):
            return i
    return None


# --- CUDA and TensorRT (imported only when a TrtBackend is created) -------------------------------

TRT_INSTALL_HINT = ("Install TensorRT: on Jetson use JetPack's (JetPack 6 ships 10.3; never pip there); on x86_64 or "
                    "SBSA with internet, pip install \"tensorrt-cu12<11\" for TensorRT 10 (the last with implicit int8 "
                    "calibration), or tensorrt-cu12 / tensorrt-cu13 for the newest 11.x (strongly typed only), matching "
                    "the driver's CUDA major; plain `pip install tensorrt` means 11.x for CUDA 13. The PyPI packages "
                    "fetch NVIDIA's wheels at install time, so an offline mirror has only stubs.")
TRT_MISSING_HINT = (f"{TRT_INSTALL_HINT} Also pip install 'polygraphy>=0.53.6' (depthart[trt]), or run the bundle's "
                    "ONNX graphs on onnxruntime's TensorRT execution provider instead: --backend ort --device trt,cuda")


def _tensorrt():
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or PyPI's stub package without its libraries (OSError)
        raise DepthartError(f"the TensorRT backend needs TensorRT, which cannot be imported here "
                            f"({type(e).__name__}: {e}). {TRT_MISSING_HINT}") from None
    return trt


class CudaDevice:
    """Device memory and one CUDA stream, through Polygraphy's ctypes wrapper of libcudart.

    Every CUDA failure (no driver or GPU, out of memory, a fault reported at a copy or synchronisation)
    becomes a one-line DepthartError. Polygraphy finds a pip-installed CUDA runtime
    (site-packages/nvidia/cuda_runtime/lib) from 0.53.6 on; older versions only search the system paths.
    """

    def __init__(self):
        try:
            from polygraphy import cuda
        except ImportError:
            raise DepthartError("CUDA is driven through Polygraphy here: pip install 'polygraphy>=0.53.6'") from None
        self._stream = None
        try:
            self._cuda = cuda.wrapper()
            self._stream = cuda.Stream()
        except Exception as e:  # no libcudart, no driver or no GPU
            raise DepthartError(f"CUDA is not usable here ({_one_line(e)}); check the NVIDIA driver and that the CUDA "
                                "runtime (libcudart) is installed (pip install nvidia-cuda-runtime-cu12, with "
                                "polygraphy>=0.53.6 to find it)") from None
        self.stream = self._stream.ptr
        kind = cuda.MemcpyKind
        self._h2d, self._d2h, self._d2d = kind.HostToDevice, kind.DeviceToHost, kind.DeviceToDevice

    def _call(self, what, fn, *args):
        try:
            return fn(*args)
        except DepthartError:
            raise
        except Exception as e:
            raise DepthartError(f"CUDA failed to {what} ({_one_line(e)})") from None

    def alloc(self, nbytes: int) -> int:
        return self._call(f"allocate {nbytes / 2**20:.1f} MiB of GPU memory (out of memory?)", self._cuda.malloc, nbytes)

    def free(self, address: int) -> None:
        self._call("free GPU memory", self._cuda.free, address)

    def htod(self, dst: int, src: int, nbytes: int) -> None:
        self._call("copy to the GPU", self._cuda.memcpy, dst, src, nbytes, self._h2d, self.stream)

    def dtoh(self, dst: int, src: int, nbytes: int) -> None:
        self._call("copy from the GPU", self._cuda.memcpy, dst, src, nbytes, self._d2h, self.stream)

    def dtod(self, dst: int, src: int, nbytes: int) -> None:
        self._call("copy on the GPU", self._cuda.memcpy, dst, src, nbytes, self._d2d, self.stream)

    def synchronize(self) -> None:
        self._call("finish the queued GPU work (an engine or copy faulted)", self._stream.synchronize)

    def identity(self) -> dict:
        """{"name", "compute_capability"} of the CUDA device in use (the current device, after CUDA_VISIBLE_DEVICES)."""
        import ctypes

        lib = self._cuda.handle
        dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        self._call("query the current device", self._cuda.check, lib.cudaGetDevice(ctypes.byref(dev)))
        for attr, out in ((75, major), (76, minor)):  # cudaDevAttrComputeCapabilityMajor / Minor
            self._call("query the compute capability", self._cuda.check,
                       lib.cudaDeviceGetAttribute(ctypes.byref(out), attr, dev))
        props = ctypes.create_string_buffer(8192)  # cudaDeviceProp (about 1 KB); its first field is char name[256]
        get = getattr(lib, "cudaGetDeviceProperties_v2", None) or lib.cudaGetDeviceProperties
        self._call("query the device name", self._cuda.check, get(props, dev))
        return {"name": props.raw[:256].split(b"\0", 1)[0].decode(errors="replace"),
                "compute_capability": f"{major.value}.{minor.value}"}

    def close(self) -> None:
        if self._stream is not None:
            self._stream.free()


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


def _io_names(engine, trt) -> tuple[list[str], list[str]]:
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    return ([n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT],
            [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT])


def _scratch_bytes(engine, profile: int) -> int:
    """Device memory a context of `engine` needs for `profile` (TensorRT 10.1+ names first)."""
    for attr in ("get_device_memory_size_for_profile_v2", "get_device_memory_size_for_profile"):
        size_of = getattr(engine, attr, None)
        if size_of is not None:
            return int(size_of(profile))
    return int(getattr(engine, "device_memory_size_v2", None) or engine.device_memory_size)


class TrtBackend:
    """The bundle's TensorRT engines on device-resident buffers; `bind` as OrtBackend's, plus transfers.

    Needs TensorRT 10.3 .. 11.x, polygraphy and an NVIDIA GPU; raises DepthartError saying what is
    missing. Engines have one batch size (`fixed_batch`); DepthRuntime pads or splits batches to it.
    """

    name = "trt"
    on_device = True  # the plan must upload what the host writes and download what it reads

    def __init__(self, bundle_dir, manifest: dict, device=None):
        """device: the CUDA device wrapper (CudaDevice's methods); default: a new CudaDevice. Tests pass a fake."""
        trt = self._trt = _tensorrt()
        entries = manifest.get("engines") or {}
        missing = [g for g in manifest["graphs"] if g not in entries]
        if missing:
            raise DepthartError(f"{bundle_dir}: no TensorRT engine for {missing}; build them on the target GPU: "
                                f"depthart export --checkpoint CKPT -o BUNDLE --trt --force (or run the ONNX graphs on "
                                "onnxruntime's TensorRT execution provider: --backend ort --device trt,cuda)")
        batches = sorted({int(e.get("batch", 1)) for e in entries.values()})
        if len(batches) != 1:
            raise DepthartError(f"{bundle_dir}: engines built for different batch sizes {batches}; {REBUILD_HINT}")
        self.fixed_batch = batches[0]
        self.precision = manifest.get("precision", "fp32")
        self.device = device if device is not None else CudaDevice()
        gpu = self.device.identity()  # once per bundle: the device the engines will run on
        self.gpu = gpu["name"]
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))  # outlives the engines
        self.engines = {}
        for name, graph in manifest["graphs"].items():
            engine = load_engine(bundle_dir, manifest, name, self._runtime, gpu)
            check_io(name, graph, *_io_names(engine, trt))
            self.engines[name] = engine
        self.memory = DeviceBuffers(self.device)
        # every call runs in order on one stream, so all contexts share one scratch allocation
        need = max(_scratch_bytes(e, p) for e in self.engines.values() for p in range(e.num_optimization_profiles))
        self.scratch_bytes = max(need, TENSOR_ALIGNMENT)
        self.scratch = self.device.alloc(self.scratch_bytes)  # DepthartError if out of memory
        self.contexts = []

    def describe(self) -> str:
        return f"TensorRT {self._trt.__version__} ({self.gpu}, {self.precision}, batch {self.fixed_batch})"

    def _context(self, engine):
        """A context without its own device memory (TensorRT 10: USER_MANAGED), given the shared scratch."""
        trt = self._trt
        strategy = getattr(getattr(trt, "ExecutionContextAllocationStrategy", None), "USER_MANAGED", None)
        if strategy is not None:
            ctx = engine.create_execution_context(strategy)
        else:
            ctx = engine.create_execution_context_without_device_memory()
        if ctx is None:
            raise DepthartError("TensorRT could not create an execution context (see its log above)")
        if hasattr(ctx, "set_device_memory"):  # 10.1+
            ctx.set_device_memory(self.scratch, self.scratch_bytes)
        else:
            ctx.device_memory = self.scratch
        return ctx

    def _dtype(self, engine, name):
        dt = engine.get_tensor_dtype(name)
        try:
            return np.dtype(self._trt.nptype(dt))
        except (TypeError, ValueError):
            return dt

    def bind(self, graph: str, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]):
        """A reusable call: `graph`'s engine reads the device twins of `inputs` and writes those of `outputs`.

        The step engine's profile is the one whose (static) shapes match `inputs`. Shapes and
        addresses are set here, once; the call only enqueues the engine on the stream.
        """
        engine = self.engines[graph]
        ins, outs = _io_names(engine, self._trt)
        unbound = sorted(set(ins) - set(inputs)) + sorted(set(outs) - set(outputs))
        if unbound:
            raise DepthartError(f"engine {graph!r}: the runtime binds no buffer for {unbound}")
        shapes = {n: tuple(a.shape) for n, a in inputs.items()}
        profiles = []
        for p in range(engine.num_optimization_profiles):
            ranges = {n: engine.get_tensor_profile_shape(n, p) for n in inputs}
            profiles.append({n: (tuple(r[0]), tuple(r[2])) for n, r in ranges.items()})
        p = choose_profile(profiles, shapes)
        if p is None:
            raise DepthartError(f"engine {graph!r}: no optimisation profile takes the shapes {shapes} (profiles, "
                                f"min and max: {profiles}); {REBUILD_HINT}")
        ctx = self._context(engine)
        try:  # the binding raises RuntimeError on failure (it never returns False)
            ctx.set_optimization_profile_async(p, self.device.stream)
        except RuntimeError as e:
            raise DepthartError(f"engine {graph!r}: TensorRT refused optimisation profile {p} ({_one_line(e)})") from None
        for n, a in inputs.items():
            if not ctx.set_input_shape(n, a.shape):
                raise DepthartError(f"engine {graph!r}: TensorRT refused shape {a.shape} for {n} (profile {p})")
        for n, a in {**inputs, **outputs}.items():
            want, shape = self._dtype(engine, n), tuple(ctx.get_tensor_shape(n))
            if want != a.dtype or shape != a.shape:
                raise DepthartError(f"engine {graph!r}: {n} is {want}{shape} in the engine, the runtime's buffer is "
                                    f"{a.dtype}{a.shape}; {REBUILD_HINT}")
            address = self.memory.address(a)
            if address % TENSOR_ALIGNMENT:
                raise DepthartError(f"engine {graph!r}: the device address of {n} is not {TENSOR_ALIGNMENT}-byte "
                                    "aligned (a KV-cache slot of this model is not a multiple of 256 bytes)")
            if not ctx.set_tensor_address(n, address):
                raise DepthartError(f"engine {graph!r}: TensorRT refused the address of {n}")
        self.device.synchronize()  # the profile switch is complete before the first call
        self.contexts.append(ctx)
        stream = self.device.stream

        def call():
            if not ctx.execute_async_v3(stream):
                raise DepthartError(f"TensorRT could not run engine {graph!r} (see its log above)")

        return call

    def upload(self, *arrays: np.ndarray) -> None:
        self.memory.upload(*arrays)

    def download(self, *arrays: np.ndarray) -> None:
        self.memory.download(*arrays)

    def bind_copy(self, dst: np.ndarray, src: np.ndarray):
        return self.memory.bind_copy(dst, src)

    def __del__(self):  # free the device memory with the backend (contexts are idle by then)
        memory = getattr(self, "memory", None)
        if memory is None:
            return
        self.memory = None
        try:
            self.device.synchronize()
            memory.close()
            if hasattr(self, "scratch"):
                self.device.free(self.scratch)
            self.device.close()
        except Exception:  # at interpreter exit CUDA may already be gone
            pass
