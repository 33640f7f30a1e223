"""Metric depth accuracy (docs/robotics.md): camera height and sparse points on held-out procedural scenes.

    python scripts/metric_accuracy.py --scenes 60 --size 128 [--model] [--json out.json]

Two relative-depth inputs:
  * "ideal": the ground truth made relative exactly as the model's training target (depth / its 98th
    percentile, clipped to [0, 1]): what the fits do when the depth shape is right;
  * "model": the shipped default model's prediction (depthart.load(), its recommended sampler; --model).
For each: the oracle scale (median of gt / pred on the valid pixels: the best one scale can do), the
camera-height fit (true height; and the height off by 5 %), and sparse fits from 20 and 200 random valid
pixels, exact and with 5 % / 20 % multiplicative noise plus 10 % outliers. AbsRel on valid pixels of the
frames whose fit succeeded, the share of frames that succeeded, and the median |scale error|.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from depthart.data.procedural import HELD_OUT_SEED_OFFSET, generate_scene
from depthart.runtime.intrinsics import from_k
from depthart.runtime.metric import fit_ground, fit_sparse


def sparse_points(rng, depth, valid, n, noise, outliers=0.0):
    vv, uu = np.nonzero(valid)
    pick = rng.choice(len(vv), size=min(n, len(vv)), replace=False)
    z = depth[vv[pick], uu[pick]].astype(np.float64) * np.exp(rng.normal(0, noise, len(pick)))
    bad = rng.random(len(pick)) < outliers
    z[bad] = rng.uniform(0.2, 50, bad.sum())
    return np.stack([uu[pick] + 0.5, vv[pick] + 0.5, z], 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=60)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--model", action="store_true", help="also the shipped default model's predictions")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    model = None
    if args.model:
        import depthart

        model = depthart.load()
    methods = ["oracle", "height", "height+5%", "sparse 200", "sparse 20", "sparse 200 noise 5%",
               "sparse 200 noise 20% + 10% outliers", "sparse 20 noise 20% + 10% outliers"]
    inputs = ["ideal"] + (["model"] if model is not None else [])
    res = {i: {m: {"absrel": [], "ok": 0, "scale_err": []} for m in methods} for i in inputs}
    for i in range(args.scenes):
        s = generate_scene(HELD_OUT_SEED_OFFSET + 500_000 + i, args.size)
        gt, valid = s.depth.astype(np.float64), s.valid
        h, w = gt.shape
        k = from_k(s.K, w, h, "procedural")
        height = s.meta["camera"]["position"][2]
        rels = {"ideal": np.clip(gt / np.percentile(gt[valid], 98), 0, 1)}
        if model is not None:
            rels["model"] = model.predict(s.rgb).astype(np.float64)
        rng = np.random.default_rng(i)
        pts = {"sparse 200": sparse_points(rng, gt, valid, 200, 0.0),
               "sparse 20": sparse_points(rng, gt, valid, 20, 0.0),
               "sparse 200 noise 5%": sparse_points(rng, gt, valid, 200, 0.05),
               "sparse 200 noise 20% + 10% outliers": sparse_points(rng, gt, valid, 200, 0.2, 0.1),
               "sparse 20 noise 20% + 10% outliers": sparse_points(rng, gt, valid, 20, 0.2, 0.1)}
        for name, rel in rels.items():
            m = valid & (rel > 0)
            oracle = float(np.median(gt[m] / rel[m]))
            for meth in methods:
                if meth == "oracle":
                    scale = oracle
                elif meth.startswith("height"):
                    fit = fit_ground(rel, k, height * (1.05 if "5%" in meth else 1.0))
                    scale = fit.scale
                else:
                    scale = fit_sparse(rel, pts[meth]).scale
                if scale is None:
                    continue
                r = res[name][meth]
                r["ok"] += 1
                r["absrel"].append(float(np.mean(np.abs(rel[m] * scale - gt[m]) / gt[m])))
                r["scale_err"].append(abs(scale / oracle - 1))
    table = {}
    print(f"{args.scenes} held-out procedural scenes at {args.size} px (seeds {HELD_OUT_SEED_OFFSET + 500_000}+)")
    print("| relative depth | method | frames fitted | AbsRel mean (fitted frames) | AbsRel median | median scale error vs oracle |")
    print("|---|---|---|---|---|---|")
    for name in inputs:
        for meth in methods:
            r = res[name][meth]
            row = {"fitted": r["ok"] / args.scenes,
                   "absrel": float(np.mean(r["absrel"])) if r["absrel"] else None,
                   "absrel_median": float(np.median(r["absrel"])) if r["absrel"] else None,
                   "scale_err": float(np.median(r["scale_err"])) if r["scale_err"] else None}
            table[f"{name}/{meth}"] = row
            ab = f"{row['absrel']:.3f}" if row["absrel"] is not None else "-"
            am = f"{row['absrel_median']:.3f}" if row["absrel_median"] is not None else "-"
            se = f"{row['scale_err']:.1%}" if row["scale_err"] is not None else "-"
            print(f"| {name} | {meth} | {r['ok']}/{args.scenes} | {ab} | {am} | {se} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table, f, indent=1)


if __name__ == "__main__":
    main()
