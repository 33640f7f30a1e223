"""Export: ONNX graphs that match PyTorch eager, meet the edge constraints, and a manifest that describes them."""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from depthart.cli import main
from depthart.config import get_preset
from depthart.export.bundle import export_bundle, parity_image
from depthart.export.compare import check_parity
from depthart.export.loop import ort_runner, run_loop, steps, torch_runner
from depthart.export.manifest import SCHEMA_VERSION, read_manifest
from depthart.export.onnx import ALLOWED_OPS, OPSET, graph_ops, graph_specs
from depthart.export.trt import tensorrt_status

FORBIDDEN = {"If", "Loop", "Scan", "ScatterND", "ScatterElements", "Scatter", "TensorScatter", "Attention"}


def test_cli_writes_the_bundle_and_explains_missing_tensorrt(tiny_bundle):
    r = tiny_bundle["result"]
    assert "step" in r.output and "max abs diff" in r.output  # the summary table
    assert (tiny_bundle["dir"] / "manifest.json").is_file()
    trt_ok, _ = tensorrt_status()
    if trt_ok:
        assert r.exit_code == 0, r.output
    else:  # the ONNX bundle is complete; --trt fails with an actionable message, no traceback
        assert r.exit_code == 1
        assert "TensorRT" in r.output and "--trt" in r.output and "Traceback" not in r.output
    # no half-written folders are left next to the bundle
    assert sorted(p.name for p in tiny_bundle["root"].iterdir()) == ["bundle", "tiny.safetensors"]


def test_manifest_fully_describes_the_bundle(tiny_bundle):
    m = read_manifest(tiny_bundle["dir"])
    cfg = tiny_bundle["model"].cfg
    assert m["schema_version"] == SCHEMA_VERSION and m["opset"] == OPSET and m["precision"] == "fp32"
    assert m["model"] == json.loads(cfg.to_json())
    assert m["checkpoint"]["sha256"] and len(m["checkpoint"]["sha256"]) == 64
    assert m["steps"] == steps(cfg) and [s["tokens"] for s in m["steps"]] == [21 + 1, 4, 16]
    assert m["kv_cache"]["slots"] == 1 + cfg.seq_len
    assert set(m["graphs"]) == {"prefix", "step", "next_0", "next_1", "next_2", "decoder"}
    for name, g in m["graphs"].items():
        model = onnx.load(str(tiny_bundle["dir"] / g["file"]))
        assert [i.name for i in model.graph.input] == [i["name"] for i in g["inputs"]], name
        assert [o.name for o in model.graph.output] == [o["name"] for o in g["outputs"]], name
        assert os.path.getsize(tiny_bundle["dir"] / g["file"]) <= g["bytes"]
    step = m["graphs"]["step"]
    assert [i["name"] for i in step["inputs"]] == ["x", "past_k", "past_v"]
    assert [o["name"] for o in step["outputs"]] == ["logits", "tokens", "h", "h_expect", "new_k", "new_v"]
    assert step["inputs"][1]["shape"] == ["past", cfg.depth, "batch", cfg.heads, cfg.head_dim]
    assert {o["name"]: o["dtype"] for o in step["outputs"]}["tokens"] == "int64"
    assert m["parity"]["passed"] and m["parity"]["tokens_identical"]
    assert m["parity"]["depth_max_abs"] <= 1e-4
    assert m["sampler"] == "greedy"  # the checkpoint names none


def test_export_records_the_checkpoint_sampler_also_at_lower_precision(tiny_expect_bundle, tmp_path):
    assert read_manifest(tiny_expect_bundle["dir"])["sampler"] == "expect"
    out = tmp_path / "fp16"
    r = CliRunner().invoke(main, ["export", "-c", str(tiny_expect_bundle["ckpt"]), "-o", str(out), "--precision",
                                  "fp16", "--no-check"])
    assert r.exit_code == 0, r.output
    assert "runtime sampler: expect" in r.output
    m = read_manifest(out)
    assert m["precision"] == "fp16" and m["sampler"] == "expect"


def test_every_graph_meets_the_edge_constraints(tiny_bundle):
    m = read_manifest(tiny_bundle["dir"])
    for name, g in m["graphs"].items():
        path = tiny_bundle["dir"] / g["file"]
        ops = graph_ops(path)
        assert ops <= ALLOWED_OPS, (name, ops - ALLOWED_OPS)
        assert not ops & FORBIDDEN and not any("::" in o for o in ops), name  # no contrib domains
        model = onnx.load(str(path))
        assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == OPSET
        for t in list(model.graph.input) + list(model.graph.output):  # no zero-length static dims
            assert all(d.dim_param or d.dim_value > 0 for d in t.type.tensor_type.shape.dim), (name, t.name)
        for init in model.graph.initializer:
            assert all(d > 0 for d in init.dims), (name, init.name)


