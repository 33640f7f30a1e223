"""Camera intrinsics for point clouds and metric fits: pinhole fx, fy, cx, cy (pixels).

Sources, in the order `depthart run` prefers them: a ROS `CameraInfo` message (bags, the ROS 2 node),
`--intrinsics fx,fy,cx,cy` or a calibration YAML in the ROS `camera_calibration` format
(`image_width`, `image_height`, `camera_matrix: {rows: 3, cols: 3, data: [...]}`), and last an
assumed horizontal field of view (`--fov`, principal point at the image centre).

Intrinsics that name their image size are rescaled to the size of the frame they are used with
(a calibration at 1280x720 on a 640x360 stream). Pixel centres sit at (u + 0.5, v + 0.5), as in
`depthart.data.procedural`. Camera frame: the ROS optical frame, x right, y down, z forward. numpy only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import DepthartError


@dataclass(frozen=True)
class Intrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int | None = None   # the image size these numbers are for (None: any, used as given)
    height: int | None = None
    source: str = "given"      # how they were obtained, for logs and file headers

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    def for_size(self, width: int, height: int) -> "Intrinsics":
        """These intrinsics for a frame of width x height (rescaled when they were for another size)."""
        if self.width is None or (self.width, self.height) == (width, height):
            return Intrinsics(self.fx, self.fy, self.cx, self.cy, width, height, self.source)
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height,
                          f"{self.source}, rescaled from {self.width}x{self.height}")

    def describe(self) -> str:
        size = f", image {self.width}x{self.height}" if self.width else ""
        return (f"fx {self.fx:.2f} fy {self.fy:.2f} cx {self.cx:.2f} cy {self.cy:.2f} px{size} "
                f"({self.source})")


def from_fov(fov_deg: float, width: int, height: int) -> Intrinsics:
    """Square pixels, horizontal field of view `fov_deg`, principal point at the image centre."""
    if not 0 < fov_deg < 180:
        raise DepthartError(f"--fov must be between 0 and 180 degrees, got {fov_deg}")
    f = (width / 2) / np.tan(np.radians(fov_deg) / 2)
    return Intrinsics(f, f, width / 2, height / 2, width, height, f"assumed horizontal fov {fov_deg:g} deg")


def from_k(k, width: int | None = None, height: int | None = None, source: str = "CameraInfo") -> Intrinsics:
    """From a row-major 3x3 camera matrix (9 numbers, e.g. CameraInfo.k)."""
    k = np.asarray(k, dtype=np.float64).ravel()
    if k.size != 9:
        raise DepthartError(f"{source}: a camera matrix needs 9 numbers, got {k.size}")
    width = int(width) if width else None
    height = int(height) if height else None
    return _checked(Intrinsics(k[0], k[4], k[2], k[5], width, height, source))


def parse(text: str) -> Intrinsics:
    """`--intrinsics`: "fx,fy,cx,cy" in pixels, or the path of a camera_calibration YAML file."""
    if os.path.exists(text) or text.lower().endswith((".yaml", ".yml")):
        return load_yaml(text)
    try:
        vals = [float(x) for x in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != 4:
        raise DepthartError(f"--intrinsics {text}: expected fx,fy,cx,cy in pixels (e.g. 525,525,319.5,239.5) "
                            "or a camera_calibration YAML file")
    return _checked(Intrinsics(*vals, source="--intrinsics"))


def load_yaml(path: str) -> Intrinsics:
    """A ROS camera_calibration file (what `cameracalibrator` saves as ost.yaml)."""
    try:
        import yaml
    except ImportError:
        raise DepthartError('calibration YAML files need PyYAML: pip install "depthart[robot]"') from None
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        raise DepthartError(f"{path}: no such file") from None
    except (OSError, yaml.YAMLError) as e:
        raise DepthartError(f"{path}: not a readable YAML file ({str(e).splitlines()[0]})") from None
    cm = doc.get("camera_matrix") if isinstance(doc, dict) else None
    data = cm.get("data") if isinstance(cm, dict) else None
    if not isinstance(data, list) or len(data) != 9:
        raise DepthartError(f"{path}: no camera_matrix with 9 numbers in data (ROS camera_calibration format)")
    try:
        return from_k(data, doc.get("image_width"), doc.get("image_height"), source=os.path.basename(path))
    except (TypeError, ValueError):
        raise DepthartError(f"{path}: camera_matrix data must be numbers") from None


def _checked(k: Intrinsics) -> Intrinsics:
    if not (np.isfinite([k.fx, k.fy, k.cx, k.cy]).all() and k.fx > 0 and k.fy > 0):
        raise DepthartError(f"{k.source}: focal lengths must be positive numbers (fx {k.fx}, fy {k.fy}); "
                            "an uncalibrated camera (all zeros)?")
    return k


def rays(k: Intrinsics, width: int, height: int) -> np.ndarray:
    """(H, W, 3) float32 ray directions with unit z: (x/z, y/z, 1) at each pixel centre (optical frame)."""
    u = (np.arange(width, dtype=np.float32) + 0.5 - np.float32(k.cx)) / np.float32(k.fx)
    v = (np.arange(height, dtype=np.float32) + 0.5 - np.float32(k.cy)) / np.float32(k.fy)
    out = np.empty((height, width, 3), dtype=np.float32)
    out[:, :, 0] = u[None, :]
    out[:, :, 1] = v[:, None]
    out[:, :, 2] = 1.0
    return out


def backproject(depth: np.ndarray, k: Intrinsics) -> np.ndarray:
    """(H, W) planar depth (z) -> (H, W, 3) float32 points in the optical frame (x right, y down, z forward)."""
    h, w = depth.shape
    return rays(k.for_size(w, h), w, h) * np.asarray(depth, dtype=np.float32)[:, :, None]
