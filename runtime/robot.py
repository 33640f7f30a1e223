"""What bags, the live view and the ROS 2 node share: one depth frame from one camera frame, and the
conversions between numpy and the ROS messages sensor_msgs/Image, CompressedImage, CameraInfo and PointCloud2.

Message classes come from the caller (`MessageTypes`): rosbags' typestore for bags (runtime/bag.py),
rclpy's generated classes in the node (depthart/ros2.py); both take the same field names as keyword
arguments, so every conversion here serves both. numpy + Pillow only.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np

from ..errors import DepthartError
from ..outputs import colorize
from . import intrinsics as intr
from .metric import MetricFit, MetricScaler

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8", "yuv422 (uyvy)", "yuv422_yuy2 (yuyv)", "mono16")
OUTPUT_TOPICS = {"depth": "/depth/image", "color": "/depth/color", "points": "/depth/points"}


# ------------------------------------------------------------------ incoming messages -> numpy

def _yuv422_to_rgb(buf: np.ndarray, h: int, w: int, order: str) -> np.ndarray:
    """Packed 4:2:2 (2 bytes a pixel) -> RGB, BT.601 limited range. order: "uyvy" or "yuyv"."""
    b = buf.reshape(h, w // 2, 4).astype(np.float32)
    if order == "uyvy":
        u, y0, v, y1 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    else:
        y0, u, y1, v = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    y = np.stack([y0, y1], -1).reshape(h, w) - 16
    u = np.repeat(u, 2, axis=1) - 128
    v = np.repeat(v, 2, axis=1) - 128
    rgb = np.stack([1.164 * y + 1.596 * v, 1.164 * y - 0.392 * u - 0.813 * v, 1.164 * y + 2.017 * u], -1)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image -> HxWx3 uint8 RGB. Raises DepthartError naming what is wrong."""
    enc, h, w, step = str(msg.encoding).lower(), int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    bpp = {"rgb8": 3, "bgr8": 3, "mono8": 1, "8uc1": 1, "rgba8": 4, "bgra8": 4, "8uc3": 3,
           "yuv422": 2, "uyvy": 2, "yuv422_yuy2": 2, "yuyv": 2, "mono16": 2, "16uc1": 2}.get(enc)
    if bpp is None:
        raise DepthartError(f"image encoding {msg.encoding!r} is not supported (supported: {', '.join(ENCODINGS)})")
    if h <= 0 or w <= 0 or step < w * bpp or data.size < step * h:
        raise DepthartError(f"corrupt {enc} image: {w}x{h}, step {step}, {data.size} bytes of data")
    rows = data[:step * h].reshape(h, step)[:, :w * bpp]
    if enc in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        if w % 2:
            raise DepthartError(f"corrupt {enc} image: odd width {w}")
        return _yuv422_to_rgb(rows, h, w, "uyvy" if enc in ("yuv422", "uyvy") else "yuyv")
    if bpp == 2:  # mono16: to 8 bits over its own range
        big = bool(getattr(msg, "is_bigendian", 0))
        g = rows.copy().view(">u2" if big else "<u2").reshape(h, w).astype(np.float32)
        g = (g - g.min()) / max(float(g.max() - g.min()), 1.0) * 255
        return np.repeat((g + 0.5).astype(np.uint8)[:, :, None], 3, axis=2)
    px = rows.reshape(h, w, bpp)
    if bpp == 1:
        return np.ascontiguousarray(np.repeat(px, 3, axis=2))
    if enc.startswith("bgr"):
        return np.ascontiguousarray(px[:, :, 2::-1])
    return np.ascontiguousarray(px[:, :, :3])


def compressed_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg, png) -> HxWx3 uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(bytes(msg.data))) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DepthartError(f"corrupt {msg.format or 'compressed'} image ({e})") from None


def to_rgb(msg, msgtype: str) -> np.ndarray:
    return compressed_to_rgb(msg) if msgtype.endswith("CompressedImage") else image_to_rgb(msg)


def camera_info_intrinsics(msg) -> intr.Intrinsics:
    return intr.from_k(msg.k, msg.width, msg.height, source="CameraInfo")


def camera_info_topic(image_topic: str) -> str:
    """/cam/image_raw -> /cam/camera_info; /cam/image_raw/compressed -> /cam/camera_info (image_transport)."""
    parts = image_topic.rstrip("/").split("/")
    if parts[-1] in ("compressed", "theora", "compressedDepth"):
        parts = parts[:-1]
    return "/".join(parts[:-1] + ["camera_info"])


def cloud_points(rgb: np.ndarray, depth: np.ndarray, k: intr.Intrinsics) -> np.ndarray:
    """Structured (N,) array x, y, z float32 (optical frame) + rgb packed into a float32 as PCL / RViz do;
    pixels with non-finite or non-positive depth are left out."""
    h, w = depth.shape
    xyz = intr.backproject(depth, k).reshape(-1, 3)
    keep = np.isfinite(xyz).all(1) & (xyz[:, 2] > 0)
    c = np.asarray(rgb, dtype=np.uint32).reshape(-1, 3)[keep]
    pts = np.empty(int(keep.sum()), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])
    pts["x"], pts["y"], pts["z"] = xyz[keep, 0], xyz[keep, 1], xyz[keep, 2]
    pts["rgb"] = ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).astype("<u4").view("<f4")
    return pts


# ------------------------------------------------------------------ one frame

@dataclass
class DepthFrame:
    rgb: np.ndarray           # HxWx3 uint8, the input
    depth: np.ndarray         # HxW float32: metres when fit.ok, else relative [0, 1]
    intrinsics: intr.Intrinsics
    fit: MetricFit | None     # None when no metric mode was asked for
    latency_ms: float         # model + metric fit

    @property
    def units(self) -> str:
        return self.fit.units if self.fit is not None else "relative"

    def color(self) -> np.ndarray:
        return colorize(self.depth)

    def points(self) -> np.ndarray:
        return cloud_points(self.rgb, self.depth, self.intrinsics)


