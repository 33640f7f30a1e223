"""Baselines that give the model's scores a scale: learning or luck?

An affine-invariant score can look good for a map that ignores the image (a plausible "ground
below, far above" layout scores well on many scenes once a scale and shift are fitted). So every
evaluation can be scored three more times, with the same metric function, alignment and depth
range as the model (`depthart.metrics.evaluate_detailed` with the protocol's settings):

- `constant`: a prediction of 1 everywhere (after alignment: the mean valid depth under least
  squares, the median under median scale).
- `prior_map`: an input-free prediction. For sample i: the per-pixel mean over the *other* samples
  (leave-one-out) of their ground truth normalised as the training target (clip(depth / q98, 0, 1),
  q98 the 98th percentile of the sample's scored depth), each first area-resized to a common
  `GRID` (weighted by the fraction of scored pixels, so unscored pixels never count); grid cells
  scored in no other sample get the overall mean. The grid map is resized to sample i's ground
  truth bilinearly (as the protocol resizes predictions).
- `shuffled`: sample i scored with the model's prediction for sample (i + 1) mod n (a fixed
  derangement), resized to sample i's ground truth (bilinear) if their shapes differ.

The *image-use gap* is shuffled AbsRel - model AbsRel: what the model gains from seeing the right
image. A gap under `GAP_FLAG_RATIO` of the model's AbsRel means the predictions barely depend on
the input. `prior_map` and `shuffled` need at least 2 samples.

To re-score, the runner keeps each sample's prepared ground truth, mask and matched prediction
(`BaselineCollector`), about 9 bytes per ground-truth pixel. numpy only (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..metrics import MetricsError, evaluate_detailed, mean_metrics
from ..progress import bar as progress_bar
from .protocol import Settings, resize_bilinear

GRID = (64, 64)  # (H, W) of the common grid the prior map is averaged on
DEPTH_PERCENTILE = 98.0  # as the training target (depthart.data.transforms)
DEPTH_EPS = 1e-7
GAP_FLAG_RATIO = 0.05  # flag a gap below this fraction of the model's AbsRel
AUTO_MAX_SAMPLES = 1000  # --baselines auto: on up to this many evaluated samples ...
AUTO_MAX_BYTES = 4 * 2**30  # ... and while the kept arrays stay under this many bytes
NAMES = ("constant", "prior_map", "shuffled")
LABELS = {"constant": "constant", "prior_map": "prior map", "shuffled": "shuffled"}


@dataclass
class Kept:
    """What re-scoring one sample needs: its id, prepared ground truth (HxW float32 metres), scoring
    mask (HxW bool) and the model's prediction matched to the ground truth (HxW float32)."""

    id: str
    gt: np.ndarray
    mask: np.ndarray
    pred: np.ndarray


class BaselineCollector:
    """Keeps every evaluated sample's `Kept` arrays during the evaluation loop.

    Args:
        max_bytes: if given, stop keeping (and free what was kept) once the arrays would pass this
            many bytes; `skipped` then says why. None: no limit (--baselines forced on).
    """

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = max_bytes
        self.samples: list[Kept] = []
        self.nbytes = 0
        self.skipped: str | None = None

    def add(self, sample_id: str, gt, mask, pred) -> None:
        """Keep one sample (copies, so later changes to the arrays do not matter)."""
        if self.skipped is not None:
            return
        kept = Kept(sample_id, np.array(gt, dtype=np.float32), np.array(mask, dtype=bool),
                    np.array(pred, dtype=np.float32))
        size = kept.gt.nbytes + kept.mask.nbytes + kept.pred.nbytes
        if self.max_bytes is not None and self.nbytes + size > self.max_bytes:
            self.skipped = (f"not computed: keeping every sample's ground truth and prediction would take more "
                            f"than {self.max_bytes / 2**30:.1f} GiB (at sample {len(self.samples) + 1}); "
                            "pass --baselines to compute them anyway")
            self.samples, self.nbytes = [], 0
            return
        self.samples.append(kept)
        self.nbytes += size


def collector_for(choice: bool | None, n_samples: int):
    """The collector for `--baselines` (True), `--no-baselines` (False) or neither (None: auto).

    Returns:
        (collector, skipped): a `BaselineCollector` or None, and None or why auto mode left the
        baselines out (more than `AUTO_MAX_SAMPLES` samples). Auto mode also caps the kept arrays
        at `AUTO_MAX_BYTES`; a forced run keeps everything.
    """
    if choice is False:
        return None, None
    if choice:
        return BaselineCollector(None), None
    if n_samples > AUTO_MAX_SAMPLES:
        return None, (f"not computed: {n_samples} samples, more than the {AUTO_MAX_SAMPLES} they are computed for "
                      "by default; pass --baselines to compute them anyway")
    return BaselineCollector(AUTO_MAX_BYTES), None


