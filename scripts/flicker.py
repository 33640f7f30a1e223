"""Flicker of `depthart run` on video, with and without --stabilize (the figures in docs/benchmarks.md).

Makes a slow pan over a real photo (the Middlebury "Motorcycle" shipped with scikit-image, else
samples/coffee.jpg): a 320x240 window moving `--step` px per frame. Runs `depthart run` on it as a user
would, reads the colour depth videos back and reports the mean absolute change between consecutive
frames (0-255, all channels) of the input and of each depth video; also the stabiliser's cost per frame.

    python scripts/flicker.py --bundle bundle/ -o runs/flicker      # or no --bundle: export the default
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from depthart.runtime.stabilize import DepthStabilizer, frame_change


def pan_video(path, photo, frames, step, size=(320, 240), fps=15.0):
    import cv2

    img = np.asarray(Image.open(photo).convert("RGB"))
    w, h = size
    if img.shape[1] < w + step * frames or img.shape[0] < h:
        scale = max((w + step * frames) / img.shape[1], h / img.shape[0])
        img = np.asarray(Image.fromarray(img).resize((int(img.shape[1] * scale) + 1, int(img.shape[0] * scale) + 1),
                                                     Image.BICUBIC))
    y0 = (img.shape[0] - h) // 2
    out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(frames):
        out.write(np.ascontiguousarray(img[y0:y0 + h, i * step:i * step + w, ::-1]))
    out.release()


def read_video(path):
    import cv2

    cap, frames = cv2.VideoCapture(path), []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def stats(changes):
    return {"mean": round(float(changes.mean()), 2), "p90": round(float(np.percentile(changes, 90)), 2),
            "max": round(float(changes.max()), 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None, help="bundle to run (default: export the shipped model)")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--step", type=int, default=2, help="pan speed, px per frame")
    ap.add_argument("--smooth", type=float, nargs="*", default=[0.0, 0.5])
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    try:
        from depthart.evaluation.datasets import Middlebury

        photo = os.path.join(Middlebury.default_root(), Middlebury.IMAGE)
    except Exception:
        photo = os.path.join(os.path.dirname(__file__), "..", "samples", "coffee.jpg")
    bundle = args.bundle
    if bundle is None:
        bundle = os.path.join(tempfile.mkdtemp(prefix="depthart-flicker-"), "bundle")
        subprocess.run(["depthart", "export", "-o", bundle, "--no-check"], check=True)
    clip = os.path.join(args.out, "pan.mp4")
    pan_video(clip, photo, args.frames, args.step)
    result = {"photo": os.path.basename(photo), "frames": args.frames, "step_px": args.step,
              "input": stats(frame_change(read_video(clip)))}
    for smooth in [None, *args.smooth]:
        name = "off" if smooth is None else f"stabilize {smooth:g}"
        out = os.path.join(args.out, name.replace(" ", "_"))
        cmd = ["depthart", "run", bundle, clip, "-o", out, "--overwrite", "-q"]
        if smooth is not None:
            cmd += ["--stabilize", str(smooth)]
        subprocess.run(cmd, check=True, capture_output=True)
        result[name] = stats(frame_change(read_video(os.path.join(out, "pan_depth.mp4"))))
    # the stabiliser's own cost, at the model's output size and at 1080p
    rng = np.random.default_rng(0)
    for hw in ((240, 320), (1080, 1920)):
        st = DepthStabilizer(0.5)
        maps = [rng.random(hw, dtype=np.float32) for _ in range(5)]
        st(maps[0])
        t0 = time.perf_counter()
        for m in maps[1:]:
            st(m)
        result[f"stabilizer_ms_{hw[1]}x{hw[0]}"] = round((time.perf_counter() - t0) / 4 * 1e3, 2)
    try:
        result["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    print(json.dumps(result, indent=2))
    with open(os.path.join(args.out, "flicker.json"), "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
