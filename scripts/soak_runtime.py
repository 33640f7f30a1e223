"""Soak test of the runtime: N consecutive frames, resident memory sampled as it goes.

    python scripts/soak_runtime.py BUNDLE [--frames 1000] [--image PATH]

Prints RSS after warm-up and at the end, the largest growth, and latency percentiles. A leak shows up
as growth that keeps rising with the frame count; the runtime allocates all buffers once per batch size.
"""

import argparse
import time

import numpy as np

from depthart.runtime import DepthRuntime
from depthart.runtime.bench import rss_mb


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--image", default=None)
    args = ap.parse_args()
    rt = DepthRuntime(args.bundle)
    rng = np.random.default_rng(0)
    frames = [args.image] if args.image else [(rng.random((240, 320, 3)) * 255).astype(np.uint8) for _ in range(4)]
    for f in frames:  # warm-up: one plan (batch 1) and every code path
        rt.predict(f)
    start = rss_mb()[0]
    samples, times = [], []
    for i in range(args.frames):
        t0 = time.perf_counter()
        rt.predict(frames[i % len(frames)])
        times.append(time.perf_counter() - t0)
        if i % max(args.frames // 20, 1) == 0:
            samples.append(rss_mb()[0])
    end, peak = rss_mb()
    print(f"bundle {args.bundle}: {args.frames} frames, {rt.describe()}")
    print(f"RSS after warm-up {start:.1f} MB, at the end {end:.1f} MB (growth {end - start:+.1f} MB), "
          f"max sampled {max(samples):.1f} MB, process peak {peak:.1f} MB")
    print(f"latency p50 {np.percentile(times, 50) * 1e3:.1f} ms, p90 {np.percentile(times, 90) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
