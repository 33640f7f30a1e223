"""Calibration: feeds cover every graph and scale; fp16/int8 bundles are valid, run, stay near fp32; cache reused."""

import json

import numpy as np
import onnx
import pytest

from depthart.calibration import feeds as fd
from depthart.calibration.quantize import QUANT_OPS, make_precision_bundle
from depthart.export.manifest import read_manifest
from depthart.export.onnx import ALLOWED_OPS, OPSET, graph_ops


@pytest.fixture(scope="session")
def tiny_calib(tiny_bundle):
    """Two procedural calibration images and their recorded feeds from the fp32 tiny bundle."""
    m = read_manifest(tiny_bundle["dir"])
    images, desc = fd.calibration_images(None, 2, m["image_size"])
    return {"images": images, "desc": desc, "feeds": fd.feeds_from_bundle(tiny_bundle["dir"], images)}


@pytest.fixture(scope="session")
def precision_bundles(tiny_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    cache = root / "cache"
    out, logs = {}, {}
    for p in ("fp16", "int8"):
        logs[p] = []
        make_precision_bundle(tiny_bundle["dir"], root / p, p, num_calib=2, cache_dir=cache, progress=logs[p].append)
        out[p] = root / p
    return {"root": root, "cache": cache, "logs": logs, **out}


def test_feeds_cover_every_graph_and_scale_with_manifest_shapes(tiny_bundle, tiny_calib):
    m = read_manifest(tiny_bundle["dir"])
    feeds, n = tiny_calib["feeds"], len(tiny_calib["images"])
    assert set(feeds) == set(m["graphs"])
    assert len(feeds["step"]) == n * len(m["steps"])
    for name, calls in feeds.items():
        assert len(calls) == (n * len(m["steps"]) if name == "step" else n), name
        decl = {i["name"]: i for i in m["graphs"][name]["inputs"]}
        for f in calls:
            assert set(f) == set(decl), name
            for k, v in f.items():
                assert v.dtype == np.dtype(decl[k]["dtype"]), (name, k)
                for dim, want in zip(v.shape, decl[k]["shape"]):
                    assert isinstance(want, str) or dim == want, (name, k, v.shape, decl[k]["shape"])
    # the step graph sees every scale's static shape, KV states growing as the cache fills
    for i, s in enumerate(m["steps"]):
        f = feeds["step"][i]
        assert f["x"].shape[1] == s["tokens"] and f["past_k"].shape[0] == s["past"], s
    assert np.abs(feeds["step"][len(m["steps"]) - 1]["past_k"][1:]).max() > 0  # real KV states, not zeros
    assert tiny_calib["desc"]["kind"] == "procedural" and tiny_calib["desc"]["count"] == n


def test_feed_reader_and_npz_round_trip(tmp_path, tiny_calib):
    feeds = tiny_calib["feeds"]
    reader = fd.feed_reader(feeds["step"])
    got = []
    while (item := reader.get_next()) is not None:
        got.append(item)
    assert len(got) == len(feeds["step"]) == len(reader)
    fd.save_feeds(tmp_path / "feeds.npz", feeds)
    back = fd.load_feeds(tmp_path / "feeds.npz")
    assert set(back) == set(feeds)
    for name in feeds:
        for a, b in zip(feeds[name], back[name]):
            assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_calibration_images_from_a_folder(tmp_path, sample_photo):
    import shutil

    shutil.copy(sample_photo, tmp_path / "a.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    images, desc = fd.calibration_images(tmp_path, 5, 16)
    assert images.shape == (1, 3, 16, 16) and images.dtype == np.float32
    assert desc["kind"] == "folder" and [f for f, _ in desc["files"]] == ["a.jpg"]
    with pytest.raises(FileNotFoundError):
        fd.calibration_images(tmp_path / "missing", 1, 16)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_precision_bundle_is_valid_and_runs_near_fp32(tiny_bundle, precision_bundles, precision):
    from depthart.runtime import DepthRuntime

    d = precision_bundles[precision]
    m = read_manifest(d)
    src = read_manifest(tiny_bundle["dir"])
    assert m["precision"] == precision and set(m["graphs"]) == set(src["graphs"])
    assert m["steps"] == src["steps"] and m["model"] == src["model"]
    assert set(m["precision_plan"]) == set(m["graphs"])
    want = "QuantizeLinear" if precision == "int8" else "Cast"
    assert any(want in g["ops"] for g in m["graphs"].values())
    for name, g in m["graphs"].items():
        ops = graph_ops(d / g["file"])
        assert ops <= ALLOWED_OPS | QUANT_OPS, (name, ops - ALLOWED_OPS - QUANT_OPS)
        model = onnx.load(str(d / g["file"]))
        assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == OPSET
        # fp32 (and int64 tokens) at the boundary, exactly as the fp32 bundle declares
        assert g["inputs"] == src["graphs"][name]["inputs"] and g["outputs"] == src["graphs"][name]["outputs"]
    if precision == "int8":
        assert m["calibration"]["method"] == "minmax" and m["calibration"]["images"]["count"] == 2
        assert m["precision_plan"]["step"]["precision"] == "int8" and m["precision_plan"]["step"]["fp32_nodes"]
        zps = [onnx.numpy_helper.to_array(i) for i in onnx.load(str(d / "step.onnx")).graph.initializer
               if i.name.endswith("zero_point")]
        assert zps and not any(z.any() for z in zps)  # symmetric (zero point 0): TensorRT's rule
        assert {z.dtype for z in zps} <= {np.dtype(np.int8), np.dtype(np.int32)}  # int32: biases
        # the AdaLN modulation of the constant condition stays fp32, so that onnxruntime folds it at load: no
        # QuantizeLinear of the int8 step graph reads a tensor that depends on constants alone
        step = onnx.load(str(d / "step.onnx"))
        const = {i.name for i in step.graph.initializer}
        for n in step.graph.node:
            if all(i == "" or i in const for i in n.input) and n.op_type != "QuantizeLinear":
                const.update(n.output)
        src_step = onnx.load(str(tiny_bundle["dir"] / "step.onnx"))
        gemms = [n.name for n in src_step.graph.node if n.op_type == "Gemm"]
        assert gemms and set(gemms) <= set(m["precision_plan"]["step"]["fp32_nodes"])
        assert not [n.name for n in step.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in const]
    image = (np.random.default_rng(0).uniform(0, 255, (40, 40, 3))).astype(np.uint8)
    ref = DepthRuntime(tiny_bundle["dir"]).predict(image)
    out = DepthRuntime(d).predict(image)
    assert out.depth.shape == ref.depth.shape and np.isfinite(out.depth).all()
    # loose: catches broken graphs, not accuracy (tiny's 64-code vocabulary flips tokens easily)
    assert np.abs(out.depth - ref.depth).mean() < 0.15
    assert np.mean(out.tokens[0] == ref.tokens[0]) >= 0.0 and len(out.tokens) == len(ref.tokens)


def test_calibration_cache_is_written_and_reused(tiny_bundle, precision_bundles, tmp_path):
    cache = precision_bundles["cache"]
    tables = list(cache.rglob("step.json"))
    assert len(tables) == 1 and json.loads(tables[0].read_text())
    assert any("recording feeds" in msg for msg in precision_bundles["logs"]["int8"])
    logs = []
    m = make_precision_bundle(tiny_bundle["dir"], tmp_path / "again", "int8", num_calib=2, cache_dir=cache,
                              progress=logs.append)
    assert not any("recording feeds" in msg for msg in logs) and m["calibration"]["calibrated"] is False
    assert (tmp_path / "again" / "step.onnx").read_bytes() == (precision_bundles["int8"] / "step.onnx").read_bytes()
    # another method is another key: it calibrates again
    m2 = make_precision_bundle(tiny_bundle["dir"], tmp_path / "entropy", "int8", num_calib=2, cache_dir=cache,
                               method="percentile")
    assert m2["calibration"]["calibrated"] is True and m2["calibration"]["key"] != m["calibration"]["key"]


def test_refuses_to_overwrite_and_rejects_bad_arguments(tiny_bundle, precision_bundles):
    from depthart.errors import DepthartError

    with pytest.raises(DepthartError, match="exists"):
        make_precision_bundle(tiny_bundle["dir"], precision_bundles["fp16"], "fp16")
    with pytest.raises(ValueError, match="precision"):
        make_precision_bundle(tiny_bundle["dir"], precision_bundles["root"] / "x", "int4")
    with pytest.raises(DepthartError, match="fp32"):
        make_precision_bundle(precision_bundles["fp16"], precision_bundles["root"] / "y", "int8")
    assert sorted(p.name for p in precision_bundles["root"].iterdir() if p.name.startswith(".")) == []


def test_accuracy_report_has_its_keys(tiny_bundle, precision_bundles):
    from depthart.calibration.report import accuracy_report

    r = accuracy_report(tiny_bundle["dir"], precision_bundles["int8"], num_procedural=2, middlebury=False)
    assert r["precision"] == "int8" and r["images"] == 2
    assert [s["scale"] for s in r["per_scale"]] == list(range(len(read_manifest(tiny_bundle["dir"])["steps"])))
    for s in r["per_scale"]:
        assert 0.0 <= s["token_agreement"] <= 1.0 and np.isfinite(s["logits_max_abs"])
    row = r["metrics"]["procedural"]
    assert set(row) >= {"fp32", "test", "abs_rel_rel_change", "abs_rel_scene_change", "images"}
    # per image changes cannot cancel: one map better, one worse by as much
    from depthart.calibration.report import set_row

    r2 = set_row([{"abs_rel": 0.2, "delta1": 0.5}, {"abs_rel": 0.4, "delta1": 0.5}],
                 [{"abs_rel": 0.3, "delta1": 0.5}, {"abs_rel": 0.3, "delta1": 0.6}])
    assert r2["abs_rel_rel_change"] == pytest.approx(0.0) and r2["abs_rel_scene_change"] == pytest.approx(0.1 / 0.3)
    assert r2["test"]["delta1"] == pytest.approx(0.55) and r2["images"] == 2
    assert set(row["fp32"]) == {"abs_rel", "delta1"}
    assert r["target"]["abs_rel_rel_change_max"] == 0.02 and isinstance(r["target"]["passed"], bool)
    assert r["sampler"] == "greedy"


def test_accuracy_report_runs_the_bundles_sampler(tiny_expect_bundle, tmp_path):
    """A bundle whose checkpoint recommends `expect` is judged with it (what its runtime will run)."""
    from depthart.calibration.report import accuracy_report
    from depthart.export.loop import ort_runner, run_loop
    from depthart.config import ModelConfig
    from depthart.runtime.sampling import make_sampler

    b = tiny_expect_bundle["dir"]
    make_precision_bundle(b, tmp_path / "fp16", "fp16")
    r = accuracy_report(b, tmp_path / "fp16", num_procedural=1, middlebury=False)
    assert r["sampler"] == "expect" and r["images"] == 1
    m = read_manifest(b)
    img = np.zeros((1, 3, m["image_size"], m["image_size"]), np.float32)
    runs = [run_loop(ort_runner(b, m), ModelConfig.from_dict(m["model"]), img, sampler=make_sampler("expect"),
                     codebook=np.load(b / m["codebook"])) for _ in range(2)]
    np.testing.assert_array_equal(runs[0]["depth"], runs[1]["depth"])  # deterministic, so the report compares like with like


def test_calibration_feeds_follow_the_bundles_sampler(tiny_expect_bundle, tmp_path):
    """An `expect` bundle is calibrated on the decoder/step inputs its runtime sees (expected code vectors), not greedy's."""
    from depthart.config import ModelConfig
    from depthart.export.loop import ort_runner, run_loop
    from depthart.runtime.sampling import make_sampler

    b = tiny_expect_bundle["dir"]
    m = read_manifest(b)
    images, _ = fd.calibration_images(None, 1, m["image_size"])
    feeds = fd.feeds_from_bundle(b, images)
    cfg, run = ModelConfig.from_dict(m["model"]), ort_runner(b, m)
    rec = {}
    for name, sampler in (("expect", make_sampler("expect")), ("greedy", None)):
        rec[name] = []
        run_loop(run, cfg, images, record=rec[name], sampler=sampler, codebook=np.load(b / m["codebook"]))
    dec = {k: [f for g, f, _ in r if g == "decoder"][0] for k, r in rec.items()}
    (name,) = dec["expect"]
    np.testing.assert_array_equal(feeds["decoder"][0][name], dec["expect"][name])
    assert np.abs(dec["expect"][name] - dec["greedy"][name]).max() > 1e-3  # the two samplers do feed different inputs
    # and the calibration cache key tells the two apart: an expect bundle gets its own tables
    make_precision_bundle(b, tmp_path / "int8", "int8", num_calib=1, cache_dir=tmp_path / "cache")
    assert read_manifest(tmp_path / "int8")["calibration"]["sampler"] == "expect"


def test_package_imports_without_torch_or_onnx():
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None; sys.modules['onnxruntime'] = None\n"
            "import depthart.calibration as c; c.calibrator; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_calibrate_report_over_budget_says_what_to_try(tiny_bundle, precision_bundles, tmp_path, monkeypatch):
    """A report over the accuracy budget names the other calibration methods and the per-graph fp32 way out."""
    from click.testing import CliRunner

    from depthart.calibration import report
    from depthart.calibration.cli import calibrate_cmd

    real = report.accuracy_report

    def over_budget(*a, **kw):
        r = real(*a, **kw)
        return {**r, "target": {**r["target"], "worst": 0.031, "passed": False}}

    monkeypatch.setattr(report, "accuracy_report", over_budget)
    r = CliRunner().invoke(calibrate_cmd, [str(tiny_bundle["dir"]), "--precision", "int8", "-o", str(tmp_path / "b"),
                                           "--num-calib", "2", "--cache-dir", str(precision_bundles["cache"]),
                                           "--report", "--report-images", "1"])
    assert r.exit_code == 0, r.output
    assert "AbsRel changed by 3.10%" in r.output and "--method entropy/percentile" in r.output
    assert "--plan GRAPH=fp32" in r.output
    assert json.loads((tmp_path / "b" / "accuracy.json").read_text())["target"]["passed"] is False


def test_calibrate_command_writes_bundle_and_report(tiny_bundle, precision_bundles, tmp_path):
    from click.testing import CliRunner

    from depthart.calibration.cli import calibrate_cmd

    out = tmp_path / "int8"
    r = CliRunner().invoke(calibrate_cmd, [str(tiny_bundle["dir"]), "--precision", "int8", "-o", str(out),
                                           "--num-calib", "2", "--cache-dir", str(precision_bundles["cache"]),
                                           "--report", "--report-images", "1"])
    assert r.exit_code == 0, r.output
    assert "token" in r.output and (out / "accuracy.json").is_file()
    assert read_manifest(out)["accuracy"]["file"] == "accuracy.json"
    r = CliRunner().invoke(calibrate_cmd, [str(tiny_bundle["dir"]), "--precision", "int8", "-o", str(out)])
    assert r.exit_code == 1 and "exists" in r.output


def _has_vnni() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return "vnni" in f.read()
    except OSError:
        return True  # not Linux: keep the tight bound


def test_u8s8_plan_for_onnxruntime_cpu(tiny_bundle, precision_bundles, tmp_path):
    """--int8-format u8s8 with --plan prefix=int8: the prefix, the decoder and the step graph are quantised, with uint8
    activations (asymmetric: zero points not all 0) and int8 weights; it runs near fp32; s8s8 and u8s8 ranges
    are cached under different keys; a plan naming no graph is refused."""
    from click.testing import CliRunner

    from depthart.calibration.cli import calibrate_cmd
    from depthart.runtime import DepthRuntime

    out = tmp_path / "u8"
    r = CliRunner().invoke(calibrate_cmd, [str(tiny_bundle["dir"]), "--precision", "int8", "-o", str(out),
                                           "--num-calib", "2", "--cache-dir", str(precision_bundles["cache"]),
                                           "--int8-format", "u8s8", "--plan", "prefix=int8"])  # + decoder + step
    assert r.exit_code == 0, r.output
    m = read_manifest(out)
    assert {g: c["precision"] for g, c in m["precision_plan"].items() if c["precision"] != "fp32"} == \
        {"prefix": "int8", "decoder": "int8", "step": "int8"}
    assert m["calibration"]["int8_format"] == "u8s8" and m["calibration"]["activations"].startswith("uint8")
    assert m["calibration"]["key"] != read_manifest(precision_bundles["int8"])["calibration"]["key"]
    dec = onnx.load(str(out / m["graphs"]["decoder"]["file"]))
    q = [n for n in dec.graph.node if n.op_type == "QuantizeLinear"]
    assert q, "the decoder has no Q/DQ nodes"
    inits = {i.name: i for i in dec.graph.initializer}
    zero_points = [onnx.numpy_helper.to_array(inits[n.input[2]]) for n in q if n.input[2] in inits]
    assert all(z.dtype == np.uint8 for z in zero_points) and any(int(z) != 0 for z in zero_points)
    # the decoder's full-resolution stage stays fp32 (role "output_stage"): float weights, no DequantizeLinear
    from depthart.calibration.quantize import int8_exclusions

    src = onnx.load(str(tiny_bundle["dir"] / m["graphs"]["decoder"]["file"]))
    stage = int8_exclusions(src, ("output_stage",))
    convs = [n for n in src.graph.node if n.op_type == "Conv"]
    assert stage and stage[-1] == convs[-1].name and len(stage) < len(convs)
    assert set(stage) <= set(m["precision_plan"]["decoder"]["fp32_nodes"])
    assert "output_stage" in m["precision_plan"]["decoder"]["fp32_roles"]
    producer = {o: n for n in dec.graph.node for o in n.output}
    by_name = {n.name: n for n in dec.graph.node}
    for name in stage:
        assert by_name[name].input[1] in inits, name  # a float initializer, not a DequantizeLinear output
    quantised = [n for n in dec.graph.node if n.op_type == "Conv" and n.name not in stage]
    assert all(producer[n.input[1]].op_type == "DequantizeLinear" for n in quantised if n.input[1] in producer)
    assert any(n.input[1] in producer for n in quantised)
    step_src = onnx.load(str(tiny_bundle["dir"] / "step.onnx"))  # no output stage: only its constant nodes
    assert int8_exclusions(step_src, ("output_stage",)) == int8_exclusions(step_src, ())
    step = onnx.load(str(out / m["graphs"]["step"]["file"]))
    assert any(n.op_type == "QuantizeLinear" for n in step.graph.node)
    # the prefix's latent stage (role "latent_stage": the conv that narrows to the latent, the quantiser and its
    # code searches) stays fp32, the encoder's convolutions before it are int8
    pre_src = onnx.load(str(tiny_bundle["dir"] / "prefix.onnx"))
    cvae = m["model"]["cvae"]
    latent = int8_exclusions(pre_src, ("latent_stage",), latent_channels=cvae)
    assert set(int8_exclusions(src, ("latent_stage",), latent_channels=cvae)) == set(int8_exclusions(src, ())), \
        "the decoder has no latent stage"
    pre_convs = [n for n in pre_src.graph.node if n.op_type == "Conv"]
    ops = [n.name for n in pre_src.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]
    first = min(ops.index(n) for n in latent)  # everything from the encoder's last conv on
    assert set(ops[first:]) <= set(latent) and pre_convs[-1].name in latent and pre_convs[0].name not in latent
    assert set(latent) <= set(m["precision_plan"]["prefix"]["fp32_nodes"])
    pre = onnx.load(str(out / "prefix.onnx"))
    pre_inits = {i.name for i in pre.graph.initializer}
    pre_producer = {o: n for n in pre.graph.node for o in n.output}
    dq = {n.name for n in pre.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")
          and getattr(pre_producer.get(n.input[1]), "op_type", None) == "DequantizeLinear"}  # int8 weights
    assert dq and not dq & set(latent), "a latent-stage node was quantised"
    assert all(n.input[1] in pre_inits for n in pre.graph.node if n.name in latent and n.op_type == "Conv")
    assert any(n.op_type == "Conv" for n in pre.graph.node if n.name in dq)
    # node names repeat across graphs; "GRAPH:NODE" keeps a node fp32 in that graph only
    from depthart.calibration.quantize import DEFAULT_INT8_EXCLUDE, make_precision_bundle

    quantised_pre = {n for n in dq if n.startswith("node_conv")}
    both = sorted(quantised_pre & {n.name for n in convs if n.name not in stage})
    assert both, "no conv name shared by the prefix and the decoder"
    q = make_precision_bundle(tiny_bundle["dir"], tmp_path / "named", "int8", num_calib=2,
                              plan={"step": "fp32", "prefix": "int8"},
                              cache_dir=precision_bundles["cache"], int8_format="u8s8",
                              int8_exclude=DEFAULT_INT8_EXCLUDE + (f"decoder:{both[0]}",))
    assert both[0] in q["precision_plan"]["decoder"]["fp32_nodes"]
    assert both[0] not in q["precision_plan"]["prefix"]["fp32_nodes"]
    named = {g: onnx.load(str(tmp_path / "named" / f"{g}.onnx")) for g in ("prefix", "decoder")}
    kinds = {g: {n.name: {o: p for p in mm.graph.node for o in p.output}.get(n.input[1]) for n in mm.graph.node
                 if n.name == both[0]} for g, mm in named.items()}
    assert kinds["decoder"][both[0]] is None, "the decoder's node was quantised"  # a float initializer
    assert kinds["prefix"][both[0]].op_type == "DequantizeLinear"
    with pytest.raises(ValueError, match="decodr"):
        make_precision_bundle(tiny_bundle["dir"], tmp_path / "typo", "int8", num_calib=2, plan={"step": "fp32"},
                              cache_dir=precision_bundles["cache"], int8_format="u8s8",
                              int8_exclude=DEFAULT_INT8_EXCLUDE + (f"decodr:{both[0]}",))
    img = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    ref = DepthRuntime(tiny_bundle["dir"]).predict(img)
    got = DepthRuntime(out).predict(img)
    assert [t.shape for t in got.tokens] == [t.shape for t in ref.tokens]
    # onnxruntime's u8s8 kernels saturate (VPMADDUBSW) on x86 CPUs without VNNI, as its quantisation docs say:
    # there a random tiny model's maps move further (0.09 measured on an AVX2-only EPYC, 2026-12-01)
    assert 0 < np.abs(got.depth - ref.depth).mean() < (0.05 if _has_vnni() else 0.15)
    from depthart.errors import DepthartError

    with pytest.raises(DepthartError, match="CPU provider only"):
        DepthRuntime(out, device="cuda")
    from depthart.calibration.quantize import graph_plan

    plan = graph_plan(m, "int8", {"step": "fp32"}, "u8s8")
    assert plan["step"] == "fp32" and plan["decoder"] == "int8" and plan["prefix"] == "fp32"
    u8 = graph_plan(m, "int8", None, "u8s8")  # the default u8s8 plan: decoder + step, the prefix fp32
    assert (u8["prefix"], u8["decoder"], u8["step"]) == ("fp32", "int8", "int8")
    assert graph_plan(m, "int8")["decoder"] == "fp32" and graph_plan(m, "int8")["step"] == "int8"  # s8s8: TensorRT's
    fp16 = graph_plan(m, "fp16")  # the prefix's nearest-code search stays fp32 (image tokens flip in fp16)
    assert fp16["prefix"] == "fp32" and fp16["step"] == "fp16" and fp16["decoder"] == "fp16"
    assert graph_plan(m, "fp16", {"prefix": "fp16"})["prefix"] == "fp16"
    r = CliRunner().invoke(calibrate_cmd, [str(tiny_bundle["dir"]), "--precision", "int8", "-o", str(tmp_path / "x"),
                                           "--plan", "decodr=int8"])
    assert r.exit_code == 1 and "decodr" in r.output and "its graphs" in r.output
    r = CliRunner().invoke(calibrate_cmd, [str(tiny_bundle["dir"]), "--precision", "int8", "-o", str(tmp_path / "x"),
                                           "--plan", "decoder"])
    assert r.exit_code == 2 and "GRAPH=PRECISION" in r.output
