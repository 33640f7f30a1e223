"""Keeping up with a live camera: always the newest frame, stale ones dropped, latency / fps / drops measured.

`Newest(frames)` reads a frame iterator (a camera) on its own thread and keeps only the latest frame; the
consumer gets that one, and every frame that arrived in between counts as dropped. `Stats` times each
processed frame and writes one JSON line per frame (`--stats FILE`): frame number, capture-to-output
latency, model latency, fps over the last second, drops so far, and the metric fit when there is one.
Standard library + numpy.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque


class Newest:
    """Iterate over the newest frame of `frames`, read on a background thread; yields (frame, capture time)."""

    def __init__(self, frames):
        self._frames, self._cond = frames, threading.Condition()
        self._item, self._done, self._error = None, False, None
        self.read, self.dropped = 0, 0
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self):
        try:
            for f in self._frames:
                with self._cond:
                    if self._item is not None:
                        self.dropped += 1  # the consumer never saw it
                    self._item = (f, time.perf_counter())
                    self.read += 1
                    self._cond.notify()
        except BaseException as e:  # handed to the consumer
            self._error = e
        finally:
            with self._cond:
                self._done = True
                self._cond.notify()

    def __iter__(self):
        while True:
            with self._cond:
                while self._item is None and not self._done:
                    self._cond.wait()
                item, self._item = self._item, None
                if item is None:
                    if self._error is not None:
                        raise self._error
                    return
            yield item


class Stats:
    """Per-frame timing; `line()` for the progress bar, JSON lines to `path` when given."""

    def __init__(self, path: str | None = None, source: str = ""):
        self.source, self.frames = source, 0
        self._times = deque()
        self._file = open(path, "a", buffering=1) if path else None
        self.last = {}

    def add(self, captured: float, model_ms: float, dropped: int = 0, fit=None, scales: int | None = None) -> dict:
        now = time.perf_counter()
        self._times.append(now)
        while self._times and now - self._times[0] > 1.0:
            self._times.popleft()
        self.frames += 1
        rec = {"source": self.source, "frame": self.frames - 1, "latency_ms": round((now - captured) * 1e3, 2),
               "model_ms": round(model_ms, 2), "fps": float(len(self._times)), "dropped": dropped}
        if scales is not None:
            rec["scales"] = scales  # how many scales the depth came from (fewer with --max-scale/--budget-ms)
        if fit is not None:
            rec.update(fit.as_dict())
        if self._file:
            self._file.write(json.dumps(rec) + "\n")
        self.last = rec
        return rec

    def line(self) -> str:
        r = self.last
        return f"{r.get('latency_ms', 0):.0f} ms, {r.get('fps', 0):.0f} fps, {r.get('dropped', 0)} dropped" if r else ""

    def close(self):
        if self._file:
            self._file.close()
            self._file = None
