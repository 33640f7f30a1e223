"""Metric depth from the model's relative depth: one scale per frame, from a known camera height or from
sparse range points (LiDAR, ToF, stereo). numpy only.

The model's relative depth is depth / s with s the frame's 98th-percentile depth (clipped to [0, 1];
depthart/data/transforms.py), so metres = scale x relative depth with ONE unknown per frame, no shift.

* Camera height (`fit_ground`): back-project the lower part of the frame with the intrinsics, find the
  ground plane by RANSAC (3-point planes whose normal points up, within 45 degrees of the image's down
  axis, or within 15 degrees of the direction a given `pitch` implies), refine it by least squares on its
  inliers, and scale so that the plane lies `height` metres below the camera. Among planes with at least
  half the best support the lowest wins: the floor, not a table top.
* Sparse points (`fit_sparse`): pixel coordinates (u right, v down, pixel (i, j) covers u in [j, j + 1))
  and metres; scale = exp(mean log(z / relative)) over the points within 3 MADs of the median ratio.

A fit that fails (too few ground or sparse points, no plane facing up, a degenerate plane) says why and
returns no scale: the caller keeps relative depth for that frame; no scale is ever invented.
Saturated pixels (relative depth >= 0.999, the far 2 %) and non-positive ones are never used in a fit.
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import DepthartError
from .intrinsics import Intrinsics, backproject

SATURATED = 0.999


@dataclass
class MetricFit:
    method: str                 # "camera-height" or "sparse"
    scale: float | None         # metres per unit of relative depth; None when the fit failed
    points: int = 0             # ground inliers or sparse points used
    reason: str = ""            # why it failed ("" when it worked)

    @property
    def ok(self) -> bool:
        return self.scale is not None

    @property
    def units(self) -> str:
        return "m" if self.ok else "relative"

    def as_dict(self) -> dict:
        return {**asdict(self), "units": self.units}


def usable(depth01: np.ndarray) -> np.ndarray:
    d = np.asarray(depth01)
    return np.isfinite(d) & (d > 0) & (d < SATURATED)


def fit_ground(depth01: np.ndarray, k: Intrinsics, height: float, pitch_deg: float | None = None,
               region: float = 0.5, tol: float = 0.03, iters: int = 256, max_points: int = 4000,
               min_points: int = 50, min_fraction: float = 0.15, seed: int = 0) -> MetricFit:
    """Scale that puts the ground plane `height` metres below the camera (module docstring).

    region: the lower fraction of the image searched for ground; tol: inlier distance as a fraction of the
    point's depth; min_fraction: the share of usable lower-region points the plane must explain.
    """
    if not height > 0:
        raise DepthartError(f"--camera-height must be a positive number of metres, got {height}")
    h, w = depth01.shape
    top = int(h * (1 - region))
    pts = backproject(depth01, k)[top:]
    pts = pts[usable(depth01[top:])]
    fail = MetricFit("camera-height", None)
    if len(pts) < min_points:
        fail.reason = f"too few usable pixels in the lower {region:.0%} of the frame ({len(pts)})"
        return fail
    rng = np.random.default_rng(seed)
    if len(pts) > max_points:
        pts = pts[rng.choice(len(pts), max_points, replace=False)]
    pts = pts.astype(np.float64)
    if pitch_deg is None:
        up, max_angle = np.array([0.0, -1.0, 0.0]), 45.0
    else:
        p = np.radians(pitch_deg)  # positive = looking up: the world's up tilts towards the optical axis
        up, max_angle = np.array([0.0, -np.cos(p), np.sin(p)]), 15.0
    cos_min = np.cos(np.radians(max_angle))

    tri = pts[rng.integers(0, len(pts), size=(iters, 3))]  # (iters, 3 points, xyz)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(n, axis=1)
    good = norm > 1e-12
    n = n[good] / norm[good, None]
    d = -np.einsum("ij,ij->i", n, tri[good, 0])
    flip = d < 0  # orient every plane so that the camera (the origin) is on its positive side
    n[flip], d[flip] = -n[flip], -d[flip]
    facing = (n @ up) >= cos_min
    n, d = n[facing], d[facing]
    if not len(n):
        fail.reason = f"no plane within {max_angle:g} deg of the expected ground orientation"
        return fail
    z = pts[:, 2]
    resid = np.abs(pts @ n.T + d[None, :])  # (N, planes)
    counts = (resid < tol * z[:, None]).sum(0)
    # the ground is the LOWEST well-supported up-facing plane (a table or box top can hold more points)
    strong = counts >= 0.5 * counts.max()
    best = int(np.argmax(np.where(strong, d, -np.inf)))
    nb, db = n[best], d[best]
    for _ in range(2):  # least-squares refinement on the inliers
        inl = pts[np.abs(pts @ nb + db) < tol * z]
        if len(inl) < 3:
            break
        c = inl.mean(0)
        nb = np.linalg.svd(inl - c, full_matrices=False)[2][-1]
        db = -float(nb @ c)
        if db < 0:
            nb, db = -nb, -db
    inliers = int((np.abs(pts @ nb + db) < tol * z).sum())
    fail.points = inliers
    if nb @ up < cos_min:
        fail.reason = f"the refined plane is more than {max_angle:g} deg off the expected ground orientation"
        return fail
    if inliers < max(min_points, min_fraction * len(pts)):
        fail.reason = f"no ground plane: {inliers} of {len(pts)} lower-region points fit one (need {min_fraction:.0%})"
        return fail
    if db <= 1e-9:
        fail.reason = "the fitted ground plane passes through the camera"
        return fail
    return MetricFit("camera-height", float(height / db), inliers)


def fit_sparse(depth01: np.ndarray, points, min_points: int = 5) -> MetricFit:
    """Scale from sparse metric points: an (N, 3) array of u, v (pixels) and z (metres, planar depth)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    h, w = depth01.shape
    u, v, z = pts[:, 0], pts[:, 1], pts[:, 2]
    ok = np.isfinite(pts).all(1) & (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    iu, iv = u[ok].astype(int), v[ok].astype(int)
    rel = np.asarray(depth01, dtype=np.float64)[iv, iu]
    use = usable(rel)
    ratio = np.log(z[ok][use] / rel[use])
    fail = MetricFit("sparse", None, int(len(ratio)))
    if len(ratio) < min_points:
        fail.reason = (f"too few sparse points on usable pixels: {len(ratio)} of {len(pts)} "
                       f"(need {min_points})")
        return fail
    med = np.median(ratio)
    mad = 1.4826 * np.median(np.abs(ratio - med))
    keep = np.abs(ratio - med) <= max(3 * mad, 0.02)
    if keep.sum() < min_points:
        fail.reason = f"the sparse points disagree: only {int(keep.sum())} agree on one scale"
        return fail
    return MetricFit("sparse", float(np.exp(ratio[keep].mean())), int(keep.sum()))


def load_sparse(path: str) -> dict:
    """A sparse-depth file -> {frame index or None: (N, 3) u, v, z}.

    CSV (a header line is allowed) or .npy, with columns u, v, z (one image; every frame of a video) or
    frame, u, v, z (frame numbers from 0).
    """
    try:
        if path.lower().endswith(".npy"):
            a = np.load(path, allow_pickle=False)
        else:
            with open(path, newline="") as f:
                rows = [r for r in csv.reader(f) if r and not r[0].lstrip().startswith("#")]
            if rows and not _is_number(rows[0][0]):
                rows = rows[1:]
            a = np.array([[float(x) for x in r] for r in rows], dtype=np.float64)
    except FileNotFoundError:
        raise DepthartError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise DepthartError(f"{path}: not a sparse-depth file of numbers ({e})") from None
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] not in (3, 4) or not len(a):
        raise DepthartError(f"{path}: expected rows of u,v,z or frame,u,v,z (got shape {a.shape})")
    if a.shape[1] == 3:
        return {None: a}
    return {int(f): a[a[:, 0] == f, 1:] for f in np.unique(a[:, 0])}


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


