"""The TensorRT build and the native TensorRT loop, end to end on CPU against a fake `tensorrt`.

tests/fake_tensorrt.py mirrors TensorRT 10.x's Python API and runs each engine's ONNX graph with
onnxruntime on the bound (host-simulated) device memory, so export/trt.py's build and
`DepthRuntime(backend="trt")` run here exactly as they would call TensorRT, and their results are
compared with the onnxruntime CPU loop.
"""

import json
import mmap
import os
import shutil
import sys

import fake_tensorrt
import numpy as np
import pytest
from click.testing import CliRunner

from depthart.cli import main
from depthart.errors import DepthartError
from depthart.export.manifest import write_manifest
from depthart.export.trt import build_engines
from depthart.runtime import DepthRuntime
from depthart.runtime.backends import trt as trt_backend
from depthart.runtime.sampling import TopKTopP


@pytest.fixture
def fake_trt(monkeypatch):
    """`import tensorrt` gives the fake; CUDA is a FakeCudaDevice (host memory)."""
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)
    monkeypatch.setattr(trt_backend, "CudaDevice", fake_tensorrt.FakeCudaDevice)
    fake_tensorrt.reset()
    yield fake_tensorrt
    fake_tensorrt.reset()


def engine_bundle(src, dst, batch=1, device=None, **kw):
    """A copy of the ONNX bundle `src` with engines built by export/trt.py, registered as `depthart export --trt` does."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    engines = build_engines(dst, manifest, batch=batch, device=device, **kw)
    manifest["engines"] = {n: {"file": f, "sidecar": f"{f}.json", "precision": manifest["precision"], "batch": batch}
                           for n, f in engines.items()}
    write_manifest(dst, manifest)
    return dst


@pytest.fixture(scope="module")
def photos():
    from conftest import SAMPLE

    rng = np.random.default_rng(3)
    return [SAMPLE, (rng.random((40, 60, 3)) * 255).astype(np.uint8), (rng.random((24, 32, 3)) * 255).astype(np.uint8)]


def same_tokens(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.tokens, b.tokens))


def test_trt_loop_on_fake_tensorrt_matches_onnxruntime(fake_trt, tiny_bundle, tmp_path, photos):
    bundle = engine_bundle(tiny_bundle["dir"], tmp_path / "b1", timing_cache=tmp_path / "timing.cache")
    ref = DepthRuntime(tiny_bundle["dir"])
    rt = DepthRuntime(bundle, backend="trt")
    assert rt.describe().startswith("TensorRT 10.3.0 (Fake GPU, fp32, batch 1)")
    assert fake_trt.deserialized_from and set(fake_trt.deserialized_from) == {mmap.mmap}  # mapped, not read
    for make in (lambda: None, lambda: TopKTopP(top_k=3, seed=5)):  # a sampler reads logits, writes choices
        got, want = rt.predict(photos[0], make()), ref.predict(photos[0], make())
        assert same_tokens(got, want) and float(np.abs(got.depth - want.depth).max()) <= 1e-4
    two = rt.predict_batch(photos[:2])  # batch-1 engines: two passes
    assert all(same_tokens(g, w) for g, w in zip(two, ref.predict_batch(photos[:2])))
    assert not fake_trt.log, fake_trt.log  # TensorRT refused nothing
    assert (tmp_path / "timing.cache").stat().st_size > 0
    plan = rt._plans[1]
    assert not plan.cache_k.any()  # the KV cache lives on the device; its host twin is never written


def test_batch2_engines_pad_and_split(fake_trt, tiny_bundle, tmp_path, photos):
    bundle = engine_bundle(tiny_bundle["dir"], tmp_path / "b2", batch=2)
    ref = DepthRuntime(tiny_bundle["dir"])
    rt = DepthRuntime(bundle, backend="trt")
    assert rt.fixed_batch == 2
    got = rt.predict_batch(photos)  # one pass of 2, then 1 image padded to 2
    want = [ref.predict(p) for p in photos]
    assert all(same_tokens(g, w) and float(np.abs(g.depth - w.depth).max()) <= 1e-4 for g, w in zip(got, want))
    dev, kv = rt.backend.device, rt._plans[2].cache_k.nbytes
    before = dev.bytes_copied["htod"]
    rt.predict_batch(photos[:2])
    assert dev.bytes_copied["htod"] - before < kv / 4  # per prediction the image goes up, never the KV cache


def test_step_engine_profiles_share_weights_and_sidecar_records_sizes(fake_trt, tiny_bundle, tmp_path):
    bundle = engine_bundle(tiny_bundle["dir"], tmp_path / "b")
    manifest = json.loads((bundle / "manifest.json").read_text())
    blob = (bundle / "step.engine").read_bytes()
    meta = json.loads(blob[8 + len(fake_trt.MAGIC):8 + int.from_bytes(blob[:8], "little")])
    n = len(manifest["steps"])
    assert [p["extra_memory_target"] for p in meta["profiles"]] == [1.0] + [0.0] * (n - 1)
    assert meta["strongly_typed"] and meta["flags"] == []  # TF32 cleared: fp32 layers stay fp32
    side = json.loads((bundle / "step.engine.json").read_text())
    assert side["engine_bytes"] == len(blob) and side["onnx_bytes"] == (bundle / "step.onnx").stat().st_size
    assert side["engine_bytes"] <= 1.1 * side["onnx_bytes"]  # weights once (TensorRT's default: n copies)
    assert side["gpu"] == "Fake GPU" and side["compute_capability"] == "8.7"
    assert side["onnx_fingerprint"][0][:2] == ["step.onnx", side["onnx_bytes"]]


def test_a_start_hashes_only_changed_graphs(fake_trt, tiny_bundle, tmp_path, monkeypatch):
    bundle = engine_bundle(tiny_bundle["dir"], tmp_path / "b")
    real_hash = trt_backend.file_sha256
    monkeypatch.setattr(trt_backend, "file_sha256", lambda p: pytest.fail(f"hashed {p} at start"))
    DepthRuntime(bundle, backend="trt")  # fingerprints match the sidecars: nothing hashed
    st = os.stat(bundle / "decoder.onnx")
    os.utime(bundle / "decoder.onnx", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same content
    hashed = []
    monkeypatch.setattr(trt_backend, "file_sha256", lambda p: hashed.append(os.path.basename(p)) or real_hash(p))
    DepthRuntime(bundle, backend="trt")
    assert hashed == ["decoder.onnx"]
    with open(bundle / "decoder.onnx", "ab") as f:
        f.write(b"\0")  # changed content: a re-exported graph, engines not rebuilt
    write_manifest(bundle, json.loads((bundle / "manifest.json").read_text()))
    with pytest.raises(DepthartError, match="different ONNX graph"):
        DepthRuntime(bundle, backend="trt")


def test_engines_are_checked_against_the_cuda_device_in_use(fake_trt, tiny_bundle, tmp_path, monkeypatch):
    bundle = engine_bundle(tiny_bundle["dir"], tmp_path / "b", device=fake_trt.FakeCudaDevice("Orin", "8.7"))
    monkeypatch.setattr(trt_backend, "gpu_info", lambda: pytest.fail("nvidia-smi asked"))
    with pytest.raises(DepthartError, match=r"built for Orin \(compute 8.7\), this is Fake GPU"):
        DepthRuntime(bundle, backend="trt")


def test_tensorrt_failures_are_one_line_errors(fake_trt, tiny_bundle, tmp_path, photos):
    bundle = engine_bundle(tiny_bundle["dir"], tmp_path / "b")
    fake_trt.FAIL_PROFILE = True  # the binding raises RuntimeError; it never returns False
    rt = DepthRuntime(bundle, backend="trt")
    with pytest.raises(DepthartError, match="refused optimisation profile 0"):
        rt.predict(photos[0])
    r = CliRunner().invoke(main, ["run", str(bundle), str(photos[0]), "-o", str(tmp_path / "o"), "--backend", "trt"])
    assert r.exit_code == 1 and "refused optimisation profile" in r.output and "Traceback" not in r.output, r.output
    fake_trt.FAIL_PROFILE = False
    manifest = json.loads((bundle / "manifest.json").read_text())
    for blob, match in ((b"\0" * 64, "could not deserialise"),  # not an engine: TensorRT's deserialize returns None
                        (b"", "could not load it")):  # empty: cannot even be mapped
        (bundle / "prefix.engine").write_bytes(blob)
        write_manifest(bundle, manifest)  # recorded as it is: the engine itself is refused
        with pytest.raises(DepthartError, match=match):
            DepthRuntime(bundle, backend="trt")


def test_cli_run_with_the_trt_backend(fake_trt, tiny_bundle, tmp_path, photos):
    bundle = engine_bundle(tiny_bundle["dir"], tmp_path / "b")
    r = CliRunner().invoke(main, ["run", str(bundle), str(photos[0]), "-o", str(tmp_path / "o"), "--backend", "trt"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / "coffee.npy").is_file()


def test_the_fake_refuses_what_tensorrt_refuses(fake_trt, tiny_bundle, tmp_path):
    bundle = engine_bundle(tiny_bundle["dir"], tmp_path / "b")
    runtime = fake_trt.Runtime(fake_trt.Logger())
    engine = runtime.deserialize_cuda_engine((bundle / "step.engine").read_bytes())
    ctx = engine.create_execution_context(fake_trt.ExecutionContextAllocationStrategy.USER_MANAGED)
    with pytest.raises(RuntimeError):
        ctx.set_optimization_profile_async(engine.num_optimization_profiles, 0)
    shape = tuple(engine.get_tensor_profile_shape("x", 0)[0])
    assert ctx.set_input_shape("x", shape) and not ctx.set_input_shape("x", (shape[0], shape[1] + 1, shape[2]))
    assert not ctx.set_tensor_address("x", 4096 + 4) and ctx.set_tensor_address("x", 4096)
    assert not ctx.execute_async_v3(0) and "no address for" in fake_trt.log[-1]
    with pytest.raises(AssertionError, match="copies the whole serialized engine"):
        bytes(fake_trt._host_memory(b"abc"))
    with pytest.raises(RuntimeError, match="inconsistent"):
        fake_trt.IOptimizationProfile().set_shape("x", (1, 2), (1, 1), (1, 3))


def test_cuda_errors_become_one_line_errors(monkeypatch):
    class FailingCuda:  # Polygraphy's wrapper raises PolygraphyException from its `check`
        def malloc(self, nbytes):
            raise RuntimeError("CUDA Error: 2. To figure out what this means, refer to ...")

    class FailingStream:
        ptr = 0

        def synchronize(self):
            raise RuntimeError("CUDA Error: 700")

    dev = object.__new__(trt_backend.CudaDevice)
    dev._cuda, dev._stream = FailingCuda(), FailingStream()
    with pytest.raises(DepthartError, match=r"allocate 1024.0 MiB of GPU memory \(out of memory\?\) \(RuntimeError"):
        dev.alloc(1 << 30)
    with pytest.raises(DepthartError, match="finish the queued GPU work.*CUDA Error: 700"):
        dev.synchronize()
