"""Pinhole camera helpers shared by the data sources (numpy only).

Conventions (used by every loader in `depthart.data`):

* Pixel (row i, column j) covers [j, j+1) x [i, i+1); its centre is (j + 0.5, i + 0.5).
* Intrinsics are square-pixel pinhole: fx = fy = f, principal point (cx, cy) = (W/2, H/2) in the
  same continuous pixel coordinates. A horizontal field of view `fov_x` gives f = (W/2) / tan(fov_x/2).
  This is Hypersim's convention (1024 px wide, fov pi/3 -> f = 886.81 px).
* Planar depth z is the coordinate along the optical axis; distance r is the Euclidean distance to
  the camera centre. For the pixel with offsets u = j + 0.5 - cx, v = i + 0.5 - cy:
  r = z * sqrt(u^2/fx^2 + v^2/fy^2 + 1).
"""

from __future__ import annotations

import numpy as np


def as_hw(size) -> tuple[int, int]:
    """`size` (an int for a square image, or (H, W)) -> (H, W)."""
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise ValueError(f"image size must be positive, got {size!r}")
    return h, w


def intrinsics_from_fov(fov_x: float, size) -> np.ndarray:
    """3x3 float64 K for a horizontal field of view `fov_x` (radians) and an image of `size`."""
    h, w = as_hw(size)
    if not 0 < fov_x < np.pi:
        raise ValueError(f"fov_x must be in (0, pi) radians, got {fov_x}")
    f = (w / 2) / np.tan(fov_x / 2)
    return np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=np.float64)


def ray_scale(K: np.ndarray, size) -> np.ndarray:
    """(H, W) float64 sqrt(u^2/fx^2 + v^2/fy^2 + 1): distance = planar depth * this."""
    h, w = as_hw(size)
    u = (np.arange(w) + 0.5 - K[0, 2]) / K[0, 0]
    v = (np.arange(h) + 0.5 - K[1, 2]) / K[1, 1]
    return np.sqrt(u[None, :] ** 2 + v[:, None] ** 2 + 1.0)


def planar_to_distance(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Planar depth (H, W) -> distance to the camera centre, same dtype (non-finite stays so)."""
    depth = np.asarray(depth)
    return (depth * ray_scale(K, depth.shape)).astype(depth.dtype, copy=False)


def distance_to_planar(distance: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Distance to the camera centre (H, W) -> planar depth, float32 (Hypersim's conversion)."""
    distance = np.asarray(distance, dtype=np.float64)
    return (distance / ray_scale(K, distance.shape)).astype(np.float32)
