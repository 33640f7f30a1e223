"""Temporal stability of depth on video: a cheap stabiliser and the flicker measure (docs/benchmarks.md).

Each frame's relative depth comes with its own scale and offset, and the colour video stretches every
frame's own min..max to the palette, so a slow pan flickers. `DepthStabilizer` aligns each frame to the
previous output with a least-squares scale and shift (fitted on a coarse grid of pixels: about 1k points),
optionally blends it with the previous output (exponential smoothing), and keeps one colour range that
follows the output slowly instead of jumping per frame. numpy only: the fit and the colour range use the
grid, so the per-frame cost is a few elementwise passes (0.7-3 ms at 320x240, 9-16 ms at 1080p on a loaded
2-core machine: docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np


class DepthStabilizer:
    """Stateful: call it on the depth maps of consecutive frames, in order.

    Args:
        smooth: weight of the previous output in each new one, in [0, 1). 0 = scale/shift alignment and
            a steady colour range only; 0.5 halves frame-to-frame noise at the cost of some lag on motion.
        range_rate: how fast the colour range follows the output's 1st..99th percentiles (per frame).
        grid: pixels per side of the grid the scale and shift are fitted on.
    """

    def __init__(self, smooth: float = 0.0, range_rate: float = 0.1, grid: int = 32):
        if not 0.0 <= smooth < 1.0:
            raise ValueError(f"smooth must be in [0, 1), got {smooth}")
        self.smooth, self.range_rate, self.grid = smooth, range_rate, grid
        self.prev = None
        self.lo = self.hi = None

    def reset(self):
        self.prev, self.lo, self.hi = None, None, None

    def _sample(self, d: np.ndarray) -> np.ndarray:
        h, w = d.shape
        ys = np.linspace(0, h - 1, min(self.grid, h)).astype(int)
        xs = np.linspace(0, w - 1, min(self.grid, w)).astype(int)
        return d[np.ix_(ys, xs)].ravel()

    def __call__(self, depth: np.ndarray) -> np.ndarray:
        """HxW float depth -> the stabilised HxW float32 depth (in the first frame's scale)."""
        d = np.asarray(depth, dtype=np.float32)
        if self.prev is None or self.prev.shape != d.shape:
            out = d
        else:
            x, y = self._sample(d).astype(np.float64), self._sample(self.prev).astype(np.float64)
            ok = np.isfinite(x) & np.isfinite(y)
            a, b = _fit(x[ok], y[ok])
            if x[ok].size > 8:  # refit without the points the first fit misses by far (stray pixels, moved edges)
                r = np.abs(a * x + b - y)
                mad = np.median(r[ok])
                keep = ok & (r <= 3 * mad + 1e-9)
                if keep.sum() > 8:
                    a, b = _fit(x[keep], y[keep])
            out = (a * d + b).astype(np.float32)
            if self.smooth:
                out = (self.smooth * self.prev + (1.0 - self.smooth) * out).astype(np.float32)
        self.prev = out
        sample = self._sample(out)  # the colour range from the grid too: a full-frame percentile costs ~50 ms at 1080p
        finite = sample[np.isfinite(sample)]
        if finite.size:
            lo, hi = np.percentile(finite, (1, 99))
            if self.lo is None:
                self.lo, self.hi = float(lo), float(hi)
            else:
                r = self.range_rate
                self.lo, self.hi = (1 - r) * self.lo + r * float(lo), (1 - r) * self.hi + r * float(hi)
        return out

    @property
    def color_range(self) -> tuple[float | None, float | None]:
        """(lo, hi) for colouring the last output (None, None before the first frame)."""
        return self.lo, self.hi


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares scale and shift with a * x + b ~ y; a > 0 (near stays near)."""
    if x.size < 2 or x.var() <= 1e-12:
        return 1.0, float(y.mean() - x.mean()) if x.size else 0.0
    a = float(((x - x.mean()) * (y - y.mean())).mean() / x.var())
    if a <= 0:  # near and far swapped relative to the last frame: keep the frame's own spread
        a = float(y.std() / x.std())
    return a, float(y.mean() - a * x.mean())


def frame_change(frames) -> np.ndarray:
    """Mean absolute change between consecutive frames, per pair, in the frames' units (0-255 for uint8
    video): the flicker measure of docs/benchmarks.md, applied alike to the input and the depth video."""
    out, prev = [], None
    for f in frames:
        f = np.asarray(f, dtype=np.float32)
        if prev is not None:
            out.append(float(np.abs(f - prev).mean()))
        prev = f
    return np.asarray(out, dtype=np.float64)
