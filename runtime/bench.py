"""Latency benchmark: PyTorch eager and runtime backends, in one process, interleaved, after warm-up.

Each "contender" is a callable(image) -> per-stage seconds (including "total"). Runs are
interleaved (eager, ort, trt, eager, ort, ...) so that clock or thermal drift hits all alike.
Reported: p50/p90/min end to end and per stage, the ratio to eager (on p50 and on min), achieved
GFLOP/s (FLOPs per frame counted once on the PyTorch model), a plain matmul's GFLOP/s on the same
machine, memory, and the machine (CPU, GPU, versions). torch is optional: without it only the
runtime backends run.

Honest on a busy machine: every CPU contender gets the same thread count (`default_threads`: the
cores left idle by other processes), and `LoadMonitor` says when other work competed for the CPU,
before the run (load average) and during it (time this process's threads waited for a CPU, from
/proc, and the spread between runs), in the table and the JSON.
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


def _best_of(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_gflops(n: int = 2048, reps: int = 3, threads: int | None = None) -> tuple[float, str]:
    """GFLOP/s of a plain float32 n x n matmul on `threads` threads, and what ran it: what this machine's cores
    allow the contenders at the same thread count.

    onnxruntime's own MatMul kernel (one-node graph, `threads` intra-op threads) where the onnx package is there;
    else torch at `threads` threads; else numpy's BLAS (its own thread count: said in the source string)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    flop = 2 * n ** 3
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper

        graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
                                  [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "ab"],
                                  [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = min(model.ir_version, 10)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return flop / _best_of(lambda: sess.run(None, {"a": a, "b": b}), reps) / 1e9, \
            f"onnxruntime MatMul {n}x{n}, {threads or 'default'} threads"
    except ImportError:
        pass
    try:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            return flop / _best_of(lambda: ta @ tb, reps) / 1e9, f"torch matmul {n}x{n}, {torch.get_num_threads()} threads"
        finally:
            torch.set_num_threads(before)
    except ImportError:
        pass
    return flop / _best_of(lambda: a @ b, reps) / 1e9, f"numpy matmul {n}x{n}, BLAS's own threads"


class StageFlops(dict):
    """A `timings` dict for the PyTorch model's stage clock (`DepthART.predict_normalized(..., timings=)`) that also
    records the FLOPs of each stage: give it a running torch FlopCounterMode; after the call `flops[stage]` holds
    each stage's FLOPs (the counter's total at the stage's end minus at its start)."""

    def __init__(self, counter):
        super().__init__()
        self.counter, self.flops, self._seen = counter, {}, 0

    def __setitem__(self, key, value):
        total = int(self.counter.get_total_flops())
        self.flops[key] = self.flops.get(key, 0) + total - self._seen
        self._seen = total
        super().__setitem__(key, value)


def profile_ort(bundle_dir: str, image, threads: int | None, runs: int, out_dir: str) -> dict:
    """onnxruntime's own profiler over `runs` frames of the runtime (after 2 warm-up frames): kernel time per graph
    and per op type, in ms per frame, and the profiler's JSON files (one per graph, in `out_dir`, viewable in
    chrome://tracing or Perfetto). Profiling slows every op down a little (it times each one), so its times are
    for shares, not for the latency table."""
    import collections
    import json

    from .runtime import DepthRuntime

    warmup = 2
    os.makedirs(out_dir, exist_ok=True)
    rt = DepthRuntime(bundle_dir, threads=threads, verify=False, profile_dir=out_dir)
    for _ in range(warmup + runs):
        rt.predict(image)
    files = rt.backend.end_profiling()
    graphs = {}
    for name, path in files.items():
        with open(path) as f:
            events = json.load(f)
        # every frame calls a graph equally often: count the nodes from the first call after the warm-up frames
        starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
        warm = len(starts) // (warmup + runs) * warmup
        since = starts[warm] if warm < len(starts) else float("inf")
        ops, total = collections.Counter(), 0.0
        for e in events:
            if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and e["ts"] >= since:
                ops[e["args"].get("op_name", "?")] += e["dur"] / 1e3
                total += e["dur"] / 1e3
        graphs[name] = {"file": path, "kernel_ms_per_frame": total / runs,
                        "ops_ms_per_frame": {op: ms / runs for op, ms in ops.most_common()}}
    return {"runs": runs, "threads": threads, "dir": out_dir, "graphs": graphs}


def format_profile(prof: dict, top: int = 6) -> str:
    lines = [f"onnxruntime profile ({prof['runs']} frames, {prof['threads'] or 'default'} threads; kernel ms per frame,"
             " the largest op types with their share of the graph):"]
    order = sorted(prof["graphs"].items(), key=lambda kv: -kv[1]["kernel_ms_per_frame"])
    for name, g in order:
        total = g["kernel_ms_per_frame"]
        tops = ", ".join(f"{op} {ms:.2f} ({100 * ms / total if total else 0:.0f}%)"
                         for op, ms in list(g["ops_ms_per_frame"].items())[:top])
        lines.append(f"  {name:<8} {total:7.2f}  {tops}")
    lines.append(f"  profiles: {prof['dir']}")
    return "\n".join(lines)


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


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def loadavg() -> tuple[float, float, float] | None:
    try:
        return tuple(round(v, 2) for v in os.getloadavg())
    except (AttributeError, OSError):
        return None


def default_threads(load: tuple | None = None, cpus: int | None = None) -> int:
    """Threads for every CPU contender: the cores other processes leave idle (CPUs minus the 1-minute load
    average, rounded), at least 1. More threads than idle cores oversubscribe: a run then waits for CPUs and
    its figure measures the scheduler (eager torch with 2 threads on a 2-core machine with one core busy:
    4.8 s per image, with 1 thread: 96 ms)."""
    cpus = cpus or cpu_count()
    load = loadavg() if load is None else load
    busy = round(load[0]) if load else 0
    return max(1, min(cpus, cpus - busy))


def _runqueue_wait_s() -> float | None:
    """Seconds this process's threads have spent runnable but waiting for a CPU (Linux schedstat), or None."""
    total = 0.0
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None
    return total


class LoadMonitor:
    """Was the machine busy with other work while we measured? Call start() before the timed runs, stop()
    after, then report(samples).

    Flags (each a reason in `reasons`): other processes' load before the run (1-min load average) with our
    threads more than the idle cores; our threads waiting for a CPU more than `max_wait` of the run's wall
    time (from /proc: the direct sign of contention during the run); a contender whose slowest runs (p90)
    exceed its fastest by more than `max_spread`.
    """

    def __init__(self, threads: int, cpus: int | None = None, load_before: tuple | None = None,
                 max_wait: float = 0.10, max_spread: float = 1.25):
        self.threads, self.cpus = threads, cpus or cpu_count()
        self.load_before = loadavg() if load_before is None else load_before
        self.max_wait, self.max_spread = max_wait, max_spread
        self.wait0 = self.t0 = self.wait_s = self.wall_s = None

    def start(self):
        self.wait0, self.t0 = _runqueue_wait_s(), time.perf_counter()
        return self

    def stop(self):
        self.wall_s = time.perf_counter() - self.t0
        wait1 = _runqueue_wait_s()
        self.wait_s = None if wait1 is None or self.wait0 is None else wait1 - self.wait0
        self.load_after = loadavg()
        return self

    def report(self, samples: dict) -> dict:
        reasons = []
        if self.load_before:
            idle = self.cpus - self.load_before[0]
            if self.threads > idle + 0.25:
                reasons.append(f"load average {self.load_before[0]:.2f} before the run on {self.cpus} CPUs: "
                               f"{self.threads} thread(s) but about {max(idle, 0):.1f} idle")
        wait_frac = (self.wait_s / self.wall_s) if self.wait_s is not None and self.wall_s else None
        if wait_frac is not None and wait_frac > self.max_wait:
            reasons.append(f"during the run our threads waited for a CPU {100 * wait_frac:.0f}% of the time")
        spread = {}
        for name, runs in samples.items():
            t = [r["total"] for r in runs]
            if len(t) >= 2 and min(t) > 0:
                spread[name] = round(float(np.percentile(t, 90)) / min(t), 3)
                if spread[name] > self.max_spread:
                    reasons.append(f"{_short(name)}: p90 is {spread[name]:.2f}x its fastest run")
        return {"cpus": self.cpus, "threads": self.threads, "loadavg_before": self.load_before,
                "loadavg_after": getattr(self, "load_after", None),
                "cpu_wait_fraction": None if wait_frac is None else round(wait_frac, 4),
                "spread_p90_over_min": spread, "loaded": bool(reasons), "reasons": reasons}


def run_interleaved(contenders: dict, image, runs: int = 10, warmup: int = 2, progress=None,
                    monitor: LoadMonitor | None = None) -> dict:
    """{name: [per-run stage dicts]} after `warmup` unrecorded rounds; `monitor` watches the timed rounds."""
    samples = {name: [] for name in contenders}
    for i in range(warmup + runs):
        if i == warmup and monitor:
            monitor.start()
        for name, fn in contenders.items():
            stages = fn(image)
            if i >= warmup:
                samples[name].append(stages)
        if progress:
            progress(i + 1, warmup + runs)
    if monitor:
        monitor.stop()
    return samples


def summarize(samples: dict, flops: float | None, baseline: str | None = "eager", stage_flops: dict | None = None,
              matmul: float | None = None) -> dict:
    """p50/p90/min per stage and end to end, ratio to the baseline (p50 to p50 and min to min), GFLOP/s, and with
    `stage_flops` ({stage: FLOPs}, `StageFlops`) each stage's GFLOP/s and, with `matmul`, its share of that peak."""
    out = {}
    base = None
    if baseline in samples:
        base = float(np.percentile([s["total"] for s in samples[baseline]], 50))
        base_min = min(s["total"] for s in samples[baseline])
    for name, runs in samples.items():
        stages = sorted({k for r in runs for k in r}, key=_stage_order)
        per = {k: {"p50_ms": float(np.percentile([r.get(k, 0.0) for r in runs], 50)) * 1e3,
                   "p90_ms": float(np.percentile([r.get(k, 0.0) for r in runs], 90)) * 1e3,
                   "min_ms": float(min(r.get(k, 0.0) for r in runs)) * 1e3} for k in stages}
        for k, st in per.items():
            f = (stage_flops or {}).get(k)
            if f and st["p50_ms"] > 0:
                st["gflops_per_s"] = f / (st["p50_ms"] / 1e3) / 1e9
                if matmul:
                    st["of_matmul"] = st["gflops_per_s"] / matmul
        p50, fastest = per["total"]["p50_ms"] / 1e3, per["total"]["min_ms"] / 1e3
        out[name] = {"stages": per, "p50_ms": per["total"]["p50_ms"], "p90_ms": per["total"]["p90_ms"],
                     "min_ms": per["total"]["min_ms"],
                     "speedup_vs_eager": (base / p50) if base else None,
                     "speedup_vs_eager_min": (base_min / fastest) if base else None,
                     "gflops_per_s": (flops / p50 / 1e9) if flops else None,
                     "of_matmul": (flops / p50 / 1e9 / matmul) if flops and matmul else None}
    return out


def _stage_order(name: str):
    order = {"preprocess": 0, "prefix": 1, "decoder": 4, "download": 5, "postprocess": 6, "total": 7}
    if name in order:
        return (order[name], 0)
    kind, _, k = name.partition("_")
    return (2, int(k) if k.isdigit() else 0, {"step": 0, "tail": 1, "next": 2}.get(kind, 3))


def _short(name: str) -> str:
    """A contender's table label: 'ort: onnxruntime CPUExecutionProvider ...' -> 'ort', 'eager (cpu)' -> 'eager'."""
    head = name.split(":", 1)[0]
    return head.split(" (", 1)[0] if head.startswith("eager") else head


def format_table(summary: dict, machine: dict, matmul: float | None, flops: float | None,
                 load: dict | None = None, matmul_source: str | None = None, stage_flops: dict | None = None) -> str:
    lines = [f"machine: {machine.get('cpu')} ({machine.get('cpu_count')} cores)"
             + (f", GPU {machine['gpu']}" if "gpu" in machine else ""),
             "versions: " + ", ".join(f"{k} {v}" for k, v in machine.items()
                                      if k in ("depthart", "torch", "onnxruntime", "onnxruntime-gpu", "tensorrt"))]
    if load:
        la = load.get("loadavg_before")
        lines.append(f"threads: {load['threads']} for every CPU contender; {load['cpus']} CPUs"
                     + (f", load average {la[0]:.2f} before the run" if la else "")
                     + ("" if load.get("cpu_wait_fraction") is None else
                        f", CPU wait {100 * load['cpu_wait_fraction']:.0f}% during it"))
        if load["loaded"]:
            lines.append("LOADED MACHINE: other work competed for the CPU; trust min over p50, and neither much:")
            lines += [f"  - {r}" for r in load["reasons"]]
    if flops:
        lines.append(f"work per frame: {flops / 1e9:.2f} GFLOP" + (f"; plain fp32 matmul here: {matmul:.1f} GFLOP/s"
                                                                    if matmul else "")
                     + (f" ({matmul_source})" if matmul and matmul_source else ""))
    labels = {n: _short(n) for n in summary}
    if len(set(labels.values())) < len(labels):
        labels = {n: n[:12] for n in summary}
    w = max(8, *(len(v) for v in labels.values()))
    has_flops = any(s["gflops_per_s"] for s in summary.values())
    lines.append(f"{'backend':<{w}} {'p50 ms':>9} {'p90 ms':>9} {'min ms':>9} {'vs eager':>9} {'(min)':>7}"
                 + (f" {'GFLOP/s':>8}" if has_flops else ""))
    for name, s in summary.items():
        ratio = f"{s['speedup_vs_eager']:.2f}x" if s["speedup_vs_eager"] else "-"
        rmin = f"{s['speedup_vs_eager_min']:.2f}x" if s.get("speedup_vs_eager_min") else "-"
        gf = f" {s['gflops_per_s']:>8.2f}" if s["gflops_per_s"] else f" {'-':>8}"
        if s["gflops_per_s"] and s.get("of_matmul"):
            gf += f" ({100 * s['of_matmul']:.0f}% of matmul)"
        lines.append(f"{labels[name]:<{w}} {s['p50_ms']:>9.1f} {s['p90_ms']:>9.1f} {s.get('min_ms', 0):>9.1f} "
                     f"{ratio:>9} {rmin:>7}" + (gf if has_flops else ""))
    lines += [f"  {labels[n]}: {n}" for n in summary if labels[n] != n]
    names = list(summary)
    lines.append("per stage, p50 ms" + (" [GFLOP/s, % of matmul]" if stage_flops and matmul else
                                        " [GFLOP/s]" if stage_flops else "") + ": " + " | ".join(labels[n] for n in names))

    def cell(st):
        if not st:
            return "-"
        text = f"{st['p50_ms']:.2f}"
        if st.get("gflops_per_s"):
            text += f" [{st['gflops_per_s']:.0f}" + (f", {100 * st['of_matmul']:.0f}%" if st.get("of_matmul") else "") + "]"
        return text

    for st in sorted({k for s in summary.values() for k in s["stages"] if k != "total"}, key=_stage_order):
        f = (stage_flops or {}).get(st)
        work = f"{f / 1e9:6.3f} GFLOP  " if f else (" " * 14 if stage_flops else "")
        lines.append(f"  {st:<12} {work}" + " | ".join(cell(summary[n]["stages"].get(st)) for n in names))
    return "\n".join(lines)
