"""Pick a run's checkpoint on *validation* scenes, never on the held-out test scenes.

    python scripts/select_checkpoint.py RUN_DIR [N_SCENES] [--sampler greedy|expect] [--csv OUT.csv]

Scores every kept checkpoint (RUN_DIR/ckpt/step_N and ema_N, `depthart train --keep-checkpoints`)
on N validation scenes (default 100): procedural seeds from 900,000,000, which no training run
reaches (they stop far below) and which are not the held-out test scenes (from 1e9). 64 px, median
scale, valid 1e-3..200 m, as scripts/diagnose_model.py. Prints one row per checkpoint and the best
by AbsRel; score that one on the test scenes with diagnose_model.py.
"""

from __future__ import annotations

import argparse
import glob
import os
import re

import numpy as np
import torch

from depthart.checkpoint import load_checkpoint
from depthart.data import generate_scene
from depthart.metrics import MetricsError, evaluate
from depthart.sampling import make_sampler

VALIDATION_SEED = 900_000_000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("n", type=int, nargs="?", default=100)
    ap.add_argument("--sampler", default="greedy", choices=["greedy", "expect"])
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    paths = glob.glob(os.path.join(args.run_dir, "ckpt", "*_*.safetensors"))
    if not paths:
        raise SystemExit(f"no kept checkpoints in {args.run_dir}/ckpt: train with --keep-checkpoints")
    key = lambda p: (int(re.search(r"_(\d+)\.safetensors$", p).group(1)), os.path.basename(p))
    rows = []
    scenes = None
    for p in sorted(paths, key=key):
        model = load_checkpoint(p)
        if scenes is None:
            scenes = [generate_scene(VALIDATION_SEED + i, model.cfg.image_size) for i in range(args.n)]
        sampler = make_sampler(args.sampler)
        try:
            ev = [evaluate(model.predict(s.rgb, sampler), s.depth, s.valid, alignment="median_scale",
                           depth_range=(1e-3, 200.0)) for s in scenes]
        except MetricsError as e:  # e.g. a map that is 0 on most of a scene: no median scale; never the pick
            print(f"{os.path.basename(p)}  not scored: {e}", flush=True)
            rows.append((os.path.basename(p), float("inf"), float("nan")))
            continue
        a, d = float(np.mean([e["abs_rel"] for e in ev])), float(np.mean([e["delta1"] for e in ev]))
        rows.append((os.path.basename(p), a, d))
        print(f"{os.path.basename(p)}  AbsRel {a:.4f}  delta1 {d:.4f}", flush=True)
    best = min(rows, key=lambda r: r[1])
    print(f"best on {args.n} validation scenes: {best[0]} (AbsRel {best[1]:.4f}, delta1 {best[2]:.4f})")
    if args.csv:
        with open(args.csv, "w") as f:
            f.write("checkpoint,abs_rel,delta1\n" + "".join(f"{n},{a:.5f},{d:.5f}\n" for n, a, d in rows))


if __name__ == "__main__":
    main()