def test_step_graph_gelus_fuse_in_onnxruntime(tiny_bundle, tmp_path):
    """The exporter's tanh GELU is reordered into the form onnxruntime fuses (FastGelu, the fc1 bias folded in):
    one per block, and nothing else of the GELU left over. The reorder is the same math (parity tests above)."""
    import onnxruntime as ort

    from depthart.export.onnx import fusable_gelu

    step = tiny_bundle["dir"] / read_manifest(tiny_bundle["dir"])["graphs"]["step"]["file"]
    model = onnx.load(str(step))
    assert fusable_gelu(model) == 0  # already in the fusable order
    depth = tiny_bundle["model"].cfg.depth
    assert sum(n.op_type == "Tanh" for n in model.graph.node) == depth
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(step), opts, providers=["CPUExecutionProvider"])
    fused = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert fused.count("FastGelu") == depth and "Tanh" not in fused and "Pow" not in fused


def test_polygraphy_lint_passes(tiny_bundle):
    m = read_manifest(tiny_bundle["dir"])
    for name in ("prefix", "step", "next_0", "decoder"):
        r = subprocess.run([os.path.join(os.path.dirname(sys.executable), "polygraphy"), "check", "lint",
                            str(tiny_bundle["dir"] / m["graphs"][name]["file"])], capture_output=True, text=True)
        assert r.returncode == 0, (name, r.stdout[-2000:], r.stderr[-2000:])


def test_graph_loop_equals_the_model_and_onnx_matches_on_a_batch(tiny_bundle):
    model = tiny_bundle["model"]
    cfg = model.cfg
    img = parity_image(cfg.image_size, batch=2, seed=3)
    # the torch wrappers, looped with the bundle's cache layout, are the model's own inference
    ref = run_loop(torch_runner(graph_specs(model)), cfg, img)
    with torch.no_grad():
        f_hat, tokens = model.generate(torch.from_numpy(img), return_tokens=True)
        depth = model.decode_depth(f_hat).numpy()
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(ref["tokens"], tokens))
    np.testing.assert_allclose(ref["depth"], depth, atol=1e-5)
    # the ONNX graphs, on a batch of 2 (dynamic batch), judged by Polygraphy per output
    m = read_manifest(tiny_bundle["dir"])
    report = check_parity(torch_runner(graph_specs(model)), ort_runner(tiny_bundle["dir"], m), cfg, img)
    assert report.passed, report.failures
    assert report.tokens_identical and report.depth_max_abs <= 1e-4
    assert max(v for d in report.max_abs.values() for v in d.values()) <= 1e-4


def test_graph_loop_with_a_sampler_equals_the_model_with_it(tiny_expect_bundle):
    """run_loop(sampler=expect): the bundle's graphs with the expected code vector fed back, as the model does."""
    from depthart.runtime.sampling import make_sampler
    from depthart.sampling import Expected

    model, b = tiny_expect_bundle["model"], tiny_expect_bundle["dir"]
    cfg = model.cfg
    img = parity_image(cfg.image_size, batch=2, seed=4)
    m = read_manifest(b)
    codebook = np.load(b / m["codebook"])
    got = run_loop(ort_runner(b, m), cfg, img, sampler=make_sampler("expect"), codebook=codebook)
    greedy = run_loop(ort_runner(b, m), cfg, img)
    with torch.no_grad():
        depth = model.decode_depth(model.generate(torch.from_numpy(img), sampler=Expected())).numpy()
    np.testing.assert_allclose(got["depth"], depth, atol=1e-4)
    assert np.abs(greedy["depth"] - depth).max() > 1e-3  # the sampler's vectors, not the graph's argmax, were fed


def test_export_refuses_to_overwrite_and_cleans_up_after_failure(tiny_bundle, tmp_path, monkeypatch):
    r = CliRunner().invoke(main, ["export", "-c", str(tiny_bundle["ckpt"]), "-o", str(tiny_bundle["dir"])])
    assert r.exit_code == 1 and "--force" in r.output
    import depthart.export.bundle as bundle

    def boom(module, args, path, *a, **k):
        if path.endswith("next_0.onnx"):
            raise RuntimeError("disk full")
        return real(module, args, path, *a, **k)

    real = bundle.onnx_from_module
    monkeypatch.setattr(bundle, "onnx_from_module", boom)
    model = tiny_bundle["model"].train()
    with pytest.raises(RuntimeError, match="disk full"):
        export_bundle(model, tmp_path / "b", source="tiny", check=False)
    assert list(tmp_path.iterdir()) == []  # neither the bundle nor a partial folder
    assert model.training  # the caller's model is given back as it was
    model.eval()


