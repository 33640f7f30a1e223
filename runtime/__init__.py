"""depthart.runtime: the torch-free loop over the scales on onnxruntime and TensorRT.

Not built yet (issue "Runtime"). This package must never import torch (tested).
"""
