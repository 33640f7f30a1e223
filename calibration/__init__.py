"""depthart.calibration: fp16 / int8 bundles from an fp32 bundle, calibration feeds, accuracy reports.

- `feeds`: the real inputs of every graph at every scale (KV states included), recorded through the
  scale loop; an onnxruntime CalibrationDataReader over them; cache keys.
- `quantize`: `make_precision_bundle(fp32_bundle, out, "fp16" | "int8", ...)`.
- `report`: `accuracy_report(fp32_bundle, test_bundle)`, `graph_sensitivity`, `latency`.
- `calibrator`: TensorRT 10.x implicit int8 calibrator (lazy TensorRT import).
- `cli`: the `depthart calibrate` click command.

Importing this package imports neither torch, onnx nor onnxruntime; the submodules load on first use.
"""

import importlib

_SUBMODULES = ("feeds", "quantize", "report", "calibrator", "cli")
_NAMES = {"make_precision_bundle": "quantize", "accuracy_report": "report", "tensorrt_calibrator": "calibrator",
          "calibrate_cmd": "cli"}

__all__ = [*_SUBMODULES, *_NAMES]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
