"""Runtime backends: onnxruntime (ort.py) and TensorRT (trt.py), imported lazily by DepthRuntime."""