# ---------------------------------------------------------------- the input-free predictions
def normalized_depth(gt, mask) -> np.ndarray:
    """The training target's normalisation in [0, 1]: clip(gt / (q98 + 1e-7), 0, 1), q98 the 98th
    percentile of gt on `mask` (float64; 0 where `mask` is False)."""
    gt = np.asarray(gt, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise MetricsError("no scored pixel: cannot normalise the ground truth")
    q = float(np.percentile(gt[mask], DEPTH_PERCENTILE))
    return np.where(mask, np.clip(gt / (q + DEPTH_EPS), 0.0, 1.0), 0.0)


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix: each output cell's mean of the input pixels, weighted by overlap."""
    r = n_in / n_out  # input pixels per output cell
    lo_out, hi_out = np.arange(n_out)[:, None] * r, (np.arange(n_out)[:, None] + 1) * r
    lo_in, hi_in = np.arange(n_in)[None, :], np.arange(n_in)[None, :] + 1
    return np.clip(np.minimum(hi_out, hi_in) - np.maximum(lo_out, lo_in), 0.0, None) / r


def resize_area(a, size) -> np.ndarray:
    """Area-average resize of an HxW map to size = (H, W) (float64; each output cell is the
    overlap-weighted mean of the input pixels it covers)."""
    a = np.asarray(a, dtype=np.float64)
    return _area_weights(a.shape[0], size[0]) @ a @ _area_weights(a.shape[1], size[1]).T


def prior_maps(samples: list[Kept], grid=GRID) -> list[np.ndarray]:
    """The leave-one-out prior map of every sample, each at its ground truth's HxW (float32).

    Sample i's map depends only on the other samples' ground truth and masks (module docstring).

    Raises:
        ValueError: fewer than 2 samples.
    """
    return list(iter_prior_maps(samples, grid))


def iter_prior_maps(samples: list[Kept], grid=GRID):
    """`prior_maps` one at a time (only the grid-sized sums are held for all samples)."""
    if len(samples) < 2:
        raise ValueError("a leave-one-out prior needs at least 2 samples")
    sums, weights = [], []
    for s in samples:
        sums.append(resize_area(normalized_depth(s.gt, s.mask), grid))  # 0 at unscored pixels
        weights.append(resize_area(s.mask, grid))  # fraction of scored pixels per cell
    total_sum, total_weight = np.sum(sums, axis=0), np.sum(weights, axis=0)
    for s, own_sum, own_weight in zip(samples, sums, weights):
        num, den = total_sum - own_sum, total_weight - own_weight
        seen = den > 1e-9
        overall = float(num[seen].sum() / den[seen].sum())
        grid_map = np.where(seen, num / np.where(seen, den, 1.0), overall)
        yield resize_bilinear(grid_map, s.gt.shape)


def shuffled_prediction(samples: list[Kept], i: int) -> np.ndarray:
    """The prediction made for sample (i + 1) mod n, resized to sample i's ground truth (bilinear)."""
    if len(samples) < 2:
        raise ValueError("a shuffled prediction needs at least 2 samples")
    pred, shape = samples[(i + 1) % len(samples)].pred, samples[i].gt.shape
    return pred if pred.shape == shape else resize_bilinear(pred, shape)


# ---------------------------------------------------------------- scoring
def score(pred, kept: Kept, settings: Settings) -> dict[str, float]:
    """The metrics of `pred` on one kept sample, exactly as the runner scores the model."""
    return evaluate_detailed(pred, kept.gt, kept.mask, alignment=settings.alignment,
                             depth_range=settings.clip_range, max_resolution=settings.max_resolution).metrics


def _score_all(name, preds, samples, settings, problems):
    """Mean metrics of one baseline, or None (with the reason appended to `problems`)."""
    per_sample = []
    for kept, pred in progress_bar(zip(samples, preds), total=len(samples), desc=f"baseline {name}", unit="sample"):
        try:
            per_sample.append(score(pred, kept, settings))
        except MetricsError as e:
            problems.append(f"{name} not scored: sample {kept.id}: {e}")
            return None
    return mean_metrics(per_sample)


def compute_baselines(samples: list[Kept], settings: Settings, model_metrics: dict[str, float]) -> dict:
    """The `baselines` object of summary.json.

    Args:
        samples: the kept samples, in evaluation order (`BaselineCollector.samples`).
        settings: the protocol settings the model was scored with.
        model_metrics: the model's mean metrics over the same samples.

    Returns:
        {"samples", "constant", "prior_map", "shuffled": mean metrics or None, "image_use_gap",
        "image_use_gap_ratio": float or None, "flag", "worse_than_prior": a warning or None, "note"}.
        prior_map and shuffled (and so the gap) are None with fewer than 2 samples, or when a sample
        could not be scored (the note says which and why).
    """
    if not samples:
        raise ValueError("no samples to compute baselines on")
    n = len(samples)
    problems: list[str] = []
    out = {"samples": n,
           "constant": _score_all("constant", (np.ones(s.gt.shape, np.float32) for s in samples), samples,
                                  settings, problems),
           "prior_map": None, "shuffled": None}
    if n >= 2:
        out["prior_map"] = _score_all("prior_map", iter_prior_maps(samples), samples, settings, problems)
        out["shuffled"] = _score_all("shuffled", (shuffled_prediction(samples, i) for i in range(n)), samples,
                                     settings, problems)
    else:
        problems.append("prior_map, shuffled and the image-use gap need at least 2 samples; this run has 1")

    model = model_metrics["abs_rel"]
    gap = ratio = flag = worse = None
    if out["shuffled"] is not None:
        gap = out["shuffled"]["abs_rel"] - model
        if model > 0:
            ratio = gap / model
        elif gap <= 0:
            ratio = 0.0  # a perfect model that also scores perfectly with the wrong images
        if ratio is not None and ratio < GAP_FLAG_RATIO:
            flag = (f"WARNING: image-use gap {100 * ratio:.1f} % of AbsRel: the predictions barely depend on "
                    "the input image (another sample's prediction scores about as well)")
    if out["prior_map"] is not None and model > out["prior_map"]["abs_rel"]:
        worse = (f"WARNING: the model's AbsRel {model:.4f} is worse than the input-free prior map's "
                 f"{out['prior_map']['abs_rel']:.4f}")
    grid = "x".join(map(str, GRID))
    note = ("Scored like the model (same alignment, depth range, mask). constant: 1 everywhere. prior_map: per "
            "sample, the per-pixel mean over the other samples (leave-one-out) of their ground truth as the "
            f"training target, clip(depth / 98th percentile, 0, 1), on scored pixels only, averaged on a {grid} "
            "grid, resized back bilinearly. shuffled: each sample scored with the prediction for the next sample "
            "((i + 1) mod n). image_use_gap = shuffled AbsRel - model AbsRel; image_use_gap_ratio = gap / model "
            f"AbsRel (flagged below {GAP_FLAG_RATIO:g}).")
    if problems:
        note += " " + " ".join(p.rstrip(".") + "." for p in problems)
    out.update(image_use_gap=gap, image_use_gap_ratio=ratio, flag=flag, worse_than_prior=worse, note=note)
    return out


# ---------------------------------------------------------------- the terminal block
def format_baselines(summary: dict) -> list[str]:
    """Lines comparing the model with the baselines (abs_rel, delta1) and the gap; [] without baselines."""
    b = summary.get("baselines")
    if not b:
        return []
    if b.get("skipped"):
        return ["", f"baselines: {b['skipped']}"]
    rows = [("model", summary["metrics"])] + [(LABELS[k], b.get(k)) for k in NAMES]
    lines = ["", f"baselines (scored like the model; {b['samples']} samples)",
             f"{'':<10} {'abs_rel':>12} {'delta1':>12}"]
    for label, m in rows:
        values = (m["abs_rel"], m["delta1"]) if m else (None, None)
        lines.append(f"{label:<10} " + " ".join(f"{'n/a':>12}" if v is None else f"{v:>12.6f}" for v in values))
    if b.get("image_use_gap") is None:
        lines.append("image-use gap: n/a (needs at least 2 samples)" if b["samples"] < 2 else "image-use gap: n/a")
    else:
        ratio = b.get("image_use_gap_ratio")
        share = f" ({100 * ratio:.1f} % of the model's AbsRel)" if ratio is not None else ""
        lines.append(f"image-use gap (shuffled - model AbsRel): {b['image_use_gap']:.6f}{share}")
    lines += [w for w in (b.get("flag"), b.get("worse_than_prior")) if w]
    return lines
