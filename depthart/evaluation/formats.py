"""Readers for the file formats the benchmarks ship, and the evaluation's error types.

numpy + Pillow; h5py / scipy only for .mat files. Every reader raises `DatasetError` naming the
file when it is missing, unreadable or not in the expected format.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ..errors import DepthartError


class DatasetError(DepthartError):
    """A benchmark that is missing, incomplete or not in the expected format; the message says what
    is missing and where it was looked for."""


class PredictionError(DepthartError):
    """Predictions that cannot be scored: missing files, wrong size, made for another dataset."""


def read_rgb(path) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB, pixels as stored (EXIF orientation is NOT applied,
    because ground truth is aligned with the stored pixel grid)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable image ({e})") from None


def read_png16(path) -> np.ndarray:
    """A 16-bit greyscale PNG -> (H, W) uint16 array of the stored integers."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("I;16", "I;16B", "I;16L", "I"):
                raise DatasetError(f"{path}: expected a 16-bit greyscale PNG, got Pillow mode {im.mode}")
            a = np.asarray(im)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable PNG ({e})") from None
    if a.min(initial=0) < 0 or a.max(initial=0) > 65535:
        raise DatasetError(f"{path}: values outside the uint16 range")
    return a.astype(np.uint16)


def read_mask_png(path) -> np.ndarray:
    """A mask image (8- or 16-bit, any mode) -> (H, W) bool, True where the stored value is > 0."""
    try:
        with Image.open(path) as im:
            a = np.asarray(im)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable mask image ({e})") from None
    return (a > 0) if a.ndim == 2 else (a[..., 0] > 0)


def read_raw_float32(path, shape) -> np.ndarray:
    """A headerless little-endian float32 raster (ETH3D's depth files) -> (H, W) float32.

    Args:
        path: the file.
        shape: (H, W); the file must hold exactly H*W*4 bytes.
    """
    h, w = shape
    size = os.path.getsize(path) if os.path.isfile(path) else None
    if size is None:
        raise DatasetError(f"{path}: no such file")
    if size != h * w * 4:
        raise DatasetError(f"{path}: {size:,} bytes, expected {h * w * 4:,} for a {h}x{w} float32 raster "
                           "(truncated download, or a different image size)")
    return np.fromfile(path, dtype="<f4").reshape(h, w).astype(np.float32)


def read_npy(path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable .npy file ({e})") from None


def _h5py():
    try:
        import h5py
    except ImportError:
        raise DatasetError('reading MATLAB v7.3 (.mat) files needs h5py: pip install h5py '
                           '(or pip install "depthart[eval]")') from None
    return h5py


def read_mat_vector(path, key) -> np.ndarray:
    """A numeric vector from a .mat file, MATLAB v7.3 (HDF5, via h5py) or older (via scipy).

    Returns a flat int64 array (used for NYUv2's `splits.mat`, whose indices are 1-based).
    """
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: no such file")
    h5py = _h5py()
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            if key not in f:
                raise DatasetError(f"{path}: no variable '{key}' (has {', '.join(sorted(f.keys()))})")
            return np.asarray(f[key]).reshape(-1).astype(np.int64)
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DatasetError(f"{path} is a MATLAB v5 file; reading it needs scipy: pip install scipy") from None
    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises several error types for bad files
        raise DatasetError(f"{path}: unreadable .mat file ({e})") from None
    if key not in mat:
        raise DatasetError(f"{path}: no variable '{key}'")
    return np.asarray(mat[key]).reshape(-1).astype(np.int64)


def open_mat_v73(path):
    """Open a MATLAB v7.3 file for reading (an h5py.File: use it as a context manager).

    MATLAB stores arrays column-major, so h5py sees every array with its axes reversed:
    a MATLAB 480x640x3xN image stack reads as (N, 3, 640, 480).
    """
    h5py = _h5py()
    if not h5py.is_hdf5(path):
        raise DatasetError(f"{path}: not a MATLAB v7.3 (HDF5) file")
    return h5py.File(path, "r")
