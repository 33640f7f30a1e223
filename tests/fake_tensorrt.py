"""A fake `tensorrt` for tests: TensorRT 10.x's Python API as depthart uses it, executing the ONNX graphs.

It mirrors the signatures of TensorRT's bindings (python/src/infer/pyCore.cpp, NvInferRuntime.h;
10.3 .. 11.x) for what export/trt.py and runtime/backends/trt.py call, and refuses what TensorRT
refuses: shapes outside the profile, addresses not 256-byte aligned, unset shapes/addresses/device
memory at enqueue, a bad profile index (by raising RuntimeError, as the binding does), an engine
blob from another version (deserialize returns None). An "engine" is the ONNX graph's path plus
the build's profiles; a context runs that graph with onnxruntime on the bound addresses, which
are host memory (`FakeCudaDevice`) or, on a GPU machine, real device memory (MEMORY = "cuda").

The build models weight memory: the serialized engine is as large as the ONNX file times
(1 + the sum of `extra_memory_target` over profiles 1..), TensorRT's default being 1.0 per profile.

Use: `monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)` and `reset()` (see the fixture
in tests/test_fake_trt.py); `runtime.backends.trt.CudaDevice` is replaced by `FakeCudaDevice`.
"""

from __future__ import annotations

import ctypes
import enum
import json
import os
import struct

import numpy as np

__version__ = "10.3.0"
MAGIC = b"FAKETRT1"

# module state, reset by reset()
MEMORY = "cpu"        # onnxruntime memory kind of the bound addresses: "cpu" (FakeCudaDevice) or "cuda"
DEVICE = None         # a device whose `contains(address, nbytes)` says whether memory was allocated on it
SYNC = None           # called before a graph runs: the stream's queued copies must land first (real CUDA)
FAIL_PROFILE = False  # set_optimization_profile_async raises (as TensorRT's binding does on failure)
log: list[str] = []   # errors TensorRT would have logged
deserialized_from: list[type] = []  # the buffer types deserialize_cuda_engine was given


def reset(memory="cpu", device=None, sync=None):
    global MEMORY, DEVICE, SYNC, FAIL_PROFILE
    MEMORY, DEVICE, SYNC, FAIL_PROFILE = memory, device, sync, False
    log.clear()
    deserialized_from.clear()


class Logger:
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self, min_severity=WARNING):
        self.min_severity = min_severity


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8


_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
       DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}
_FROM_ONNX = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 9: DataType.BOOL,
              2: DataType.UINT8, 7: DataType.INT64}


def nptype(trt_type):
    return _NP[trt_type]


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class BuilderFlag(enum.Enum):
    FP16 = 0
    INT8 = 1
    TF32 = 7


class ExecutionContextAllocationStrategy(enum.Enum):
    STATIC = 0
    ON_PROFILE_CHANGE = 1
    USER_MANAGED = 2


class IHostMemory(np.ndarray):
    """A serialized engine or timing cache: a buffer (memoryview works); `bytes(...)` would copy it, so it fails."""

    def __bytes__(self):
        raise AssertionError("bytes(IHostMemory) copies the whole serialized engine; write the buffer instead")


def _host_memory(data: bytes) -> IHostMemory:
    return np.frombuffer(data, np.uint8).view(IHostMemory)


# --- building --------------------------------------------------------------------------------------

class _Tensor:
    def __init__(self, name, shape, dtype):
        self.name, self.shape, self.dtype = name, tuple(shape), dtype


class INetworkDefinition:
    def __init__(self, flags):
        self.flags = flags
        self.onnx_path = None
        self._inputs, self._outputs = [], []

    @property
    def num_inputs(self):
        return len(self._inputs)

    def get_input(self, i):
        return self._inputs[i]


class _ParserError:
    def __init__(self, text):
        self._text = text

    def desc(self):
        return self._text


