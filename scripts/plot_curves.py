"""Training curves of DepthART vs VAR teacher forcing as one PNG (Pillow only, no plotting library).

    python scripts/plot_curves.py RUN_ROOT OUT.png

Left panel: the training cross-entropy (metrics.jsonl, smoothed over 50 steps) of RUN_ROOT/depthart
and RUN_ROOT/var, followed by their stage-2 continuations RUN_ROOT/depthart2 and RUN_ROOT/var2 where
present (steps counted from the start of stage 1). Right panel: held-out procedural AbsRel (median
scale) per saved checkpoint, from RUN_ROOT/curve_<method>.csv (stage 1) and curve_<method>2.csv
(stage 2; step,abs_rel,delta1; written by scripts/eval_checkpoints.py).
Note: the two CE curves measure different things (dynamic targets after the model's own
predictions vs ground-truth tokens); the held-out panel is the comparable one.
"""

from __future__ import annotations

import csv
import json
import os
import sys

from PIL import Image, ImageDraw

COLORS = {"depthart": (214, 39, 40), "var": (31, 119, 180)}
W, H, PAD = 520, 360, 56


def _last_step(path) -> int:
    rows = [json.loads(line) for line in open(path)] if os.path.isfile(path) else []
    return rows[-1]["step"] if rows else 0


def _series_ce(path, smooth=50, offset=0):
    if not os.path.isfile(path):
        return []
    pts = [(r["step"] + offset, r["ce"]) for r in map(json.loads, open(path)) if "ce" in r]
    out = []
    for i in range(len(pts)):
        window = [c for s, c in pts if pts[i][0] - smooth < s <= pts[i][0]]
        out.append((pts[i][0], sum(window) / len(window)))
    return out


def _series_eval(path, offset=0):
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [(int(r["step"]) + offset, float(r["abs_rel"])) for r in csv.DictReader(f)]


def _panel(series: dict, title: str, ylabel: str) -> Image.Image:
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    pts = [p for s in series.values() for p in s]
    if not pts:
        d.text((PAD, H // 2), "no data", fill="black")
        return img
    x0, x1 = 0, max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    y0, y1 = y0 - 0.05 * (y1 - y0 + 1e-9), y1 + 0.05 * (y1 - y0 + 1e-9)
    fx = lambda x: PAD + (x - x0) / max(x1 - x0, 1) * (W - 2 * PAD)  # noqa: E731
    fy = lambda y: H - PAD - (y - y0) / (y1 - y0) * (H - 2 * PAD)  # noqa: E731
    d.rectangle([PAD, PAD, W - PAD, H - PAD], outline="black")
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        d.text((4, fy(y) - 6), f"{y:.3f}", fill="black")
        x = x0 + (x1 - x0) * i / 4
        d.text((fx(x) - 10, H - PAD + 6), f"{x:.0f}", fill="black")
    d.text((W // 2 - 20, H - 20), "step", fill="black")
    d.text((PAD, 8), f"{title} ({ylabel})", fill="black")
    for k, (name, s) in enumerate(series.items()):
        if len(s) > 1:
            d.line([(fx(x), fy(y)) for x, y in s], fill=COLORS[name], width=2)
        for x, y in s if len(s) < 30 else []:
            d.ellipse([fx(x) - 3, fy(y) - 3, fx(x) + 3, fy(y) + 3], fill=COLORS[name])
        d.text((W - PAD - 90, PAD + 8 + 14 * k), name, fill=COLORS[name])
    return img


def main(root, out):
    ce, ev = {}, {}
    for m in COLORS:
        stage1 = os.path.join(root, m, "metrics.jsonl")
        off = _last_step(stage1)
        ce[m] = _series_ce(stage1) + _series_ce(os.path.join(root, f"{m}2", "metrics.jsonl"), offset=off)
        ev[m] = _series_eval(os.path.join(root, f"curve_{m}.csv")) + _series_eval(
            os.path.join(root, f"curve_{m}2.csv"), offset=off)
    canvas = Image.new("RGB", (2 * W, H), "white")
    canvas.paste(_panel(ce, "training cross-entropy", "smoothed"), (0, 0))
    canvas.paste(_panel(ev, "held-out procedural AbsRel", "median scale"), (W, 0))
    canvas.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
