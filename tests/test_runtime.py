"""The torch-free runtime against the PyTorch model it was exported from."""

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from depthart.errors import DepthartError
from depthart.runtime import DepthRuntime
from depthart.runtime.sampling import Expected, TopKTopP, filter_top_k_top_p


def assert_matches_model(rt, model, image):
    res = rt.predict(image)
    ref = model.predict(image)
    assert res.depth.shape == ref.shape and res.depth.dtype == np.float32
    np.testing.assert_allclose(res.depth, ref, atol=1e-4, rtol=0)
    return res


@pytest.mark.parametrize("which", ["tiny_bundle", "small_bundle"])
def test_runtime_matches_pytorch_predict(which, request, sample_photo):
    import torch

    b = request.getfixturevalue(which)
    rt = DepthRuntime(b["dir"])
    res = assert_matches_model(rt, b["model"], sample_photo)
    # identical greedy tokens at every scale
    from depthart.preprocess import load_image, to_model_input

    x = torch.from_numpy(to_model_input(load_image(sample_photo), rt.image_size))[None]
    _, tokens = b["model"].generate(x, return_tokens=True)
    assert all(np.array_equal(a, t[0].numpy()) for a, t in zip(res.tokens, tokens))
    stages = set(res.timings)
    assert {"preprocess", "prefix", "step_0", "next_0", "decoder", "postprocess", "total"} <= stages


def test_batch_equals_single_images_and_buffers_are_reused(tiny_bundle, sample_photo):
    rt = DepthRuntime(tiny_bundle["dir"])
    rng = np.random.default_rng(0)
    other = (rng.random((40, 60, 3)) * 255).astype(np.uint8)
    singles = [rt.predict(sample_photo).depth, rt.predict(other).depth]
    plan = rt._plans[1]
    ptr = plan.cache_k.ctypes.data
    batch = rt.predict_batch([sample_photo, other])
    for s, r in zip(singles, batch):
        np.testing.assert_allclose(r.depth, s, atol=1e-5)
    again = rt.predict(sample_photo)
    assert rt._plans[1] is plan and plan.cache_k.ctypes.data == ptr  # allocated once per batch size
    np.testing.assert_array_equal(again.depth, singles[0])  # no state leaks between frames
    with pytest.raises(DepthartError, match="exceeds"):
        rt.predict_batch([other] * (rt.max_batch + 1))


