"""TensorRT 10.x implicit int8 calibration over the same feeds (the JetPack 6 path). TensorRT is imported lazily.

Implicit calibration (`IInt8Calibrator` with the int8 builder flag) is deprecated since TensorRT
10.1 and removed in 11.0, where int8 comes only from the Q/DQ nodes of an int8 bundle
(`make_precision_bundle(..., "int8")`). It is offered, from Python only, for TensorRT 10.3 (JetPack 6)
users building a weakly typed engine from the fp32 bundle with Polygraphy (`CreateConfig(int8=True,
calibrator=...)`); `depthart export --trt` builds strongly typed engines and does not use it. TensorRT calibrates a dynamic-shape graph with one optimisation profile (the
calibration profile), so for the step graph the calibrator yields the feeds of one scale only
(`scale`, default: the last and largest); the explicit Q/DQ route covers every scale.
"""

from __future__ import annotations

import os

ALGOS = ("entropy2", "minmax", "entropy", "legacy")


def tensorrt_calibrator(graph_feeds: list[dict], cache_path, algo: str = "entropy2"):
    """A Polygraphy `Calibrator` (TensorRT 10.x) over one graph's recorded feed dicts, with a cache file.

    Args:
        graph_feeds: [feed dict] for one graph, all with the calibration profile's shapes
            (`calibration_feeds` selects them).
        cache_path: the calibration cache; TensorRT reads it if it exists (no data is then fed) and
            writes it after calibrating.
        algo: "entropy2" (IInt8EntropyCalibrator2, default), "minmax", "entropy", "legacy".

    Returns:
        a Polygraphy Calibrator, for `polygraphy.backend.trt.CreateConfig(int8=True, calibrator=...)`.

    Raises:
        DepthartError: TensorRT is not importable, or it is TensorRT 11+ (no implicit calibration).
    """
    from depthart.errors import DepthartError

    if algo not in ALGOS:
        raise ValueError(f"unknown calibrator {algo!r}; use one of {ALGOS}")
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or a stub whose libraries are missing
        raise DepthartError(f"the TensorRT calibrator needs TensorRT 10.x ({type(e).__name__}: {e})") from None
    if int(trt.__version__.split(".")[0]) >= 11:
        raise DepthartError(f"TensorRT {trt.__version__} has no implicit int8 calibration; build the int8 "
                            "bundle (depthart calibrate BUNDLE --precision int8) and its strongly typed engines")
    from polygraphy.backend.trt import Calibrator

    base = {"entropy2": trt.IInt8EntropyCalibrator2, "minmax": trt.IInt8MinMaxCalibrator,
            "entropy": trt.IInt8EntropyCalibrator, "legacy": trt.IInt8LegacyCalibrator}[algo]
    return Calibrator(data_loader=list(graph_feeds), cache=os.fspath(cache_path), BaseClass=base)


def calibration_feeds(feeds: dict[str, list[dict]], graph: str, manifest: dict, scale: int | None = None) -> list[dict]:
    """The feeds of `graph` that fit one calibration profile: for "step", the calls of one scale."""
    calls = feeds[graph]
    if graph != "step":
        return calls
    n = len(manifest["steps"])
    k = n - 1 if scale is None else scale
    if not 0 <= k < n:
        raise ValueError(f"scale {k} out of range (the bundle has {n} scales)")
    return calls[k::n]
