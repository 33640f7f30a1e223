"""Preview grid and speed measurement for the procedural generator (numpy + Pillow).

    python -m depthart.data.preview docs/img/procedural_samples.png      # the grid in docs/data.md
    python -m depthart.data.preview --bench 200                          # images per minute, 1 process
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from PIL import Image

from ..outputs import colorize
from .procedural import generate_scene


def depth_color(depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Colour image of a metric depth map: near warm, far cool, stretched over the valid pixels'
    2nd..98th percentiles of inverse depth (so near detail shows); invalid pixels black."""
    inv = np.where(valid, 1.0 / np.maximum(depth, 1e-6), np.nan)
    if valid.any():
        lo, hi = np.percentile(inv[valid], [2, 98])
    else:
        lo, hi = 0.0, 1.0
    rel = (hi - inv) / max(hi - lo, 1e-12)  # 0 = near
    return colorize(np.where(valid, np.clip(rel, 0, 1), np.nan), 0.0, 1.0)


def preview_grid(seeds, size: int = 128, columns: int = 4, gap: int = 4) -> np.ndarray:
    """RGB above colourised depth for each seed, `columns` samples per row -> uint8 image."""
    tiles = []
    for s in seeds:
        smp = generate_scene(s, size)
        tiles.append(np.concatenate([smp.rgb, np.full((gap, size, 3), 255, np.uint8),
                                     depth_color(smp.depth, smp.valid)], 0))
    th, tw = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    out = np.full((rows * (th + 2 * gap) + gap, columns * (tw + gap) + gap, 3), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, columns)
        y, x = gap + r * (th + 2 * gap), gap + c * (tw + gap)
        out[y:y + th, x:x + tw] = t
    return out


def bench(n: int, size: int = 128, seed_offset: int = 0) -> dict:
    """Time n scenes in this process (after one warm-up that loads the photo textures)."""
    generate_scene(seed_offset + n, size)  # warm-up: loads the photo textures
    t0 = time.perf_counter()
    kinds = {"indoor": [], "outdoor": []}
    for s in range(seed_offset, seed_offset + n):
        t = time.perf_counter()
        kinds[generate_scene(s, size).meta["kind"]].append(time.perf_counter() - t)
    dt = time.perf_counter() - t0
    return {"n": n, "size": size, "seconds": dt, "images_per_min": 60 * n / dt,
            "ms_indoor": 1000 * float(np.mean(kinds["indoor"] or [np.nan])),
            "ms_outdoor": 1000 * float(np.mean(kinds["outdoor"] or [np.nan])),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                       f"numpy {np.__version__}, python {platform.python_version()}"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", help="write the preview grid PNG here")
    ap.add_argument("--seeds", type=int, nargs="*", default=list(range(8)))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--bench", type=int, default=0, metavar="N", help="time N scenes")
    args = ap.parse_args(argv)
    if args.out:
        Image.fromarray(preview_grid(args.seeds, args.size)).save(args.out, optimize=True)
        print(f"wrote {args.out}")
    if args.bench:
        print(bench(args.bench, args.size))


if __name__ == "__main__":
    main()
