"""The GPU path, measured in one run: see scripts/gpu_check.sh and docs/export.md ("Checking a GPU machine").

Each step records {"status": "ok" | "failed" | "skipped", "seconds", ...} into one JSON file, written
after every step (atomically), so a run cut short still leaves what it measured. A step that needs
something this machine lacks (CUDA, onnxruntime's CUDA provider, TensorRT, torch CUDA) is skipped
with the reason. `--dry-run` runs every step that can run on a CPU with the `tiny` preset and the
fake TensorRT on host memory, so the script itself is tested without a GPU.

Usage: python scripts/gpu_check.py [--dry-run] [--out FILE] [--budget SECONDS] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "coffee.jpg"


class Skip(Exception):
    """A step that cannot run here; the message says why."""


class Check:
    def __init__(self, out, budget, dry_run):
        self.out, self.deadline, self.dry_run = out, time.monotonic() + budget, dry_run
        self.results = {"dry_run": dry_run, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": {}}

    def step(self, name, fn, *args, min_left=30):
        t0 = time.monotonic()
        if self.deadline - t0 < min_left:
            rec = {"status": "skipped", "why": f"time budget: {self.deadline - t0:.0f} s left"}
        else:
            try:
                rec = {"status": "ok", **(fn(*args) or {})}
            except Skip as e:
                rec = {"status": "skipped", "why": str(e)}
            except Exception as e:  # recorded, and the next step runs
                rec = {"status": "failed", "error": f"{type(e).__name__}: {e}",
                       "traceback": traceback.format_exc()[-3000:]}
        rec["seconds"] = round(time.monotonic() - t0, 2)
        self.results["steps"][name] = rec
        self.save()
        print(f"[gpu_check] {name}: {rec['status']} ({rec['seconds']} s)"
              + (f" {rec.get('why') or rec.get('error')}" if rec["status"] != "ok" else ""), flush=True)
        return rec

    def save(self):
        from depthart.fileio import atomic_write_bytes

        atomic_write_bytes(self.out, json.dumps(self.results, indent=2, default=str).encode())


def median_ms(fn, runs):
    fn()  # warm-up (first-call allocations, provider/engine setup)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1000 * float(np.median(times)), 3)


def compare(got, want):
    """Tokens equal at every scale? Max abs depth difference."""
    return {"tokens_identical": all(np.array_equal(a, b) for a, b in zip(got.tokens, want.tokens)),
            "depth_max_abs": float(np.abs(got.depth - want.depth).max())}


def fake_tensorrt_module():
    """tests/fake_tensorrt.py (the fake TensorRT and FakeCudaDevice), a test helper the check reuses."""
    sys.path.insert(0, str(REPO / "tests"))
    import fake_tensorrt

    return fake_tensorrt


def ort_device(check):
    """onnxruntime's device for the GPU steps: "cuda", or "cpu" in a dry run; Skip where neither applies."""
    if check.have["cuda"] and check.have["ort_cuda"]:
        return "cuda"
    if check.dry_run:
        return "cpu"
    raise Skip("needs CUDA and onnxruntime's CUDA provider (onnxruntime-gpu)")


def cuda_state(env):
    ort = env["onnxruntime"]
    return {"cuda": env["cuda"].get("usable", False),
            "ort_cuda": ort.get("importable") and "CUDAExecutionProvider" in ort.get("providers", []),
            "ort_trt": ort.get("importable") and "TensorrtExecutionProvider" in ort.get("providers", []),
            "trt": env["tensorrt"].get("importable", False),
            "torch_cuda": env["torch"].get("cuda_available", False)}


# --- steps -------------------------------------------------------------------------------------------

def step_environment(check):
    from depthart import doctor

    env = doctor.collect()
    check.env, check.have = env, cuda_state(env)
    return {"doctor": env, "report": doctor.format_report(env), "have": check.have}


def step_export(check, preset, work):
    import torch

    from depthart.config import get_preset
    from depthart.export.bundle import export_bundle
    from depthart.model import DepthART

    torch.manual_seed(0)
    model = DepthART(get_preset(preset)).eval()  # random weights: the path is measured, not the depth
    out = pathlib.Path(work) / preset
    export_bundle(model, out, source=preset, force=True, check=preset == "tiny")
    check.bundles[preset] = (out, model)
    return {"bundle": str(out), "step_onnx_mb": round((out / "step.onnx").stat().st_size / 1e6, 1)}


