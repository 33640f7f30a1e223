"""Live view in Foxglove: `depthart run ... --foxglove [--port N]` serves every processed frame over the Foxglove
WebSocket protocol (`foxglove-sdk`, the `robot` extra), so Foxglove Studio shows it as it is made.

Topics, one message per frame each, all with the frame's stamp and frame id:
  /camera/image  foxglove.RawImage rgb8, the input
  /depth/color   foxglove.RawImage rgb8, the colour depth (the same colouring as the files)
  /depth/image   foxglove.RawImage 32FC1: metres when the frame's metric fit worked, else relative depth [0, 1]
  /depth/points  foxglove.PointCloud x, y, z float32 (optical frame) + rgb packed in a uint32, 16 bytes a point

Foxglove keeps nothing for late clients, so a replay (video file, bag, images) waits for a client before its
first frame: until every topic has a subscriber, or one has had a subscriber for a second (a Studio layout
subscribes to what its panels show). A camera does not wait. `realtime` paces a replay at its own clock (video
frame rate, bag times) instead of as fast as the model goes. Conversions are runtime/robot.py's (DepthFrame).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from ..errors import DepthartError
from .robot import DepthFrame

TOPICS = {"input": "/camera/image", "color": "/depth/color", "depth": "/depth/image", "points": "/depth/points"}
SETTLE_S = 1.0    # how long a partial set of subscriptions waits for the rest
DRAIN_S = 0.2     # at the end, time for the server's per-client queues to go out before it stops


def _foxglove():
    try:
        import foxglove
        import foxglove.channels
    except ImportError:
        raise DepthartError('--foxglove needs foxglove-sdk: pip install "depthart[robot]"') from None
    try:
        import foxglove.messages as messages
    except ImportError:  # foxglove-sdk before messages replaced schemas
        import foxglove.schemas as messages
    return foxglove, messages


class _Subscriptions:
    """ServerListener: which channels have a subscriber, for the wait before a replay's first frame."""

    def __init__(self):
        self.cond = threading.Condition()
        self.count = {}         # channel id -> subscribers
        self.first = None       # perf_counter of the first subscription

    def on_subscribe(self, client, channel):
        with self.cond:
            self.count[channel.id] = self.count.get(channel.id, 0) + 1
            self.first = self.first or time.perf_counter()
            self.cond.notify_all()

    def on_unsubscribe(self, client, channel):
        with self.cond:
            self.count[channel.id] = max(self.count.get(channel.id, 0) - 1, 0)
            self.cond.notify_all()

    def subscribed(self) -> int:
        return sum(1 for n in self.count.values() if n)


class FoxgloveLive:
    """A Foxglove WebSocket server with the four channels; `publish(df)` per frame, `close()` at the end."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, realtime: bool = False):
        fg, self._msgs = _foxglove()
        from foxglove.channels import PointCloudChannel, RawImageChannel

        self.context = fg.Context()  # its own channels, not the process-wide default ones
        self.channels = {k: (PointCloudChannel if k == "points" else RawImageChannel)(t, context=self.context)
                         for k, t in TOPICS.items()}
        self.subs = _Subscriptions()
        try:
            self.server = fg.start_server(name="depthart", host=host, port=port, server_listener=self.subs,
                                          context=self.context)
        except RuntimeError as e:  # FoxgloveError: Failed to bind port: Address already in use
            raise DepthartError(f"--foxglove: cannot serve on {host}:{port} ({str(e).split(': ', 1)[-1]})") from None
        self.host, self.port, self.realtime = host, self.server.port, realtime
        self.frames, self._waited, self._clock = 0, False, None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def wait_for_client(self, log=None):
        """Block until every topic has a subscriber, or some topic has had one for SETTLE_S (Ctrl-C stops)."""
        s = self.subs
        with s.cond:
            if log is not None and not s.subscribed():
                log(f"foxglove: waiting for a client on {self.url} (Ctrl-C to stop)")
            while True:
                n = s.subscribed()
                if n == len(self.channels) or (n and time.perf_counter() - s.first >= SETTLE_S):
                    return
                s.cond.wait(0.1)  # short waits so Ctrl-C gets through

    def publish(self, df: DepthFrame, stamp_ns: int | None = None, frame_id: str = "camera",
                replay: bool = True, t: float | None = None, log=None):
        """One frame on every topic. replay: wait for a client before the first frame; t: the input's clock in
        seconds (video: frame / fps, bag: its time), for --realtime pacing."""
        if replay and not self._waited:
            self.wait_for_client(log)
            self._waited = True
        if self.realtime and t is not None:
            if self._clock is None:
                self._clock = (time.perf_counter(), t)
            ahead = (t - self._clock[1]) - (time.perf_counter() - self._clock[0])
            if ahead > 0:
                time.sleep(ahead)
        m = self._msgs
        stamp_ns = time.time_ns() if stamp_ns is None else int(stamp_ns)
        ts = m.Timestamp(stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)

        def image(a, encoding, bpp):
            h, w = a.shape[:2]
            return m.RawImage(timestamp=ts, frame_id=frame_id, width=w, height=h, encoding=encoding, step=w * bpp,
                              data=np.ascontiguousarray(a).tobytes())

        pts = df.points()
        f32, u32 = m.PackedElementFieldNumericType.Float32, m.PackedElementFieldNumericType.Uint32
        fields = [m.PackedElementField(name=n, offset=4 * i, type=f32 if n != "rgb" else u32)
                  for i, n in enumerate(("x", "y", "z", "rgb"))]
        cloud = m.PointCloud(timestamp=ts, frame_id=frame_id, point_stride=16, fields=fields, data=pts.tobytes(),
                             pose=m.Pose(position=m.Vector3(x=0, y=0, z=0),
                                         orientation=m.Quaternion(x=0, y=0, z=0, w=1)))
        ch = self.channels
        ch["input"].log(image(np.asarray(df.rgb, dtype=np.uint8), "rgb8", 3), log_time=stamp_ns)
        ch["color"].log(image(df.color(), "rgb8", 3), log_time=stamp_ns)
        ch["depth"].log(image(np.asarray(df.depth, dtype="<f4"), "32FC1", 4), log_time=stamp_ns)
        ch["points"].log(cloud, log_time=stamp_ns)
        self.frames += 1

    def close(self):
        """Stop the server (after DRAIN_S when a client is there, so the last frame reaches it). Idempotent."""
        if self.server is None:
            return
        if self.subs.subscribed():
            time.sleep(DRAIN_S)
        self.server.stop()
        for c in self.channels.values():
            c.close()
        self.server = None
