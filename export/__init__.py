"""depthart.export: ONNX graphs and TensorRT engines from a DepthART checkpoint.

Not built yet (issue "Export"): each scale's transformer step with its KV cache, the image
prefix, the between-scale work and the VQ-VAE decoder, plus the bundle manifest.
"""
