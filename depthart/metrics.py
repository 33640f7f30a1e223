"""Depth metrics and prediction alignment for zero-shot benchmarks. numpy only (no torch).

One image at a time:

1. Align the prediction to the ground truth on the valid pixels (`align`):
   - "least_squares": scale s and shift t minimising sum_valid (s*p + t - g)^2, in depth space
     (Marigold's protocol, for predictions that are affine-invariant depth, like ours).
   - "least_squares_disparity": the same fit from p to the GT disparity 1/g, for predictions that are
     affine-invariant *disparity* (MiDaS, Depth Anything); the fitted disparity is clipped to
     >= 1e-3 and inverted back to depth.
   - "median_scale": scale only, s = median over valid pixels of g/p (the lower median when the count
     is even, as torch.median; the DepthART release's protocol).
   - None: the prediction is used as it is (already metric).
   The fitted scale and shift are applied to every pixel, not only the valid ones.
2. Clip the aligned depth to the dataset's depth range, then to >= 1e-6 (so logs and ratios exist).
3. Compute the metrics on the valid pixels (`compute_metrics`). A dataset's score is the mean of
   the per-image values.

Everything is computed in float64. Depths are in metres; `i_rmse` is in 1/m (no x1000).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DepthartError

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3", "i_rmse", "silog")
ALIGNMENTS = ("least_squares", "least_squares_disparity", "median_scale", None)
MIN_DEPTH = 1e-6  # floor applied after alignment and range clipping (metres)
MIN_DISPARITY = 1e-3  # floor on the fitted disparity in "least_squares_disparity" (1/m)


class MetricsError(DepthartError, ValueError):
    """Inputs that cannot be evaluated (no valid pixels, bad ground truth, shape mismatch)."""


@dataclass(frozen=True)
class Evaluation:
    """The result for one image.

    Attributes:
        metrics: the `METRIC_NAMES` values (floats; deltas are fractions in [0, 1]).
        depth: float64 HxW prediction after alignment and clipping, in metres (every pixel).
        scale, shift: the fitted parameters (in disparity space for "least_squares_disparity";
            scale 1, shift 0 when alignment is None; shift 0 for "median_scale").
    """

    metrics: dict[str, float]
    depth: np.ndarray
    scale: float
    shift: float


def evaluate(pred, gt, valid, *, alignment, depth_range, max_resolution=None) -> dict[str, float]:
    """Align, clip and score one prediction against its ground truth.

    Args:
        pred: HxW prediction (relative depth for the least-squares and median alignments,
            relative disparity for "least_squares_disparity", metres for None).
        gt: HxW ground-truth depth in metres. Only read where `valid` is True, where it must be
            finite and > 0.
        valid: HxW bool mask of the pixels to fit and score.
        alignment: one of `ALIGNMENTS` (module docstring).
        depth_range: (min, max) in metres to clip the aligned prediction to (max may be inf),
            or None for no range clip. The >= 1e-6 floor always applies.
        max_resolution: if given and the image is larger, fit the alignment on a subsampled copy
            (`fit_pixels`); the fitted parameters are still applied at full resolution.

    Returns:
        {name: value} for every name in `METRIC_NAMES`.

    Raises:
        MetricsError: shapes differ, no valid pixel, invalid ground truth or non-finite prediction
            at valid pixels, or a median scale that is not finite.
    """
    return evaluate_detailed(pred, gt, valid, alignment=alignment, depth_range=depth_range,
                             max_resolution=max_resolution).metrics


def evaluate_detailed(pred, gt, valid, *, alignment, depth_range, max_resolution=None) -> Evaluation:
    """`evaluate`, also returning the aligned depth map and the fitted scale and shift."""
    pred, gt, valid = _check_inputs(pred, gt, valid)
    depth, scale, shift = align(pred, gt, valid, alignment, max_resolution)
    depth = clip_depth(depth, depth_range)
    return Evaluation(compute_metrics(depth, gt, valid), depth, scale, shift)


def _check_inputs(pred, gt, valid):
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if pred.ndim != 2 or pred.shape != gt.shape or valid.shape != gt.shape:
        raise MetricsError(f"prediction {pred.shape}, ground truth {gt.shape} and valid mask {valid.shape} "
                           "must be the same HxW shape")
    n = int(valid.sum())
    if n == 0:
        raise MetricsError("no valid ground-truth pixel in this image: nothing to evaluate")
    g = gt[valid]
    bad = int((~np.isfinite(g) | (g <= 0)).sum())
    if bad:
        raise MetricsError(f"ground truth is not finite and > 0 at {bad} of {n} valid pixels")
    bad = int((~np.isfinite(pred[valid])).sum())
    if bad:
        raise MetricsError(f"prediction is NaN or inf at {bad} of {n} valid pixels")
    return pred, gt, valid


# ---------------------------------------------------------------- alignment
def fit_pixels(shape, max_resolution):
    """Rows and columns of the pixels the least-squares fit uses when `max_resolution` is set.

    To give the same numbers as Marigold's ETH3D evaluation, this keeps its subsampling exactly:
    with sf = min(N/H, N/W) for N = max_resolution, and only when sf < 1, every row is kept and
    only the width is subsampled, to W' = floor(W * sf) columns, column j' taking the original
    column floor(j' * float32(1/sf)) (a nearest-neighbour resize along the last axis only).

    Args:
        shape: (H, W) of the image.
        max_resolution: N in pixels, or None.

    Returns:
        (rows, cols): int index arrays, for `array[np.ix_(rows, cols)]`.
    """
    h, w = shape
    rows, cols = np.arange(h), np.arange(w)
    if max_resolution is None:
        return rows, cols
    sf = min(max_resolution / h, max_resolution / w)
    if sf >= 1:
        return rows, cols
    w_out = int(np.floor(w * sf))
    step = np.float32(1.0 / sf)
    cols = np.minimum(np.floor(np.arange(w_out, dtype=np.float32) * step).astype(np.int64), w - 1)
    return rows, cols


def _lstsq_scale_shift(x, y) -> tuple[float, float]:
    """Least-squares (s, t) for y ~ s*x + t. A rank-deficient fit (constant x) returns numpy's
    minimum-norm solution, whose prediction is the mean of y."""
    a = np.stack([x, np.ones_like(x)], axis=1)
    (s, t), *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(s), float(t)


def align(pred, gt, valid, alignment, max_resolution=None):
    """Fit the alignment on the valid pixels and apply it to every pixel (module docstring).

    Args:
        pred, gt, valid: HxW arrays as in `evaluate` (already checked).
        alignment: one of `ALIGNMENTS`.
        max_resolution: see `fit_pixels`; used by the two least-squares alignments.

    Returns:
        (depth, scale, shift): float64 HxW aligned depth (not yet clipped) and the fitted values.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if alignment is None:
        return pred.copy(), 1.0, 0.0
    if alignment == "median_scale":
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = gt[valid] / pred[valid]
        k = (ratio.size - 1) // 2  # lower median
        scale = float(np.partition(ratio, k)[k])
        if not np.isfinite(scale):
            raise MetricsError("median scale is not finite: the prediction is 0 on half or more of the "
                               "valid pixels")
        return pred * scale, scale, 0.0
    if alignment not in ("least_squares", "least_squares_disparity"):
        raise MetricsError(f"unknown alignment {alignment!r}; expected one of {ALIGNMENTS}")

    rows, cols = fit_pixels(gt.shape, max_resolution)
    p_fit, g_fit, m_fit = (a[np.ix_(rows, cols)] for a in (pred, gt, valid))
    if alignment == "least_squares":
        if not m_fit.any():
            raise MetricsError("no valid pixel left for the least-squares fit after subsampling")
        scale, shift = _lstsq_scale_shift(p_fit[m_fit], g_fit[m_fit])
        return pred * scale + shift, scale, shift

    # least_squares_disparity: pred is disparity; fit it to the GT disparity where both are > 0
    m_fit = m_fit & (g_fit > 0) & (p_fit > 0)
    if not m_fit.any():
        raise MetricsError("no valid pixel with a positive predicted disparity to fit")
    scale, shift = _lstsq_scale_shift(p_fit[m_fit], 1.0 / g_fit[m_fit])
    disparity = np.maximum(pred * scale + shift, MIN_DISPARITY)
    return 1.0 / disparity, scale, shift


def clip_depth(depth, depth_range):
    """Clip to `depth_range` = (min, max) metres (None: no range), then to >= 1e-6. NaN stays NaN."""
    depth = np.asarray(depth, dtype=np.float64)
    if depth_range is not None:
        lo, hi = depth_range
        if not lo < hi:
            raise MetricsError(f"depth_range {depth_range}: min must be below max")
        depth = np.clip(depth, lo, hi)
    return np.maximum(depth, MIN_DEPTH)


# ---------------------------------------------------------------- metrics
def compute_metrics(depth, gt, valid) -> dict[str, float]:
    """The metrics of a final (aligned, clipped) depth map on the valid pixels.

    With p = depth and g = gt on the n valid pixels (metres), e = ln p - ln g:
    abs_rel = mean |p-g|/g; sq_rel = mean (p-g)^2/g; rmse = sqrt(mean (p-g)^2);
    rmse_log = sqrt(mean e^2); log10 = mean |log10 p - log10 g|;
    delta_k = fraction with max(p/g, g/p) < 1.25^k (strict); i_rmse = sqrt(mean (1/p - 1/g)^2) in 1/m;
    silog = 100 * sqrt(mean e^2 - (mean e)^2) (the variance is floored at 0 against round-off).

    Args:
        depth: HxW prediction in metres, > 0 at valid pixels.
        gt: HxW ground truth in metres, finite and > 0 at valid pixels.
        valid: HxW bool mask, at least one True.

    Returns:
        {name: float} for every name in `METRIC_NAMES`.
    """
    valid = np.asarray(valid, dtype=bool)
    p = np.asarray(depth, dtype=np.float64)[valid]
    g = np.asarray(gt, dtype=np.float64)[valid]
    if p.size == 0:
        raise MetricsError("no valid ground-truth pixel in this image: nothing to evaluate")
    if not (np.all(p > 0) and np.all(np.isfinite(p))):
        raise MetricsError("depth must be finite and > 0 at valid pixels (clip it first)")
    diff = p - g
    e = np.log(p) - np.log(g)
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": float(np.mean(np.abs(diff) / g)),
        "sq_rel": float(np.mean(diff**2 / g)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "rmse_log": float(np.sqrt(np.mean(e**2))),
        "log10": float(np.mean(np.abs(np.log10(p) - np.log10(g)))),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
        "i_rmse": float(np.sqrt(np.mean((1.0 / p - 1.0 / g) ** 2))),
        "silog": float(100.0 * np.sqrt(max(np.mean(e**2) - np.mean(e) ** 2, 0.0))),
    }


def mean_metrics(per_image: list[dict[str, float]]) -> dict[str, float]:
    """Dataset score: the arithmetic mean of each metric over images (every image counts once)."""
    if not per_image:
        raise MetricsError("no images to average")
    return {k: float(np.mean([m[k] for m in per_image])) for k in METRIC_NAMES}
