"""Calibration feeds: the real inputs of every exported graph at every scale, KV states included.

A calibration image runs through the whole scale loop (`export.loop.run_loop`) against either the
PyTorch model or the fp32 bundle on onnxruntime, and every graph call's feed dict is recorded. The
step graph is called once per scale, so its feeds cover all scales (token counts, past lengths and
the KV cache as it really fills up), not just the first.

Images come from a folder (any format Pillow reads, sorted by name) or from the procedural scene
generator (training seeds, below `HELD_OUT_SEED_OFFSET`, so calibration never sees a test scene).
Everything that decides the calibration result is folded into a key (`calibration_key`), under
which the calibration tables are cached.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
PROCEDURAL_SEED = 1000  # first procedural calibration seed (training range, far below the held-out seeds)


def calibration_images(source, num: int, size: int) -> tuple[np.ndarray, dict]:
    """Preprocessed calibration images and a description of the set.

    Args:
        source: a folder of images, or None for procedural scenes (seeds PROCEDURAL_SEED + i).
        num: how many images (a folder with more uses its first `num` by sorted name).
        size: the model's image size.

    Returns:
        (images float32 (num, 3, size, size) in [-1, 1], description dict: kind, count, and the
        folder with each file's name and sha256, or the seeds).
    """
    from depthart.preprocess import load_image, to_model_input

    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    if source is None:
        from depthart.data.procedural import generate_scene

        seeds = list(range(PROCEDURAL_SEED, PROCEDURAL_SEED + num))
        imgs = [to_model_input(load_image(generate_scene(s, size).rgb), size) for s in seeds]
        return np.stack(imgs), {"kind": "procedural", "count": num, "seeds": [seeds[0], seeds[-1]], "size": size}
    folder = os.fspath(source)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such folder of calibration images")
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTS))[:num]
    if not files:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(IMAGE_EXTS)})")
    imgs, hashes = [], []
    for f in files:
        path = os.path.join(folder, f)
        with open(path, "rb") as fh:
            hashes.append([f, hashlib.sha256(fh.read()).hexdigest()])
        imgs.append(to_model_input(load_image(path), size))
    return np.stack(imgs), {"kind": "folder", "count": len(files), "folder": os.path.abspath(folder),
                            "files": hashes, "size": size}


def collect_feeds(run, cfg, images: np.ndarray, progress=None, sampler=None,
                  codebook: np.ndarray | None = None) -> dict[str, list[dict]]:
    """Run the scale loop on each image (batch 1) and record every graph call's feeds.

    Args:
        run: callable(graph_name, feeds) -> outputs (`export.loop.torch_runner` or `ort_runner`).
        cfg: the ModelConfig.
        images: float32 (N, 3, S, S).
        progress: optional callable(i, n) after each image.
        sampler, codebook: the runtime sampler the bundle will run with (None = greedy, the step graph's
            argmax) and the bundle's codebook: an `expect` bundle feeds its step and decoder graphs
            expected code vectors, whose ranges differ from greedy's, so they are calibrated on those.

    Returns:
        {graph name: [feed dict per call]}; "step" has N * num_scales entries, in scale order per image.
        Arrays are copies (the loop's KV cache views are not kept alive).
    """
    from depthart.export.loop import run_loop

    feeds: dict[str, list[dict]] = {}
    for i in range(len(images)):
        record = []
        run_loop(run, cfg, images[i:i + 1], record=record, sampler=sampler, codebook=codebook)
        for name, f, _ in record:
            feeds.setdefault(name, []).append({k: np.array(v, copy=True) for k, v in f.items()})
        if progress:
            progress(i + 1, len(images))
    return feeds


def feeds_from_bundle(bundle_dir, images: np.ndarray, progress=None) -> dict[str, list[dict]]:
    """`collect_feeds` with the fp32 bundle on onnxruntime (CPU), under the sampler its manifest names (what its
    runtime will run): no PyTorch needed."""
    from depthart.config import ModelConfig
    from depthart.export.loop import ort_runner
    from depthart.runtime.manifest import load_codebook, load_manifest, manifest_sampler
    from depthart.runtime.sampling import make_sampler

    m = load_manifest(bundle_dir)
    sampler = make_sampler(manifest_sampler(m))
    codebook = load_codebook(bundle_dir, m) if sampler is not None else None
    return collect_feeds(ort_runner(os.fspath(bundle_dir), m), ModelConfig.from_dict(m["model"]), images, progress,
                         sampler=sampler, codebook=codebook)


def feeds_from_model(model, images: np.ndarray, progress=None) -> dict[str, list[dict]]:
    """`collect_feeds` with the PyTorch model (eager) as the reference."""
    from depthart.export.loop import torch_runner
    from depthart.export.onnx import graph_specs

    model = model.eval().float().cpu()
    return collect_feeds(torch_runner(graph_specs(model)), model.cfg, images, progress)


def group_by_shape(feeds: list[dict]) -> tuple[list[dict], int | None]:
    """The feeds reordered so that calls with the same input shapes are contiguous, and the group size
    if all groups are equally large (else None). The step graph's calls group by scale, N images each."""
    groups: dict[tuple, list[dict]] = {}
    for f in feeds:
        groups.setdefault(tuple((k, v.shape) for k, v in sorted(f.items())), []).append(f)
    sizes = {len(g) for g in groups.values()}
    return [f for g in groups.values() for f in g], (sizes.pop() if len(sizes) == 1 else None)


def feed_reader(feeds: list[dict]):
    """An onnxruntime `CalibrationDataReader` over one graph's recorded feed dicts.

    `set_range` (used by onnxruntime's strided calibration) selects a window of the feeds.
    """
    from onnxruntime.quantization import CalibrationDataReader

    class FeedReader(CalibrationDataReader):
        def __init__(self, items):
            self.items = list(items)
            self.start, self.end = 0, len(self.items)
            self.pos = 0

        def get_next(self):
            if self.start + self.pos >= self.end:
                return None
            self.pos += 1
            return self.items[self.start + self.pos - 1]

        def rewind(self):
            self.pos = 0

        def __len__(self):
            return len(self.items)

        def set_range(self, start_index: int, end_index: int):
            self.start, self.end, self.pos = start_index, min(end_index, len(self.items)), 0

    return FeedReader(feeds)


# ------------------------------------------------------------------ cache key and feed cache


def bundle_hash(bundle_dir) -> str:
    """sha256 over a bundle's graph files (names and each file's sha256, taken from the hash cache of
    runtime/integrity.py, so an unchanged d16 bundle is not re-read), in manifest order."""
    from depthart.runtime.integrity import HashCache
    from depthart.runtime.manifest import load_manifest

    m = load_manifest(bundle_dir)
    cache = HashCache()
    h = hashlib.sha256()
    for name, g in m["graphs"].items():
        for f in [g["file"], *g.get("data_files", [])]:
            h.update(f"{name}/{f}\0{cache.sha256(os.path.join(bundle_dir, f))[0]}\n".encode())
    cache.save()
    return h.hexdigest()


def calibration_key(bundle_sha: str, image_set: dict, **settings) -> str:
    """A short key for (the fp32 graphs, the image set, the calibration settings)."""
    blob = json.dumps({"bundle": bundle_sha, "images": image_set, **settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def default_cache_dir() -> str:
    """$DEPTHART_CACHE/calibration, else ~/.cache/depthart/calibration."""
    root = os.environ.get("DEPTHART_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "depthart")
    return os.path.join(root, "calibration")


def save_feeds(path, feeds: dict[str, list[dict]]) -> None:
    """All recorded feeds in one .npz (keys "<graph>/<call>/<input>"), written atomically."""
    from depthart.fileio import atomic_path

    arrays = {f"{g}/{i}/{k}": v for g, calls in feeds.items() for i, f in enumerate(calls) for k, v in f.items()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_feeds(path) -> dict[str, list[dict]]:
    """The inverse of `save_feeds`."""
    out: dict[str, dict[int, dict]] = {}
    with np.load(path) as z:
        for key in z.files:
            g, i, k = key.rsplit("/", 2)
            out.setdefault(g, {}).setdefault(int(i), {})[k] = z[key]
    return {g: [calls[i] for i in sorted(calls)] for g, calls in out.items()}
