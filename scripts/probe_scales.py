"""Which scales' tokens cost a trained model its accuracy? Numbers for docs/experiments.md section 5.

    python scripts/probe_scales.py [CHECKPOINT] [N_SCENES] [--json OUT.json]

On N held-out procedural scenes (seeds from 1e9, the model's resolution, median scale), prints
1. "oracle coarse scales": the greedy loop with the ground truth's tokens for the first k scales and
   the model's own choices after them, k = 0 (the model) .. K (the VQ-VAE ceiling), with the token
   accuracy per scale that results;
2. "stop early": the model's own greedy tokens, decoded from the first t scales only;
3. per scale, under teacher forcing: top-1 / top-5 accuracy, the mean probability of the right
   token, and how far a wrong pick's code vector is from the right one (relative to its norm);
4. per scale, how the ground truth's residual sits in the codebook: its norm, the distance to the
   nearest and second-nearest code (a small gap = near ties: which token is "right" is fragile),
   and how many codes the scale uses.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import depthart
from depthart.data import HELD_OUT_SEED_OFFSET, generate_scene
from depthart.data.transforms import depth_target
from depthart.metrics import evaluate
from depthart.preprocess import to_model_input
from depthart.resize import resize

RANGE = (1e-3, 200.0)


def score(depth_B1HW, scenes) -> dict:
    rows = [evaluate(depth_B1HW[i, 0].numpy(), s.depth, s.valid, alignment="median_scale", depth_range=RANGE)
            for i, s in enumerate(scenes)]
    ar = np.array([r["abs_rel"] for r in rows])
    return {"abs_rel": float(ar.mean()), "delta1": float(np.mean([r["delta1"] for r in rows])),
            "abs_rel_median": float(np.median(ar))}


@torch.no_grad()
def main():
    from PIL import Image

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default=None, help="default: the shipped model")
    ap.add_argument("n", type=int, nargs="?", default=100)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = depthart.load(args.checkpoint or None).eval()
    cfg, q = model.cfg, model.vae.quantize
    codebook = q.embedding.weight
    K, S = cfg.num_scales, cfg.image_size
    scenes = [generate_scene(HELD_OUT_SEED_OFFSET + i, S) for i in range(args.n)]
    img = torch.from_numpy(np.stack([to_model_input(Image.fromarray(s.rgb), S) for s in scenes]))
    target = torch.from_numpy(np.stack([depth_target(s.depth, s.valid, S)[0] for s in scenes]))
    f_D = model.vae.encode(target)
    gt = q.tokenize(f_D)[0]
    out = {"checkpoint": args.checkpoint or "shipped default", "n": args.n, "patch_nums": list(cfg.patch_nums)}

    print(f"{out['checkpoint']}: {args.n} held-out scenes at {S} px, greedy, median scale\n")
    print("| ground-truth tokens for scales | AbsRel | δ1 | AbsRel median | token accuracy per scale |")
    print("|---|---|---|---|---|")
    out["oracle"] = []
    for k_gt in range(K + 1):
        def choose(k, logits, cb, k_gt=k_gt):
            idx = gt[k] if k < k_gt else logits.argmax(-1)
            return idx, cb[idx]

        f_hat, tokens = model.generate(img, choose, return_tokens=True)
        acc = [float((t == g).float().mean()) for t, g in zip(tokens, gt)]
        row = {"k": k_gt, **score(model.decode_depth(f_hat), scenes), "acc": acc}
        out["oracle"].append(row)
        label = "none (the model)" if k_gt == 0 else ", ".join(str(p) for p in cfg.patch_nums[:k_gt])
        print(f"| {label} | {row['abs_rel']:.3f} | {row['delta1']:.3f} | {row['abs_rel_median']:.3f} | "
              + " ".join(f"{a:.2f}" for a in acc) + " |")

    print("\n| model's tokens, decoded from scales | AbsRel | δ1 |\n|---|---|---|")
    out["stop_early"] = []
    # f_hat after each scale of one greedy loop (zeroed code vectors would not do: phi_k(0) is phi_k's
    # bias, not 0); the image prefix calls `accumulate` first, so the loop's are the last K calls
    f_hats, accumulate = [], q.accumulate
    q.accumulate = lambda *a: f_hats.append(accumulate(*a)) or f_hats[-1]
    try:
        model.generate(img)
    finally:
        q.accumulate = accumulate
    for t in range(1, K + 1):
        row = {"scales": t, **score(model.decode_depth(f_hats[-K:][t - 1]), scenes)}
        out["stop_early"].append(row)
        print(f"| first {t} | {row['abs_rel']:.3f} | {row['delta1']:.3f} |")

    logits = model.forward_teacher(img, gt, cached=True)
    f_hat = torch.zeros_like(f_D)
    print("\n| scale | TF top-1 | top-5 | p(right token) | wrong pick: code distance / norm "
          "| residual norm | nearest code | 2nd nearest | codes used |\n|---|---|---|---|---|---|---|---|---|")
    out["scales"] = []
    for k, ((b, e), pn) in enumerate(zip(cfg.scale_ranges(), cfg.patch_nums)):
        lg, t = logits[:, b:e], gt[k]
        top = lg.topk(5, -1).indices
        wrong = top[..., 0] != t
        dist = (codebook[top[..., 0]] - codebook[t]).norm(dim=-1) / codebook[t].norm(dim=-1)
        rest = resize(f_D - f_hat, pn, "area").flatten(2).transpose(1, 2).reshape(-1, cfg.cvae)
        near = torch.cdist(rest, codebook).topk(2, largest=False).values
        row = {"pn": pn, "top1": float((~wrong).float().mean()), "top5": float((top == t[..., None]).any(-1).float().mean()),
               "p_right": float(lg.float().softmax(-1).gather(-1, t[..., None]).mean()),
               "wrong_code_distance": float(dist[wrong].mean()) if wrong.any() else 0.0,
               "residual_norm": float(rest.norm(dim=1).mean()), "nearest": float(near[:, 0].mean()),
               "second": float(near[:, 1].mean()), "codes_used": int(t.unique().numel())}
        out["scales"].append(row)
        print(f"| {pn}x{pn} | {row['top1']:.2f} | {row['top5']:.2f} | {row['p_right']:.2f} | "
              f"{row['wrong_code_distance']:.2f} | {row['residual_norm']:.2f} | {row['nearest']:.2f} | "
              f"{row['second']:.2f} | {row['codes_used']} |")
        f_hat = q.accumulate(k, f_hat, q.embed(k, t))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