class OnnxParser:
    def __init__(self, network, logger):
        self.network, self._errors = network, []

    def parse_from_file(self, model):
        import onnx

        if not os.path.isfile(model):
            self._errors.append(_ParserError(f"cannot open {model}"))
            return False
        graph = onnx.load(model, load_external_data=False).graph
        init = {t.name for t in graph.initializer}

        def tensors(values):
            return [_Tensor(v.name, [d.dim_value if d.HasField("dim_value") else -1 for d in
                                     v.type.tensor_type.shape.dim], _FROM_ONNX[v.type.tensor_type.elem_type])
                    for v in values if v.name not in init]

        self.network._inputs, self.network._outputs = tensors(graph.input), tensors(graph.output)
        self.network.onnx_path = os.path.abspath(model)
        return True

    @property
    def num_errors(self):
        return len(self._errors)

    def get_error(self, index):
        return self._errors[index]


class IOptimizationProfile:
    def __init__(self):
        self._shapes = {}
        self._extra = 1.0  # TensorRT's default: this profile may get its own weight memory

    def set_shape(self, input, min, opt, max):  # noqa: A002 (TensorRT's argument names)
        dims = [tuple(int(d) for d in s) for s in (min, opt, max)]
        if len({len(d) for d in dims}) != 1 or not all(a <= b <= c for a, b, c in zip(*dims)):
            raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
        self._shapes[input] = dims

    def get_shape(self, input):  # noqa: A002
        return self._shapes.get(input, [])

    @property
    def extra_memory_target(self):
        return self._extra

    @extra_memory_target.setter
    def extra_memory_target(self, value):
        if 0.0 <= value <= 1.0:  # setExtraMemoryTarget refuses other values (and the property ignores that)
            self._extra = float(value)

    def __bool__(self):
        return bool(self._shapes)


class ITimingCache:
    def __init__(self, entries):
        self.entries = set(entries)

    def serialize(self):
        return _host_memory(json.dumps(sorted(self.entries)).encode())

    def combine(self, other, ignore_mismatch):
        self.entries |= other.entries
        return True


class IBuilderConfig:
    def __init__(self):
        self.profiles, self.pool_limits, self._cache = [], {}, None
        self.flags = {BuilderFlag.TF32}  # TensorRT sets TF32 by default

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def get_flag(self, flag):
        return flag in self.flags

    def add_optimization_profile(self, profile):
        if not profile:
            return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1

    @property
    def num_optimization_profiles(self):
        return len(self.profiles)

    def set_memory_pool_limit(self, pool, pool_size):
        self.pool_limits[pool] = int(pool_size)

    def create_timing_cache(self, serialized_timing_cache):
        data = bytes(memoryview(serialized_timing_cache))
        return ITimingCache(json.loads(data) if data else [])

    def set_timing_cache(self, cache, ignore_mismatch):
        self._cache = cache
        return True

    def get_timing_cache(self):
        return self._cache


class Builder:
    def __init__(self, logger):
        self.logger = logger

    def create_network(self, flags=0):
        return INetworkDefinition(flags)

    def create_builder_config(self):
        return IBuilderConfig()

    def create_optimization_profile(self):
        return IOptimizationProfile()

    def build_serialized_network(self, network, config):
        """The engine blob, or None (with a logged error) where TensorRT's build fails."""
        if network.onnx_path is None:
            log.append("build: empty network")
            return None
        if not config.profiles and any(-1 in t.shape for t in network._inputs):
            log.append("build: dynamic inputs and no optimization profile")
            return None
        profiles = []
        for i, prof in enumerate(config.profiles):
            shapes = {}
            for t in network._inputs:
                if t.name not in prof._shapes:
                    log.append(f"build: profile {i} sets no shape for input {t.name}")
                    return None
                for dims in prof._shapes[t.name]:
                    if len(dims) != len(t.shape) or any(s != -1 and s != d for s, d in zip(t.shape, dims)):
                        log.append(f"build: profile {i} shape {dims} does not fit {t.name}{t.shape}")
                        return None
                shapes[t.name] = prof._shapes[t.name]
            profiles.append({"shapes": shapes, "extra_memory_target": prof.extra_memory_target})
        if config._cache is not None:
            config._cache.entries |= {json.dumps(p["shapes"], sort_keys=True) for p in profiles}
        io = [[t.name, "in", list(t.shape), t.dtype.name] for t in network._inputs]
        io += [[t.name, "out", list(t.shape), t.dtype.name] for t in network._outputs]
        meta = {"version": __version__, "onnx": network.onnx_path, "io": io, "profiles": profiles,
                "flags": sorted(f.name for f in config.flags),
                "strongly_typed": bool(network.flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)))}
        header = MAGIC + json.dumps(meta).encode()
        weights = os.path.getsize(network.onnx_path)
        copies = 1 + sum(p["extra_memory_target"] for p in profiles[1:])
        size = max(len(header) + 8, int(weights * copies))
        return _host_memory(struct.pack("<Q", len(header)) + header + bytes(size - len(header) - 8))


