"""scripts/gpu_check.py --dry-run: every step that can run on a CPU passes; the GPU-only ones say why they skip."""

import json
import subprocess
import sys

from conftest import REPO


def test_gpu_check_dry_run_passes_on_cpu(tiny_bundle, tmp_path):
    out = tmp_path / "gpu_check.json"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--dry-run", "--out", str(out),
                        "--bundle", str(tiny_bundle["dir"]), "--work", str(tmp_path / "w"), "--budget", "300"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    steps = res["steps"]
    assert res["dry_run"] and res["failed"] == []
    assert steps["fake_trt_loop_tiny"]["status"] == "ok"
    assert all(c["tokens_identical"] for c in steps["fake_trt_loop_tiny"]["compare"])
    for name in ("environment", "ort_cuda_vs_cpu_tiny", "kv_binding_tiny", "pytest_gpu"):
        assert steps[name]["status"] == "ok", (name, steps[name])
    assert steps["kv_binding_tiny"]["same_result"]["tokens_identical"]
    if not steps["environment"]["have"]["trt"]:
        assert steps["real_tensorrt_tiny"]["status"] == "skipped" and "TensorRT" in steps["real_tensorrt_tiny"]["why"]
