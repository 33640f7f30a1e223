"""Benchmark loaders: each reads a dataset in its own on-disk format and yields `Sample`s.

A loader finds and checks all its files when it is made (so a missing or incomplete dataset fails
before any model runs, with a message naming what is missing and where it looked) and reads one
sample at a time in `load(index)`. Loaders know nothing about protocols: crops, depth ranges and
resizing are applied by `depthart.evaluation.protocol`.

Each class's `layout` says what it expects under its root; docs/evaluation.md has the full table
(folders, file formats, depth units, what counts as a measurement).
"""

from __future__ import annotations

import glob
import importlib.util
import os
from dataclasses import dataclass

import numpy as np

from .formats import (DatasetError, open_mat_v73, read_mask_png, read_mat_vector, read_npy, read_png16,
                      read_raw_float32, read_rgb)


@dataclass
class Sample:
    """One benchmark image with its ground truth, as stored (before any protocol crop or resize).

    Attributes:
        id: unique, file-name-safe name (predictions are saved as `<id>.npy`).
        image: (H, W, 3) uint8 RGB.
        depth: (H, W) float32 depth in metres; only meaningful where `valid`.
        valid: (H, W) bool, True where the dataset has a measurement.
    """

    id: str
    image: np.ndarray
    depth: np.ndarray
    valid: np.ndarray


def _safe_id(*parts: str) -> str:
    return "_".join(p.replace(os.sep, "_").replace("/", "_").replace(" ", "_") for p in parts if p)


def _check_shapes(sample: Sample, where: str) -> Sample:
    if sample.image.shape[:2] != sample.depth.shape:
        raise DatasetError(f"{where}: image is {sample.image.shape[0]}x{sample.image.shape[1]} but its depth "
                           f"map is {sample.depth.shape[0]}x{sample.depth.shape[1]}")
    return sample


def _png16_sample(sample_id: str, rgb_path: str, depth_path: str, units_per_metre: float) -> Sample:
    """A sample whose depth is a uint16 PNG in fixed units (KITTI: 1/256 m, ScanNet: mm); 0 = no depth."""
    png = read_png16(depth_path)
    return _check_shapes(Sample(sample_id, read_rgb(rgb_path), png.astype(np.float32) / units_per_metre, png > 0),
                         depth_path)


class Dataset:
    """Base class. Subclasses fill `self.ids` (sorted, unique) in `__init__` and implement `load`.

    Attributes:
        name: the `--dataset` name.
        expected_count: how many samples the benchmark has (None if it has no fixed split); the CLI
            warns when a root holds a different number.
        root: where the data was found.
    """

    name = ""
    expected_count: int | None = None
    layout = ""  # one line saying what the loader looks for, for error messages

    def __init__(self, root):
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise DatasetError(f"{self.name}: dataset folder {self.root} does not exist (expected {self.layout})")
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> Sample:
        raise NotImplementedError

    def _missing(self, what: str):
        return DatasetError(f"{self.name}: {what} in {self.root} (expected {self.layout})")

    def _require(self, paths: list[str], what: str = "files"):
        """Raise naming the missing ones (first three) if any path in `paths` is not a file."""
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            shown = ", ".join(os.path.relpath(p, self.root) for p in missing[:3])
            raise DatasetError(f"{self.name}: {len(missing)} of {len(paths)} {what} missing under {self.root}, "
                               f"e.g. {shown}")


def _read_list(path) -> list[list[str]]:
    """A split file: whitespace-separated fields per line; blank lines and '#' comments skipped."""
    with open(path) as f:
        return [line.split() for line in f if line.strip() and not line.lstrip().startswith("#")]