# --- running ---------------------------------------------------------------------------------------

class Runtime:
    def __init__(self, logger):
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine):
        data = memoryview(serialized_engine)  # any buffer; TypeError otherwise, as the binding's py::buffer
        deserialized_from.append(type(serialized_engine))
        n = struct.unpack("<Q", data[:8])[0]
        header = bytes(data[8:8 + n])
        if not header.startswith(MAGIC):
            log.append("deserialize: not an engine")
            return None
        meta = json.loads(header[len(MAGIC):])
        if meta["version"] != __version__:
            log.append(f"deserialize: engine from TensorRT {meta['version']}")
            return None
        return ICudaEngine(meta)


class ICudaEngine:
    def __init__(self, meta):
        import onnxruntime as ort

        self.meta = meta
        self._io = {name: (mode, tuple(shape), DataType[dt]) for name, mode, shape, dt in meta["io"]}
        self._names = [name for name, *_ in meta["io"]]
        providers = ["CUDAExecutionProvider"] if MEMORY == "cuda" else ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self.session = ort.InferenceSession(meta["onnx"], opts, providers=providers)
        self._symbolic = {o.name: o.shape for o in self.session.get_outputs()}
        self._symbolic.update({i.name: i.shape for i in self.session.get_inputs()})

    @property
    def num_io_tensors(self):
        return len(self._names)

    def get_tensor_name(self, index):
        return self._names[index]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if self._io[name][0] == "in" else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return self._io[name][2]

    @property
    def num_optimization_profiles(self):
        return max(1, len(self.meta["profiles"]))

    def get_tensor_profile_shape(self, name, profile_index):
        if self._io[name][0] != "in" or not 0 <= profile_index < len(self.meta["profiles"]):
            raise RuntimeError(f"no profile shape for {name} in profile {profile_index}")
        return [list(d) for d in self.meta["profiles"][profile_index]["shapes"][name]]

    def get_device_memory_size_for_profile_v2(self, profile_index):
        return 4096 * (profile_index + 1)  # scratch: some amount per profile

    @property
    def device_memory_size_v2(self):
        return max(self.get_device_memory_size_for_profile_v2(p) for p in range(self.num_optimization_profiles))

    def create_execution_context(self, strategy=ExecutionContextAllocationStrategy.STATIC):
        return IExecutionContext(self, strategy)


