"""The dataset interface every depth source plugs into (numpy only, no torch).

A depth dataset is indexable: `ds[i]` returns one sample as a dict

    rgb    (H, W, 3) uint8
    depth  (H, W) float32, planar depth (z along the optical axis) in metres
    valid  (H, W) bool, True where `depth` is ground truth (elsewhere it may hold anything finite
           or not: never read it there)
    meta   dict of JSON-serialisable facts (at least "id"; sources add intrinsics "K", "kind", ...)

and `len(ds)` is its size. An endless dataset (a generator that can make any number of samples)
has `length = None`, raises TypeError from `len()`, and accepts any index >= 0. Finite datasets
raise IndexError past the end, so plain `for sample in ds` works for them.

Sources: `depthart.data.procedural.ProceduralDataset` (the generator), `FromLoader` (wraps the
benchmark loaders of `depthart.evaluation`, or anything with `__len__` and `load(i)` returning an
object with `id`, `image`, `depth` and `valid`), and `depthart.data.hypersim.HypersimDataset`. The torch side
(`depthart.data.torch_data`) takes any of them.
"""

from __future__ import annotations

import numpy as np

from ..errors import DepthartError


class DataError(DepthartError):
    """A sample that does not follow the interface; the message says which and what is wrong."""


class DepthDataset:
    """Base class. Subclasses set `self.length` (an int, or None for endless) and implement `_get(i)`
    for 0 <= i < length; `__getitem__` does the bounds check."""

    length: int | None = 0

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError(f"{type(self).__name__} is endless (length=None) and has no len()")
        return self.length

    @property
    def endless(self) -> bool:
        return self.length is None

    def __getitem__(self, i) -> dict:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"{type(self).__name__} indices must be integers, got {type(i).__name__}")
        i = int(i)
        if i < 0 or (self.length is not None and i >= self.length):
            raise IndexError(f"index {i} out of range for {type(self).__name__} of length {self.length}")
        return self._get(i)

    def _get(self, i: int) -> dict:
        raise NotImplementedError


def check_sample(sample: dict, where: str = "sample") -> dict:
    """Check that `sample` follows the interface (keys, dtypes, shapes); return it unchanged.

    Raises:
        DataError naming `where` and the problem.
    """
    missing = [k for k in ("rgb", "depth", "valid", "meta") if k not in sample]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)}")
    rgb, depth, valid, meta = sample["rgb"], sample["depth"], sample["valid"], sample["meta"]
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(f"{where}: rgb must be an (H, W, 3) uint8 array, got {_describe(rgb)}")
    if not isinstance(depth, np.ndarray) or depth.dtype != np.float32 or depth.shape != rgb.shape[:2]:
        raise DataError(f"{where}: depth must be a float32 array of shape {rgb.shape[:2]}, got {_describe(depth)}")
    if not isinstance(valid, np.ndarray) or valid.dtype != np.bool_ or valid.shape != rgb.shape[:2]:
        raise DataError(f"{where}: valid must be a bool array of shape {rgb.shape[:2]}, got {_describe(valid)}")
    if not isinstance(meta, dict):
        raise DataError(f"{where}: meta must be a dict, got {type(meta).__name__}")
    if not np.isfinite(depth[valid]).all():
        raise DataError(f"{where}: depth is not finite at some valid pixels")
    return sample


def _describe(a) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} array of shape {a.shape}"
    return type(a).__name__


class FromLoader(DepthDataset):
    """A loader with `__len__` and `load(i)` -> object with `id`, `image`, `depth`, `valid` (the
    benchmark loaders in `depthart.evaluation.datasets`) as a depth dataset; meta = {"id", "source"}."""

    def __init__(self, loader, name: str | None = None):
        self.loader = loader
        self.length = len(loader)
        self.name = name or getattr(loader, "name", type(loader).__name__)

    def _get(self, i):
        s = self.loader.load(i)
        sample = {"rgb": np.asarray(s.image, dtype=np.uint8), "depth": np.asarray(s.depth, dtype=np.float32),
                  "valid": np.asarray(s.valid, dtype=bool), "meta": {"id": s.id, "source": self.name}}
        return check_sample(sample, f"{self.name}[{i}]")