# ---------------------------------------------------------------- NYUv2
class NYUv2(Dataset):
    """NYU Depth v2 test split (654 images, 480x640): raw Kinect depth, 0 = no measurement."""

    name = "nyu"
    expected_count = 654
    MAT, SPLITS = "nyu_depth_v2_labeled.mat", "splits.mat"
    layout = f"{MAT} + {SPLITS} (the official labeled set), or test/<scene>/rgb_XXXX.png + depth_XXXX.png"

    def __init__(self, root):
        super().__init__(root)
        mat = os.path.join(self.root, self.MAT)
        if os.path.isfile(mat):
            self._init_mat(mat)
        elif os.path.isdir(os.path.join(self.root, "test")):
            self._init_folders()
        else:
            raise self._missing(f"neither {self.MAT} nor a test/ folder")

    def _init_mat(self, mat):
        self.mat = mat
        splits = os.path.join(self.root, self.SPLITS)
        if not os.path.isfile(splits):
            raise self._missing(f"{self.MAT} found but not {self.SPLITS} (the test indices)")
        test = np.sort(read_mat_vector(splits, "testNdxs"))
        with open_mat_v73(mat) as f:
            for key in ("images", "rawDepths"):
                if key not in f:
                    raise DatasetError(f"{mat}: no variable '{key}' (has {', '.join(sorted(f.keys()))})")
            n = f["images"].shape[0]
        if test.size == 0 or test.min() < 1 or test.max() > n:
            raise DatasetError(f"{splits}: testNdxs must be 1-based indices into the {n} images of {mat}")
        self.indices = [int(i) for i in test]
        self.ids = [f"{i:04d}" for i in self.indices]
        self.pairs = None

    def _init_folders(self):
        self.mat = None
        rgbs = sorted(glob.glob(os.path.join(self.root, "test", "*", "rgb_*.png")))
        if not rgbs:
            raise self._missing("no test/<scene>/rgb_*.png files")
        self.pairs = [(r, os.path.join(os.path.dirname(r), "depth_" + os.path.basename(r)[4:])) for r in rgbs]
        self._require([d for _, d in self.pairs], "depth maps (depth_XXXX.png next to rgb_XXXX.png)")
        self.ids = [_safe_id(os.path.basename(os.path.dirname(r)), os.path.basename(r)[4:-4]) for r in rgbs]

    def load(self, index):
        if self.mat is not None:
            i = self.indices[index] - 1
            with open_mat_v73(self.mat) as f:
                image = np.asarray(f["images"][i]).transpose(2, 1, 0)  # (3, W, H) -> (H, W, 3)
                depth = np.asarray(f["rawDepths"][i], dtype=np.float32).T  # (W, H) -> (H, W)
            where = f"{self.mat} image {i + 1}"
            image = np.ascontiguousarray(image, dtype=np.uint8)
        else:
            rgb, dpath = self.pairs[index]
            image, depth, where = read_rgb(rgb), read_png16(dpath).astype(np.float32) / 1000.0, dpath
        depth = np.ascontiguousarray(depth)
        return _check_shapes(Sample(self.ids[index], image, depth, depth > 0), where)


# ---------------------------------------------------------------- KITTI
class KITTI(Dataset):
    """KITTI Eigen test split with annotated depth (652 of the 697 images have ground truth)."""

    name = "kitti"
    expected_count = 652
    SPLIT = "eigen_test_files_with_gt.txt"
    layout = (f"a split file ({SPLIT} in the root, or --split-file) listing 'rgb_path depth_path focal' "
              "per line, paths relative to the root")

    def __init__(self, root, split_file=None):
        super().__init__(root)
        split = split_file or os.path.join(self.root, self.SPLIT)
        if not os.path.isfile(split):
            raise self._missing(f"no split file {split}")
        rows = [r for r in _read_list(split) if len(r) >= 2 and r[1] != "None"]
        if not rows:
            raise DatasetError(f"kitti: {split} lists no image with ground truth")
        self.pairs = [(os.path.join(self.root, r[0]), self._find_depth(r[1])) for r in rows]
        self._require([p for pair in self.pairs for p in pair], "files named in the split")
        # <date>/<drive>/image_02/data/<frame>.png -> <drive>_<frame>
        self.ids = [_safe_id(r[0].split("/")[-4] if r[0].count("/") >= 3 else "",
                             os.path.splitext(os.path.basename(r[0]))[0]) for r in rows]

    def _find_depth(self, rel):
        candidates = [os.path.join(self.root, rel)] + [
            os.path.join(self.root, "data_depth_annotated", part, rel) for part in ("train", "val")]
        return next((c for c in candidates if os.path.isfile(c)), candidates[0])

    def load(self, index):
        return _png16_sample(self.ids[index], *self.pairs[index], units_per_metre=256.0)


