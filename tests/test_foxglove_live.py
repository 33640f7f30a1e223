"""`depthart run ... --foxglove` (runtime/foxglove_live.py): a bag and a video served on loopback to a Foxglove
WebSocket client that subscribes to every channel; channel schemas, one message per frame per topic, the server
stopping by itself at the end of the input. Bounded: the run and the client give up after 60 s."""

import json
import re
import socket
import struct
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
from click.testing import CliRunner

from depthart.cli import main
from test_bag import _image, make_bag

websockets_sync = __import__("pytest").importorskip("websockets.sync.client")

SCHEMAS = {"/camera/image": "foxglove.RawImage", "/depth/color": "foxglove.RawImage",
           "/depth/image": "foxglove.RawImage", "/depth/points": "foxglove.PointCloud"}
PROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]  # the SDK 0.30 server speaks the first
LIMIT_S = 60


def _video(path, n):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (40, 32))
    rng = np.random.default_rng(1)
    for _ in range(n):
        w.write((rng.random((32, 40, 3)) * 255).astype(np.uint8))
    w.release()


def test_live_view_serves_every_frame_and_stops(tiny_bundle, tmp_path):
    make_bag(tmp_path / "rec", "mcap", [_image(i, "rgb8") for i in range(3)])
    _video(tmp_path / "clip.mp4", 2)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "depthart.cli", "run", str(tiny_bundle["dir"]), str(tmp_path / "rec"),
                             str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "out"), "--foxglove", "--port", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines, url = [], None
    guard = threading.Timer(LIMIT_S, proc.kill)  # whatever hangs, the run ends (and with it the client)
    guard.start()
    try:
        for line in proc.stderr:  # the server prints its address before the first frame
            lines.append(line)
            m = re.search(r"serving on (ws://127\.0\.0\.1:\d+)", line)
            if m:
                url = m.group(1)
                break
        assert url, "".join(lines)
        rest = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        rest.start()

        channels, counts, payloads = {}, {}, {}
        with websockets_sync.connect(url, subprotocols=PROTOCOLS, open_timeout=10) as ws:
            assert ws.subprotocol in PROTOCOLS
            while len(channels) < len(SCHEMAS):
                msg = json.loads(ws.recv(timeout=10))
                if msg["op"] == "advertise":
                    channels.update({c["id"]: c for c in msg["channels"]})
            assert {c["topic"]: c["schemaName"] for c in channels.values()} == SCHEMAS
            assert {c["encoding"] for c in channels.values()} == {"protobuf"}
            subs = {i + 1: c["topic"] for i, c in enumerate(channels.values())}
            ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": s, "channelId": c["id"]} for s, c in
                                                                     zip(subs, channels.values())]}))
            try:
                while time.monotonic() - t0 < LIMIT_S:
                    msg = ws.recv(timeout=LIMIT_S)
                    if isinstance(msg, bytes) and msg[0] == 0x01:  # message data: opcode, sub id, time, payload
                        sub, _ = struct.unpack_from("<IQ", msg, 1)
                        counts[subs[sub]] = counts.get(subs[sub], 0) + 1
                        payloads[subs[sub]] = msg[13:]
            except Exception as e:  # the server closing the connection is the end of the stream
                assert type(e).__name__.startswith("ConnectionClosed"), repr(e)
        assert proc.wait(timeout=max(1, LIMIT_S - (time.monotonic() - t0))) == 0, "".join(lines)
    finally:
        guard.cancel()
        proc.kill()
    rest.join(5)
    assert counts == {t: 5 for t in SCHEMAS}, (counts, "".join(lines))  # 3 bag frames + 2 video frames
    assert b"32FC1" in payloads["/depth/image"] and b"rgb8" in payloads["/depth/color"]
    assert len(payloads["/depth/points"]) > 16 * 32 * 40 // 2  # about one point per pixel, 16 bytes each
    assert "foxglove: served 5 frames; server stopped" in "".join(lines)
    assert (tmp_path / "out" / "rec_depth").is_dir() and (tmp_path / "out" / "clip_depth.mp4").exists()


def test_port_in_use_and_missing_sdk(tiny_bundle, tmp_path, monkeypatch, sample_photo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = CliRunner().invoke(main, ["run", str(tiny_bundle["dir"]), str(sample_photo), "-o",
                                      str(tmp_path / "out"), "--foxglove", "--port", str(s.getsockname()[1])])
    assert r.exit_code == 1 and "--foxglove: cannot serve on 127.0.0.1:" in r.output, r.output
    assert "Traceback" not in r.output
    monkeypatch.setitem(sys.modules, "foxglove", None)  # import foxglove -> ImportError
    r = CliRunner().invoke(main, ["run", str(tiny_bundle["dir"]), str(sample_photo), "-o",
                                  str(tmp_path / "out"), "--foxglove"])
    assert r.exit_code == 1 and 'needs foxglove-sdk: pip install "depthart[robot]"' in r.output, r.output
