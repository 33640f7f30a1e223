"""Does a trained model use its image? Numbers for docs/experiments.md (issue 12's diagnosis).

    python scripts/diagnose_model.py CHECKPOINT [N_SCENES] [--sampler greedy|expect] [--json OUT.json] [--quick]
                                     [--ceiling | --prefix-depth]

On N held-out procedural scenes (seeds from 1e9, 64 px, the model's own resolution), prints
- AbsRel / delta1 (median scale, valid 1e-3..200 m, `depthart.metrics.evaluate`) of the model, of
  the same predictions shuffled across scenes (scene i scored with scene i+1's map), of the model's
  prediction for a flat grey image used for every scene, of a constant and of the prior map
  (mean normalised ground truth of 2,000 training scenes);
- the attention mass that each depth scale's tokens put on the image prefix, per block (mean
  over heads, tokens and scenes), from the cached generation loop, and the blocks' AdaLN gates
  (left out with --quick, which prints the model's and the shuffled scores only).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F

import depthart
from depthart.data import HELD_OUT_SEED_OFFSET, generate_scene
from depthart.metrics import evaluate
from depthart.sampling import make_sampler

RANGE = (1e-3, 200.0)


def score(preds, scenes):
    rows = [evaluate(p, s.depth, s.valid, alignment="median_scale", depth_range=RANGE) for p, s in zip(preds, scenes)]
    out = {k: float(np.mean([r[k] for r in rows])) for k in ("abs_rel", "delta1")}
    ar = np.array([r["abs_rel"] for r in rows])
    kind = np.array([s.meta["kind"] for s in scenes])
    out.update(abs_rel_median=float(np.median(ar)), above_1=float((ar > 1).mean()),
               **{f"abs_rel_{k}": float(ar[kind == k].mean()) for k in ("indoor", "outdoor") if (kind == k).any()})
    return out


def prior_map(size: int, n: int = 2000, cache: str | None = None) -> np.ndarray:
    """Mean normalised ground truth of training scenes 0..n-1 (stored in / read from `cache` if given)."""
    import os

    if cache and os.path.isfile(cache):
        return np.load(cache)
    acc, cnt = np.zeros((size, size)), np.zeros((size, size))
    for seed in range(n):
        s = generate_scene(seed, size)
        q = np.percentile(s.depth[s.valid], 98)
        acc += np.where(s.valid, np.clip(s.depth / q, 0, 1), 0)
        cnt += s.valid
    out = (acc / np.maximum(cnt, 1)).astype(np.float32)
    if cache:
        np.save(cache, out)
    return out


@torch.no_grad()
def vae_ceiling(model, scene) -> np.ndarray:
    """The depth a transformer that predicts every token right would give: GT target -> tokens -> decode."""
    from depthart.data.transforms import depth_target

    target, _, _ = depth_target(scene.depth, scene.valid, model.cfg.image_size)
    f_hat = model.vae.quantize.tokenize(model.vae.encode(torch.from_numpy(target)[None]))[1][-1]
    return model.decode_depth(f_hat)[0, 0].numpy()


@torch.no_grad()
def prefix_as_depth(model, scene) -> np.ndarray:
    """The image's own final quantised latent (the prefix's last scale) decoded as depth, no transformer:
    what a VQ-VAE trained with `train-vqvae --image-to-depth` predicts by itself."""
    from PIL import Image

    from depthart.preprocess import to_model_input

    x = torch.from_numpy(to_model_input(Image.fromarray(scene.rgb), model.cfg.image_size))[None]
    f_hat = model.vae.quantize.tokenize(model.vae.encode_image(x))[1][-1]
    return model.decode_depth(f_hat)[0, 0].numpy()


class AttentionMass:
    """Wraps F.scaled_dot_product_attention to record, per call, the attention mass on positions < L."""

    def __init__(self, L: int):
        self.L, self.calls, self._orig = L, [], F.scaled_dot_product_attention

    def __enter__(self):
        def sdpa(q, k, v, attn_mask=None, scale=None, **kw):
            w = (q @ k.transpose(-1, -2)) * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
            if attn_mask is not None:
                w = w + attn_mask
            p = w.float().softmax(-1)
            self.calls.append(p[..., : self.L].sum(-1).mean((0, 1)))  # per query: mean over batch, heads
            return self._orig(q, k, v, attn_mask=attn_mask, scale=scale, **kw)

        F.scaled_dot_product_attention = sdpa
        return self

    def __exit__(self, *a):
        F.scaled_dot_product_attention = self._orig


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("n", type=int, nargs="?", default=100)
    ap.add_argument("--sampler", default="greedy")
    ap.add_argument("--json", default=None, help="also write the scores here")
    ap.add_argument("--quick", action="store_true", help="model and shuffled scores only")
    ap.add_argument("--prior-cache", default=None, help="a .npy file to keep the prior map in between runs")
    ap.add_argument("--ceiling", action="store_true",
                    help="score the VQ-VAE's own reconstruction of the ground truth (every token right) instead")
    ap.add_argument("--prefix-depth", action="store_true",
                    help="score the image's own quantised latent decoded as depth (no transformer) instead")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = depthart.load(args.checkpoint).eval()
    cfg = model.cfg
    size = cfg.image_size
    scenes = [generate_scene(HELD_OUT_SEED_OFFSET + i, size) for i in range(args.n)]
    sampler = make_sampler(args.sampler)
    if args.ceiling:
        preds = [vae_ceiling(model, s) for s in scenes]
    elif args.prefix_depth:
        preds = [prefix_as_depth(model, s) for s in scenes]
    else:
        preds = [model.predict(s.rgb, sampler) for s in scenes]
    grey = model.predict(np.full((size, size, 3), 128, np.uint8), sampler)
    rows = {
        "model": score(preds, scenes),
        "shuffled across scenes": score(preds[1:] + preds[:1], scenes),
    }
    if not args.quick:
        rows.update({
            "model's map of a flat grey image": score([grey] * len(scenes), scenes),
            "constant": score([np.ones((size, size), np.float32)] * len(scenes), scenes),
            "prior map (2,000 training scenes)": score([prior_map(size, cache=args.prior_cache)] * len(scenes), scenes),
        })
    print(f"{args.checkpoint}: {args.n} held-out scenes at {size} px, sampler {args.sampler}")
    print(f"| predictor | AbsRel | delta1 |\n|---|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v['abs_rel']:.3f} | {v['delta1']:.3f} |")
    m = rows["model"]
    print(f"model AbsRel: median {m['abs_rel_median']:.3f}, scenes above 1: {100 * m['above_1']:.1f} %, indoor "
          f"{m.get('abs_rel_indoor', float('nan')):.3f}, outdoor {m.get('abs_rel_outdoor', float('nan')):.3f}")
    gap = rows["shuffled across scenes"]["abs_rel"] - rows["model"]["abs_rel"]
    print(f"image-use gap: {gap:.3f} ({100 * gap / rows['model']['abs_rel']:.1f} % of the model's AbsRel)")
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump({"checkpoint": args.checkpoint, "n": args.n, "size": size, "sampler": args.sampler,
                       "scores": rows, "image_use_gap": gap}, f, indent=1)
    if args.quick:
        return

    # how much each block writes into the residual stream: AdaLN gates (the condition is the null class)
    with torch.no_grad():
        cond = model.cond(model.null_labels(1))
        gates = []
        for b in model.blocks:
            g1, g2 = b.ada_lin(cond).view(6, -1)[:2]
            gates.append((g1.abs().mean().item(), g2.abs().mean().item()))
    print("\nAdaLN residual gates, mean |gamma| (attention, FFN) per block: "
          + ", ".join(f"{a:.3f}/{f:.3f}" for a, f in gates))

    # attention mass on the prefix, per depth scale and block (greedy loop, 16 scenes)
    from depthart.preprocess import to_model_input
    from PIL import Image

    x = torch.from_numpy(np.stack([to_model_input(Image.fromarray(s.rgb), size) for s in scenes[:16]]))
    with AttentionMass(cfg.tokens_per_map) as am:
        model.generate(x)
    K, D = cfg.num_scales, cfg.depth
    m = np.array([[am.calls[k * D + i][-cfg.patch_nums[k] ** 2:].mean().item() for i in range(D)] for k in range(K)])
    print("\nattention mass on the image prefix (queries: scale k's depth tokens; rows: scale; columns: block)")
    print("| scale (tokens) | " + " | ".join(f"block {i}" for i in range(D)) + " | prefix share of keys |")
    print("|---|" + "---|" * (D + 1))
    L = cfg.tokens_per_map
    for k, (b, e) in enumerate(cfg.scale_ranges()):
        share = L / (L + e)  # the depth tokens of scale k attend to L prefix + e depth positions
        label = f"{k} ({cfg.patch_nums[k]}x{cfg.patch_nums[k]})"
        print(f"| {label} | " + " | ".join(f"{v:.3f}" for v in m[k]) + f" | {share:.3f} |")


if __name__ == "__main__":
    main()