# ---------------------------------------------------------------- ETH3D
class ETH3D(Dataset):
    """ETH3D high-res multi-view training scenes (454 images): raw float32 depth, inf = none."""

    name = "eth3d"
    expected_count = 454
    layout = ("<scene>/ground_truth_depth/dslr_images/DSC_XXXX.JPG (raw float32 depth) with "
              "<scene>/images/dslr_images/DSC_XXXX.JPG (or dslr_images_undistorted/) for the photo")

    def __init__(self, root, shape=None):
        """Args: root; shape: (H, W) of the depth rasters. Defaults to the photo's own size."""
        super().__init__(root)
        self.shape = shape
        depths = sorted(glob.glob(os.path.join(self.root, "*", "ground_truth_depth", "dslr_images", "*")))
        if not depths:
            raise self._missing("no */ground_truth_depth/dslr_images/* depth files")
        self.pairs = [(self._find_rgb(d), d) for d in depths]
        self._require([r for r, _ in self.pairs], "photos (images/dslr_images/<same name>)")
        self.ids = [_safe_id(d.split(os.sep)[-4], os.path.splitext(os.path.basename(d))[0]) for d in depths]

    @staticmethod
    def _find_rgb(depth_path):
        scene = os.path.dirname(os.path.dirname(os.path.dirname(depth_path)))
        name = os.path.basename(depth_path)
        candidates = [os.path.join(scene, "images", sub, name) for sub in ("dslr_images", "dslr_images_undistorted")]
        return next((c for c in candidates if os.path.isfile(c)), candidates[0])

    def load(self, index):
        rgb, dpath = self.pairs[index]
        image = read_rgb(rgb)
        depth = read_raw_float32(dpath, self.shape or image.shape[:2])
        valid = np.isfinite(depth) & (depth > 0)
        depth[~valid] = 0.0
        return _check_shapes(Sample(self.ids[index], image, depth, valid), dpath)


# ---------------------------------------------------------------- DIODE
class DIODE(Dataset):
    """DIODE validation split (771 = 325 indoor + 446 outdoor), depth in metres with a mask file."""

    name = "diode"
    expected_count = 771
    layout = "[val/]<indoors|outdoor>/<scene>/<scan>/<id>.png with <id>_depth.npy and <id>_depth_mask.npy"

    def __init__(self, root):
        super().__init__(root)
        base = os.path.join(self.root, "val") if os.path.isdir(os.path.join(self.root, "val")) else self.root
        depths = sorted(p for p in glob.glob(os.path.join(base, "**", "*_depth.npy"), recursive=True))
        if not depths:
            raise self._missing("no *_depth.npy files")
        stems = [p[: -len("_depth.npy")] for p in depths]
        self.files = [(s + ".png", s + "_depth.npy", s + "_depth_mask.npy") for s in stems]
        self._require([f for triple in self.files for f in triple], "files (<id>.png, <id>_depth_mask.npy)")
        self.ids = [_safe_id(os.path.basename(s)) for s in stems]

    def load(self, index):
        rgb, dpath, mpath = self.files[index]
        depth = read_npy(dpath).astype(np.float32)
        depth = depth[..., 0] if depth.ndim == 3 else depth
        mask = read_npy(mpath)
        if mask.shape != depth.shape:
            raise DatasetError(f"{mpath}: mask shape {mask.shape} differs from the depth's {depth.shape}")
        valid = (mask > 0) & np.isfinite(depth) & (depth > 0)
        return _check_shapes(Sample(self.ids[index], read_rgb(rgb), depth, valid), dpath)


# ---------------------------------------------------------------- ScanNet
class ScanNet(Dataset):
    """ScanNet validation frames (the benchmark samples 800): uint16 PNG depth in millimetres."""

    name = "scannet"
    expected_count = 800
    SPLIT = "scannet_val_sampled_list_800_1.txt"
    layout = (f"<scene>/color/NNNNNN.jpg + <scene>/depth/NNNNNN.png, optionally listed ('rgb depth' per "
              f"line) in {SPLIT} or --split-file")

    def __init__(self, root, split_file=None):
        super().__init__(root)
        split = split_file or os.path.join(self.root, self.SPLIT)
        if split_file and not os.path.isfile(split_file):
            raise DatasetError(f"scannet: split file {split_file} does not exist")
        if os.path.isfile(split):
            rows = _read_list(split)
            self.pairs = [(os.path.join(self.root, r[0]), os.path.join(self.root, r[1])) for r in rows if len(r) >= 2]
        else:
            rgbs = sorted(glob.glob(os.path.join(self.root, "*", "color", "*.jpg")))
            self.pairs = [(r, os.path.join(os.path.dirname(os.path.dirname(r)), "depth",
                                           os.path.splitext(os.path.basename(r))[0] + ".png")) for r in rgbs]
        if not self.pairs:
            raise self._missing("no <scene>/color/*.jpg files")
        self._require([p for pair in self.pairs for p in pair])
        self.ids = [_safe_id(os.path.basename(os.path.dirname(os.path.dirname(r))),
                             os.path.splitext(os.path.basename(r))[0]) for r, _ in self.pairs]

    def load(self, index):
        return _png16_sample(self.ids[index], *self.pairs[index], units_per_metre=1000.0)


