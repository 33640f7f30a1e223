"""The two evaluation protocols: per (protocol, dataset) settings and the preparation of a sample.

- "marigold" (the default; Marigold's zero-shot affine-invariant protocol, also used to compare
  with Depth Anything and MiDaS): the model sees the image at its native resolution (KITTI: after
  the 352x1216 benchmark crop); metrics at ground-truth resolution; least-squares scale and shift
  in depth space; valid = min < gt < max (strict) and the dataset's crop; the aligned prediction is
  clipped to the range.
- "depthart" (the DepthART release's protocol, to reproduce the paper's own numbers): image and
  ground truth resized to 256x256 (image bicubic, GT nearest; iBims-1 keeps GT at 480x640 and
  the prediction is resized to it bilinearly); median scale, no shift; valid = min < gt <= max;
  no range clip (only the 1e-6 floor of `depthart.metrics`).

Settings marked `published=False` are depthart's own choices for a dataset the protocol's
authors did not evaluate (documented in docs/evaluation.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from .datasets import Sample
from .formats import DatasetError, PredictionError

PROTOCOLS = ("marigold", "depthart")
KITTI_CROP = (352, 1216)  # (H, W) of the KITTI benchmark crop: bottom rows, horizontally centred
DEPTHART_SIZE = (256, 256)


@dataclass(frozen=True)
class Settings:
    """How one dataset is evaluated under one protocol.

    Attributes:
        protocol, dataset: names.
        alignment: `depthart.metrics` alignment.
        valid_range: (min, max) metres; GT outside it is not scored (None: the dataset's mask only).
        upper_inclusive: valid is min < gt <= max instead of min < gt < max.
        clip_range: (min, max) metres the aligned prediction is clipped to (None: no clip).
        max_resolution: fit the alignment on a subsampled copy above this size (pixels).
        region: a fixed evaluation region: "eigen_nyu" or "eigen_kitti" (None: whole image).
        kb_crop: crop image and GT to KITTI_CROP before inference.
        border: pixels cut from every side of image and GT first.
        size: (H, W) the image (and GT, unless gt_full_res) is resized to; None keeps it.
        gt_full_res: keep GT at its resolution; the prediction is resized to it.
        published: the settings reproduce a published protocol for this dataset.
    """

    protocol: str
    dataset: str
    alignment: str | None
    valid_range: tuple[float, float] | None
    upper_inclusive: bool = False
    clip_range: tuple[float, float] | None = None
    max_resolution: int | None = None
    region: str | None = None
    kb_crop: bool = False
    border: int = 0
    size: tuple[int, int] | None = None
    gt_full_res: bool = False
    published: bool = True


def _marigold(dataset, rng, published=True, **kw):
    return Settings("marigold", dataset, "least_squares", rng, clip_range=rng, published=published, **kw)


def _depthart(dataset, rng, published=True, **kw):
    return Settings("depthart", dataset, "median_scale", rng, upper_inclusive=True, size=DEPTHART_SIZE,
                    published=published, **kw)


_SETTINGS = {
    ("marigold", "nyu"): _marigold("nyu", (1e-3, 10.0), region="eigen_nyu"),
    ("marigold", "kitti"): _marigold("kitti", (1e-5, 80.0), kb_crop=True, region="eigen_kitti"),
    ("marigold", "eth3d"): _marigold("eth3d", (1e-5, math.inf), max_resolution=1024),
    ("marigold", "diode"): replace(_marigold("diode", None), clip_range=(0.6, 350.0)),
    ("marigold", "scannet"): _marigold("scannet", (1e-3, 10.0)),
    ("marigold", "ibims"): _marigold("ibims", (1e-2, 50.0), published=False),
    ("marigold", "tum"): _marigold("tum", (1e-2, 10.0), published=False),
    ("marigold", "middlebury"): _marigold("middlebury", (1e-3, 10.0), published=False),
    ("marigold", "procedural"): _marigold("procedural", (1e-3, 200.0), published=False),
    ("depthart", "nyu"): _depthart("nyu", (1e-8, 10.0), border=8),
    ("depthart", "eth3d"): _depthart("eth3d", (1e-4, 72.0)),
    ("depthart", "tum"): _depthart("tum", (1e-2, 10.0)),
    ("depthart", "ibims"): _depthart("ibims", (1e-2, 50.0), gt_full_res=True),
    ("depthart", "kitti"): _depthart("kitti", (1e-5, 80.0), kb_crop=True, published=False),
    ("depthart", "diode"): _depthart("diode", (0.6, 350.0), published=False),
    ("depthart", "scannet"): _depthart("scannet", (1e-3, 10.0), published=False),
    ("depthart", "middlebury"): _depthart("middlebury", (1e-3, 10.0), published=False),
    ("depthart", "procedural"): _depthart("procedural", (1e-3, 200.0), published=False),
}


def get_settings(protocol: str, dataset: str, alignment="default") -> Settings:
    """The settings for `dataset` under `protocol`; `alignment` overrides the protocol's alignment
    (e.g. "least_squares_disparity" for a baseline that predicts disparity)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    s = _SETTINGS[(protocol, dataset)]
    return s if alignment == "default" else replace(s, alignment=alignment)


# ---------------------------------------------------------------- resizing (torch-compatible indexing)
def resize_nearest(a: np.ndarray, size) -> np.ndarray:
    """Nearest-neighbour resize of the first two axes to size = (H, W), picking source index
    floor(i * float32(in/out)) like torch's `interpolate(mode="nearest")` (used for ground truth)."""
    out = a
    for axis, n_out in enumerate(size):
        n_in = a.shape[axis]
        if n_in == n_out:
            continue
        idx = np.floor(np.arange(n_out, dtype=np.float32) * (np.float32(n_in) / np.float32(n_out)))
        out = np.take(out, np.minimum(idx.astype(np.int64), n_in - 1), axis=axis)
    return out


def resize_bilinear(a: np.ndarray, size) -> np.ndarray:
    """Bilinear resize of an HxW map to size = (H, W) with corners aligned (source position
    i * (in-1)/(out-1)), like torch's `interpolate(mode="bilinear", align_corners=True)`."""
    a = np.asarray(a, dtype=np.float64)
    for axis, n_out in enumerate(size):
        n_in = a.shape[axis]
        if n_in == n_out:
            continue
        pos = np.arange(n_out) * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(1)
        lo = np.minimum(np.floor(pos).astype(np.int64), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        w = (pos - lo).reshape([-1 if i == axis else 1 for i in range(a.ndim)])
        a = np.take(a, lo, axis=axis) * (1 - w) + np.take(a, hi, axis=axis) * w
    return a.astype(np.float32)


def resize_image(image: np.ndarray, size) -> np.ndarray:
    """(H, W, 3) uint8 -> size = (H, W) with Pillow's bicubic filter."""
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BICUBIC))


