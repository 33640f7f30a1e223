"""Depth maps of one or more checkpoints side by side, as one PNG (for docs/experiments.md).

    python scripts/plot_predictions.py OUT.png CKPT[=LABEL] [CKPT[=LABEL] ...] [--scenes N] [--sampler greedy|expect]

Rows: the first N held-out procedural scenes (seeds 1e9..; RGB, ground truth, then each model) and
three real photos shipped with scikit-image (no ground truth). Every map is drawn the same way:
depth stretched over its own 2nd..98th percentiles, near warm, far cool, invalid (sky) black, so the
maps compare by ordering and shape, not by scale.
A label on top of each column.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw

from depthart.checkpoint import load_checkpoint
from depthart.data import HELD_OUT_SEED_OFFSET, generate_scene
from depthart.fileio import atomic_write_bytes
from depthart.outputs import colorize, png_bytes
from depthart.preprocess import resize_depth
from depthart.sampling import make_sampler

TILE, GAP, HEAD = 128, 4, 16
PHOTOS = ("chelsea", "coffee", "astronaut")


def _tile(rgb_or_none) -> np.ndarray:
    if rgb_or_none is None:
        return np.full((TILE, TILE, 3), 255, np.uint8)
    return np.asarray(Image.fromarray(rgb_or_none).resize((TILE, TILE), Image.BILINEAR))


def _depth_tile(depth, valid) -> np.ndarray:
    lo, hi = np.percentile(depth[valid], [2, 98]) if valid.any() else (0.0, 1.0)
    return _tile(colorize(np.where(valid, np.clip(depth, lo, hi), np.nan), lo, hi))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("checkpoints", nargs="+", help="CKPT or CKPT=LABEL")
    ap.add_argument("--scenes", type=int, default=5)
    ap.add_argument("--sampler", default="greedy", choices=["greedy", "expect"])
    a = ap.parse_args(argv)
    import skimage.data

    models = []
    for spec in a.checkpoints:
        path, _, label = spec.partition("=")
        models.append((label or path, load_checkpoint(path).eval()))
    sampler = make_sampler(a.sampler)
    rows = []
    for i in range(a.scenes):
        smp = generate_scene(HELD_OUT_SEED_OFFSET + i, TILE)
        row = [_tile(smp.rgb), _depth_tile(smp.depth, smp.valid)]
        for _, m in models:
            pred = m.predict(smp.rgb, sampler)
            row.append(_depth_tile(pred, np.ones_like(smp.valid)))
        rows.append(row)
    for name in PHOTOS:
        rgb = getattr(skimage.data, name)()
        row = [_tile(rgb), _tile(None)]
        for _, m in models:
            pred = m.predict(rgb, sampler)
            pred = resize_depth(pred, TILE, TILE)
            row.append(_depth_tile(pred, np.ones(pred.shape, bool)))
        rows.append(row)
    labels = ["image", "ground truth"] + [label for label, _ in models]
    cols = len(labels)
    W = cols * (TILE + GAP) + GAP
    H = HEAD + len(rows) * (TILE + GAP) + GAP
    canvas = np.full((H, W, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, t in enumerate(row):
            y, x = HEAD + GAP + r * (TILE + GAP), GAP + c * (TILE + GAP)
            canvas[y:y + TILE, x:x + TILE] = t
    img = Image.fromarray(canvas)
    d = ImageDraw.Draw(img)
    for c, label in enumerate(labels):
        d.text((GAP + c * (TILE + GAP) + 2, 2), label, fill="black")
    atomic_write_bytes(a.out, png_bytes(np.asarray(img)))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