# ---------------------------------------------------------------- iBims-1
class IBims1(Dataset):
    """iBims-1 (100 indoor images, 480x640): depth = uint16 * 50 / 65535 m, invalid and transparent masks."""

    name = "ibims"
    expected_count = 100
    layout = "imagelist.txt with rgb/, depth/, mask_invalid/ and mask_transp/ folders of <name>.png"

    def __init__(self, root):
        super().__init__(root)
        listing = os.path.join(self.root, "imagelist.txt")
        if not os.path.isfile(listing):
            raise self._missing("no imagelist.txt")
        self.names = [r[0] for r in _read_list(listing)]
        if not self.names:
            raise DatasetError(f"ibims: {listing} is empty")
        self._require([self._path(sub, n) for n in self.names
                       for sub in ("rgb", "depth", "mask_invalid", "mask_transp")])
        self.ids = [_safe_id(n) for n in self.names]

    def _path(self, sub, name):
        return os.path.join(self.root, sub, name + ".png")

    def load(self, index):
        name = self.names[index]
        png = read_png16(self._path("depth", name))
        depth = png.astype(np.float32) * np.float32(50.0 / 65535.0)
        valid = (png > 0) & read_mask_png(self._path("mask_invalid", name)) & read_mask_png(
            self._path("mask_transp", name))
        return _check_shapes(Sample(self.ids[index], read_rgb(self._path("rgb", name)), depth, valid),
                             self._path("depth", name))


# ---------------------------------------------------------------- TUM RGB-D
class TUMRGBD(Dataset):
    """TUM RGB-D sequences: depth PNGs (uint16 / 5000 m), each paired with the closest RGB frame in time."""

    name = "tum"
    MAX_DT = 0.02  # seconds: the largest RGB-depth timestamp gap accepted as a pair
    layout = ("a sequence folder with rgb.txt and depth.txt ('timestamp path' lines), or a folder of "
              "such sequences; or --split-file listing 'rgb depth' per line")

    def __init__(self, root, split_file=None):
        super().__init__(root)
        if split_file:
            if not os.path.isfile(split_file):
                raise DatasetError(f"tum: split file {split_file} does not exist")
            rows = [r for r in _read_list(split_file) if len(r) >= 2]
            self.pairs = [(os.path.join(self.root, r[0]), os.path.join(self.root, r[1])) for r in rows]
            self.ids = [_safe_id(os.path.splitext(r[1])[0]) for r in rows]
        else:
            seqs = [self.root] if self._is_sequence(self.root) else sorted(
                d for d in glob.glob(os.path.join(self.root, "*")) if self._is_sequence(d))
            if not seqs:
                raise self._missing("no rgb.txt + depth.txt")
            self.pairs, self.ids = [], []
            for seq in seqs:
                for rgb, depth, stamp in self._associate(seq):
                    self.pairs.append((rgb, depth))
                    self.ids.append(_safe_id(os.path.basename(os.path.normpath(seq)), stamp))
        if not self.pairs:
            raise self._missing(f"no RGB and depth frames within {self.MAX_DT} s of each other")
        self._require([p for pair in self.pairs for p in pair])

    @staticmethod
    def _is_sequence(d):
        return os.path.isfile(os.path.join(d, "rgb.txt")) and os.path.isfile(os.path.join(d, "depth.txt"))

    def _associate(self, seq):
        """[(rgb path, depth path, depth timestamp string)] for each depth frame with an RGB frame
        within MAX_DT seconds (the nearest one)."""
        rgb = [(float(r[0]), r[1]) for r in _read_list(os.path.join(seq, "rgb.txt"))]
        if not rgb:
            return []
        rgb_t = np.array([t for t, _ in rgb])
        out = []
        for r in _read_list(os.path.join(seq, "depth.txt")):
            j = int(np.argmin(np.abs(rgb_t - float(r[0]))))
            if abs(rgb_t[j] - float(r[0])) <= self.MAX_DT:
                out.append((os.path.join(seq, rgb[j][1]), os.path.join(seq, r[1]), r[0]))
        return out

    def load(self, index):
        rgb, dpath = self.pairs[index]
        png = read_png16(dpath)
        return _check_shapes(Sample(self.ids[index], read_rgb(rgb), png.astype(np.float32) / 5000.0, png > 0),
                             dpath)


