"""Training and test data: the dataset interface, the procedural scene generator, torch adapters.

`depthart.data` and everything it imports are numpy + Pillow only; `depthart.data.torch_data`
(imported explicitly) holds the torch `Dataset`s and the DataLoader factory.
"""

from .base import DataError, DepthDataset, FromLoader, check_sample
from .hypersim import HypersimDataset
from .procedural import HELD_OUT_SEED_OFFSET, ProceduralDataset, Sample, generate_scene, write_hypersim_layout

__all__ = ["DataError", "DepthDataset", "FromLoader", "check_sample", "HELD_OUT_SEED_OFFSET", "HypersimDataset",
           "ProceduralDataset", "Sample", "generate_scene", "write_hypersim_layout"]