def step_fake_trt_loop(check, preset):
    """export/trt.py's build and DepthRuntime(backend="trt") on the fake TensorRT: on real device memory with
    onnxruntime-CUDA running each engine's graph where CUDA is usable, else on host memory (dry run)."""
    from depthart.export.manifest import write_manifest
    from depthart.export.trt import build_engines
    from depthart.runtime import DepthRuntime
    from depthart.runtime.backends import trt as trt_backend

    on_gpu = ort_device(check) == "cuda"
    fake_tensorrt = fake_tensorrt_module()
    bundle, _ = check.bundles[preset]
    saved = sys.modules.get("tensorrt"), trt_backend.CudaDevice
    device = trt_backend.CudaDevice() if on_gpu else fake_tensorrt.FakeCudaDevice()
    sys.modules["tensorrt"] = fake_tensorrt
    trt_backend.CudaDevice = lambda: device
    fake_tensorrt.reset("cuda" if on_gpu else "cpu", None if on_gpu else device, device.synchronize)
    try:
        work = pathlib.Path(tempfile.mkdtemp(prefix="fake_trt_", dir=check.work))
        shutil.copytree(bundle, work / "b", ignore=shutil.ignore_patterns("*.engine", "*.engine.json"))
        manifest = json.loads((work / "b" / "manifest.json").read_text())
        engines = build_engines(work / "b", manifest, batch=2)
        manifest["engines"] = {n: {"file": f, "sidecar": f"{f}.json", "precision": manifest["precision"], "batch": 2}
                               for n, f in engines.items()}
        write_manifest(work / "b", manifest)
        rt, ref = DepthRuntime(work / "b", backend="trt"), DepthRuntime(bundle)
        rng = np.random.default_rng(0)
        images = [SAMPLE, (rng.random((200, 300, 3)) * 255).astype(np.uint8)]
        got, want = rt.predict_batch(images), ref.predict_batch(images)
        cmp = [compare(g, w) for g, w in zip(got, want)]
        ok = all(c["tokens_identical"] and c["depth_max_abs"] <= 1e-4 for c in cmp)
        if fake_tensorrt.log or not ok:
            raise AssertionError(f"fake TensorRT loop differs from onnxruntime CPU: {cmp}, log {fake_tensorrt.log}")
        return {"memory": "device (cuda)" if on_gpu else "host (fake device)", "batch": 2, "compare": cmp}
    finally:
        sys.modules["tensorrt"], trt_backend.CudaDevice = saved
        if saved[0] is None:
            del sys.modules["tensorrt"]
        fake_tensorrt.reset()


