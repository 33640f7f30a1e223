"""ROS 2 bags in and out without a ROS install (`rosbags`, the `robot` extra): `depthart run BAG --topic T`.

Reads sensor_msgs/Image or CompressedImage on the image topic (and CameraInfo on its camera_info sibling,
or `--camera-info-topic`), runs a DepthPipeline (runtime/robot.py) on every frame and writes an MCAP
ROS 2 bag with, for each input frame, at the input's bag time and with its header stamp and frame id:
/depth/image (32FC1), /depth/color (bgr8), /depth/points (PointCloud2 x y z rgb), and with
`copy_input` the input topics unchanged. The bag is written in a temporary folder next to the
destination and renamed into place when complete. A message that cannot be decoded is reported and
skipped; the others still go out.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DepthartError
from . import robot

BAG_SUFFIXES = (".mcap", ".db3")


def rosbags_modules():
    try:
        import rosbags.highlevel  # noqa: F401
        import rosbags.rosbag2  # noqa: F401
        import rosbags.typesys  # noqa: F401
    except ImportError:
        raise DepthartError('ROS 2 bags need rosbags: pip install "depthart[robot]"') from None
    return rosbags


def is_bag(path: str) -> bool:
    """A rosbag2 folder (metadata.yaml inside) or a single .mcap / .db3 file."""
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "metadata.yaml"))
    return path.lower().endswith(BAG_SUFFIXES)


@dataclass
class BagReport:
    frames: int = 0
    metric: int = 0
    errors: list = field(default_factory=list)
    fits: list = field(default_factory=list)   # per frame: {"stamp", "method", "scale", "units", ...}


def _nearest_before(items, t):
    """The (time, value) at or before t, else the first one; None if items is empty."""
    best = None
    for ti, v in items:
        if ti <= t:
            best = v
        elif best is None:
            return v
        else:
            break
    return best


@contextlib.contextmanager
def _reader(path):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    try:
        reader = AnyReader([Path(path)], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
        reader.open()
    except Exception as e:  # rosbags raises its own types for every kind of unreadable bag
        raise DepthartError(f"{path}: not a readable ROS 2 bag ({e})") from None
    try:
        yield reader
    finally:
        reader.close()


def process_bag(path: str, out_path: str, pipeline: robot.DepthPipeline, topic: str | None = None,
                camera_info_topic: str | None = None, sparse_topic: str | None = None, copy_input: bool = False,
                on_frame=None, on_depth=None) -> BagReport:
    """Replay the bag at `path` through `pipeline` into a new MCAP bag at `out_path` (module docstring).
    on_frame(entry) after each frame (its JSON line); on_depth(DepthFrame, input header, bag time ns) too."""
    rosbags_modules()
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    if os.path.exists(out_path):
        raise DepthartError(f"{out_path} exists; pass --overwrite to replace it")
    report = BagReport()
    with _reader(path) as reader:
        images = {c.topic: c.msgtype for c in reader.connections if c.msgtype in robot.IMAGE_TYPES}
        if topic is None:
            if len(images) != 1:
                raise DepthartError(f"{path}: give --topic; image topics here: {', '.join(sorted(images)) or 'none'}")
            topic = next(iter(images))
        if topic not in images:
            raise DepthartError(f"{path}: no image topic {topic} (sensor_msgs/Image or CompressedImage); "
                                f"image topics here: {', '.join(sorted(images)) or 'none'}")
        info_topic = camera_info_topic or robot.camera_info_topic(topic)
        conns = [c for c in reader.connections if c.topic == topic]
        info = [c for c in reader.connections if c.topic == info_topic and c.msgtype.endswith("CameraInfo")]
        sparse = [c for c in reader.connections if sparse_topic and c.topic == sparse_topic]
        if sparse_topic and not sparse:
            raise DepthartError(f"{path}: no sparse-depth topic {sparse_topic}")
        # camera info and sparse clouds first (small), then one pass over the images in time order
        infos, clouds = [], []
        for c, t, raw in reader.messages(connections=info + sparse):
            try:
                msg = reader.deserialize(raw, c.msgtype)
                if c in info:
                    infos.append((t, robot.camera_info_intrinsics(msg)))
                else:
                    clouds.append((t, robot.read_cloud_xyz(msg)))
            except DepthartError as e:
                report.errors.append(f"{c.topic} at {t}: {e}")
            except Exception as e:  # a corrupt serialized message
                report.errors.append(f"{c.topic} at {t}: cannot decode ({type(e).__name__}: {e})")

        ts = get_typestore(Stores.ROS2_HUMBLE)
        types = robot.MessageTypes.from_typestore(ts)
        folder = os.path.dirname(os.path.abspath(out_path))
        os.makedirs(folder, exist_ok=True)
        tmp_parent = tempfile.mkdtemp(dir=folder, prefix=f".{os.path.basename(out_path)}.")
        tmp = os.path.join(tmp_parent, "bag")
        try:
            with Writer(tmp, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
                outs = {key: writer.add_connection(name, "sensor_msgs/msg/PointCloud2" if key == "points"
                                                   else "sensor_msgs/msg/Image", typestore=ts)
                        for key, name in robot.OUTPUT_TOPICS.items()}
                copies = {}
                if copy_input:
                    for c in conns + info:
                        copies[c.id] = writer.add_connection(c.topic, c.msgtype, typestore=ts)
                    for c, t, raw in reader.messages(connections=info):
                        writer.write(copies[c.id], t, raw)
                for c, t, raw in reader.messages(connections=conns):
                    if copy_input:
                        writer.write(copies[c.id], t, raw)
                    try:
                        msg = reader.deserialize(raw, c.msgtype)
                        rgb = robot.to_rgb(msg, c.msgtype)
                    except DepthartError as e:
                        report.errors.append(f"{topic} at {t}: {e}")
                        continue
                    except Exception as e:
                        report.errors.append(f"{topic} at {t}: cannot decode ({type(e).__name__}: {e})")
                        continue
                    k = _nearest_before(infos, t)
                    pts = None
                    if clouds:
                        cloud = _nearest_before(clouds, t)
                        pts = robot.cloud_to_pixels(cloud, pipeline.intrinsics_for(rgb, k))
                    elif sparse_topic:
                        pts = np.zeros((0, 3))
                    df = pipeline(rgb, k, frame=report.frames, points=pts)
                    for key, m in robot.frame_messages(types, msg.header, df).items():
                        writer.write(outs[key], t, ts.serialize_cdr(m, m.__msgtype__))
                    if on_depth is not None:
                        on_depth(df, msg.header, t)
                    stamp = msg.header.stamp
                    entry = {"frame": report.frames, "stamp": f"{stamp.sec}.{stamp.nanosec:09d}", "units": df.units,
                             "latency_ms": round(df.latency_ms, 2)}
                    if df.fit is not None:
                        entry.update(df.fit.as_dict())
                        report.metric += df.fit.ok
                    report.fits.append(entry)
                    report.frames += 1
                    if on_frame is not None:
                        on_frame(entry)
            if not report.frames:
                raise DepthartError(f"{path}: no frame on {topic} could be decoded"
                                    + (f" ({report.errors[0]})" if report.errors else ""))
            os.replace(tmp, out_path)
        finally:
            shutil.rmtree(tmp_parent, ignore_errors=True)
    return report


def read_bag(path: str) -> dict:
    """{topic: [(bag time, message, or None where it cannot be decoded)]} of a whole bag: for tests and
    checks (small bags only)."""
    rosbags_modules()
    out = {}
    with _reader(path) as reader:
        for c, t, raw in reader.messages():
            try:
                msg = reader.deserialize(raw, c.msgtype)
            except Exception:  # rosbags' own error types for a corrupt message
                msg = None
            out.setdefault(c.topic, []).append((t, msg))
    return out