class IExecutionContext:
    def __init__(self, engine, strategy):
        self.engine, self.strategy = engine, strategy
        self.profile = 0
        self.shapes, self.addresses = {}, {}
        self.memory = None  # (address, size) for USER_MANAGED

    def set_device_memory(self, memory, size):
        self.memory = (int(memory), int(size))

    def set_optimization_profile_async(self, profile_index, stream_handle):
        if FAIL_PROFILE or not 0 <= profile_index < self.engine.num_optimization_profiles:
            raise RuntimeError("Error in set optimization profile async.")
        self.profile = profile_index
        return True

    def set_input_shape(self, name, shape):
        io = self.engine._io.get(name)
        if io is None or io[0] != "in":
            log.append(f"set_input_shape: {name} is not an input")
            return False
        lo, _, hi = self.engine.get_tensor_profile_shape(name, self.profile)
        shape = tuple(int(s) for s in shape)
        if len(shape) != len(lo) or not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            log.append(f"set_input_shape: {name}{shape} outside profile {self.profile} [{lo}, {hi}]")
            return False
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name):
        mode, static, _ = self.engine._io[name]
        if mode == "in":
            return self.shapes.get(name, static)
        sizes = {}  # symbolic dimension -> value, from the input shapes set
        for inp, shape in self.shapes.items():
            for sym, d in zip(self.engine._symbolic[inp], shape):
                if isinstance(sym, str):
                    sizes[sym] = d
        return tuple(_dim(s, sizes) if isinstance(s, str) else s for s in self.engine._symbolic[name])

    def set_tensor_address(self, name, memory):
        if name not in self.engine._io:
            log.append(f"set_tensor_address: no tensor {name}")
            return False
        if int(memory) % 256:
            log.append(f"set_tensor_address: {name} at {int(memory):#x} is not 256-byte aligned")
            return False
        self.addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle):
        eng = self.engine
        problems = [f"no address for {n}" for n in eng._names if n not in self.addresses]
        problems += [f"no shape for {n}" for n, io in eng._io.items() if io[0] == "in" and n not in self.shapes]
        need = eng.get_device_memory_size_for_profile_v2(self.profile)
        if self.strategy == ExecutionContextAllocationStrategy.USER_MANAGED and (self.memory is None
                                                                                or self.memory[1] < need):
            problems.append(f"device memory not set or smaller than {need} bytes")
        if problems:
            log.append("enqueueV3: " + "; ".join(problems))
            return False
        binding = eng.session.io_binding()
        for name in eng._names:
            shape = tuple(self.get_tensor_shape(name))
            dtype = np.dtype(nptype(eng._io[name][2]))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            if DEVICE is not None and not DEVICE.contains(self.addresses[name], nbytes):
                log.append(f"enqueueV3: {name} [{self.addresses[name]:#x}, +{nbytes}) is not device memory")
                return False
            bind = binding.bind_input if eng._io[name][0] == "in" else binding.bind_output
            bind(name, MEMORY, 0, dtype, list(shape), self.addresses[name])
        if SYNC is not None:
            SYNC()
        eng.session.run_with_iobinding(binding)
        return True


def _dim(expr: str, sizes: dict) -> int:
    """An output dimension from the input shapes: a symbol (`tokens`) or the exporter's expression of them
    (`Max(0, tokens - Min(tokens, (tokens - 1)*Max(0, 2 - past)))`), as TensorRT computes it; -1 when unknown."""
    if expr in sizes:
        return sizes[expr]
    try:
        return int(eval(expr, {"__builtins__": {}, "Max": max, "Min": min}, dict(sizes)))  # noqa: S307 (test fake)
    except (NameError, SyntaxError, TypeError):
        return -1


# --- a CUDA device whose memory is host memory --------------------------------------------------------

class FakeCudaDevice:
    """runtime.backends.trt.CudaDevice's interface on host memory: allocations are 0xFF-filled numpy blocks
    (whatever is never uploaded or copied shows up as NaN / -1), aligned to 256 bytes."""

    def __init__(self, name="Fake GPU", compute_capability="8.7"):
        self.blocks, self.syncs, self.stream = {}, 0, 0
        self.copies = {"htod": 0, "dtoh": 0, "dtod": 0}
        self.bytes_copied = {"htod": 0, "dtoh": 0, "dtod": 0}
        self._identity = {"name": name, "compute_capability": compute_capability}

    def identity(self):
        return dict(self._identity)

    def alloc(self, nbytes):
        buf = np.full(nbytes + 256, 0xFF, np.uint8)
        address = (buf.ctypes.data + 255) // 256 * 256
        self.blocks[address] = (buf, nbytes)
        return address

    def contains(self, address, nbytes):
        return any(a <= address and address + nbytes <= a + n for a, (_, n) in self.blocks.items())

    def free(self, address):
        del self.blocks[address]

    def _copy(self, kind, dst, src, nbytes):
        ctypes.memmove(dst, src, nbytes)
        self.copies[kind] += 1
        self.bytes_copied[kind] += nbytes

    def htod(self, dst, src, nbytes):
        assert self.contains(dst, nbytes), "htod into memory that is not on the device"
        self._copy("htod", dst, src, nbytes)

    def dtoh(self, dst, src, nbytes):
        assert self.contains(src, nbytes), "dtoh from memory that is not on the device"
        self._copy("dtoh", dst, src, nbytes)

    def dtod(self, dst, src, nbytes):
        assert self.contains(dst, nbytes) and self.contains(src, nbytes), "dtod outside device memory"
        self._copy("dtod", dst, src, nbytes)

    def synchronize(self):
        self.syncs += 1

    def close(self):
        pass
