"""Depth outputs people can use and look at: float32 .npy, 16-bit PNG, colour PNG.

Depth here is relative depth in [0, 1], 0 = near. Colour maps put near in warm colours
(red/orange) and far in cool colours (blue/violet). numpy + Pillow only (the runtime uses this).
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from .fileio import atomic_write_bytes

# anchor colours of the near->far palette (ColorBrewer "Spectral" class colours), evenly spaced
_ANCHORS = np.array([
    (158, 1, 66), (213, 62, 79), (244, 109, 67), (253, 174, 97), (254, 224, 139),
    (230, 245, 152), (171, 221, 164), (102, 194, 165), (50, 136, 189), (94, 79, 162),
], dtype=np.float32)


def _lut() -> np.ndarray:
    x = np.linspace(0, 1, 256)
    xa = np.linspace(0, 1, len(_ANCHORS))
    return np.stack([np.interp(x, xa, _ANCHORS[:, c]) for c in range(3)], 1).round().astype(np.uint8)


_LUT = _lut()


def colorize(depth: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """HxW depth -> HxWx3 uint8 colour image (near warm, far cool).

    Values are stretched from [lo, hi] (default: the map's own min and max) to the palette;
    non-finite values are drawn black.
    """
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"colorize expects an HxW depth map, got shape {d.shape}")
    finite = np.isfinite(d)
    vals = d[finite]
    if lo is None:
        lo = float(vals.min()) if vals.size else 0.0
    if hi is None:
        hi = float(vals.max()) if vals.size else 1.0
    t = (np.where(finite, d, lo) - lo) / max(hi - lo, 1e-12)
    rgb = _LUT[np.clip(t * 255 + 0.5, 0, 255).astype(np.uint8)]
    rgb[~finite] = 0
    return rgb


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def depth_to_png16(depth01: np.ndarray) -> np.ndarray:
    """[0, 1] depth -> uint16 (depth * 65535, rounded, clipped)."""
    return (np.clip(np.nan_to_num(depth01, nan=0.0), 0, 1) * 65535 + 0.5).astype(np.uint16)


def output_paths(out_dir, stem: str) -> dict[str, str]:
    """The three files written for one input: npy, 16-bit png, colour png."""
    out_dir = os.fspath(out_dir)
    return {
        "npy": os.path.join(out_dir, f"{stem}.npy"),
        "png16": os.path.join(out_dir, f"{stem}.png"),
        "color": os.path.join(out_dir, f"{stem}_color.png"),
    }


def save_depth(depth01: np.ndarray, out_dir, stem: str, overwrite: bool = False) -> dict[str, str]:
    """Write `<stem>.npy` (float32), `<stem>.png` (16-bit) and `<stem>_color.png`, each atomically.

    Raises FileExistsError (naming the file) if an output exists and `overwrite` is False;
    in that case nothing is written.
    """
    paths = output_paths(out_dir, stem)
    if not overwrite:
        for p in paths.values():
            if os.path.exists(p):
                raise FileExistsError(f"{p} exists; pass --overwrite to replace it")
    depth01 = np.asarray(depth01, dtype=np.float32)
    buf = io.BytesIO()
    np.save(buf, depth01)
    atomic_write_bytes(paths["npy"], buf.getvalue())
    atomic_write_bytes(paths["png16"], png_bytes(depth_to_png16(depth01)))
    atomic_write_bytes(paths["color"], png_bytes(colorize(depth01)))
    return paths
