"""depthart.runtime: the torch-free loop over the scales of an exported bundle.

    from depthart.runtime import DepthRuntime
    rt = DepthRuntime("bundle/")            # onnxruntime, CPU; backend="trt" for TensorRT engines
    result = rt.predict("photo.jpg")        # result.depth: float32 HxW in [0, 1], 0 = near

numpy + onnxruntime or TensorRT; never torch (tested with torch made unimportable).
"""

__all__ = ["DepthRuntime", "DepthResult"]


def __getattr__(name):  # lazy: `import depthart.runtime` needs nothing but Python
    if name in __all__:
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'depthart.runtime' has no attribute {name!r}")