class MetricScaler:
    """Per-frame metric depth for `depthart run` and the ROS paths: one of camera height or sparse points.

        scaler = MetricScaler(height=1.5)              # or sparse=load_sparse(path)
        depth, fit = scaler(depth01, intrinsics, frame=i)   # metres when fit.ok, else depth01 unchanged
    """

    def __init__(self, height: float | None = None, pitch_deg: float | None = None, sparse: dict | None = None):
        if (height is None) == (sparse is None):
            raise DepthartError("metric depth: give one of --camera-height or --sparse-depth")
        if height is not None and not height > 0:
            raise DepthartError(f"--camera-height must be a positive number of metres, got {height}")
        self.height, self.pitch_deg, self.sparse = height, pitch_deg, sparse

    @property
    def method(self) -> str:
        return "camera-height" if self.height is not None else "sparse"

    def fit(self, depth01, k: Intrinsics | None, frame: int | None = None, points=None) -> MetricFit:
        if self.height is not None:
            if k is None:
                raise DepthartError("--camera-height needs intrinsics")
            return fit_ground(depth01, k, self.height, self.pitch_deg)
        if points is None:
            points = self.sparse.get(frame, self.sparse.get(None)) if self.sparse else None
        if points is None:
            return MetricFit("sparse", None, 0, f"no sparse points for frame {frame}")
        return fit_sparse(depth01, points)

    def __call__(self, depth01, k: Intrinsics | None, frame: int | None = None, points=None):
        fit = self.fit(depth01, k, frame, points)
        depth = np.asarray(depth01, dtype=np.float32)
        return (depth * np.float32(fit.scale) if fit.ok else depth), fit


def sparse_source(text: str):
    """`--sparse-depth FILE` -> the loaded file (a TOPIC, starting with '/', is for bags: returned as is)."""
    if text.startswith("/") and not os.path.exists(text):
        return text
    return load_sparse(text)