def test_shared_runtime_is_thread_safe(tiny_bundle, sample_photo):
    rt = DepthRuntime(tiny_bundle["dir"])
    want = rt.predict(sample_photo).depth
    rng = np.random.default_rng(1)
    noise = (rng.random((24, 24, 3)) * 255).astype(np.uint8)
    want_noise = rt.predict(noise).depth
    errors = []

    def work(i):
        try:
            for _ in range(3):
                img, ref = (sample_photo, want) if i % 2 else (noise, want_noise)
                np.testing.assert_array_equal(rt.predict(img).depth, ref)
        except Exception as e:  # collected: assertion errors in threads do not fail the test by themselves
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_runtime_runs_without_torch(tiny_bundle, sample_photo, tmp_path):
    ref = tiny_bundle["model"].predict(sample_photo)
    np.save(tmp_path / "ref.npy", ref)
    code = f"""
import sys
sys.modules['torch'] = None
import numpy as np
from depthart.runtime import DepthRuntime
rt = DepthRuntime(r'{tiny_bundle["dir"]}')
d = rt.predict(r'{sample_photo}').depth
assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None and m.split('.')[0] == 'torch']
print(float(np.abs(d - np.load(r'{tmp_path / "ref.npy"}')).max()))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.strip()) <= 1e-4


def test_bad_bundles_are_reported(tiny_bundle, tmp_path):
    import shutil

    with pytest.raises(DepthartError, match="no such bundle"):
        DepthRuntime(tmp_path / "nope")
    broken = tmp_path / "b"
    shutil.copytree(tiny_bundle["dir"], broken)
    (broken / "next_1.onnx").unlink()
    with pytest.raises(DepthartError, match="next_1.onnx, which is missing"):
        DepthRuntime(broken)
    shutil.rmtree(broken)
    shutil.copytree(tiny_bundle["dir"], broken)
    m = json.loads((broken / "manifest.json").read_text())
    m["graphs"]["step"]["outputs"][0]["name"] = "scores"
    (broken / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DepthartError, match=r"not in the graph: \['scores'\].*not in the manifest: \['logits'\]"):
        DepthRuntime(broken)
    m["schema_version"] = 99
    (broken / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DepthartError, match="schema version 99"):
        DepthRuntime(broken)
    m = json.loads((tiny_bundle["dir"] / "manifest.json").read_text())
    m["parity"]["passed"] = False
    m["parity"]["failures"] = ["step.logits: max abs diff 3e-1 > 1e-4"]
    (broken / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DepthartError, match="failed the parity check.*step.logits"):
        DepthRuntime(broken)


def test_native_tensorrt_loop_says_what_to_use_instead(tiny_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as where TensorRT is absent, even if it is installed
    with pytest.raises(DepthartError, match="--backend ort --device trt"):
        DepthRuntime(tiny_bundle["dir"], backend="trt")


def test_expected_code_vector_sampler_matches_pytorch(tiny_bundle, sample_photo):
    from depthart.sampling import Expected as TorchExpected

    rt = DepthRuntime(tiny_bundle["dir"])
    res = rt.predict(sample_photo, Expected())
    ref = tiny_bundle["model"].predict(sample_photo, TorchExpected())
    np.testing.assert_allclose(res.depth, ref, atol=1e-4, rtol=0)
    assert np.abs(res.depth - rt.predict(sample_photo).depth).max() > 1e-3  # not the greedy path


def test_expect_runs_in_the_step_graph_and_equals_the_host_side_sampler(tiny_bundle, sample_photo, tmp_path):
    """Bundles whose step graph outputs h_expect run `expect` there (no logits leave the graph); a host-side sampler
    of the same math (here a subclass, which the runtime does not special-case) gives the same map and tokens; and a
    bundle from before h_expect still runs `expect`, on the host."""
    import shutil

    import onnx

    from depthart.export.manifest import write_manifest
    from depthart.runtime.integrity import file_records

    class HostExpected(Expected):
        pass

    rt = DepthRuntime(tiny_bundle["dir"])
    graph, host = rt.predict(sample_photo, "expect"), rt.predict(sample_photo, HostExpected())
    assert rt._plans[1].in_graph_expect
    np.testing.assert_allclose(graph.depth, host.depth, atol=1e-5, rtol=0)
    for a, b in zip(graph.tokens, host.tokens):
        np.testing.assert_array_equal(a, b)
    assert np.abs(graph.depth - rt.predict(sample_photo, "greedy").depth).max() > 1e-3  # not the greedy path

    old = tmp_path / "old"
    shutil.copytree(tiny_bundle["dir"], old)
    step = onnx.load(str(old / "step.onnx"))
    keep = [o for o in step.graph.output if o.name != "h_expect"]
    del step.graph.output[:]
    step.graph.output.extend(keep)
    onnx.save(step, str(old / "step.onnx"))
    m = json.loads((old / "manifest.json").read_text())
    m["graphs"]["step"]["outputs"] = [o for o in m["graphs"]["step"]["outputs"] if o["name"] != "h_expect"]
    m["files"] = file_records(old, m)
    write_manifest(old, m)
    rt_old = DepthRuntime(old)
    res = rt_old.predict(sample_photo, "expect")
    assert not rt_old._plans[1].in_graph_expect
    np.testing.assert_allclose(res.depth, graph.depth, atol=1e-5, rtol=0)


def test_numpy_sampling_is_seeded_and_filtered(tiny_bundle, sample_photo):
    rt = DepthRuntime(tiny_bundle["dir"])
    a = rt.predict(sample_photo, TopKTopP(top_k=5, seed=3))
    b = rt.predict(sample_photo, TopKTopP(top_k=5, seed=3))
    np.testing.assert_array_equal(a.depth, b.depth)
    greedy = rt.predict(sample_photo)
    top1 = rt.predict(sample_photo, TopKTopP(top_k=1, seed=0))
    assert all(np.array_equal(x, y) for x, y in zip(top1.tokens, greedy.tokens))
    np.testing.assert_allclose(top1.depth, greedy.depth, atol=1e-6)
    lg = np.log(np.array([[[0.5, 0.3, 0.15, 0.05]]]))
    assert np.isfinite(filter_top_k_top_p(lg, top_p=0.7)).tolist() == [[[True, True, False, False]]]
    assert np.isfinite(filter_top_k_top_p(lg, top_k=3)).tolist() == [[[True, True, True, False]]]
    draws = TopKTopP(top_k=2, seed=0).draw(np.repeat(lg, 2000, axis=1), 1)[..., 0]
    share = np.bincount(draws.ravel(), minlength=4) / draws.size
    assert share[2:].sum() == 0 and abs(share[0] - 0.5 / 0.8) < 0.05  # renormalised over the top 2


def test_bundle_carries_the_checkpoint_sampler_and_the_runtime_follows_it(tiny_expect_bundle, sample_photo,
                                                                         tmp_path):
    import shutil

    from depthart.sampling import Expected as TorchExpected, Greedy as TorchGreedy

    b, model = tiny_expect_bundle["dir"], tiny_expect_bundle["model"]
    assert json.loads((b / "manifest.json").read_text())["sampler"] == "expect"
    rt = DepthRuntime(b)
    assert rt.sampler == "expect" and rt.describe().endswith("sampler expect")
    res = rt.predict(sample_photo)
    np.testing.assert_allclose(res.depth, model.predict(sample_photo, TorchExpected()), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(rt.predict_batch([sample_photo])[0].depth, res.depth)
    # greedy on request: in the constructor or per call, and then it is the PyTorch greedy prediction
    greedy = DepthRuntime(b, sampler="greedy")
    assert greedy.sampler == "greedy" and "sampler" not in greedy.describe()
    g = greedy.predict(sample_photo)
    np.testing.assert_allclose(g.depth, model.predict(sample_photo, TorchGreedy()), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(rt.predict(sample_photo, "greedy").depth, g.depth)
    assert np.abs(res.depth - g.depth).max() > 1e-3  # the default really took the expect path
    np.testing.assert_array_equal(greedy.predict(sample_photo, "expect").depth, res.depth)
    # the PyTorch model loaded from the checkpoint follows it too
    np.testing.assert_array_equal(model.predict(sample_photo), model.predict(sample_photo, TorchExpected()))
    with pytest.raises(DepthartError, match="unknown sampler 'mean'; use auto, greedy or expect"):
        DepthRuntime(b, sampler="mean")
    # a bundle without the key is greedy; an unknown value is refused by name
    copy = tmp_path / "b"
    shutil.copytree(b, copy)
    m = json.loads((copy / "manifest.json").read_text())
    del m["sampler"]
    (copy / "manifest.json").write_text(json.dumps(m))
    assert DepthRuntime(copy).sampler == "greedy"
    np.testing.assert_array_equal(DepthRuntime(copy).predict(sample_photo).depth, g.depth)
    m["sampler"] = "beam"
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DepthartError, match=r"manifest.json: sampler 'beam' is not one of greedy, expect"):
        DepthRuntime(copy)


def test_bundle_records_the_onnxruntime_session_options_and_the_runtime_applies_them(tiny_bundle, sample_photo,
                                                                                     tmp_path):
    """export writes the session options (graph optimisation level, spinning, threads) into the manifest;
    the runtime loads every graph with them (`threads=` overrides the thread count); an old bundle without
    the key gets the same defaults; unknown keys and bad values are refused by name."""
    import shutil

    from depthart.runtime.manifest import ORT_SESSION_DEFAULTS

    b = tiny_bundle["dir"]
    assert json.loads((b / "manifest.json").read_text())["onnxruntime"] == ORT_SESSION_DEFAULTS
    rt = DepthRuntime(b, threads=1)
    assert rt.backend.session_options == {**ORT_SESSION_DEFAULTS, "intra_op_num_threads": 1}
    ref = rt.predict(sample_photo).depth
    copy = tmp_path / "b"
    shutil.copytree(b, copy)
    m = json.loads((copy / "manifest.json").read_text())

    def with_options(opts):
        if opts is None:
            m.pop("onnxruntime", None)
        else:
            m["onnxruntime"] = opts
        (copy / "manifest.json").write_text(json.dumps(m))

    with_options({"graph_optimization_level": "basic", "allow_spinning": True, "intra_op_num_threads": 2})
    rt2 = DepthRuntime(copy)
    sess = rt2.backend.sessions["step"].get_session_options()
    assert sess.intra_op_num_threads == 2 and sess.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert str(sess.graph_optimization_level).endswith("ORT_ENABLE_BASIC")
    np.testing.assert_allclose(rt2.predict(sample_photo).depth, ref, atol=1e-5, rtol=0)
    assert rt2.backend.session_options["graph_optimization_level"] == "basic"
    with_options(None)
    assert DepthRuntime(copy).backend.session_options == ORT_SESSION_DEFAULTS
    for bad, msg in (({"opt_level": "all"}, r"unknown onnxruntime session option\(s\) \['opt_level'\]"),
                     ({"graph_optimization_level": "max"}, "graph_optimization_level 'max' is not one of"),
                     ({"allow_spinning": "no"}, "allow_spinning must be true or false"),
                     ({"intra_op_num_threads": -1}, "intra_op_num_threads must be an integer >= 0"),
                     ("fast", "must be an object of session options")):
        with_options(bad)
        with pytest.raises(DepthartError, match=msg):
            DepthRuntime(copy)
