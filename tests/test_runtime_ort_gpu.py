"""onnxruntime on a GPU, checked on CPU: provider options, and the device-memory binding on a fake device.

With the CUDA / TensorRT providers the runtime binds device memory, so the KV cache is never copied
host -> device per step; here that path runs on the CPU provider against tests/fake_tensorrt.py's
FakeCudaDevice (host memory standing in for the GPU's), and the options handed to the GPU providers
are checked as data. The real providers run in scripts/gpu_check.sh.
"""

import numpy as np
from fake_tensorrt import FakeCudaDevice

from depthart.runtime import DepthRuntime
from depthart.runtime.backends.ort import OrtBackend, provider_options, trt_profile_shapes


def dims(spec):
    """'x:1x4x8,y:2x3' -> {'x': (1, 4, 8), 'y': (2, 3)}"""
    return {n: tuple(int(d) for d in s.split("x")) for n, s in (item.split(":") for item in spec.split(","))}


def test_cuda_provider_runs_fp32_unless_tf32_is_asked_for(tiny_bundle):
    m = DepthRuntime(tiny_bundle["dir"]).manifest
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    (cuda, opts), (cpu, cpu_opts) = provider_options(wanted, m, "step", stream=1234)
    assert opts["use_tf32"] == "0" and cpu_opts == {}  # onnxruntime's own default is TF32
    assert opts["user_compute_stream"] == "1234" and opts["has_user_compute_stream"] == "1"
    assert provider_options(wanted, m, "step", tf32=True)[0][1]["use_tf32"] == "1"


def test_tensorrt_provider_gets_caches_and_profiles_covering_every_scale(tiny_bundle, tmp_path):
    m = DepthRuntime(tiny_bundle["dir"]).manifest
    (_, opts), _ = provider_options(["TensorrtExecutionProvider", "CPUExecutionProvider"], m, "step",
                                    trt_cache=str(tmp_path))
    assert opts["trt_engine_cache_enable"] == "1" and opts["trt_engine_cache_path"] == str(tmp_path)
    assert opts["trt_timing_cache_enable"] == "1" and opts["trt_timing_cache_path"] == str(tmp_path)
    lo, hi = dims(opts["trt_profile_min_shapes"]), dims(opts["trt_profile_max_shapes"])
    opt = dims(opts["trt_profile_opt_shapes"])
    for s in m["steps"]:  # every scale's shapes, at batch 1 and at the bundle's largest batch
        for b in (1, m["batch"]["max"]):
            shape = {"x": (b, s["tokens"], m["model"]["width"]), "past_k": (s["past"],) + lo["past_k"][1:2] + (b,)
                     + lo["past_k"][3:]}
            for n, sh in shape.items():
                assert all(a <= d <= c for a, d, c in zip(lo[n], sh, hi[n])), (n, sh, lo[n], hi[n])
    assert opt["x"][:2] == (1, m["steps"][-1]["tokens"])
    assert dims(trt_profile_shapes(m, "decoder")[2])["f_hat"][0] == m["batch"]["max"]


def test_gpu_providers_bind_device_memory(tiny_bundle, sample_photo):
    ref = DepthRuntime(tiny_bundle["dir"])
    rt = DepthRuntime(tiny_bundle["dir"])
    dev = FakeCudaDevice()
    rt.backend = OrtBackend(tiny_bundle["dir"], rt.manifest, cuda_device=dev)  # the device path, on the CPU provider
    assert rt.backend.on_device
    rng = np.random.default_rng(0)
    images = [sample_photo, (rng.random((30, 20, 3)) * 255).astype(np.uint8)]
    for imgs in ([sample_photo], images):
        got, want = rt.predict_batch(imgs), ref.predict_batch(imgs)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g.depth, w.depth)
            assert all(np.array_equal(a, b) for a, b in zip(g.tokens, w.tokens))
    plan = rt._plans[2]
    assert not plan.cache_k.any() and not plan.cache_v.any()  # the graphs wrote the device cache, not the host's
    before = dev.bytes_copied["htod"]
    rt.predict_batch(images)
    assert dev.bytes_copied["htod"] - before == plan.image.nbytes + plan.f_hat[0].nbytes  # no KV prefix goes up
