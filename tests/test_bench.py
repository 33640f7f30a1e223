"""`depthart bench` runs eager and the runtime side by side and reports what it measured."""

import json

from click.testing import CliRunner

from depthart.cli import main


def test_bench_tiny_reports_every_contender(tiny_bundle, tmp_path):
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(main, ["bench", "-c", str(tiny_bundle["ckpt"]), "--bundle", str(tiny_bundle["dir"]),
                                  "--runs", "2", "--warmup", "1", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "vs eager" in r.output and "per stage" in r.output and "GFLOP/s" in r.output
    data = json.loads(out.read_text())
    names = list(data["results"])
    assert names[0].startswith("eager") and names[1].startswith("ort")
    ort = data["results"][names[1]]
    assert ort["p50_ms"] > 0 and ort["speedup_vs_eager"] > 0 and ort["gflops_per_s"] > 0
    assert {"prefix", "step_0", "decoder", "total"} <= set(ort["stages"])
    assert data["flops_per_frame"] > 0 and data["matmul_gflops"] > 0 and data["machine"]["cpu_count"] >= 1
    # the peak is measured at the contenders' thread count, and every stage's FLOPs add up to the frame's
    assert f"{data['threads']} threads" in data["matmul_source"]
    per_stage = data["flops_per_stage"]
    assert {"prefix", "step_0", "decoder"} <= set(per_stage) and all(f >= 0 for f in per_stage.values())
    assert sum(per_stage.values()) == data["flops_per_frame"]
    assert per_stage["step_0"] > per_stage["next_0"]
    for name in names:
        st = data["results"][name]["stages"]["decoder"]
        assert st["gflops_per_s"] > 0 and st["of_matmul"] == st["gflops_per_s"] / data["matmul_gflops"]
    assert "% of matmul" in r.output and "GFLOP  " in r.output
    # the runtime's onnxruntime session options (the bundle manifest's, threads applied) are printed and recorded
    assert ort["session_options"]["graph_optimization_level"] == "all" and "session options: " in r.output
    assert "session_options" not in data["results"][names[0]]


def test_bench_profile_names_each_graphs_ops(tiny_bundle, tmp_path):
    out, prof = tmp_path / "bench.json", tmp_path / "prof"
    r = CliRunner().invoke(main, ["bench", "--bundle", str(tiny_bundle["dir"]), "--runs", "2", "--warmup", "0",
                                  "--threads", "1", "--profile", str(prof), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "onnxruntime profile (2 frames, 1 threads" in r.output
    graphs = json.loads(out.read_text())["profile"]["graphs"]
    manifest = json.loads((tiny_bundle["dir"] / "manifest.json").read_text())
    assert set(graphs) == set(manifest["graphs"])
    for name, g in graphs.items():
        assert (prof / g["file"].split("/")[-1]).exists() and g["kernel_ms_per_frame"] > 0
        assert abs(sum(g["ops_ms_per_frame"].values()) - g["kernel_ms_per_frame"]) < 1e-6
    assert "MatMul" in graphs["step"]["ops_ms_per_frame"] and "Conv" in graphs["decoder"]["ops_ms_per_frame"]


def test_bench_times_eager_with_the_runtimes_sampler(tiny_expect_bundle):
    r = CliRunner().invoke(main, ["bench", "-c", str(tiny_expect_bundle["ckpt"]), "--bundle",
                                  str(tiny_expect_bundle["dir"]), "--runs", "1", "--warmup", "0"])
    assert r.exit_code == 0, r.output
    assert "eager (cpu, sampler expect)" in r.output and "ort: " in r.output
    assert r.output.count("sampler expect") >= 2  # eager and the runtime both
    r = CliRunner().invoke(main, ["bench", "-c", "tiny", "--bundle", str(tiny_expect_bundle["dir"]), "--runs", "1",
                                  "--warmup", "0"])
    assert r.exit_code == 0, r.output
    assert "eager (cpu, sampler expect)" in r.output  # a preset is greedy, but the bundle's sampler wins


def test_bench_needs_something_to_measure():
    r = CliRunner().invoke(main, ["bench"])
    assert r.exit_code == 1 and "--checkpoint" in r.output


def test_bench_matches_threads_and_flags_a_loaded_machine(tiny_bundle, tmp_path, monkeypatch):
    """Eager torch and onnxruntime get the same --threads; a load average above the idle cores is flagged in the
    table and the JSON (faked here: speed itself is measured in benchmarks, never asserted)."""
    import os

    import torch

    import depthart.runtime as rt_mod

    got = []
    real = rt_mod.DepthRuntime

    def spy(*a, **kw):
        got.append(kw.get("threads"))
        return real(*a, **kw)

    monkeypatch.setattr(rt_mod, "DepthRuntime", spy)
    monkeypatch.setattr(os, "getloadavg", lambda: (7.5, 7.0, 6.0))
    before = torch.get_num_threads()
    out = tmp_path / "bench.json"
    try:
        r = CliRunner().invoke(main, ["bench", "-c", str(tiny_bundle["ckpt"]), "--bundle", str(tiny_bundle["dir"]),
                                      "--runs", "2", "--warmup", "0", "--threads", "2", "--json", str(out)])
        eager_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert r.exit_code == 0, r.output
    assert got == [2] and eager_threads == 2
    assert "threads: 2 for every CPU contender" in r.output and "LOADED MACHINE" in r.output
    assert "load average 7.50 before the run" in r.output
    data = json.loads(out.read_text())
    assert data["threads"] == 2 and data["load"]["loaded"] and data["load"]["loadavg_before"][0] == 7.5
    eager = data["results"][next(iter(data["results"]))]
    assert 0 < eager["min_ms"] <= eager["p50_ms"] and eager["speedup_vs_eager_min"] == 1.0


def test_default_threads_leave_busy_cores_alone_and_the_monitor_reads_the_spread():
    from depthart.runtime.bench import LoadMonitor, default_threads, format_table, summarize

    assert default_threads(load=(1.1, 1, 1), cpus=2) == 1
    assert default_threads(load=(0.1, 0, 0), cpus=8) == 8
    assert default_threads(load=(30.0, 0, 0), cpus=8) == 1
    steady = {"eager (cpu)": [{"total": 0.100}, {"total": 0.101}, {"total": 0.102}],
              "ort: onnxruntime CPUExecutionProvider, a long description": [{"total": 0.05}] * 3}
    m = LoadMonitor(threads=1, cpus=2, load_before=(0.2, 0.2, 0.2))
    m.wait_s, m.wall_s = 0.0, 1.0
    quiet = m.report(steady)
    assert not quiet["loaded"] and quiet["reasons"] == []
    noisy = dict(steady, **{"eager (cpu)": [{"total": 0.1}, {"total": 0.1}, {"total": 0.4}]})
    m.wait_s = 0.5
    busy = m.report(noisy)
    assert busy["loaded"] and len(busy["reasons"]) == 2  # waited for a CPU half the time; eager's spread
    table = format_table(summarize(noisy, None, baseline="eager (cpu)"), {"cpu": "x", "cpu_count": 2}, None, None,
                         busy)
    header, eager_row, ort_row = [ln for ln in table.splitlines() if ln.startswith(("backend", "eager ", "ort "))]
    assert len(eager_row) == len(ort_row) == len(header)  # a long backend name no longer breaks the columns
    assert "GFLOP/s" not in header  # no FLOP count: no column of dashes


def test_bench_turns_a_backend_failure_during_the_timed_runs_into_one_line(tiny_bundle, monkeypatch):
    from depthart.errors import DepthartError
    from depthart.runtime import DepthRuntime

    def fault(self, *a, **k):
        raise DepthartError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(DepthRuntime, "predict", fault)
    r = CliRunner().invoke(main, ["bench", "--bundle", str(tiny_bundle["dir"]), "--runs", "1", "--warmup", "0"])
    assert r.exit_code != 0
    assert "the benchmark stopped: CUDA error: an illegal memory access" in r.output
    assert "Traceback" not in r.output and not isinstance(r.exception, DepthartError)


def test_bench_times_several_bundles_interleaved(tiny_bundle, tmp_path):
    """Two bundles (here the same graphs in two folders) are two contenders, labelled by precision and folder."""
    import shutil

    other = tmp_path / "copy"
    shutil.copytree(tiny_bundle["dir"], other)
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(main, ["bench", "--bundle", str(tiny_bundle["dir"]), "--bundle", str(other), "--runs", "2",
                                  "--warmup", "0", "--threads", "1", "--json", str(out)])
    assert r.exit_code == 0, r.output
    names = list(json.loads(out.read_text())["results"])
    assert len(names) == 2 and names[1].startswith("ort fp32 (copy): ")
    assert "ort fp32 (copy)" in r.output
