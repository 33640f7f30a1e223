"""Pick the best of a train_default.sh run's models and write it, fp16, as the shipped default.

    python scripts/ship_default.py RUN_ROOT [--sampler greedy|any]

Reads RUN_ROOT/diag_<run>_<sampler>.json (scripts/diagnose_model.py: 300 held-out procedural scenes at
64 px, median scale; runs tf, tf2, da; samplers greedy and expect), keeps the (run, sampler) with the
lowest AbsRel (any sampler, or greedy only with --sampler greedy), stores its weights in fp16
(safetensors, the config in the metadata, with the scores and the sampler they were made with) at
depthart/assets/default.safetensors, and checks that the fp16 copy predicts what the fp32 one does.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys

import torch

from depthart.checkpoint import load_checkpoint, save_checkpoint
from depthart.config import DEFAULT_CHECKPOINT
from depthart.evaluation.runner import checkpoint_hash

LIMIT_MB = 25.0
RUNS = {"tf": "var", "tf2": "var", "da": "depthart", "tflong": "var", "tfcode": "var", "tfcode2": "var",
        "dacode": "depthart", "tfcode3": "var", "tfaux": "var",
        "tfcode4": "var", "tfenc": "var", "tfenc2": "var", "tfsilog": "var", "tfsilog2": "var",
        "dec": "depthart", "untied": "depthart", "unet": "vqvae", "unetdec": "depthart"}  # run -> method of its last stage


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", nargs="?", default="runs/default")
    ap.add_argument("--sampler", choices=["greedy", "any"], default="any")
    args = ap.parse_args()
    found = {}
    for path in sorted(glob.glob(os.path.join(args.root, "diag_*_*.json"))):
        m = re.fullmatch(r"diag_(\w+?)_(greedy|expect)\.json", os.path.basename(path))
        if not m or m.group(1) not in RUNS or (args.sampler == "greedy" and m.group(2) != "greedy"):
            continue
        with open(path) as f:
            d = json.load(f)
        if not os.path.isfile(d["checkpoint"]):
            sys.exit(f"{path}: {d['checkpoint']} is missing; evaluate again")
        found[(m.group(1), m.group(2))] = d
    if not found:
        sys.exit(f"no diag_<run>_<sampler>.json in {args.root}: run scripts/diagnose_model.py first")
    best = min(found, key=lambda k: found[k]["scores"]["model"]["abs_rel"])
    d = found[best]
    model = load_checkpoint(d["checkpoint"])
    s = d["scores"]
    meta = {"method": RUNS[best[0]], "source": os.path.relpath(d["checkpoint"], args.root), "sampler": best[1],
            "source_sha256": checkpoint_hash(d["checkpoint"]),
            "heldout_64px_abs_rel": f"{s['model']['abs_rel']:.4f}", "heldout_64px_delta1": f"{s['model']['delta1']:.4f}",
            "heldout_64px_shuffled_abs_rel": f"{s['shuffled across scenes']['abs_rel']:.4f}"}
    os.makedirs(os.path.dirname(DEFAULT_CHECKPOINT), exist_ok=True)
    save_checkpoint(model, DEFAULT_CHECKPOINT, extra_metadata=meta, dtype=torch.float16)
    size_mb = os.path.getsize(DEFAULT_CHECKPOINT) / 2**20
    if size_mb > LIMIT_MB:
        sys.exit(f"{DEFAULT_CHECKPOINT} is {size_mb:.1f} MB, over the {LIMIT_MB} MB limit")
    half = load_checkpoint(DEFAULT_CHECKPOINT)
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(4, 3, model.cfg.image_size, model.cfg.image_size, generator=gen) * 2 - 1
    with torch.no_grad():
        a, b = model.predict_normalized(img), half.predict_normalized(img)
    others = ", ".join(f"{r}/{sm} {v['scores']['model']['abs_rel']:.4f}" for (r, sm), v in sorted(found.items())
                       if (r, sm) != best)
    print(f"shipped {best[0]} with {best[1]} (AbsRel {s['model']['abs_rel']:.4f}, delta1 {s['model']['delta1']:.4f}; "
          f"others: {others}) -> {DEFAULT_CHECKPOINT}, {size_mb:.1f} MB; fp16 vs fp32 depth max abs diff "
          f"{(a - b).abs().max().item():.2e} (mean {(a - b).abs().mean().item():.1e}; a token that flips between the two "
          "on these noise images moves the max)")


if __name__ == "__main__":
    main()
