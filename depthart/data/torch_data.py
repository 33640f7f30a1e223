"""Torch side of the data: any depth dataset (`depthart.data.base`) -> batches of model-ready tensors.

    from depthart.data import ProceduralDataset
    from depthart.data.torch_data import make_loader
    loader = make_loader(ProceduralDataset(), image_size=256, batch_size=16, num_workers=2)
    batch = next(iter(loader))
    # image (B, 3, S, S) float32 in [-1, 1]; depth (B, 3, S, S) float32 in [-1, 1] (+1 where invalid);
    # valid (B, S, S) bool; scale (B,) float32 (the 98th percentile, metres); index (B,) int64

What each field holds is defined in `depthart.data.transforms`. Batches are a pure function of
(source, start, batch_size, shuffle, seed, hflip_prob): the same arguments give identical batches
with any number of workers, and `start` (samples already consumed) resumes a run exactly.

* Endless sources (length None) are read in order: batch k holds samples
  start + k*B ... start + k*B + B - 1. Each worker builds whole batches (worker w makes batches
  w, w + W, ...), and the DataLoader returns them in order.
* Finite sources: `repeat=False` reads them once (in order, or shuffled by `seed`);
  `repeat=True` runs epochs forever, each shuffled by (seed, epoch) when `shuffle` is set.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from .transforms import model_arrays


def _flip(hflip_prob: float, seed: int, index: int) -> bool:
    return hflip_prob > 0 and np.random.default_rng([seed, index, 7]).random() < hflip_prob


def _tensors(source, index: int, image_size: int, hflip_prob: float, seed: int, invalid_value: float) -> dict:
    a = model_arrays(source[index], image_size, _flip(hflip_prob, seed, index), invalid_value)
    return {"image": torch.from_numpy(a["image"]), "depth": torch.from_numpy(a["depth"]),
            "valid": torch.from_numpy(a["valid"]), "scale": torch.tensor(a["scale"]),
            "index": torch.tensor(index, dtype=torch.int64)}


def _stack(items: list[dict]) -> dict:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class TorchDepthDataset(Dataset):
    """A finite depth dataset as a map-style torch Dataset of per-sample tensor dicts."""

    def __init__(self, source, image_size: int, hflip_prob: float = 0.0, seed: int = 0, invalid_value: float = 1.0):
        self.source, self.image_size = source, image_size
        self.hflip_prob, self.seed, self.invalid_value = hflip_prob, seed, invalid_value

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        return _tensors(self.source, int(i), self.image_size, self.hflip_prob, self.seed, self.invalid_value)


class TorchDepthStream(IterableDataset):
    """An endless depth dataset as whole batches, in order from sample `start` (module docstring)."""

    def __init__(self, source, image_size: int, batch_size: int, start: int = 0, hflip_prob: float = 0.0,
                 seed: int = 0, invalid_value: float = 1.0):
        self.source, self.image_size, self.batch_size, self.start = source, image_size, batch_size, start
        self.hflip_prob, self.seed, self.invalid_value = hflip_prob, seed, invalid_value

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        k, step = (0, 1) if info is None else (info.id, info.num_workers)
        while True:
            first = self.start + k * self.batch_size
            yield _stack([_tensors(self.source, i, self.image_size, self.hflip_prob, self.seed, self.invalid_value)
                          for i in range(first, first + self.batch_size)])
            k += step


class EpochSampler(Sampler):
    """Indices of a finite dataset of length n, from position `start` of the stream
    epoch 0, epoch 1, ... (one epoch if not `repeat`); each epoch is a permutation drawn from
    (seed, epoch) when `shuffle`, else 0..n-1."""

    def __init__(self, n: int, shuffle: bool = False, seed: int = 0, start: int = 0, repeat: bool = False):
        if n <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.n, self.shuffle, self.seed, self.start, self.repeat = n, shuffle, seed, start, repeat

    def _epoch(self, e: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, e]).permutation(self.n)

    def __iter__(self):
        e, pos = divmod(self.start, self.n)
        while self.repeat or e == 0:
            for i in self._epoch(e)[pos:]:
                yield int(i)
            e, pos = e + 1, 0

    def __len__(self):
        if self.repeat:
            raise TypeError("a repeating EpochSampler has no len()")
        return max(self.n - self.start, 0)


def _worker_init(_):
    torch.set_num_threads(1)  # the workers do numpy work; one thread each avoids oversubscription


def make_loader(source, image_size: int, batch_size: int, num_workers: int = 0, shuffle: bool = False,
                seed: int = 0, start: int = 0, repeat: bool = False, drop_last: bool = True,
                hflip_prob: float = 0.0, invalid_value: float = 1.0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader of model-ready batches from any depth dataset (module docstring).

    Args:
        source: a depth dataset (`depthart.data.base`), endless (length None) or finite.
        image_size: the model's resolution (`ModelConfig.image_size`).
        batch_size: samples per batch.
        num_workers: worker processes (0 = in the main process).
        shuffle: finite sources only: shuffle each epoch by (seed, epoch).
        seed: for shuffling and for the flip augmentation.
        start: samples already consumed (to resume); endless sources start at this index.
        repeat: finite sources only: loop over epochs forever.
        drop_last: finite sources only: drop a last, smaller batch.
        hflip_prob: probability of a horizontal flip per sample (0 = off, the paper's setting).
        invalid_value: the depth target at invalid pixels (+1 = far).
    """
    common = {"num_workers": num_workers, "pin_memory": pin_memory,
              "worker_init_fn": _worker_init if num_workers > 0 else None}
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if getattr(source, "length", 0) is None:
        ds = TorchDepthStream(source, image_size, batch_size, start, hflip_prob, seed, invalid_value)
        return DataLoader(ds, batch_size=None, **common)
    ds = TorchDepthDataset(source, image_size, hflip_prob, seed, invalid_value)
    sampler = EpochSampler(len(source), shuffle, seed, start, repeat)
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **common)
