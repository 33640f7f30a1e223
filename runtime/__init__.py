"""depthart.runtime: the torch-free loop over the scales of an exported bundle.

    from depthart.runtime import DepthRuntime
    rt = DepthRuntime("bundle/")            # onnxruntime, CPU; backend="trt" for TensorRT engines
    result = rt.predict("photo.jpg")        # result.depth: float32 HxW in [0, 1], 0 = near

numpy + onnxruntime or TensorRT; never torch (tested with torch made unimportable).
"""

from .runtime import DepthResult, DepthRuntime

__all__ = ["DepthRuntime", "DepthResult"]
