"""depthart doctor: plain text and JSON on this machine; a bundle's backends judged from the probes."""

import json
import shutil
import sys

import fake_tensorrt
from click.testing import CliRunner
from test_fake_trt import engine_bundle

from depthart import doctor
from depthart.cli import main
from depthart.runtime.backends import trt as trt_backend


def test_doctor_reports_this_machine(tiny_bundle):
    r = CliRunner().invoke(main, ["doctor", str(tiny_bundle["dir"])])
    assert r.exit_code == 0, r.output
    assert "onnxruntime" in r.output and "Polygraphy" in r.output and "yes --backend ort --device cpu" in r.output
    if not doctor.probe_gpu()["visible"]:  # a machine without a GPU says so, and what will run
        assert "GPU: none visible" in r.output and "only onnxruntime on the CPU" in r.output
        assert "no  --backend trt" in r.output
    j = CliRunner().invoke(main, ["doctor", str(tiny_bundle["dir"]), "--json"])
    env = json.loads(j.output)
    assert {"gpu", "cuda", "tensorrt", "onnxruntime", "polygraphy", "torch", "bundle"} <= set(env)
    assert env["bundle"]["ort:cpu"]["ok"] is True


def test_doctor_judges_engines_against_tensorrt_and_the_gpu(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)
    monkeypatch.setattr(trt_backend, "CudaDevice", fake_tensorrt.FakeCudaDevice)
    fake_tensorrt.reset()
    bundle = engine_bundle(tiny_bundle["dir"], tmp_path / "b")
    monkeypatch.setattr(doctor, "probe_gpu", lambda: {"visible": True, "gpus": []})
    monkeypatch.setattr(doctor, "probe_cuda", lambda: {"usable": True, "name": "Fake GPU", "compute_capability": "8.7"})
    env = doctor.collect(bundle)
    assert env["tensorrt"] == {"importable": True, "version": "10.3.0", "implicit_int8": False, "strongly_typed": True}
    n = len(json.loads((bundle / "manifest.json").read_text())["engines"])
    assert env["bundle"]["trt"] == {"ok": True, "why": f"{n} engines built for this TensorRT and GPU"}
    monkeypatch.setattr(doctor, "probe_cuda", lambda: {"usable": True, "name": "Orin", "compute_capability": "8.7"})
    text = doctor.format_report(doctor.collect(bundle))
    assert "no  --backend trt" in text and "built for Fake GPU" in text
    other = tmp_path / "plain"
    shutil.copytree(tiny_bundle["dir"], other)
    assert "no engines" in doctor.collect(other)["bundle"]["trt"]["why"]
