"""The visual report: input, ground truth, prediction and error map for the worst and best samples.

Samples are ranked by AbsRel. While the evaluation runs, only the current k worst and k best are
kept, as small tiles (so memory does not grow with the dataset). `write` makes
`report.html` (one self-contained page, images embedded) and `report.png` (the same rows as one grid).

Tiles: ground truth and the aligned prediction share one colour scale (near warm, far cool; the
2nd..98th percentile of the scored ground truth), pixels that are not scored are black in the
ground truth; the error map shows |p - g| / g from black (0) through red to yellow (>= 0.5), with
unscored pixels grey.
"""

from __future__ import annotations

import base64
import heapq
import html
import io
import itertools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..fileio import atomic_write_bytes
from ..outputs import colorize
from .protocol import resize_nearest

ERROR_MAX = 0.5  # AbsRel at which the error map saturates
TILE_HEIGHT = 192  # pixels
GAP = 4  # pixels between tiles
COLUMNS = ("input", "ground truth", "prediction (aligned)", f"error |p-g|/g (0..{ERROR_MAX})")
_ERROR_ANCHORS = np.array([(0, 0, 0), (150, 0, 0), (255, 80, 0), (255, 220, 0), (255, 255, 160)], np.float32)
_ERROR_LUT = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ERROR_ANCHORS)),
                                 _ERROR_ANCHORS[:, c]) for c in range(3)], 1).round().astype(np.uint8)


def error_map(pred, gt, mask) -> np.ndarray:
    """HxW -> HxWx3 uint8: |p-g|/g on `mask` (black 0 .. yellow ERROR_MAX), grey elsewhere."""
    rgb = np.full(gt.shape + (3,), 96, dtype=np.uint8)
    err = np.abs(pred[mask] - gt[mask]) / gt[mask]
    rgb[mask] = _ERROR_LUT[np.clip(err / ERROR_MAX * 255 + 0.5, 0, 255).astype(np.uint8)]
    return rgb


def make_tiles(image, gt, pred, mask, height=TILE_HEIGHT) -> list[np.ndarray]:
    """The four tiles of one sample, each (height, w, 3) uint8 with the ground truth's aspect ratio.

    Args:
        image: (h, w, 3) uint8 model input; gt: (H, W) metres; pred: (H, W) aligned prediction in
            metres; mask: (H, W) bool scored pixels.
    """
    h, w = gt.shape
    size = (height, max(1, round(w * height / h)))
    gt_s, pred_s, mask_s = (resize_nearest(a, size) for a in (gt, pred, mask))
    lo, hi = np.percentile(gt[mask], [2, 98]) if mask.any() else (0.0, 1.0)
    hi = max(hi, lo + 1e-6)
    return [
        np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR)),
        colorize(np.where(mask_s, gt_s, np.nan), lo, hi),
        colorize(pred_s, lo, hi),
        error_map(pred_s.astype(np.float64), gt_s.astype(np.float64), mask_s),
    ]


def _row(tiles) -> np.ndarray:
    h = tiles[0].shape[0]
    gap = np.full((h, GAP, 3), 255, np.uint8)
    parts = [p for t in tiles for p in (t, gap)][:-1]
    return np.concatenate(parts, axis=1)


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


class ReportCollector:
    """Keeps the k worst and k best samples by AbsRel, as tiles.

    Args:
        k: samples per list. Defaults to 4.
        height: tile height in pixels.
    """

    def __init__(self, k: int = 4, height: int = TILE_HEIGHT):
        self.k, self.height = k, height
        self._worst, self._best = [], []  # heaps of (key, counter, entry)
        self._counter = itertools.count()
        self.count = 0  # samples offered

    def add(self, sample_id: str, metrics: dict, image, gt, pred, mask) -> None:
        """Offer one evaluated sample (arrays as in `make_tiles`)."""
        score = metrics["abs_rel"]
        self.count += 1
        keep_worst = len(self._worst) < self.k or score > self._worst[0][0]
        keep_best = len(self._best) < self.k or -score > self._best[0][0]
        if not (keep_worst or keep_best):
            return
        entry = (sample_id, dict(metrics), _row(make_tiles(image, gt, pred, mask, self.height)))
        n = next(self._counter)
        for heap, key, keep in ((self._worst, score, keep_worst), (self._best, -score, keep_best)):
            if keep:
                heapq.heappush(heap, (key, n, entry))
                if len(heap) > self.k:
                    heapq.heappop(heap)

    def worst(self):
        """[(id, metrics, row)], worst first."""
        return [e for _, _, e in sorted(self._worst, key=lambda t: (-t[0], t[1]))]

    def best(self):
        """[(id, metrics, row)], best first."""
        return [e for _, _, e in sorted(self._best, key=lambda t: (-t[0], t[1]))]

    def write(self, html_path, png_path, title: str) -> None:
        """Write the HTML page and the PNG grid (atomically)."""
        if self.count <= self.k:  # every sample is in both lists: show them once
            sections = [("all", self.worst())]
        else:
            sections = [("worst", self.worst()), ("best", self.best())]
        atomic_write_bytes(html_path, render_html(title, sections).encode())
        atomic_write_bytes(png_path, _png(render_grid(sections)))


def _caption(rank_name, i, sample_id, m) -> str:
    return f"{rank_name} {i}: {sample_id}  AbsRel {m['abs_rel']:.4f}  delta1 {m['delta1']:.4f}  RMSE {m['rmse']:.4f} m"


def render_html(title: str, sections) -> str:
    """A self-contained HTML page; `sections` = [(name, [(id, metrics, row), ...]), ...]."""
    out = ["<!doctype html>", '<html><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
           "<style>body{font-family:sans-serif;margin:1.5em} img{display:block;margin:.3em 0 1.2em}"
           " .cols{color:#555;font-size:90%}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>",
           f'<p class="cols">Columns: {" | ".join(html.escape(c) for c in COLUMNS)}. Ground truth and prediction '
           "share one colour scale (near warm, far cool); unscored pixels are black (ground truth) or grey "
           "(error).</p>"]
    for name, entries in sections:
        heading = f"all {len(entries)} samples, worst first" if name == "all" else f"{len(entries)} {name} samples"
        out.append(f"<h2>{heading} (by AbsRel)</h2>")
        for i, (sample_id, m, row) in enumerate(entries, 1):
            data = base64.b64encode(_png(row)).decode()
            out.append(f"<div>{html.escape(_caption(name, i, sample_id, m))}</div>")
            out.append(f'<img alt="{html.escape(sample_id)}" src="data:image/png;base64,{data}">')
    out.append("</body></html>")
    return "\n".join(out)


def render_grid(sections) -> np.ndarray:
    """All rows stacked with a caption line above each -> (H, W, 3) uint8."""
    font = ImageFont.load_default()
    rows = [(_caption(name, i, sid, m), row) for name, entries in sections for i, (sid, m, row) in
            enumerate(entries, 1)]
    header = " | ".join(COLUMNS)
    width = max([r.shape[1] for _, r in rows] + [8 * len(header)])
    line = 18
    height = line + sum(line + r.shape[0] + GAP for _, r in rows)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 2), header, fill=(0, 0, 0), font=font)
    y = line
    for caption, row in rows:
        draw.text((2, y + 2), caption, fill=(0, 0, 0), font=font)
        canvas.paste(Image.fromarray(row), (0, y + line))
        y += line + row.shape[0] + GAP
    return np.asarray(canvas)
