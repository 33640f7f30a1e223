"""The robot options of `depthart run` (docs/robotics.md): intrinsics, metric depth, stats, bags, live cameras,
the Foxglove live view.

Kept out of depthart/cli.py so the command only wires options through. numpy only (rosbags for bags).
"""

from __future__ import annotations

import io
import json
import os
import time

import click
import numpy as np

from ..errors import DepthartError
from ..fileio import atomic_write_bytes
from . import intrinsics as intr
from .bag import is_bag, process_bag
from .live import Newest, Stats
from .metric import MetricScaler, sparse_source
from .robot import DepthFrame, DepthPipeline

__all__ = ["RobotOptions", "is_bag", "run_bag"]


class RobotOptions:
    def __init__(self, k, scaler, sparse_topic, fov, stats_path):
        self.k, self.scaler, self.sparse_topic, self.fov, self.stats_path = k, scaler, sparse_topic, fov, stats_path
        self.view = None  # FoxgloveLive with --foxglove

    @classmethod
    def make(cls, intrinsics, camera_height, camera_pitch, sparse_depth, fov, stats_path):
        k = intr.parse(intrinsics) if intrinsics else None
        if camera_height is not None and sparse_depth is not None:
            raise DepthartError("give one of --camera-height and --sparse-depth, not both")
        if camera_pitch is not None and camera_height is None:
            raise DepthartError("--camera-pitch goes with --camera-height")
        sparse = sparse_source(sparse_depth) if sparse_depth else None
        topic = sparse if isinstance(sparse, str) else None
        scaler = None
        if camera_height is not None:
            scaler = MetricScaler(height=camera_height, pitch_deg=camera_pitch)
        elif sparse is not None:
            scaler = MetricScaler(sparse={} if topic else sparse)
        return cls(k, scaler, topic, fov, stats_path)

    def pipeline(self, rt) -> DepthPipeline:
        return DepthPipeline(rt, self.k, self.fov, self.scaler)

    def intrinsics_for(self, rgb):
        h, w = rgb.shape[:2]
        return self.k.for_size(w, h) if self.k is not None else intr.from_fov(self.fov, w, h)

    def image_metric(self, rgb, depth, output_dir, stem, source, frame=None):
        """With a metric mode: write <stem>_metric.json (the fit, units) and, when it worked, <stem>_m.npy
        (float32 metres); returns the metric depth or None. Prints a line when the fit failed."""
        if self.scaler is None:
            return None
        if self.sparse_topic:
            raise DepthartError(f"--sparse-depth {self.sparse_topic}: a topic works with bags only; give a file")
        metres, fit = self.scaler(depth, self.intrinsics_for(rgb), frame=frame)
        rec = {"input": source, **fit.as_dict()}
        atomic_write_bytes(os.path.join(output_dir, f"{stem}_metric.json"), (json.dumps(rec) + "\n").encode())
        if not fit.ok:
            click.echo(f"{source}: no metric scale ({fit.reason}); outputs stay relative", err=True)
            return None
        buf = io.BytesIO()
        np.save(buf, metres.astype(np.float32))
        atomic_write_bytes(os.path.join(output_dir, f"{stem}_m.npy"), buf.getvalue())
        return metres

    def serve(self, host, port, realtime):
        """--foxglove: start the live view's server; prints where to connect."""
        from .foxglove_live import FoxgloveLive

        self.view = FoxgloveLive(host, port, realtime)
        click.echo(f"foxglove: serving on {self.view.url} (Foxglove: Open connection > Foxglove WebSocket)", err=True)

    def publish(self, rgb, depth, metres=None, **kw):
        """A frame to the live view, if there is one (metric depth when the fit worked)."""
        if self.view is not None:
            rgb = np.asarray(rgb, dtype=np.uint8)
            self.view.publish(DepthFrame(rgb, depth if metres is None else metres, self.intrinsics_for(rgb), None, 0.0),
                              log=lambda m: click.echo(m, err=True), **kw)

    def publish_bag_frame(self, df, header, t_ns):
        self.view.publish(df, header.stamp.sec * 1_000_000_000 + header.stamp.nanosec, str(header.frame_id),
                          t=t_ns / 1e9, log=lambda m: click.echo(m, err=True))

    def live(self, frames, source, fps=None):
        return LiveFrames(self, frames, source, fps)

    def close(self):
        if self.view is not None:
            self.view.close()
            click.echo(f"foxglove: served {self.view.frames} frames; server stopped", err=True)
            self.view = None