# ---------------------------------------------------------------- crops and regions
def kb_crop(a: np.ndarray, crop=KITTI_CROP) -> np.ndarray:
    """The KITTI benchmark crop: the bottom crop[0] rows, crop[1] columns centred (left = (W - w) // 2)."""
    h, w = a.shape[:2]
    ch, cw = crop
    if h < ch or w < cw:
        raise DatasetError(f"kitti: image is {h}x{w}, smaller than the {ch}x{cw} benchmark crop")
    top, left = h - ch, (w - cw) // 2
    return a[top:top + ch, left:left + cw]


def region_mask(region: str | None, shape) -> np.ndarray:
    """The fixed evaluation region as an HxW bool mask.

    "eigen_nyu": rows 45..470, cols 41..600 of a 480x640 image. "eigen_kitti" (on the 352x1216
    crop): rows [floor(0.3324324 H), floor(0.91351351 H)), cols [floor(0.0359477 W),
    floor(0.96405229 W)), i.e. rows 117..320 and cols 43..1171.
    """
    h, w = shape
    m = np.zeros((h, w), dtype=bool)
    if region is None:
        m[:] = True
    elif region == "eigen_nyu":
        if (h, w) != (480, 640):
            raise DatasetError(f"nyu: the Eigen crop is defined on 480x640 images, got {h}x{w}")
        m[45:471, 41:601] = True
    elif region == "eigen_kitti":
        m[int(0.3324324 * h):int(0.91351351 * h), int(0.0359477 * w):int(0.96405229 * w)] = True
    else:
        raise ValueError(f"unknown region {region!r}")
    return m


def range_mask(depth: np.ndarray, valid_range, upper_inclusive: bool) -> np.ndarray:
    if valid_range is None:
        return np.ones(depth.shape, dtype=bool)
    lo, hi = valid_range
    with np.errstate(invalid="ignore"):
        return (depth > lo) & ((depth <= hi) if upper_inclusive else (depth < hi))


# ---------------------------------------------------------------- preparation
@dataclass
class Prepared:
    """A sample ready for prediction and scoring.

    Attributes:
        id: the sample id.
        image: (h, w, 3) uint8, what the model is given.
        gt: (H, W) float32 ground-truth depth in metres (H, W = h, w unless gt_full_res).
        mask: (H, W) bool, the pixels that are fitted and scored.
    """

    id: str
    image: np.ndarray
    gt: np.ndarray
    mask: np.ndarray


def prepare(sample: Sample, settings: Settings) -> Prepared:
    """Apply the protocol to a sample: border crop, KITTI crop, resize, then the scoring mask
    (dataset validity & depth range & region)."""
    image, depth, valid = sample.image, sample.depth, sample.valid
    b = settings.border
    if b:
        image, depth, valid = image[b:-b, b:-b], depth[b:-b, b:-b], valid[b:-b, b:-b]
    if settings.kb_crop:
        image, depth, valid = kb_crop(image), kb_crop(depth), kb_crop(valid)
    if settings.size is not None:
        image = resize_image(np.ascontiguousarray(image), settings.size)
        if not settings.gt_full_res:
            depth, valid = resize_nearest(depth, settings.size), resize_nearest(valid, settings.size)
    mask = valid & range_mask(depth, settings.valid_range, settings.upper_inclusive)
    mask &= region_mask(settings.region, depth.shape)
    return Prepared(sample.id, np.ascontiguousarray(image), np.ascontiguousarray(depth, dtype=np.float32), mask)


def match_prediction(pred: np.ndarray, prepared: Prepared, settings: Settings) -> np.ndarray:
    """Bring a prediction to the ground truth's HxW: unchanged if it already matches; bilinear
    (corners aligned) under a protocol that resizes; an error otherwise (it was made for other inputs)."""
    pred = np.asarray(pred, dtype=np.float32)
    if pred.ndim == 3 and pred.shape[0] == 1:
        pred = pred[0]
    if pred.shape == prepared.gt.shape:
        return pred
    if pred.ndim == 2 and pred.shape == prepared.image.shape[:2] and settings.size is not None:
        return resize_bilinear(pred, prepared.gt.shape)
    raise PredictionError(f"{prepared.id}: prediction is {'x'.join(map(str, pred.shape))}, expected "
                       f"{prepared.image.shape[0]}x{prepared.image.shape[1]} (the input the protocol "
                       f"'{settings.protocol}' gives the model)")