def test_small_preset_exports_with_parity(small_bundle):
    m = read_manifest(small_bundle["dir"])
    assert m["parity"]["passed"], m["parity"]["failures"]
    assert len(m["steps"]) == len(get_preset("small").patch_nums) and m["parity"]["depth_max_abs"] <= 1e-4


def test_large_graphs_use_external_data_transparently(tmp_path, monkeypatch, tiny_bundle):
    """Graphs over the inline limit (d30's 8 GB step) keep weights in a sidecar file; parity still holds."""
    import depthart.export.onnx as onnx_mod

    monkeypatch.setattr(onnx_mod, "INLINE_LIMIT", 0)
    m = export_bundle(tiny_bundle["model"], tmp_path / "ext", source="tiny")
    step = m["graphs"]["step"]
    assert step["data_files"] == ["step.onnx.data"]
    assert (tmp_path / "ext" / "step.onnx.data").stat().st_size > 0.9 * step["bytes"]
    assert m["parity"]["passed"], m["parity"]["failures"]


def test_export_int8_bundle_through_the_cli(tiny_bundle, tmp_path):
    """--precision int8 exports fp32, calibrates on procedural scenes, and leaves only the int8 bundle."""
    from depthart.runtime import DepthRuntime

    out = tmp_path / "int8"
    r = CliRunner().invoke(main, ["export", "-c", str(tiny_bundle["ckpt"]), "-o", str(out), "--precision", "int8",
                                  "--num-calib", "2", "--no-check"])
    assert r.exit_code == 0, r.output
    m = read_manifest(out)
    assert m["precision"] == "int8"
    assert any("QuantizeLinear" in g["ops"] for g in m["graphs"].values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8"]  # the fp32 intermediate is gone
    depth = DepthRuntime(out).predict(np.zeros((20, 30, 3), np.uint8)).depth
    assert depth.shape == (20, 30) and np.isfinite(depth).all()


def test_export_output_has_no_torchvision_lines():
    """torch's exporter logs 4 "torchvision is not installed. Skipping torchvision::..." lines per graph (36 per
    bundle); export filters exactly those and lets the logger's other records through."""
    import logging

    from depthart.export.onnx import onnx_from_module

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: the exporter has nothing to say about it")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    log.addHandler(handler)
    try:
        with tempfile.TemporaryDirectory() as d:
            onnx_from_module(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), os.path.join(d, "lin.onnx"), ["x"], ["y"],
                             None)
        log.warning("a real warning")
    finally:
        log.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["a real warning"]


@pytest.mark.parametrize("side", [{"image_res_blocks": 2}, {"image_unet": (8, 16)}], ids=["encoder", "unet"])
def test_an_untied_image_side_exports_with_parity(tmp_path, side):
    """A model whose images have their own image side (an untied encoder, ModelConfig.image_res_blocks, or a U-Net
    depth guess read by the depth encoder, ModelConfig.image_unet) exports it in the prefix graph: the bundle's loop
    matches eager, and differs from what the depth maps' encoder alone would give."""
    from conftest import randomize_
    from depthart.checkpoint import load_checkpoint, save_checkpoint
    from depthart.model import DepthART

    cfg = get_preset("tiny").replace(**side)
    torch.manual_seed(0)
    m0 = randomize_(DepthART(cfg).eval(), seed=2)
    if cfg.image_unet:  # BatchNorm statistics that are not the identity's
        for bn in (m for m in m0.vae.image_unet.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    save_checkpoint(m0, tmp_path / "untied.safetensors")
    model = load_checkpoint(tmp_path / "untied.safetensors")
    assert model.vae.untied and model.cfg == cfg
    if cfg.image_unet:
        torch.testing.assert_close(model.vae.image_unet.down[0][1].running_var, m0.vae.image_unet.down[0][1].running_var)
    export_bundle(model, tmp_path / "bundle", source="untied", check=False)
    m = read_manifest(tmp_path / "bundle")
    img = parity_image(cfg.image_size, batch=2, seed=5)
    got = run_loop(ort_runner(tmp_path / "bundle", m), cfg, img)
    with torch.no_grad():
        depth = model.decode_depth(model.generate(torch.from_numpy(img))).numpy()
        shared = DepthART(get_preset("tiny")).eval()
        shared.load_state_dict({k: v for k, v in model.state_dict().items()
                                if not k.startswith(("vae.image_encoder.", "vae.image_quant_conv.", "vae.image_unet."))})
        other = shared.decode_depth(shared.generate(torch.from_numpy(img))).numpy()
    np.testing.assert_allclose(got["depth"], depth, atol=1e-4)
    assert np.abs(other - depth).max() > 1e-3
