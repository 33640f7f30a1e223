"""ROS 2 bags in and out (runtime/bag.py, runtime/robot.py): bags built with rosbags itself, both storage
formats, every supported encoding, a corrupt message, a missing topic; the output read back."""

import io

import numpy as np
import pytest
from PIL import Image

from depthart.errors import DepthartError
from depthart.runtime import robot
from depthart.runtime.bag import process_bag, read_bag
from depthart.runtime.metric import MetricScaler

rosbag2 = pytest.importorskip("rosbags.rosbag2")
from rosbags.typesys import Stores, get_typestore  # noqa: E402

TS = get_typestore(Stores.ROS2_HUMBLE)
T = TS.types
W, H = 32, 24


def _hdr(i):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=100 + i, nanosec=7), frame_id="cam_optical")


def _rgb(i):
    rng = np.random.default_rng(i)
    return (rng.random((H, W, 3)) * 255).astype(np.uint8)


def _image(i, enc):
    rgb = _rgb(i)
    if enc == "bgr8":
        px = rgb[:, :, ::-1]
    elif enc == "mono8":
        px = rgb[:, :, :1]
    elif enc == "yuv422":  # uyvy, gray (u = v = 128)
        y = rgb[:, :, 0]
        px = np.stack([np.full_like(y[:, ::2], 128), y[:, ::2], np.full_like(y[:, ::2], 128), y[:, 1::2]], -1)
    else:
        px = rgb
    data = np.ascontiguousarray(px).ravel()
    return T["sensor_msgs/msg/Image"](header=_hdr(i), height=H, width=W, encoding=enc, is_bigendian=0,
                                      step=data.size // H, data=data)


def _compressed(i, fmt):
    buf = io.BytesIO()
    Image.fromarray(_rgb(i)).save(buf, format=fmt.upper())
    return T["sensor_msgs/msg/CompressedImage"](header=_hdr(i), format=fmt,
                                                data=np.frombuffer(buf.getvalue(), np.uint8))


def _info(i):
    k = [30.0, 0, 16.0, 0, 30.0, 12.0, 0, 0, 1]
    return T["sensor_msgs/msg/CameraInfo"](
        header=_hdr(i), height=H, width=W, distortion_model="plumb_bob", d=np.zeros(5), k=np.array(k),
        r=np.eye(3).ravel(), p=np.zeros(12), binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def make_bag(path, storage, msgs, topic="/camera/image_raw", info=True, corrupt_at=None):
    plugin = rosbag2.StoragePlugin.MCAP if storage == "mcap" else rosbag2.StoragePlugin.SQLITE3
    with rosbag2.Writer(path, version=9, storage_plugin=plugin) as w:
        c = w.add_connection(topic, msgs[0].__msgtype__, typestore=TS)
        ci = w.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo", typestore=TS) if info else None
        for i, m in enumerate(msgs):
            t = (100 + i) * 10**9 + 7
            if ci is not None:
                w.write(ci, t, TS.serialize_cdr(_info(i), "sensor_msgs/msg/CameraInfo"))
            raw = bytes(TS.serialize_cdr(m, m.__msgtype__))
            w.write(c, t, raw[:20] if i == corrupt_at else raw)


class FlatRuntime:
    """A stand-in where the model does not matter (encodings, plumbing): depth from the image's red channel."""

    def predict(self, rgb):
        class R:
            depth = (np.asarray(rgb)[:, :, 0].astype(np.float32) + 1) / 256
        return R()


@pytest.mark.parametrize("storage,enc", [("mcap", "rgb8"), ("sqlite3", "bgr8"), ("mcap", "mono8"),
                                         ("sqlite3", "yuv422"), ("mcap", "jpeg"), ("sqlite3", "png")])
def test_encodings_and_storage(tmp_path, storage, enc):
    msgs = [_compressed(i, enc) if enc in ("jpeg", "png") else _image(i, enc) for i in range(2)]
    make_bag(tmp_path / "in", storage, msgs)
    rep = process_bag(str(tmp_path / "in"), str(tmp_path / "out"), robot.DepthPipeline(FlatRuntime()))
    assert rep.frames == 2 and not rep.errors
    got = read_bag(str(tmp_path / "out"))
    d = got["/depth/image"][1][1]
    assert d.encoding == "32FC1" and (d.width, d.height) == (W, H)
    depth = np.frombuffer(bytes(d.data), "<f4").reshape(H, W)
    if enc in ("rgb8", "bgr8", "png"):  # lossless: the red channel comes back exactly
        assert np.allclose(depth, (_rgb(1)[:, :, 0] + 1) / 256)


def test_replay_real_bundle_metric_and_copy(tiny_bundle, tmp_path):
    from depthart.runtime import DepthRuntime

    make_bag(tmp_path / "in", "mcap", [_image(i, "rgb8") for i in range(3)], corrupt_at=1)
    rt = DepthRuntime(tiny_bundle["dir"])
    sparse = {None: np.array([[4.5, 20.5, 2.0], [10.5, 18.5, 2.5], [20.5, 15.5, 3.0], [28.5, 22.5, 2.2],
                              [16.5, 12.5, 4.0], [2.5, 2.5, 5.0]])}
    pipe = robot.DepthPipeline(rt, scaler=MetricScaler(sparse=sparse))
    rep = process_bag(str(tmp_path / "in"), str(tmp_path / "out"), pipe, topic="/camera/image_raw", copy_input=True)
    assert rep.frames == 2 and len(rep.errors) == 1 and "at 101000000007" in rep.errors[0]
    got = read_bag(str(tmp_path / "out"))
    assert len(got["/camera/image_raw"]) == 3 and len(got["/camera/camera_info"]) == 3  # copied, corrupt one too
    for key in ("/depth/image", "/depth/color", "/depth/points"):
        stamps = [(t, m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) for t, m in got[key]]
        assert stamps == [(100 * 10**9 + 7, 100, 7, "cam_optical"), (102 * 10**9 + 7, 102, 7, "cam_optical")]
    assert got["/depth/color"][0][1].encoding == "bgr8"
    pc = got["/depth/points"][0][1]
    assert [f.name for f in pc.fields] == ["x", "y", "z", "rgb"] and pc.point_step == 16
    xyz = np.frombuffer(bytes(pc.data), "<f4").reshape(-1, 4)[:, :3]
    want = rt.predict(_rgb(0)).depth
    for e in rep.fits:
        assert e["method"] == "sparse" and ((e["units"] == "m") == (e["scale"] is not None))
    if rep.fits[0]["scale"] is not None:  # metres in the depth image and the cloud; CameraInfo intrinsics
        depth = np.frombuffer(bytes(got["/depth/image"][0][1].data), "<f4").reshape(H, W)
        assert np.allclose(depth, want * rep.fits[0]["scale"], rtol=1e-5)
        assert np.isclose(xyz[0, 0], (0.5 - 16) / 30 * depth[0, 0], rtol=1e-4)


def test_bad_bags_fail_clearly(tmp_path):
    make_bag(tmp_path / "in", "mcap", [_image(0, "rgb8")], topic="/other/image")
    pipe = robot.DepthPipeline(FlatRuntime())
    with pytest.raises(DepthartError, match="no image topic /camera/image_raw.*image topics here: /other/image"):
        process_bag(str(tmp_path / "in"), str(tmp_path / "out"), pipe, topic="/camera/image_raw")
    assert not (tmp_path / "out").exists()
    make_bag(tmp_path / "bad", "sqlite3", [_image(0, "rgb8")], corrupt_at=0)
    with pytest.raises(DepthartError, match="no frame on /camera/image_raw could be decoded"):
        process_bag(str(tmp_path / "bad"), str(tmp_path / "out"), pipe)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # temp folder gone
    with pytest.raises(DepthartError, match="not a readable ROS 2 bag"):
        (tmp_path / "junk.mcap").write_bytes(b"nope")
        process_bag(str(tmp_path / "junk.mcap"), str(tmp_path / "out"), pipe)
    m = _image(0, "rgb8")
    m.encoding = "32FC1"
    with pytest.raises(DepthartError, match="not supported"):
        robot.image_to_rgb(m)
