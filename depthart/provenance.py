"""Where numbers and artifacts came from: file hashes and software versions. No torch."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata

DEFAULT_PACKAGES = ("depthart", "numpy", "pillow", "torch", "safetensors", "onnx", "onnxscript", "onnxruntime",
                    "onnxruntime-gpu", "polygraphy", "tensorrt", "h5py", "scipy", "scikit-image")


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """sha256 (hex) of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def software_versions(packages=DEFAULT_PACKAGES) -> dict[str, str]:
    """Python, the platform and the versions of those `packages` that are installed."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
