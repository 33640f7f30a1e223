"""Inputs and outputs of `depthart run`: image files, video files, cameras; side-by-side images and
point clouds. numpy + Pillow; OpenCV (the `video` extra) only for video files and cameras.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import DepthartError
from ..fileio import atomic_path, atomic_write_bytes
from ..outputs import colorize, png_bytes

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def cv2_module():
    try:
        import cv2
    except ImportError:
        raise DepthartError('video files and cameras need OpenCV: pip install "depthart[video]"') from None
    return cv2


def kind_of(source: str) -> str:
    """"camera", "video", "folder" or "image" (anything else is treated as an image and fails by name)."""
    if source.startswith("camera:"):
        return "camera"
    if os.path.isdir(source):
        return "folder"
    if source.lower().endswith(VIDEO_SUFFIXES):
        return "video"
    return "image"


def video_frames(source: str):
    """(fps, frame count or None, iterator of RGB uint8 frames) for a video file or `camera:N`."""
    cv2 = cv2_module()
    if source.startswith("camera:"):
        try:
            index = int(source.split(":", 1)[1])
        except ValueError:
            raise DepthartError(f"{source}: expected camera:N with N a camera index, e.g. camera:0") from None
        cap = cv2.VideoCapture(index)
        if not cap.isOpened():
            raise DepthartError(f"{source}: cannot open camera {index} (is it connected and free?)")
    else:
        if not os.path.isfile(source):
            raise DepthartError(f"{source}: no such file")
        cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            raise DepthartError(f"{source}: OpenCV cannot open this video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not source.startswith("camera:") else None

    def frames():
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield np.ascontiguousarray(bgr[:, :, ::-1])
        finally:
            cap.release()

    return fps, (count if count and count > 0 else None), frames()


class DepthVideoWriter:
    """Colour depth video at the input's frame rate; written to a temp file and renamed on close,
    so an interrupted run leaves a playable video of the frames done so far."""

    def __init__(self, path: str, fps: float, side_by_side: bool = False):
        self.path, self.fps, self.side_by_side = path, fps, side_by_side
        self._ctx = atomic_path(path)
        self._tmp = None
        self._writer = None
        self.frames = 0

    def write(self, rgb: np.ndarray, depth: np.ndarray, lo: float | None = None, hi: float | None = None):
        """One frame; depth is coloured over [lo, hi] (default: its own min..max, see runtime/stabilize.py)."""
        cv2 = cv2_module()
        frame = side_by_side(rgb, depth, lo, hi) if self.side_by_side else colorize(depth, lo, hi)
        if self._writer is None:
            self._tmp = self._ctx.__enter__()
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(self._tmp, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not writer.isOpened():
                writer.release()
                err = DepthartError(f"{self.path}: OpenCV cannot write mp4 video here")
                self._ctx.__exit__(DepthartError, err, None)  # deletes the temp file
                raise err
            self._writer = writer
        self._writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
        self.frames += 1

    def close(self):
        """Finish the file: renamed into place if it has frames, deleted otherwise."""
        if self._writer is not None:
            self._writer.release()
            if self.frames:
                self._ctx.__exit__(None, None, None)  # rename into place
            else:
                self._ctx.__exit__(DepthartError, DepthartError("no frames"), None)
            self._writer = None


def side_by_side(rgb: np.ndarray, depth: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Input image and its colour depth map (coloured over [lo, hi], default its min..max) next to each other
    (H x 2W x 3 uint8)."""
    return np.concatenate([np.asarray(rgb, dtype=np.uint8), colorize(depth, lo, hi)], axis=1)


def write_side_by_side(path: str, rgb: np.ndarray, depth: np.ndarray) -> None:
    atomic_write_bytes(path, png_bytes(side_by_side(rgb, depth)))


def write_ply(path: str, rgb: np.ndarray, depth: np.ndarray, fov_deg: float = 60.0, far: float = 10.0,
              intrinsics=None, metric: bool = False) -> None:
    """Coloured point cloud (binary little-endian PLY) from relative depth and ASSUMED intrinsics, or from
    given intrinsics (runtime/intrinsics.py) and, with `metric`, depth in metres.

    The model gives relative depth in [0, 1]; Z = near + depth * (far - near) with near = far / 10 is an
    arbitrary monotone mapping, and the intrinsics are a pinhole with the given horizontal field of view
    and the principal point at the image centre. Both are written into the file header.
    """
    from .intrinsics import backproject, from_fov

    h, w = depth.shape
    k = (intrinsics or from_fov(fov_deg, w, h)).for_size(w, h)
    near = 0.0 if metric else far / 10
    z = depth.astype(np.float32) if metric else near + depth.astype(np.float32) * (far - near)
    xyz = backproject(z, k)
    x, y = xyz[..., 0], -xyz[..., 1]
    pts = np.empty(h * w, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    pts["x"], pts["y"], pts["z"] = x.ravel(), y.ravel(), -z.ravel()
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
    pts["r"], pts["g"], pts["b"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        + ("comment depthart point cloud, depth in metres\n" if metric else
           "comment depthart point cloud from RELATIVE depth: not metric\n")
        + (f"comment assumed pinhole intrinsics: horizontal fov {fov_deg} deg, fx = fy = {k.fx:.3f} px, "
           f"cx = {w / 2}, cy = {h / 2}, image {w}x{h}\n" if intrinsics is None else f"comment intrinsics: {k.describe()}\n")
        + ("comment Z in metres; camera looks down -z, y up\n" if metric else
           f"comment Z = {near:g} + depth * {far - near:g} (arbitrary units); camera looks down -z, y up\n")
        + 
        f"element vertex {h * w}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    atomic_write_bytes(path, header.encode() + pts.tobytes())


def load_rgb(image) -> np.ndarray:
    from ..preprocess import load_image

    return np.asarray(load_image(image), dtype=np.uint8)


def expand_sources(sources) -> list[tuple[str, str]]:
    """[(kind, path)] with folders expanded to their images and videos (sorted)."""
    out = []
    for s in sources:
        k = kind_of(s)
        if k == "folder":
            for f in sorted(os.listdir(s)):
                p = os.path.join(s, f)
                if f.lower().endswith(IMAGE_SUFFIXES):
                    out.append(("image", p))
                elif f.lower().endswith(VIDEO_SUFFIXES):
                    out.append(("video", p))
        else:
            out.append((k, s))
    return out
