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
