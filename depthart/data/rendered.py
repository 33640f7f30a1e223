"""Procedural scenes rendered once to disk, then read back at memory speed (numpy only).

Rendering costs ~19 ms per 64 px scene, as much as a small transformer's training step on a few
samples; a fixed training set rendered once lets a run spend its CPU on learning (and lets the
trainer cache the frozen VQ-VAE's outputs per scene, `depthart.train.latent_cache`).

    render_scenes("runs/scenes64", first=0, n=24000, size=64, workers=2)   # depthart render-data
    ds = RenderedDataset("runs/scenes64")                                # --data rendered:runs/scenes64

A rendered set is a folder:

    rgb.npy     (N, H, W, 3) uint8
    depth.npy   (N, H, W) float32 planar depth in metres
    valid.npy   (N, H, W) bool
    scenes.json {"format": 1, "first": seed of item 0, "n": N, "size": [H, W], "kind": null|"indoor"|"outdoor"}

Item i is exactly `generate_scene(first + i, size, kind)` (same arrays; meta holds id, seed and kind
only). The folder is written under a temporary name and renamed when complete, so a folder with
this layout is always whole.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from .base import DataError, DepthDataset
from .procedural import HELD_OUT_SEED_OFFSET, generate_scene

FORMAT = 1
INDEX_FILE = "scenes.json"


def _render_chunk(args):
    """Worker: render scenes [lo, hi) into the open memmaps of `folder` (by path)."""
    folder, first, lo, hi, size, kind = args
    rgb = np.load(os.path.join(folder, "rgb.npy"), mmap_mode="r+")
    depth = np.load(os.path.join(folder, "depth.npy"), mmap_mode="r+")
    valid = np.load(os.path.join(folder, "valid.npy"), mmap_mode="r+")
    for i in range(lo, hi):
        s = generate_scene(first + i, size, kind)
        rgb[i], depth[i], valid[i] = s.rgb, s.depth, s.valid
    for a in (rgb, depth, valid):
        a.flush()
    return hi - lo


def render_scenes(out_dir, first: int, n: int, size: int, kind: str | None = None, workers: int = 1,
                  progress=None) -> str:
    """Render procedural scenes first .. first + n - 1 at `size` into the folder `out_dir`.

    Refuses seeds that reach the held-out test scenes and an existing `out_dir`. `progress(done, n)`
    is called as chunks finish. Returns `out_dir`.
    """
    if n <= 0:
        raise DataError(f"the number of scenes must be > 0, got {n}")
    if first < 0 or first + n > HELD_OUT_SEED_OFFSET:
        raise DataError(f"scenes {first}..{first + n - 1} reach the held-out test scenes (from {HELD_OUT_SEED_OFFSET}) "
                        "or are negative; choose another range")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir):
        raise DataError(f"{out_dir} already exists; choose another folder or remove it")
    tmp = out_dir.rstrip("/") + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        h = w = int(size)
        np.lib.format.open_memmap(os.path.join(tmp, "rgb.npy"), "w+", np.uint8, (n, h, w, 3)).flush()
        np.lib.format.open_memmap(os.path.join(tmp, "depth.npy"), "w+", np.float32, (n, h, w)).flush()
        np.lib.format.open_memmap(os.path.join(tmp, "valid.npy"), "w+", np.bool_, (n, h, w)).flush()
        chunk = 200
        jobs = [(tmp, first, lo, min(lo + chunk, n), h, kind) for lo in range(0, n, chunk)]
        done = 0
        if workers > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(workers) as pool:
                for k in pool.imap_unordered(_render_chunk, jobs):
                    done += k
                    if progress:
                        progress(done, n)
        else:
            for job in jobs:
                done += _render_chunk(job)
                if progress:
                    progress(done, n)
        with open(os.path.join(tmp, INDEX_FILE), "w") as f:
            json.dump({"format": FORMAT, "first": int(first), "n": int(n), "size": [h, w], "kind": kind}, f)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


class RenderedDataset(DepthDataset):
    """A folder written by `render_scenes`, as a finite depth dataset (arrays memory-mapped)."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        index = os.path.join(self.folder, INDEX_FILE)
        if not os.path.isfile(index):
            raise DataError(f"{self.folder} is not a rendered scene set (no {INDEX_FILE}); make one with "
                            "`depthart render-data -o FOLDER`")
        try:
            with open(index) as f:
                self.info = json.load(f)
            if self.info.get("format") != FORMAT:
                raise DataError(f"{index}: format {self.info.get('format')!r}, this depthart reads format {FORMAT}")
            self.rgb = np.load(os.path.join(self.folder, "rgb.npy"), mmap_mode="r")
            self.depth = np.load(os.path.join(self.folder, "depth.npy"), mmap_mode="r")
            self.valid = np.load(os.path.join(self.folder, "valid.npy"), mmap_mode="r")
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{self.folder}: cannot read the rendered scenes ({e}); render them again") from None
        n = int(self.info["n"])
        if not (len(self.rgb) == len(self.depth) == len(self.valid) == n):
            raise DataError(f"{self.folder}: arrays hold {len(self.rgb)}/{len(self.depth)}/{len(self.valid)} scenes, "
                            f"{INDEX_FILE} says {n}; render them again")
        self.length, self.first = n, int(self.info["first"])

    def _get(self, i: int) -> dict:
        seed = self.first + i
        return {"rgb": np.array(self.rgb[i]), "depth": np.array(self.depth[i]), "valid": np.array(self.valid[i]),
                "meta": {"id": f"procedural_{seed}", "seed": seed, "kind": self.info.get("kind")}}
