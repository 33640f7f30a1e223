"""Sample -> model-ready arrays (numpy + Pillow, no torch; `torch_data` wraps these in tensors).

* Image: exactly `depthart.preprocess.to_model_input`: Pillow bicubic resize to S x S (aspect
  ratio not kept), float32 (3, S, S) in [-1, 1].
* Depth target, as the DepthART paper: per image s = 98th percentile of the valid depth,
  d = depth / (s + 1e-7), d' = 2d - 1, clipped to [-1, 1], repeated to 3 channels, resized to
  S x S with Pillow NEAREST (as the DepthART release). Invalid pixels (valid False or non-finite
  depth) are set to `invalid_value`, +1 (far) by default, like Marigold; the resized mask says
  where the target is real, so a loss can ignore the rest. An image with no valid pixel gives an
  all-`invalid_value` target and an all-False mask.
* Optional horizontal flip (off by default: the paper trains without augmentation).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..preprocess import to_model_input

DEPTH_PERCENTILE = 98.0
DEPTH_EPS = 1e-7


def normalize_depth(depth: np.ndarray, valid: np.ndarray, invalid_value: float = 1.0):
    """(H, W) depth + mask -> (d' float32 (H, W) in [-1, 1], mask actually used, scale s).

    s is None when no pixel is valid.
    """
    depth = np.asarray(depth, dtype=np.float32)
    mask = np.asarray(valid, dtype=bool) & np.isfinite(depth)
    if not mask.any():
        return np.full(depth.shape, invalid_value, np.float32), mask, None
    s = float(np.percentile(depth[mask].astype(np.float64), DEPTH_PERCENTILE))
    d = np.clip(2.0 * (depth.astype(np.float64) / (s + DEPTH_EPS)) - 1.0, -1.0, 1.0)
    return np.where(mask, d, invalid_value).astype(np.float32), mask, s


def resize_nearest(a: np.ndarray, size: int) -> np.ndarray:
    """(H, W) float32 or bool -> (size, size), Pillow NEAREST."""
    if a.dtype == np.bool_:
        return np.asarray(Image.fromarray(a.astype(np.uint8)).resize((size, size), Image.NEAREST)) > 0
    return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((size, size), Image.NEAREST))


def depth_target(depth: np.ndarray, valid: np.ndarray, size: int, invalid_value: float = 1.0):
    """-> (target float32 (3, size, size) in [-1, 1], mask bool (size, size), scale s or None)."""
    d, mask, s = normalize_depth(depth, valid, invalid_value)
    d = resize_nearest(d, size)
    return np.ascontiguousarray(np.broadcast_to(d, (3, size, size))), resize_nearest(mask, size), s


def model_arrays(sample: dict, size: int, flip: bool = False, invalid_value: float = 1.0) -> dict:
    """One interface sample -> {"image": (3,S,S), "depth": (3,S,S), "valid": (S,S), "scale": float}.

    `scale` is s (NaN if no pixel is valid): depth in metres = (target + 1) / 2 * s.
    """
    rgb, depth, valid = sample["rgb"], sample["depth"], sample["valid"]
    if flip:
        rgb, depth, valid = rgb[:, ::-1], depth[:, ::-1], valid[:, ::-1]
    image = to_model_input(Image.fromarray(np.ascontiguousarray(rgb)), size)
    target, mask, s = depth_target(depth, valid, size, invalid_value)
    return {"image": image, "depth": target, "valid": mask, "scale": np.float32(np.nan if s is None else s)}
