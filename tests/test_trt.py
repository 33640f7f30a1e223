"""TensorRT: profile and sidecar logic on CPU; engine builds only where TensorRT and a GPU exist."""

import pytest

from depthart.config import get_preset
from depthart.errors import DepthartError
from depthart.export.loop import steps
from depthart.export.trt import profile_shapes, tensorrt_status
from depthart.runtime.backends.trt import check_sidecar

TRT_OK, TRT_REASON = tensorrt_status()


def fake_manifest(cfg):
    return {"steps": steps(cfg), "graphs": {
        "step": {"inputs": [{"name": "x", "shape": ["batch", "tokens", cfg.width]},
                            {"name": "past_k", "shape": ["past", cfg.depth, "batch", cfg.heads, cfg.head_dim]}]},
        "decoder": {"inputs": [{"name": "f_hat", "shape": ["batch", cfg.cvae, 16, 16]}]}}}


def test_one_static_profile_per_scale_for_the_step_engine():
    cfg = get_preset("d16")
    profiles = profile_shapes(fake_manifest(cfg), "step", batch=1)
    assert len(profiles) == 10
    assert profiles[0]["x"] == (1, 681, 1024) and profiles[0]["past_k"] == (1, 16, 1, 16, 64)
    assert profiles[1]["x"] == (1, 4, 1024) and profiles[1]["past_k"] == (682, 16, 1, 16, 64)
    assert profiles[-1]["x"] == (1, 256, 1024) and profiles[-1]["past_k"] == (1 + 1104, 16, 1, 16, 64)
    assert profile_shapes(fake_manifest(cfg), "decoder", batch=4) == [{"f_hat": (4, 32, 16, 16)}]


def test_sidecar_refuses_engines_from_elsewhere():
    side = {"graph": "step", "tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "onnx_sha256": "a"}
    check_sidecar(side, "10.3.0", {"name": "Orin", "compute_capability": "8.7"}, "a")  # same machine: fine
    with pytest.raises(DepthartError, match="TensorRT 10.3.0.*rebuild"):
        check_sidecar(side, "10.13.3", {"name": "Orin", "compute_capability": "8.7"})
    with pytest.raises(DepthartError, match="built for Orin"):
        check_sidecar(side, "10.3.0", {"name": "NVIDIA H100", "compute_capability": "9.0"})
    with pytest.raises(DepthartError, match="different ONNX"):
        check_sidecar(side, "10.3.0", {"name": "Orin", "compute_capability": "8.7"}, "b")


@pytest.mark.trt
@pytest.mark.skipif(not TRT_OK, reason=f"TensorRT engine build needs TensorRT and a GPU: {TRT_REASON}")
def test_tiny_engines_build(tmp_path):
    import torch
    from click.testing import CliRunner

    from depthart.cli import main

    torch.manual_seed(0)
    r = CliRunner().invoke(main, ["export", "-c", "tiny", "-o", str(tmp_path / "b"), "--trt"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b" / "step.engine").is_file() and (tmp_path / "b" / "step.engine.json").is_file()