def step_ort_cuda_vs_cpu(check, preset, runs):
    from depthart.runtime import DepthRuntime

    device = ort_device(check)
    bundle, _ = check.bundles[preset]
    cpu = DepthRuntime(bundle)
    want = cpu.predict(SAMPLE)
    out = {"device": device, "cpu_ms": median_ms(lambda: cpu.predict(SAMPLE), max(2, runs // 4))}
    for label, kw in (("fp32", {}), ("tf32", {"tf32": True})):
        rt = DepthRuntime(bundle, device=device, **kw)
        out[label] = {**compare(rt.predict(SAMPLE), want), "ms": median_ms(lambda: rt.predict(SAMPLE), runs)}
    return out


def step_kv_binding(check, preset, runs):
    """Device-bound buffers (the runtime now) vs host-bound (every call copies the KV prefix to the GPU)."""
    from depthart.runtime import DepthRuntime
    from depthart.runtime.backends.ort import OrtBackend

    device = ort_device(check)
    bundle, _ = check.bundles[preset]
    dev, host = DepthRuntime(bundle, device=device), DepthRuntime(bundle, device=device)
    if device == "cuda":
        host.backend = OrtBackend(bundle, host.manifest, device="cuda", host_buffers=True)
    else:  # dry run: the device path on the CPU provider, against a fake device in host memory
        dev.backend = OrtBackend(bundle, dev.manifest, cuda_device=fake_tensorrt_module().FakeCudaDevice())
    return {"device": device, "device_bound_ms": median_ms(lambda: dev.predict(SAMPLE), runs),
            "host_bound_ms": median_ms(lambda: host.predict(SAMPLE), runs),
            "same_result": compare(dev.predict(SAMPLE), host.predict(SAMPLE))}


def step_torch_vs_runtime(check, preset, runs):
    import torch

    from depthart.runtime import DepthRuntime

    if not (check.have["torch_cuda"] or check.dry_run):
        raise Skip("needs torch with CUDA")
    bundle, model = check.bundles[preset]
    if model is None:
        raise Skip("no PyTorch model for a bundle given with --bundle")
    device = "cuda" if check.have["torch_cuda"] else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32, as the runtime
    model = model.to(device)
    out = {"device": device, "eager_ms": median_ms(lambda: model.predict(SAMPLE), runs)}
    if check.have["ort_cuda"] or check.dry_run:
        rt = DepthRuntime(bundle, device=ort_device(check))
        out["runtime_ort_ms"] = median_ms(lambda: rt.predict(SAMPLE), runs)
        out["depth_max_abs_vs_eager"] = float(np.abs(rt.predict(SAMPLE).depth - model.predict(SAMPLE)).max())
    model.to("cpu")
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def step_real_tensorrt(check, preset, runs):
    from depthart.export.manifest import write_manifest
    from depthart.export.trt import build_engines
    from depthart.runtime import DepthRuntime

    if not (check.have["trt"] and check.have["cuda"]):
        raise Skip("needs TensorRT (importable) and CUDA")
    bundle, _ = check.bundles[preset]
    manifest = json.loads((bundle / "manifest.json").read_text())
    t0 = time.monotonic()
    engines = build_engines(bundle, manifest, batch=1, progress=print)
    build_s = time.monotonic() - t0
    manifest["engines"] = {n: {"file": f, "sidecar": f"{f}.json", "precision": manifest["precision"], "batch": 1}
                           for n, f in engines.items()}
    write_manifest(bundle, manifest)
    side = json.loads((bundle / "step.engine.json").read_text())
    rt, ref = DepthRuntime(bundle, backend="trt"), DepthRuntime(bundle)
    return {"build_s": round(build_s, 1), "step_engine_vs_onnx": round(side["engine_bytes"] / side["onnx_bytes"], 3),
            **compare(rt.predict(SAMPLE), ref.predict(SAMPLE)), "trt_ms": median_ms(lambda: rt.predict(SAMPLE), runs)}


def step_pytest(check, marker, paths):
    if marker == "trt" and not (check.have["trt"] and check.have["cuda"]):
        raise Skip("needs TensorRT and CUDA")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker, *paths]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(30, check.deadline - time.monotonic()))
    tail = (r.stdout + r.stderr)[-2500:]
    if r.returncode not in (0, 5):  # 5: nothing collected
        raise AssertionError(f"pytest -m {marker} exited {r.returncode}: {tail}")
    return {"command": " ".join(cmd[1:]), "summary": tail.strip().splitlines()[-1] if tail.strip() else ""}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU only: tiny preset, fake TensorRT on host memory")
    ap.add_argument("--out", default="gpu_check.json", help="results file (default: gpu_check.json)")
    ap.add_argument("--budget", type=float, default=540, help="seconds for the whole run (default: 540)")
    ap.add_argument("--work", default=None, help="folder for bundles (default: a temporary one)")
    ap.add_argument("--bundle", default=None, help="use this tiny bundle instead of exporting one (tests)")
    args = ap.parse_args(argv)
    check = Check(args.out, args.budget, args.dry_run)
    check.bundles = {}
    work = check.work = args.work or tempfile.mkdtemp(prefix="gpu_check_")
    os.makedirs(work, exist_ok=True)
    runs = 3 if args.dry_run else 10
    check.step("environment", step_environment, check)
    presets = ["tiny"] if args.dry_run else ["tiny", "small", "d16"]
    if args.bundle:
        check.bundles["tiny"] = (pathlib.Path(args.bundle), None)
        presets = [p for p in presets if p != "tiny"]
    for p in presets:
        check.step(f"export_{p}", step_export, check, p, work, min_left=60 if p == "d16" else 30)
    for p in [p for p in ("tiny", "small") if p in check.bundles]:
        check.step(f"fake_trt_loop_{p}", step_fake_trt_loop, check, p)
    for p in check.bundles:
        check.step(f"ort_cuda_vs_cpu_{p}", step_ort_cuda_vs_cpu, check, p, runs)
    for p in [p for p in ("small", "d16", "tiny") if p in check.bundles][:1 if args.dry_run else 2]:
        check.step(f"kv_binding_{p}", step_kv_binding, check, p, runs)
    for p in [p for p in (("tiny",) if args.dry_run else ("small", "d16")) if p in check.bundles]:
        check.step(f"torch_vs_runtime_{p}", step_torch_vs_runtime, check, p, runs)
    for p in [p for p in ("tiny", "small") if p in check.bundles]:
        check.step(f"real_tensorrt_{p}", step_real_tensorrt, check, p, runs)
    check.step("pytest_gpu", step_pytest, check, "gpu", ["tests"])
    check.step("pytest_trt", step_pytest, check, "trt", ["tests"])
    failed = [n for n, r in check.results["steps"].items() if r["status"] == "failed"]
    check.results["failed"] = failed
    check.save()
    print(f"[gpu_check] wrote {os.path.abspath(args.out)}; " + (f"FAILED: {failed}" if failed else "no step failed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