# ---------------------------------------------------------------- Middlebury (scikit-image)
class Middlebury(Dataset):
    """Middlebury 2014 "Motorcycle" (Scharstein et al., GCPR 2014) as shipped in scikit-image's data
    folder: the left view, 500x741, with ground-truth disparity (non-finite = none).

    Depth in metres: Z = f * B / (d + doffs) / 1000, with the calibration of this resolution
    (scikit-image's docstring for `skimage.data.stereo_motorcycle`).
    """

    name = "middlebury"
    expected_count = 1
    F_PX, BASELINE_MM, DOFFS_PX = 994.978, 193.001, 31.086
    IMAGE, DISPARITY = "motorcycle_left.png", "motorcycle_disp.npz"
    layout = f"{IMAGE} and {DISPARITY} (scikit-image's data folder: pip install scikit-image)"

    def __init__(self, root=None):
        super().__init__(root or self.default_root())
        self._require([os.path.join(self.root, self.IMAGE), os.path.join(self.root, self.DISPARITY)])
        self.ids = ["motorcycle"]

    @classmethod
    def default_root(cls) -> str:
        """scikit-image's `data` folder, found without importing scikit-image."""
        spec = importlib.util.find_spec("skimage")
        if spec is None or not spec.submodule_search_locations:
            raise DatasetError('middlebury: the Motorcycle pair ships with scikit-image, which is not installed: '
                               'pip install scikit-image (or pip install "depthart[eval]"), or pass --root '
                               f'with {cls.IMAGE} and {cls.DISPARITY}')
        return os.path.join(list(spec.submodule_search_locations)[0], "data")

    @classmethod
    def disparity_to_depth(cls, disparity) -> tuple[np.ndarray, np.ndarray]:
        """Disparity in pixels -> (depth in metres, valid mask). Non-finite disparity is invalid."""
        d = np.asarray(disparity, dtype=np.float64)
        valid = np.isfinite(d) & (d + cls.DOFFS_PX > 0)
        depth = np.zeros(d.shape, dtype=np.float32)
        depth[valid] = cls.F_PX * cls.BASELINE_MM / (d[valid] + cls.DOFFS_PX) / 1000.0
        return depth, valid

    def load(self, index):
        path = os.path.join(self.root, self.DISPARITY)
        try:
            with np.load(path) as npz:
                disparity = npz["arr_0"]
        except (OSError, ValueError, KeyError) as e:
            raise DatasetError(f"{path}: not the expected .npz with key arr_0 ({e})") from None
        depth, valid = self.disparity_to_depth(disparity)
        return _check_shapes(Sample(self.ids[index], read_rgb(os.path.join(self.root, self.IMAGE)), depth, valid),
                             path)


# ---------------------------------------------------------------- procedural held-out scenes
class Procedural(Dataset):
    """The held-out procedural test set: scenes `HELD_OUT_SEED_OFFSET + i` (seeds training never
    uses), rendered at 128x128 with exact planar depth; sky is invalid. Generated on the fly, so
    it needs no --root; `--limit N` takes the first N of the 200.
    """

    name = "procedural"
    expected_count = 200
    SIZE = 128
    layout = "nothing: the scenes are generated (depthart.data.procedural)"

    def __init__(self, root=None):
        if root is not None:
            raise DatasetError("procedural: the held-out scenes are generated; drop --root")
        self.root = "(generated)"
        from ..data import HELD_OUT_SEED_OFFSET

        self.seed0 = HELD_OUT_SEED_OFFSET
        self.ids = [f"procedural_{self.seed0 + i}" for i in range(self.expected_count)]

    def load(self, index):
        from ..data import generate_scene

        s = generate_scene(self.seed0 + index, self.SIZE)
        return Sample(self.ids[index], s.rgb, s.depth.astype(np.float32), s.valid)


DATASETS = {cls.name: cls for cls in (NYUv2, KITTI, ETH3D, DIODE, ScanNet, IBims1, TUMRGBD, Middlebury, Procedural)}
NO_ROOT = ("middlebury", "procedural")
USES_SPLIT_FILE = ("kitti", "scannet", "tum")


def open_dataset(name: str, root=None, split_file=None) -> Dataset:
    """The loader for `name` (a key of `DATASETS`), checked against the files under `root`.

    Args:
        name: dataset name.
        root: the dataset folder; none for middlebury (optional) and procedural (generated).
        split_file: a list file for kitti, scannet and tum (see the module table).

    Raises:
        DatasetError: unknown name, no root, or a missing or incomplete dataset.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    cls = DATASETS[name]
    if split_file is not None and name not in USES_SPLIT_FILE:
        raise DatasetError(f"{name}: --split-file is only used by {', '.join(USES_SPLIT_FILE)}")
    if root is None and name not in NO_ROOT:
        raise DatasetError(f"{name}: pass --root, the folder with {cls.layout}")
    dataset = cls(root, split_file=split_file) if name in USES_SPLIT_FILE else cls(root)
    seen = set()
    for sample_id in dataset.ids:
        if sample_id in seen:
            raise DatasetError(f"{name}: two samples under {dataset.root} get the same id {sample_id!r}")
        seen.add(sample_id)
    return dataset
