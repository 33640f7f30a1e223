"""Held-out procedural AbsRel / delta1 (median scale) of every saved checkpoint of a run, as a CSV.

    python scripts/eval_checkpoints.py RUN_DIR OUT.csv [N_SCENES]

Reads RUN_DIR/ckpt/step_*.safetensors (copies of each checkpoint the trainer wrote) and scores each
on the first N_SCENES (default 50) held-out procedural scenes with `depthart eval`'s own protocol code.
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


def main(run_dir, out_csv, n=50):
    ds = open_dataset("procedural")
    settings = get_settings("depthart", "procedural")
    rows = ["step,abs_rel,delta1"]
    paths = sorted(glob.glob(os.path.join(run_dir, "ckpt", "step_*.safetensors")),
                   key=lambda p: int(re.search(r"step_(\d+)", p).group(1)))
    for p in paths:
        step = int(re.search(r"step_(\d+)", p).group(1))
        model = load_checkpoint(p)
        results = list(iter_results(ds, settings, ModelPredictor(model), range(int(n))))
        m = mean_metrics([r.metrics for r in results])
        rows.append(f"{step},{m['abs_rel']:.5f},{m['delta1']:.5f}")
        print(rows[-1], flush=True)
    atomic_write_bytes(out_csv, ("\n".join(rows) + "\n").encode())


if __name__ == "__main__":
    main(*sys.argv[1:])
