"""Pick the best of a train_default.sh run's models and write it, fp16, as the shipped default.

    python scripts/ship_default.py RUN_ROOT

Reads RUN_ROOT/eval_{depthart,var}{,2}/summary.json (both methods, both stages, where present: held-out
procedural scenes, median scale, greedy tokens), keeps the model with the lowest AbsRel (the checkpoint
file that summary scored), stores its weights in fp16 (safetensors, the config in the metadata) at
depthart/assets/default.safetensors, and checks that the fp16 copy predicts what the fp32 one does.
"""

from __future__ import annotations

import json
import os
import sys

import torch

from depthart.checkpoint import load_checkpoint, save_checkpoint
from depthart.config import DEFAULT_CHECKPOINT
from depthart.evaluation.runner import checkpoint_hash

LIMIT_MB = 25.0


CANDIDATES = ("depthart", "var", "depthart2", "var2")  # eval_<name>: stage 1 and stage 2 of each method


def main(root: str) -> None:
    scores, sources = {}, {}
    for method in CANDIDATES:
        path = os.path.join(root, f"eval_{method}", "summary.json")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            summary = json.load(f)
        src = summary["checkpoint"]
        if summary.get("sampler") not in (None, "greedy"):
            sys.exit(f"{method}: scored with --sampler {summary['sampler']}; the default model predicts greedily")
        if not os.path.isfile(src) or checkpoint_hash(src) != summary["checkpoint_hash"]:
            sys.exit(f"{method}: {src}, which the evaluation scored, is missing or has changed since; evaluate again")
        scores[method], sources[method] = summary["metrics"], src
    if not scores:
        sys.exit(f"no eval_{{{','.join(CANDIDATES)}}}/summary.json in {root}: evaluate first")
    best = min(scores, key=lambda m: scores[m]["abs_rel"])
    src = sources[best]
    model = load_checkpoint(src)
    os.makedirs(os.path.dirname(DEFAULT_CHECKPOINT), exist_ok=True)
    meta = {"method": best.rstrip("2"), "source": os.path.join(os.path.basename(os.path.dirname(src)), os.path.basename(src)),
            "procedural_abs_rel": f"{scores[best]['abs_rel']:.4f}", "procedural_delta1": f"{scores[best]['delta1']:.4f}"}
    save_checkpoint(model, DEFAULT_CHECKPOINT, extra_metadata=meta, dtype=torch.float16)
    size_mb = os.path.getsize(DEFAULT_CHECKPOINT) / 2**20
    if size_mb > LIMIT_MB:
        sys.exit(f"{DEFAULT_CHECKPOINT} is {size_mb:.1f} MB, over the {LIMIT_MB} MB limit")
    half = load_checkpoint(DEFAULT_CHECKPOINT)
    img = torch.rand(4, 3, model.cfg.image_size, model.cfg.image_size) * 2 - 1
    with torch.no_grad():
        a, b = model.predict_normalized(img), half.predict_normalized(img)
    others = ", ".join(f"{m} {s['abs_rel']:.4f}" for m, s in scores.items() if m != best)
    print(f"shipped {best} (AbsRel {scores[best]['abs_rel']:.4f}, delta1 {scores[best]['delta1']:.4f}; "
          f"other: {others}) "
          f"-> {DEFAULT_CHECKPOINT}, {size_mb:.1f} MB; fp16 vs fp32 depth max abs diff "
          f"{(a - b).abs().max().item():.2e}")


if __name__ == "__main__":
    main(*(sys.argv[1:] or ["runs/default"]))
