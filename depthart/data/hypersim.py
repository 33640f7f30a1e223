"""Hypersim as a depth dataset (numpy + Pillow; h5py, imported lazily, for the .hdf5 files).

    from depthart.data import HypersimDataset
    ds = HypersimDataset("/data/hypersim", split="train")   # every public train frame of the split CSV
    s = ds[0]  # rgb (768, 1024, 3) uint8, depth (768, 1024) float32 planar metres, valid, meta

Layout read (Hypersim's own; `write_hypersim_layout` writes the same for procedural scenes):

    ROOT/metadata_images_split_scene_v1.csv       the official split: scene_name, camera_name, frame_id,
                                                   included_in_public_release, exclude_reason,
                                                   split_partition_name (train / val / test)
    ROOT/metadata_camera_parameters.csv           optional: scene_name, settings_camera_fov (radians)
    ROOT/SCENE/images/scene_CAM_final_preview/frame.IIII.tonemap.jpg     tone-mapped preview (8-bit)
    ROOT/SCENE/images/scene_CAM_final_hdf5/frame.IIII.color.hdf5         linear HDR radiance (H, W, 3)
    ROOT/SCENE/images/scene_CAM_geometry_hdf5/frame.IIII.depth_meters.hdf5       float16 distance to the
                                                   camera centre in metres, NaN where there is no geometry
    ROOT/SCENE/images/scene_CAM_geometry_hdf5/frame.IIII.render_entity_id.hdf5   int32, -1 = no geometry

The two CSVs are also looked for where Hypersim's repository keeps them
(`evermotion_dataset/analysis/`, `contrib/mikeroberts3000/`), or given as `split_csv=` / `camera_csv=`.
HDF5 arrays are under the key "dataset". The `.npy` files `write_hypersim_layout` writes without
h5py (`depth_meters.npy`, `render_entity_id.npy`) are read the same way.

What a sample holds:

* rgb: the `tonemap.jpg` preview (what DepthART trains on), or, with `color="hdr"` or when there is
  no preview (`color="auto"`), `color.hdf5` through Hypersim's tone mapper (`tonemap`).
* depth: planar depth z = distance * f / sqrt(u^2 + v^2 + f^2) (`geometry.distance_to_planar`),
  f = (W/2)/tan(fov/2) with fov from the camera CSV, else Hypersim's pi/3 (886.81 px at 1024 px).
  Hypersim's tilt-shift scenes (`M_cam_from_uv`) are ignored, as Marigold, Depth Anything V2 and
  DepthART do. Depth is 0 where invalid.
* valid: depth finite and > 0, and render_entity_id != -1 when that file is there.
* meta: id "SCENE/CAM/frame.IIII", scene, camera, frame, K (3x3), fov_x, rgb_from ("preview" or "hdr").

Opening checks the whole split cheaply (one directory listing per camera folder) and raises
`DataError` before any training starts: missing or malformed split CSV, no public frame in the split,
frames whose files are missing (the first few and the count), .hdf5 files without h5py installed.
Hypersim has a few public frames without geometry files (ml-hypersim issue #7): drop their rows from
the CSV, or pass `skip_missing=True` to leave them out.

Resizing to the model's resolution happens later, in `depthart.data.transforms` (as for every
source), so `size=None` (native resolution) is what training uses.
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np
from PIL import Image

from .base import DataError, DepthDataset, check_sample
from .geometry import distance_to_planar, intrinsics_from_fov

SPLIT_CSV = "metadata_images_split_scene_v1.csv"
CAMERA_CSV = "metadata_camera_parameters.csv"
SPLIT_CSV_DIRS = ("", os.path.join("evermotion_dataset", "analysis"))  # under root; the second is ml-hypersim's
CAMERA_CSV_DIRS = ("", os.path.join("contrib", "mikeroberts3000"))
SPLIT_COLUMNS = ("scene_name", "camera_name", "frame_id", "included_in_public_release", "split_partition_name")
SPLITS = ("train", "val", "test")
DEFAULT_FOV = math.pi / 3  # Hypersim's horizontal fov in every scene
COLOR_MODES = ("auto", "preview", "hdr")

# Hypersim's tone mapper (eval.md 2.4)
TONEMAP_GAMMA = 1 / 2.2
TONEMAP_PERCENTILE = 90
TONEMAP_TARGET = 0.8  # brightness of the percentile after gamma
TONEMAP_EPS = 1e-4


def tonemap(color: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Hypersim's tone mapper: linear HDR (H, W, 3) -> uint8 (H, W, 3).

    Brightness Y = 0.3 R + 0.59 G + 0.11 B over the valid pixels (render_entity_id != -1; all when
    `valid` is None); scale = 0.8^2.2 / P90(Y) (0 if P90 < 1e-4, 1 if no pixel is valid);
    out = clip(max(scale * rgb, 0)^(1/2.2), 0, 1) * 255, truncated to uint8. Non-finite
    radiance counts as 0.
    """
    rgb = np.nan_to_num(np.asarray(color, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) radiance array, got shape {rgb.shape}")
    mask = np.ones(rgb.shape[:2], dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if not mask.any():
        scale = 1.0
    else:
        y = rgb[mask] @ np.array([0.3, 0.59, 0.11])  # (N,)
        p = float(np.percentile(y, TONEMAP_PERCENTILE))
        scale = 0.0 if p < TONEMAP_EPS else TONEMAP_TARGET ** (1 / TONEMAP_GAMMA) / p
    out = np.clip(np.maximum(scale * rgb, 0.0) ** TONEMAP_GAMMA, 0.0, 1.0)
    return (out * 255).astype(np.uint8)


def _h5py():
    try:
        import h5py
    except ImportError:
        return None
    return h5py


def read_array(path: str) -> np.ndarray:
    """The array of a Hypersim .hdf5 (key "dataset") or of the .npy fallback. Raises DataError."""
    try:
        if path.endswith(".npy"):
            return np.load(path)
        h5py = _h5py()
        if h5py is None:
            raise DataError(f"reading {path} needs h5py: pip install h5py")
        with h5py.File(path, "r") as f:
            if "dataset" not in f:
                raise DataError(f"{path}: no HDF5 dataset 'dataset' (found {', '.join(f.keys()) or 'none'})")
            return f["dataset"][()]
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}") from None


def _find(root: str, name: str, dirs, given) -> str | None:
    if given is not None:
        return os.fspath(given)
    for d in dirs:
        p = os.path.join(root, d, name)
        if os.path.isfile(p):
            return p
    return None


def read_split_csv(path: str, split: str | None) -> list[tuple[str, str, int]]:
    """(scene, camera, frame) of the public rows of Hypersim's split CSV in `split` (None: all splits)."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header, rows = reader.fieldnames or [], list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read the split CSV {path}: {e}") from None
    missing = [c for c in SPLIT_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (expected Hypersim's split CSV with "
                        f"columns {', '.join(SPLIT_COLUMNS)})")
    out, counts = [], {}
    for line, r in enumerate(rows, start=2):
        if str(r["included_in_public_release"]).strip().lower() not in ("true", "1"):
            continue
        name = str(r["split_partition_name"]).strip()
        counts[name] = counts.get(name, 0) + 1
        if split is not None and name != split:
            continue
        try:
            frame = int(r["frame_id"])
        except (TypeError, ValueError):
            raise DataError(f"{path} line {line}: frame_id {r['frame_id']!r} is not an integer") from None
        out.append((str(r["scene_name"]).strip(), str(r["camera_name"]).strip(), frame))
    if not out:
        found = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
        raise DataError(f"{path}: no public frames in split {split!r} (public frames per split: {found})")
    return out


def read_camera_fovs(path: str) -> dict[str, float]:
    """scene_name -> settings_camera_fov (radians) from Hypersim's camera-parameters CSV."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read the camera CSV {path}: {e}") from None
    if rows and not {"scene_name", "settings_camera_fov"} <= set(rows[0]):
        raise DataError(f"{path}: expected columns scene_name and settings_camera_fov")
    fovs = {}
    for line, r in enumerate(rows, start=2):
        try:
            fov = float(r["settings_camera_fov"])
        except (TypeError, ValueError):
            raise DataError(f"{path} line {line}: settings_camera_fov {r['settings_camera_fov']!r} "
                            "is not a number") from None
        if not 0 < fov < math.pi:
            raise DataError(f"{path} line {line}: settings_camera_fov {fov} is not in (0, pi) radians")
        fovs[str(r["scene_name"]).strip()] = fov
    return fovs


class HypersimDataset(DepthDataset):
    """Hypersim's public frames of one split as a depth dataset (module docstring).

    Args:
        root: the folder holding the scene folders and the split CSV.
        split: "train", "val" or "test" (the CSV's split_partition_name), or None for all public frames.
            Defaults to "train".
        size: None (default) keeps the native resolution; training resizes later (`transforms`). An
            int S resizes to S x S as `transforms` does (RGB bicubic, depth and mask nearest) and
            scales K to match.
        color: "auto" (default: the tonemap.jpg preview, else color.hdf5 tone-mapped), "preview"
            (previews only) or "hdr" (color.hdf5 through `tonemap` only).
        split_csv, camera_csv: paths of the two CSVs when they are not under `root`.
        skip_missing: leave out frames whose files are missing instead of raising (default False).

    Raises:
        DataError at construction for a missing or malformed layout (the message names the file).
    """

    def __init__(self, root, split: str | None = "train", size: int | None = None, color: str = "auto",
                 split_csv=None, camera_csv=None, skip_missing: bool = False):
        root = os.fspath(root)
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)} or None, got {split!r}")
        if color not in COLOR_MODES:
            raise ValueError(f"color must be one of {', '.join(COLOR_MODES)}, got {color!r}")
        if size is not None and (not isinstance(size, (int, np.integer)) or size < 1):
            raise ValueError(f"size must be None or a positive int (the model's square resolution), got {size!r}")
        if not os.path.isdir(root):
            raise DataError(f"{root} is not a folder (expected Hypersim's layout: "
                            "SCENE/images/scene_cam_XX_final_preview/frame.IIII.tonemap.jpg, "
                            "SCENE/images/scene_cam_XX_geometry_hdf5/frame.IIII.depth_meters.hdf5, "
                            f"and {SPLIT_CSV})")
        self.root, self.split, self.size, self.color = root, split, size, color
        self.split_csv = _find(root, SPLIT_CSV, SPLIT_CSV_DIRS, split_csv)
        if self.split_csv is None or not os.path.isfile(self.split_csv):
            where = self.split_csv or os.path.join(root, SPLIT_CSV)
            raise DataError(f"Hypersim split CSV not found: {where} (Hypersim's "
                            f"evermotion_dataset/analysis/{SPLIT_CSV}, with columns {', '.join(SPLIT_COLUMNS)})")
        self.camera_csv = _find(root, CAMERA_CSV, CAMERA_CSV_DIRS, camera_csv)
        if camera_csv is not None and not os.path.isfile(self.camera_csv):
            raise DataError(f"camera CSV not found: {self.camera_csv}")
        self.fovs = read_camera_fovs(self.camera_csv) if self.camera_csv else {}
        self.frames, self.missing = self._index(read_split_csv(self.split_csv, split))
        if self.missing and not skip_missing:
            shown = "\n  ".join(self.missing[:5])
            n_listed = len(self.frames) + len(self.missing)
            raise DataError(f"Hypersim at {root}: {len(self.missing)} of the {n_listed} public {split or 'all'} "
                            f"frames listed in {self.split_csv} have missing files, e.g.\n  {shown}\n"
                            "(drop their rows from the CSV, or use skip_missing=True)")
        if not self.frames:
            raise DataError(f"Hypersim at {root}: none of the frames listed in {self.split_csv} has its files")
        if _h5py() is None:
            hdf5 = next((p for fr in self.frames for p in (fr["rgb"], fr["depth"]) if p.endswith(".hdf5")), None)
            if hdf5 is not None:
                raise DataError(f"reading Hypersim's .hdf5 files (e.g. {hdf5}) needs h5py: pip install h5py")
        self.length = len(self.frames)

    def _index(self, rows):
        listings: dict[str, set] = {}

        def has(folder, name):
            if folder not in listings:
                listings[folder] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
            return name in listings[folder]

        frames, missing = [], []
        for scene, cam, frame in rows:
            images = os.path.join(self.root, scene, "images")
            preview = os.path.join(images, f"scene_{cam}_final_preview")
            final = os.path.join(images, f"scene_{cam}_final_hdf5")
            geo = os.path.join(images, f"scene_{cam}_geometry_hdf5")
            stem = f"frame.{frame:04d}"
            rgb = None
            if self.color != "hdr" and has(preview, f"{stem}.tonemap.jpg"):
                rgb, rgb_from = os.path.join(preview, f"{stem}.tonemap.jpg"), "preview"
            elif self.color != "preview" and has(final, f"{stem}.color.hdf5"):
                rgb, rgb_from = os.path.join(final, f"{stem}.color.hdf5"), "hdr"
            depth = next((os.path.join(geo, f"{stem}.depth_meters.{ext}") for ext in ("hdf5", "npy")
                          if has(geo, f"{stem}.depth_meters.{ext}")), None)
            entity = None
            if depth is not None:
                ext = depth.rsplit(".", 1)[1]
                entity = os.path.join(geo, f"{stem}.render_entity_id.{ext}")
                entity = entity if has(geo, os.path.basename(entity)) else None
            if rgb is None:
                jpg, hdr = os.path.join(preview, f"{stem}.tonemap.jpg"), os.path.join(final, f"{stem}.color.hdf5")
                missing.append({"auto": f"{jpg} (or {hdr})", "preview": jpg, "hdr": hdr}[self.color])
            if depth is None:
                missing.append(os.path.join(geo, f"{stem}.depth_meters.hdf5"))
            if rgb is None or depth is None:
                continue
            frames.append({"scene": scene, "camera": cam, "frame": frame, "rgb": rgb, "rgb_from": rgb_from,
                           "depth": depth, "entity": entity, "fov": self.fovs.get(scene, DEFAULT_FOV)})
        return frames, missing

    def _get(self, i: int) -> dict:
        fr = self.frames[i]
        dist = np.asarray(read_array(fr["depth"]), dtype=np.float32)
        if dist.ndim != 2:
            raise DataError(f"{fr['depth']}: expected an (H, W) depth array, got shape {dist.shape}")
        valid = np.isfinite(dist) & (dist > 0)
        geometry = valid  # pixels that see a surface: render_entity_id != -1 when that file is there
        if fr["entity"] is not None:
            entity = read_array(fr["entity"])
            if entity.shape != dist.shape:
                raise DataError(f"{fr['entity']}: shape {entity.shape} differs from the depth's {dist.shape}")
            geometry = entity != -1
            valid = valid & geometry
        if fr["rgb_from"] == "preview":
            try:
                with Image.open(fr["rgb"]) as im:
                    rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
            except OSError as e:
                raise DataError(f"cannot read {fr['rgb']}: {e}") from None
        else:
            color = read_array(fr["rgb"])
            if color.shape != dist.shape + (3,):
                raise DataError(f"{fr['rgb']}: shape {color.shape}, expected {dist.shape + (3,)}")
            rgb = tonemap(color, geometry)
        if rgb.shape[:2] != dist.shape:
            raise DataError(f"{fr['rgb']}: size {rgb.shape[:2]} differs from the depth's {dist.shape}")
        h, w = dist.shape
        K = intrinsics_from_fov(fr["fov"], (h, w))
        depth = np.where(valid, distance_to_planar(np.where(valid, dist, 0), K), 0).astype(np.float32)
        if self.size is not None:
            rgb, depth, valid, K = self._resize(rgb, depth, valid, K)
        meta = {"id": f"{fr['scene']}/{fr['camera']}/frame.{fr['frame']:04d}", "source": "hypersim",
                "scene": fr["scene"], "camera": fr["camera"], "frame": fr["frame"], "K": K.tolist(),
                "fov_x": fr["fov"], "rgb_from": fr["rgb_from"]}
        return check_sample({"rgb": rgb, "depth": depth, "valid": valid, "meta": meta}, meta["id"])

    def _resize(self, rgb, depth, valid, K):
        from .transforms import resize_nearest

        s = int(self.size)
        h, w = depth.shape
        rgb = np.asarray(Image.fromarray(rgb).resize((s, s), Image.BICUBIC), dtype=np.uint8)
        K = K * np.array([[s / w], [s / h], [1.0]])  # rows: fx, cx scale with width; fy, cy with height
        return rgb, resize_nearest(depth, s), resize_nearest(valid, s), K
