"""`--data` specs -> depth datasets (`depthart.data.base`), with clear errors before training starts.

    synthetic          the procedural generator, endless, seeds from 0 (below the held-out offset)
    synthetic:N        the first N procedural scenes, finite (epochs, shuffled by the run's seed)
    hypersim:PATH      Hypersim's on-disk layout (not implemented yet)
"""

from __future__ import annotations

import os

from ..data import DataError, DepthDataset, ProceduralDataset


def open_source(spec: str, image_size: int) -> DepthDataset:
    """The depth dataset a `--data` spec names. Raises DataError for a bad spec or folder."""
    kind, _, arg = str(spec).partition(":")
    if kind == "synthetic":
        length = None
        if arg:
            try:
                length = int(arg)
            except ValueError:
                raise DataError(f"--data {spec}: expected synthetic or synthetic:N (a number of scenes)") from None
            if length <= 0:
                raise DataError(f"--data {spec}: the number of scenes must be > 0")
        return ProceduralDataset(seed_offset=0, length=length, size=image_size)
    if kind == "hypersim":
        if not arg:
            raise DataError("--data hypersim:PATH: give the folder, e.g. hypersim:/data/hypersim")
        if not os.path.isdir(arg):
            raise DataError(f"--data {spec}: {arg} is not a folder (expected Hypersim's layout: "
                            "SCENE/images/scene_cam_XX_final_preview/frame.NNNN.tonemap.jpg, "
                            "SCENE/images/scene_cam_XX_geometry_hdf5/frame.NNNN.depth_meters.hdf5, "
                            "and metadata_images_split_scene_v1.csv)")
        raise DataError(f"--data {spec}: Hypersim training data is not implemented yet; use --data synthetic")
    raise DataError(f"--data {spec}: unknown data source {kind!r}; use synthetic, synthetic:N or hypersim:PATH")


class RankView(DepthDataset):
    """Rank r of `world` processes sees items r, r + world, r + 2 world, ... of `source` (DDP)."""

    def __init__(self, source: DepthDataset, rank: int, world: int):
        self.source, self.rank, self.world = source, rank, world
        self.length = None if source.length is None else len(source) // world

    def _get(self, i: int) -> dict:
        return self.source[i * self.world + self.rank]
