"""`--data` specs -> depth datasets (`depthart.data.base`), with clear errors before training starts.

    synthetic          the procedural generator, endless, seeds from 0 (below the held-out offset)
    synthetic:N        the first N procedural scenes, finite (epochs, shuffled by the run's seed)
    synthetic@FIRST    endless from scene FIRST on (synthetic@FIRST:N: N scenes from FIRST), e.g. to
                       continue a run from its weights (--init) on scenes it has not seen
    rendered:FOLDER    procedural scenes rendered once by `depthart render-data` (`depthart.data.rendered`),
                       finite (epochs, shuffled by the run's seed); read at memory speed
    hypersim:PATH      Hypersim's on-disk layout (`depthart.data.HypersimDataset`): the public frames
                       of the official split CSV's "train" split, at native resolution (the loader
                       resizes to the model's), finite (epochs, shuffled by the run's seed)
    hypersim:PATH:val  the same for the "val" (or "test") split
"""

from __future__ import annotations

from ..data import HELD_OUT_SEED_OFFSET, DataError, DepthDataset, HypersimDataset, ProceduralDataset
from ..data.hypersim import SPLITS as HYPERSIM_SPLITS


def open_source(spec: str, image_size: int, samples: int | None = None) -> DepthDataset:
    """The depth dataset a `--data` spec names. Raises DataError for a bad spec or folder, or for
    procedural scenes that reach the held-out test seeds (an endless stream: within `samples` scenes,
    all processes together, when given)."""
    kind, _, arg = str(spec).partition(":")
    name, at, first_txt = kind.partition("@")
    if name == "synthetic":
        first, length = 0, None
        if at:
            try:
                first = int(first_txt)
            except ValueError:
                raise DataError(f"--data {spec}: expected synthetic@FIRST with FIRST a scene number, e.g. synthetic@9600") from None
            if first < 0:
                raise DataError(f"--data {spec}: FIRST must be >= 0")
        if arg:
            try:
                length = int(arg)
            except ValueError:
                raise DataError(f"--data {spec}: expected synthetic:N or synthetic@FIRST:N (N a number of scenes)") from None
            if length <= 0:
                raise DataError(f"--data {spec}: the number of scenes must be > 0")
        n = length if length is not None else (samples or 1)
        if first + n > HELD_OUT_SEED_OFFSET:
            raise DataError(f"--data {spec}: scenes {first}..{first + n - 1} reach the held-out test scenes (from "
                            f"{HELD_OUT_SEED_OFFSET}); start earlier, or use fewer scenes or steps")
        return ProceduralDataset(seed_offset=first, length=length, size=image_size)
    if kind == "rendered":
        from ..data.rendered import RenderedDataset

        if not arg:
            raise DataError("--data rendered:FOLDER: give the folder `depthart render-data` wrote")
        try:
            ds = RenderedDataset(arg)
        except DataError as e:
            raise DataError(f"--data {spec}: {e}") from None
        if ds.first + len(ds) > HELD_OUT_SEED_OFFSET:
            raise DataError(f"--data {spec}: its scenes reach the held-out test scenes (from {HELD_OUT_SEED_OFFSET})")
        return ds
    if kind == "hypersim":
        path, split = arg, "train"
        head, _, tail = arg.rpartition(":")
        if head and tail in HYPERSIM_SPLITS:
            path, split = head, tail
        if not path:
            raise DataError("--data hypersim:PATH: give the folder, e.g. hypersim:/data/hypersim")
        try:
            return HypersimDataset(path, split=split)  # native resolution: make_loader resizes
        except DataError as e:
            raise DataError(f"--data {spec}: {e}") from None
    raise DataError(f"--data {spec}: unknown data source {kind!r}; use synthetic, synthetic:N, synthetic@FIRST, rendered:FOLDER, "
                    "hypersim:PATH or hypersim:PATH:SPLIT")


class RankView(DepthDataset):
    """Rank r of `world` processes sees items r, r + world, r + 2 world, ... of `source` (DDP)."""

    def __init__(self, source: DepthDataset, rank: int, world: int):
        self.source, self.rank, self.world = source, rank, world
        self.length = None if source.length is None else len(source) // world

    def _get(self, i: int) -> dict:
        return self.source[i * self.world + self.rank]
