"""depthart: monocular depth estimation with a visual autoregressive transformer (DepthART).

`import depthart` does not import torch; the PyTorch pieces load on first use:

    import depthart
    model = depthart.load("model.safetensors")   # or a preset name: random weights
    depth = model.predict("photo.jpg")           # float32 HxW in [0, 1], 0 = near
"""

__version__ = "0.1.0"

import os as _os

# export/, runtime/ and calibration/ sit at the repo top level and install as depthart.export, ... (pyproject's
# package-dir). Imported from a clone (the repo root on sys.path, e.g. `python -m depthart.cli` there), this source
# folder shadows any installed copy and holds none of the three: take them from the repo top level instead.
_here = _os.path.dirname(_os.path.abspath(__file__))
_root = _os.path.dirname(_here)
if not _os.path.isfile(_os.path.join(_here, "runtime", "__init__.py")) and all(
        _os.path.isfile(_os.path.join(_root, sub, "__init__.py")) for sub in ("runtime", "export", "calibration")):
    __path__.append(_root)
del _here, _root

from .config import PRESETS, ModelConfig, get_preset  # torch-free
from .errors import DepthartError

__all__ = ["PRESETS", "ModelConfig", "get_preset", "DepthartError", "load", "DepthART", "__version__"]


def load(path_or_preset=None, device="cpu"):
    """A DepthART model in eval mode: the trained default, a checkpoint, or a preset (random weights).

    Args:
        path_or_preset: None (or "default") for the `small` model trained in this repo and shipped
            with it; a `.safetensors` checkpoint written by depthart (`depthart import-var`,
            `import-release`, training); the DepthART release's own `model.safetensors` (converted in
            memory; heads = depth assumed); or one of `depthart.PRESETS` for a randomly initialised model.
        device: torch device. Defaults to "cpu".

    `model.default_sampler` is the sampler the checkpoint recommends ("greedy" or "expect"; greedy for
    presets); `model.predict(image)` follows it unless given a sampler.
    """
    from .checkpoint import load as _load

    return _load(path_or_preset, device)


def __getattr__(name):
    if name == "DepthART":
        from .model import DepthART

        return DepthART
    raise AttributeError(f"module 'depthart' has no attribute {name!r}")
