"""The native TensorRT loop: address mapping, transfers and the plan's hooks on CPU; the engines on a GPU.

On CPU the backend's memory half (runtime/backends/trt.py: DeviceBuffers) runs against stand-in
devices: one that only records addresses and copies, and one whose "device memory" is separate
host memory, so the real plan (runtime.py `_Plan`) is checked to upload, download and copy
everything it must. The TensorRT calls run against a fake TensorRT in tests/test_fake_trt.py and against
the real one in the `trt`-marked test.
"""

import ctypes
import json
import shutil
import sys
import types

import numpy as np
import pytest
from fake_tensorrt import FakeCudaDevice
from click.testing import CliRunner

from depthart.cli import main
from depthart.config import get_preset
from depthart.errors import DepthartError
from depthart.export.loop import steps
from depthart.export.trt import profile_shapes, tensorrt_status
from depthart.runtime import DepthRuntime
from depthart.runtime.backends.trt import DeviceBuffers, choose_profile, host_runs, owner_of
from depthart.runtime.sampling import TopKTopP

TRT_OK, TRT_REASON = tensorrt_status()
f32 = np.float32


class RecordingDevice:
    """Made-up device addresses, 256-byte aligned and far apart; records allocations and copies."""

    def __init__(self):
        self.allocs, self.freed, self.copies, self.syncs = [], [], [], 0
        self._next = 1 << 40

    def alloc(self, nbytes):
        address = self._next
        self._next += (nbytes // 256 + 2) * 256
        self.allocs.append((address, nbytes))
        return address

    def free(self, address):
        self.freed.append(address)

    def htod(self, dst, src, nbytes):
        self.copies.append(("htod", dst, src, nbytes))

    def dtoh(self, dst, src, nbytes):
        self.copies.append(("dtoh", dst, src, nbytes))

    def dtod(self, dst, src, nbytes):
        self.copies.append(("dtod", dst, src, nbytes))

    def synchronize(self):
        self.syncs += 1


def test_views_of_one_array_share_its_device_allocation():
    dev = RecordingDevice()
    mem = DeviceBuffers(dev)
    cache = np.zeros((9, 2, 1, 2, 8), f32)  # (slots, depth, batch, heads, head_dim), as the plan's KV cache
    slot = cache[0].nbytes
    past, new = cache[:3], cache[3:5]
    base = mem.address(past)
    assert dev.allocs == [(base, cache.nbytes)]  # the owner's size, allocated on first use ...
    assert dev.copies == [("htod", base, cache.ctypes.data, cache.nbytes)]  # ... and starting as its copy
    assert mem.address(new) == base + 3 * slot
    assert mem.address(cache[3:5][1:]) == base + 4 * slot and owner_of(cache[3:5][1:]) is cache  # view of a view
    assert mem.address(cache) == base and mem.address(cache.reshape(9, -1)[8]) == base + 8 * slot
    assert len(dev.allocs) == 1 and mem.allocations == 1


def test_distinct_arrays_get_distinct_allocations_once():
    dev = RecordingDevice()
    mem = DeviceBuffers(dev)
    a, b = np.zeros((2, 3), f32), np.zeros((2, 3), f32)
    pa, pb = mem.address(a), mem.address(b)
    assert mem.address(a) == pa and mem.address(a.reshape(6)) == pa  # same owner: no new allocation
    assert [p for p, _ in dev.allocs] == [pa, pb] and abs(pb - pa) >= a.nbytes
    mem.close()
    assert sorted(dev.freed) == sorted([pa, pb]) and mem.allocations == 0


def test_non_contiguous_arrays_get_no_device_address():
    dev = RecordingDevice()
    mem = DeviceBuffers(dev)
    h = np.zeros((2, 5, 4), f32)
    for view in (h[:, -2:], h.transpose(1, 0, 2), h[..., ::2]):
        with pytest.raises(ValueError, match="not C-contiguous"):
            mem.address(view)
    assert dev.allocs == []  # refused before allocating anything


def test_host_runs_are_the_contiguous_pieces_in_order():
    h = np.arange(2 * 5 * 3, dtype=f32).reshape(2, 5, 3)
    tail = h[:, -2:]  # the plan's step-0 code-vector tail: one piece per batch row
    runs = host_runs(tail)
    assert runs == [(h.ctypes.data + 9 * 4, 6 * 4), (h.ctypes.data + 24 * 4, 6 * 4)]
    assert b"".join(ctypes.string_at(a, n) for a, n in runs) == np.ascontiguousarray(tail).tobytes()
    assert host_runs(h) == [(h.ctypes.data, h.nbytes)]
    assert host_runs(h[:1, -2:]) == [(h.ctypes.data + 9 * 4, 6 * 4)]  # a single row is contiguous
    with pytest.raises(ValueError, match="negative strides"):
        host_runs(h[:, ::-1])


def test_device_copy_of_a_strided_view_and_transfers_use_mapped_addresses():
    dev = RecordingDevice()
    mem = DeviceBuffers(dev)
    h, tail = np.zeros((2, 5, 3), f32), np.zeros((2, 2, 3), f32)
    copy = mem.bind_copy(tail, h[:, -2:])
    hd, td = mem.address(h), mem.address(tail)
    dev.copies.clear()  # (the twins' initial copies)
    copy()
    assert dev.copies == [("dtod", td, hd + 9 * 4, 24), ("dtod", td + 24, hd + 24 * 4, 24)]
    with pytest.raises(ValueError, match="copy of a"):
        mem.bind_copy(np.zeros((2, 3, 3), f32), h[:, -2:])
    cache = np.zeros((6, 4), f32)
    c = mem.address(cache)
    dev.copies.clear()
    mem.upload(cache[2:4])
    mem.download(tail, cache[4:])
    assert dev.copies == [("htod", c + 32, cache[2:].ctypes.data, 32), ("dtoh", tail.ctypes.data, td, 48),
                          ("dtoh", cache[4:].ctypes.data, c + 64, 32)]
    assert dev.syncs == 1  # one synchronisation per download call, after all copies


def test_step_profile_is_chosen_by_its_static_shapes():
    cfg = get_preset("tiny")
    manifest = {"steps": steps(cfg), "graphs": {"step": {"inputs": [
        {"name": "x", "shape": ["batch", "tokens", cfg.width]},
        {"name": "past_k", "shape": ["past", cfg.depth, "batch", cfg.heads, cfg.head_dim]}]}}}
    shapes = profile_shapes(manifest, "step", batch=1)  # what export/trt.py builds: min = opt = max
    profiles = [{n: (s, s) for n, s in p.items()} for p in shapes]
    assert [choose_profile(profiles, p) for p in shapes] == list(range(len(cfg.patch_nums)))
    batch2 = {n: (2,) + s[1:] if n == "x" else s[:2] + (2,) + s[3:] for n, s in shapes[0].items()}
    assert choose_profile(profiles, batch2) is None  # batch-1 engines take no batch of 2
    assert choose_profile([{"x": ((1, 1), (4, 8))}], {"x": (3, 8)}) == 0  # a dynamic range holds its shapes


class SimulatedGpuBackend:
    """The bundle's onnxruntime sessions bound to FakeCudaDevice addresses through DeviceBuffers,
    the TensorRT backend's memory half: a TrtBackend without TensorRT."""

    on_device = True

    def __init__(self, ort_backend):
        self.sessions = ort_backend.sessions
        self.device = FakeCudaDevice()
        self.memory = DeviceBuffers(self.device)

    def bind(self, graph, inputs, outputs):
        sess = self.sessions[graph]
        binding = sess.io_binding()
        for name, a in inputs.items():
            binding.bind_input(name, "cpu", 0, a.dtype, list(a.shape), self.memory.address(a))
        for name, a in outputs.items():
            binding.bind_output(name, "cpu", 0, a.dtype, list(a.shape), self.memory.address(a))
        return lambda: sess.run_with_iobinding(binding)

    def upload(self, *arrays):
        self.memory.upload(*arrays)

    def download(self, *arrays):
        self.memory.download(*arrays)

    def bind_copy(self, dst, src):
        return self.memory.bind_copy(dst, src)

    def describe(self):
        return "simulated device"


def assert_same_results(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.depth, w.depth)
        assert all(np.array_equal(a, b) for a, b in zip(g.tokens, w.tokens))


def test_plan_on_separate_device_memory_gives_the_host_results(tiny_bundle, sample_photo):
    ref = DepthRuntime(tiny_bundle["dir"])
    rt = DepthRuntime(tiny_bundle["dir"])
    rt.backend = sim = SimulatedGpuBackend(rt.backend)
    other = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    for images in ([sample_photo], [sample_photo, other]):  # batch 2: the tail copy is two pieces
        got = rt.predict_batch(images)
        assert_same_results(got, ref.predict_batch(images))
        assert "download" in got[0].timings
    plan = rt._plans[2]
    assert not plan.cache_k.any() and not plan.f_hat[1].any()  # the host twins stay untouched: work is on the device
    # one device allocation per owning host array; the cache slices bound to every step share the cache's
    m = rt.manifest
    tails = 0 if m.get("step_logits") == "tail" else sum(s["logits_tail"] != s["tokens"] for s in m["steps"])
    # image, cache k/v, 2 f_hat, depth; x, logits, tokens, h, h_expect per step; a tail of h and of h_expect
    per_plan = 6 + 5 * len(m["steps"]) + 2 * tails
    assert sim.memory.allocations == 2 * per_plan
    allocs, syncs = sim.memory.allocations, sim.device.syncs
    assert_same_results([rt.predict(sample_photo)], [ref.predict(sample_photo)])
    assert sim.memory.allocations == allocs and sim.device.syncs == syncs + 1  # one sync per greedy prediction
    # a sampler reads the logits and replaces tokens and code vectors through the same hooks
    assert_same_results([rt.predict(sample_photo, TopKTopP(top_k=3, seed=5))],
                        [ref.predict(sample_photo, TopKTopP(top_k=3, seed=5))])


def test_fixed_batch_engines_pad_small_batches_and_split_large_ones(tiny_bundle, sample_photo):
    ref = DepthRuntime(tiny_bundle["dir"])
    rt = DepthRuntime(tiny_bundle["dir"])
    rt.backend = SimulatedGpuBackend(rt.backend)
    rt.fixed_batch = 2  # as TrtBackend reports for engines built with --batch 2
    rng = np.random.default_rng(1)
    images = [sample_photo] + [(rng.random((24, 32, 3)) * 255).astype(np.uint8) for _ in range(2)]
    got = rt.predict_batch(images)  # one full pass of 2, then 1 image padded to 2
    assert list(rt._plans) == [2] and not rt._plans[2].image[1].any()
    assert_same_results(got, [ref.predict(im) for im in images])


def test_without_tensorrt_the_trt_backend_says_what_to_install(tiny_bundle, sample_photo, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` fails, even where it is installed
    with pytest.raises(DepthartError, match=r"needs TensorRT.*pip install tensorrt.*--backend ort --device trt,cuda"):
        DepthRuntime(tiny_bundle["dir"], backend="trt")
    runner = CliRunner()
    r = runner.invoke(main, ["run", str(tiny_bundle["dir"]), str(sample_photo), "-o", str(tmp_path / "o"),
                             "--backend", "trt"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert "needs TensorRT" in r.output and "Traceback" not in r.output
    r = runner.invoke(main, ["bench", "--bundle", str(tiny_bundle["dir"]), "--backends", "ort,trt", "--runs", "1",
                             "--warmup", "0"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit) and "needs TensorRT" in r.output, r.output


def test_a_bundle_without_engines_says_how_to_build_them(tiny_bundle, tmp_path, monkeypatch):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle["dir"], bundle)
    m = json.loads((bundle / "manifest.json").read_text())
    m.pop("engines", None)
    (bundle / "manifest.json").write_text(json.dumps(m))
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # importable, but no engines
    with pytest.raises(DepthartError, match=r"no TensorRT engine for \[.*--trt.*--backend ort --device trt,cuda"):
        DepthRuntime(bundle, backend="trt")


@pytest.mark.trt
@pytest.mark.skipif(not TRT_OK, reason=f"the TensorRT loop needs TensorRT and a GPU: {TRT_REASON}")
def test_tensorrt_loop_matches_onnxruntime(tiny_bundle, sample_photo):
    assert tiny_bundle["result"].exit_code == 0, tiny_bundle["result"].output  # export --trt built the engines
    trt_rt = DepthRuntime(tiny_bundle["dir"], backend="trt")
    ort_rt = DepthRuntime(tiny_bundle["dir"])
    got, want = trt_rt.predict(sample_photo), ort_rt.predict(sample_photo)
    assert all(np.array_equal(a, b) for a, b in zip(got.tokens, want.tokens))
    assert float(np.abs(got.depth - want.depth).max()) <= 1e-3
    assert "download" in got.timings and "TensorRT" in trt_rt.describe()
    np.testing.assert_array_equal(trt_rt.predict(sample_photo).depth, got.depth)  # no state leaks between frames
    top1 = trt_rt.predict(sample_photo, TopKTopP(top_k=1, seed=0))  # sampler: logits down, choices up
    assert all(np.array_equal(a, b) for a, b in zip(top1.tokens, got.tokens))
    np.testing.assert_allclose(top1.depth, got.depth, atol=1e-6)
    two = trt_rt.predict_batch([sample_photo, sample_photo])  # engines of batch 1: two passes
    np.testing.assert_array_equal(two[1].depth, got.depth)
