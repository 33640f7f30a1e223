"""Latency vs accuracy per stopping scale (DepthRuntime's `max_scale`): the table in docs/benchmarks.md.

For each K = 1..num_scales, the runtime (onnxruntime CPU, one thread, the bundle's own sampler) predicts
`--scenes` held-out procedural scenes (`generate_scene(HELD_OUT_SEED_OFFSET + i, 64)`) stopping after K scales;
accuracy is `evaluate(..., alignment="median_scale", depth_range=(1e-3, 200))` averaged over the scenes, latency
the p50/p90 of the same predictions' wall time (`timings["total"]`: preprocessing to the resize back). The K
values are interleaved per scene, so a load change on the machine hits them all alike. Then, for each
`--budgets` value, the scales a `budget_ms` run used (min/median/max) and its p50 latency.

    python scripts/budget_table.py                      # the shipped default (exported to a temp folder)
    python scripts/budget_table.py --bundle B           # an existing bundle (latency only with --no-accuracy)
    python scripts/budget_table.py --preset d16 --no-accuracy --scenes 3   # random weights, latency only
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np


def export(args, out):
    from depthart.checkpoint import load
    from depthart.export.bundle import export_bundle

    t0 = time.perf_counter()
    model = load(args.preset or args.checkpoint)
    export_bundle(model, out, source=args.preset or args.checkpoint or "default", check=False)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint to export (default: the shipped default)")
    ap.add_argument("--preset", default=None, help="a preset with random weights instead (latency only)")
    ap.add_argument("--bundle", default=None, help="use this bundle (exported here first if missing)")
    ap.add_argument("--scenes", type=int, default=100)
    ap.add_argument("--budgets", default="", help="comma-separated budget_ms values to try as well")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()

    from depthart.data import HELD_OUT_SEED_OFFSET, generate_scene
    from depthart.metrics import evaluate
    from depthart.runtime import DepthRuntime

    tmp = None
    bundle = args.bundle
    if bundle is None:
        tmp = tempfile.TemporaryDirectory()
        bundle = os.path.join(tmp.name, "bundle")
    export_s = None
    if not os.path.isdir(bundle):
        export_s = export(args, bundle)
        print(f"exported {bundle} in {export_s:.0f} s")
    rt = DepthRuntime(bundle, threads=1)
    N = rt.num_scales
    print(f"runtime: {rt.describe()}; {N} scales {rt.manifest['model']['patch_nums']}; load {os.getloadavg()}")
    scenes = [generate_scene(HELD_OUT_SEED_OFFSET + i, 64) for i in range(args.scenes)]
    rt.predict(scenes[0].rgb)  # warm-up: sessions, buffers, per-scale times
    ms = {K: [] for K in range(1, N + 1)}
    scores = {K: [] for K in range(1, N + 1)}
    for s in scenes:
        for K in range(1, N + 1):
            res = rt.predict(s.rgb, max_scale=K)
            ms[K].append(res.timings["total"] * 1e3)
            if not args.no_accuracy:
                scores[K].append(evaluate(res.depth, s.depth, s.valid, alignment="median_scale",
                                          depth_range=(1e-3, 200)))
    rows = []
    for K in range(1, N + 1):
        row = {"scales": K, "pn": rt.manifest["model"]["patch_nums"][K - 1], "p50_ms": float(np.median(ms[K])),
               "p90_ms": float(np.percentile(ms[K], 90))}
        if scores[K]:
            row.update({m: float(np.mean([e[m] for e in scores[K]])) for m in ("abs_rel", "delta1")})
        rows.append(row)
    budget_rows = []
    for b in [float(x) for x in args.budgets.split(",") if x]:
        used, t = [], []
        for s in scenes:
            res = rt.predict(s.rgb, budget_ms=b)
            used.append(res.scales)
            t.append(res.timings["total"] * 1e3)
        budget_rows.append({"budget_ms": b, "scales_min": min(used), "scales_median": float(np.median(used)),
                            "scales_max": max(used), "p50_ms": float(np.median(t)), "max_ms": float(np.max(t))})
    print(f"load after: {os.getloadavg()}")
    print("| scales run (last pn) | p50 ms | p90 ms | AbsRel | delta1 |")
    print("|---|---|---|---|---|")
    for r in rows:
        acc = f"{r['abs_rel']:.3f} | {r['delta1']:.3f}" if "abs_rel" in r else "- | -"
        print(f"| {r['scales']} ({r['pn']}x{r['pn']}) | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {acc} |")
    if budget_rows:
        print("\n| budget_ms | scales used (min / median / max) | p50 ms | max ms |")
        print("|---|---|---|---|")
        for r in budget_rows:
            print(f"| {r['budget_ms']:g} | {r['scales_min']} / {r['scales_median']:g} / {r['scales_max']} | "
                  f"{r['p50_ms']:.1f} | {r['max_ms']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "budgets": budget_rows, "export_s": export_s, "scenes": args.scenes}, f, indent=1)


if __name__ == "__main__":
    main()
