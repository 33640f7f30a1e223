"""Latency benchmark: PyTorch eager and runtime backends, in one process, interleaved, after warm-up.

Each "contender" is a callable(image) -> per-stage seconds (including "total"). Runs are
interleaved (eager, ort, trt, eager, ort, ...) so that clock or thermal drift hits all alike.
Reported: p50/p90 end to end and per stage, the ratio to eager, achieved GFLOP/s (FLOPs per frame
counted once on the PyTorch model), a plain matmul's GFLOP/s on the same machine, memory, and the
machine (CPU, GPU, versions). torch is optional: without it only the runtime backends run.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time

import numpy as np


def machine_info() -> dict:
    import importlib.metadata as md

    info = {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            info["gpu"] = out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    for pkg in ("depthart", "numpy", "onnxruntime", "onnxruntime-gpu", "torch", "tensorrt"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return info


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of a plain float32 n x n matmul (numpy's BLAS): what this machine's cores allow."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB (Linux /proc; 0 elsewhere)."""
    cur = peak = 0.0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    return cur, peak


def run_interleaved(contenders: dict, image, runs: int = 10, warmup: int = 2, progress=None) -> dict:
    """{name: [per-run stage dicts]} after `warmup` unrecorded rounds."""
    samples = {name: [] for name in contenders}
    for i in range(warmup + runs):
        for name, fn in contenders.items():
            stages = fn(image)
            if i >= warmup:
                samples[name].append(stages)
        if progress:
            progress(i + 1, warmup + runs)
    return samples


def summarize(samples: dict, flops: float | None, baseline: str | None = "eager") -> dict:
    """p50/p90 per stage and end to end, ratio to the baseline, GFLOP/s."""
    out = {}
    base = None
    if baseline in samples:
        base = float(np.percentile([s["total"] for s in samples[baseline]], 50))
    for name, runs in samples.items():
        stages = sorted({k for r in runs for k in r}, key=_stage_order)
        per = {k: {"p50_ms": float(np.percentile([r.get(k, 0.0) for r in runs], 50)) * 1e3,
                   "p90_ms": float(np.percentile([r.get(k, 0.0) for r in runs], 90)) * 1e3} for k in stages}
        p50 = per["total"]["p50_ms"] / 1e3
        out[name] = {"stages": per, "p50_ms": per["total"]["p50_ms"], "p90_ms": per["total"]["p90_ms"],
                     "speedup_vs_eager": (base / p50) if base else None,
                     "gflops_per_s": (flops / p50 / 1e9) if flops else None}
    return out


def _stage_order(name: str):
    order = {"preprocess": 0, "prefix": 1, "decoder": 4, "download": 5, "postprocess": 6, "total": 7}
    if name in order:
        return (order[name], 0)
    kind, _, k = name.partition("_")
    return (2, int(k) if k.isdigit() else 0, {"step": 0, "tail": 1, "next": 2}.get(kind, 3))


def format_table(summary: dict, machine: dict, matmul: float | None, flops: float | None) -> str:
    lines = [f"machine: {machine.get('cpu')} ({machine.get('cpu_count')} cores)"
             + (f", GPU {machine['gpu']}" if "gpu" in machine else ""),
             "versions: " + ", ".join(f"{k} {v}" for k, v in machine.items()
                                      if k in ("depthart", "torch", "onnxruntime", "onnxruntime-gpu", "tensorrt"))]
    if flops:
        lines.append(f"work per frame: {flops / 1e9:.1f} GFLOP" + (f"; plain fp32 matmul here: {matmul:.1f} GFLOP/s"
                                                                   if matmul else ""))
    lines.append(f"{'backend':<28} {'p50 ms':>10} {'p90 ms':>10} {'vs eager':>9} {'GFLOP/s':>9}")
    for name, s in summary.items():
        ratio = f"{s['speedup_vs_eager']:.2f}x" if s["speedup_vs_eager"] else "-"
        gf = f"{s['gflops_per_s']:.1f}" if s["gflops_per_s"] else "-"
        lines.append(f"{name:<28} {s['p50_ms']:>10.1f} {s['p90_ms']:>10.1f} {ratio:>9} {gf:>9}")
    stages = [k for k in next(iter(summary.values()))["stages"] if k != "total"]
    names = list(summary)
    lines.append("per stage, p50 ms: " + " | ".join(names))
    for st in sorted({k for s in summary.values() for k in s["stages"] if k != "total"} | set(stages),
                     key=_stage_order):
        vals = [summary[n]["stages"].get(st, {}).get("p50_ms") for n in names]
        lines.append(f"  {st:<12} " + " | ".join("-" if v is None else f"{v:.2f}" for v in vals))
    return "\n".join(lines)
