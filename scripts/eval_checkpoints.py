"""Held-out procedural AbsRel / delta1 (median scale) of every saved checkpoint of a run, as a CSV.

    python scripts/eval_checkpoints.py RUN_DIR OUT.csv [N_SCENES] [KIND]

Reads RUN_DIR/ckpt/KIND_*.safetensors (KIND step, the default, or ema: the copies `depthart train
--keep-checkpoints` keeps) and scores each on the first N_SCENES (default 50) held-out procedural scenes
with `depthart eval`'s own protocol code.
"""

from __future__ import annotations

import glob
import os
import re
import sys

from depthart.checkpoint import load_checkpoint
from depthart.evaluation.datasets import open_dataset
from depthart.evaluation.protocol import get_settings
from depthart.evaluation.runner import ModelPredictor, iter_results
from depthart.metrics import mean_metrics
from depthart.fileio import atomic_write_bytes


def _step(path: str) -> int:
    return int(re.search(r"_(\d+)\.safetensors$", path).group(1))


def main(run_dir, out_csv, n=50, kind="step"):
    if kind not in ("step", "ema"):
        sys.exit(f"KIND must be step or ema, not {kind!r}")
    ds = open_dataset("procedural")
    settings = get_settings("depthart", "procedural")
    rows = ["step,abs_rel,delta1"]
    paths = sorted(glob.glob(os.path.join(run_dir, "ckpt", f"{kind}_*.safetensors")),
                   key=_step)
    if not paths:
        sys.exit(f"no {kind}_N.safetensors in {os.path.join(run_dir, 'ckpt')}: train with --keep-checkpoints"
                 + (" and --ema" if kind == "ema" else ""))
    for p in paths:
        step = _step(p)
        model = load_checkpoint(p)
        results = list(iter_results(ds, settings, ModelPredictor(model), range(int(n))))
        m = mean_metrics([r.metrics for r in results])
        rows.append(f"{step},{m['abs_rel']:.5f},{m['delta1']:.5f}")
        print(rows[-1], flush=True)
    atomic_write_bytes(out_csv, ("\n".join(rows) + "\n").encode())


if __name__ == "__main__":
    main(*sys.argv[1:])