class LiveFrames:
    """Frames of a video or camera with per-frame stats (and the metric fit); a camera yields only its newest
    frame (stale ones dropped); a video file every frame."""

    def __init__(self, opts: RobotOptions, frames, source, fps=None):
        self.opts, self.source, self.fps = opts, source, fps
        self.newest = Newest(frames) if source.startswith("camera:") else None
        self.frames = frames
        self.stats = Stats(opts.stats_path, source)
        self._captured = self._started = None

    def __iter__(self):
        try:
            if self.newest is not None:
                for frame, captured in self.newest:
                    self._captured, self._started = captured, time.perf_counter()
                    yield frame
            else:
                for frame in self.frames:
                    self._captured = self._started = time.perf_counter()
                    yield frame
        finally:
            self.stats.close()
            if self.stats.frames:
                click.echo(f"{self.source}: {self.stats.frames} frames, last {self.stats.line()}", err=True)

    def step(self, frame, depth, scales=None):
        """Record the frame just processed (`scales`: how many the runtime used); returns the depth to write
        (relative: the colour video)."""
        fit = metres = None
        if self.opts.scaler is not None and not self.opts.sparse_topic:
            metres, fit = self.opts.scaler(depth, self.opts.intrinsics_for(frame), frame=self.stats.frames)
        camera = self.newest is not None
        dropped = self.newest.dropped if camera else 0
        self.stats.add(self._captured, (time.perf_counter() - self._started) * 1e3, dropped, fit, scales=scales)
        self.opts.publish(frame, depth, metres if fit is not None and fit.ok else None, replay=not camera,
                          t=None if camera or not self.fps else (self.stats.frames - 1) / self.fps)
        return depth


def run_bag(rt, opts: RobotOptions, src, output_dir, topic, camera_info_topic, copy_input, overwrite, failed) -> int:
    """One bag -> <output_dir>/<name>_depth (an MCAP rosbag2 folder); 1 when written, errors into `failed`."""
    name = os.path.splitext(os.path.basename(os.path.normpath(src)))[0]
    out = os.path.join(output_dir, f"{name}_depth")
    if os.path.exists(out):
        if not overwrite:
            failed.append(f"{src}: {out} exists; pass --overwrite")
            return 0
        import shutil

        shutil.rmtree(out)
    stats = Stats(opts.stats_path, src)
    try:
        rep = process_bag(src, out, opts.pipeline(rt), topic, camera_info_topic, opts.sparse_topic, copy_input,
                          on_frame=lambda e: stats.add(time.perf_counter() - e["latency_ms"] / 1e3, e["latency_ms"],
                                                       0, None, scales=rt.last_scales) and None,
                          on_depth=opts.publish_bag_frame if opts.view is not None else None)
    except DepthartError as e:
        failed.append(str(e))
        return 0
    finally:
        stats.close()
    failed.extend(rep.errors)
    metric = f", metric scale in {rep.metric} of {rep.frames}" if opts.scaler is not None else ""
    click.echo(f"{src}: {rep.frames} frames -> {out}{metric}", err=True)
    fits = "".join(json.dumps(e) + "\n" for e in rep.fits)
    atomic_write_bytes(os.path.join(output_dir, f"{name}_depth.jsonl"), fits.encode())
    return 1