class DepthPipeline:
    """rgb (+ intrinsics, + sparse points) -> DepthFrame. Intrinsics: the frame's own (CameraInfo) first,
    then the fixed ones given (`--intrinsics`), then the assumed field of view."""

    def __init__(self, runtime, intrinsics: intr.Intrinsics | None = None, fov_deg: float = 60.0,
                 scaler: MetricScaler | None = None):
        self.runtime, self.intrinsics, self.fov_deg, self.scaler = runtime, intrinsics, fov_deg, scaler

    def intrinsics_for(self, rgb, k: intr.Intrinsics | None = None) -> intr.Intrinsics:
        h, w = rgb.shape[:2]
        k = k or self.intrinsics
        return k.for_size(w, h) if k is not None else intr.from_fov(self.fov_deg, w, h)

    def __call__(self, rgb: np.ndarray, k: intr.Intrinsics | None = None, frame: int | None = None,
                 points=None) -> DepthFrame:
        t0 = time.perf_counter()
        k = self.intrinsics_for(rgb, k)
        depth = self.runtime.predict(rgb).depth
        fit = None
        if self.scaler is not None:
            depth, fit = self.scaler(depth, k, frame=frame, points=points)
        return DepthFrame(rgb, depth, k, fit, (time.perf_counter() - t0) * 1e3)


# ------------------------------------------------------------------ numpy -> outgoing messages

@dataclass
class MessageTypes:
    """The message classes to build with (rosbags typestore classes or rclpy's), by short name."""
    Header: type
    Time: type
    Image: type
    PointField: type
    PointCloud2: type
    data: object = None   # uint8 array -> what the classes take for uint8[] (rclpy: array.array("B")); None: as is

    @classmethod
    def from_typestore(cls, ts):
        t = ts.types
        return cls(t["std_msgs/msg/Header"], t["builtin_interfaces/msg/Time"], t["sensor_msgs/msg/Image"],
                   t["sensor_msgs/msg/PointField"], t["sensor_msgs/msg/PointCloud2"])


def _data(types: MessageTypes, a: np.ndarray):
    return a if types.data is None else types.data(a)


def header(types: MessageTypes, src_header):
    """A copy of the input's header: same stamp, same frame id."""
    stamp = src_header.stamp
    return types.Header(stamp=types.Time(sec=int(stamp.sec), nanosec=int(stamp.nanosec)),
                        frame_id=str(src_header.frame_id))


def depth_message(types: MessageTypes, hdr, depth: np.ndarray):
    """32FC1, little endian (metres when the frame's metric fit worked, else relative depth)."""
    h, w = depth.shape
    data = np.ascontiguousarray(depth, dtype="<f4").view(np.uint8).ravel()
    return types.Image(header=hdr, height=h, width=w, encoding="32FC1", is_bigendian=0, step=w * 4,
                       data=_data(types, data))


def color_message(types: MessageTypes, hdr, rgb: np.ndarray, encoding: str = "bgr8"):
    h, w = rgb.shape[:2]
    px = rgb[:, :, ::-1] if encoding == "bgr8" else rgb
    return types.Image(header=hdr, height=h, width=w, encoding=encoding, is_bigendian=0, step=w * 3,
                       data=_data(types, np.ascontiguousarray(px, dtype=np.uint8).ravel()))


def cloud_message(types: MessageTypes, hdr, pts: np.ndarray):
    """PointCloud2, unorganised (height 1): x, y, z, rgb FLOAT32 (datatype 7), 16 bytes a point."""
    fields = [types.PointField(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate(("x", "y", "z", "rgb"))]
    return types.PointCloud2(header=hdr, height=1, width=len(pts), fields=fields, is_bigendian=False,
                             point_step=16, row_step=16 * len(pts), data=_data(types, pts.view(np.uint8).ravel()),
                             is_dense=True)


def frame_messages(types: MessageTypes, src_header, df: DepthFrame) -> dict:
    """{"depth", "color", "points"} messages for one DepthFrame, all with the input's stamp and frame id."""
    hdr = header(types, src_header)
    return {"depth": depth_message(types, hdr, df.depth), "color": color_message(types, hdr, df.color()),
            "points": cloud_message(types, hdr, df.points())}


def cloud_to_pixels(xyz: np.ndarray, k: intr.Intrinsics) -> np.ndarray:
    """Sparse range points in the camera's optical frame (N, 3) -> (M, 3) u, v, z for `fit_sparse`
    (points behind the camera dropped)."""
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    xyz = xyz[np.isfinite(xyz).all(1) & (xyz[:, 2] > 0)]
    return np.stack([xyz[:, 0] / xyz[:, 2] * k.fx + k.cx, xyz[:, 1] / xyz[:, 2] * k.fy + k.cy, xyz[:, 2]], 1)


def read_cloud_xyz(msg) -> np.ndarray:
    """PointCloud2 with float32 x, y, z fields -> (N, 3) float64."""
    offs = {f.name: int(f.offset) for f in msg.fields if int(f.datatype) == 7}
    if not all(n in offs for n in "xyz"):
        raise DepthartError("sparse-depth PointCloud2 needs float32 x, y, z fields")
    n, step = int(msg.width) * int(msg.height), int(msg.point_step)
    buf = np.frombuffer(bytes(msg.data), dtype=np.uint8)[:n * step].reshape(n, step)
    end = ">f4" if msg.is_bigendian else "<f4"
    return np.stack([buf[:, offs[c]:offs[c] + 4].copy().view(end).ravel() for c in "xyz"], 1).astype(np.float64)
