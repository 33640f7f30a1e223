"""The bundle manifest (`manifest.json`): everything the runtime needs, nothing inferred from file names.

Schema version 1. Top-level keys:
    schema_version, format ("depthart-bundle"), created, precision, opset,
    model (ModelConfig fields), checkpoint {source, sha256}, image_size, batch {max},
    preprocess, postprocess, kv_cache, steps (per scale: scale, patch, tokens, past, slots, logits_tail),
    step_logits ("tail": the step graph's logits, tokens, h and h_expect cover each step's logits_tail tokens;
    absent in bundles exported before 2026-12-01, whose step graph gives them for all of a step's tokens),
    graphs {name: {file, bytes, ops, inputs, outputs}}, parity, software,
    files {name: {bytes, sha256}} (every file named above, engines included; checked at load).
"""

from __future__ import annotations

import json
import os

from ..fileio import atomic_write_bytes
from ..provenance import file_sha256, software_versions  # noqa: F401  (re-exported for export)

from ..runtime.manifest import FORMAT, ORT_SESSION_DEFAULTS, SCHEMA_VERSION  # noqa: F401  (the runtime owns the schema)

PREPROCESS = {
    "reference": "depthart/preprocess.py",
    "exif_transpose": True,
    "to_rgb8": "16-bit scaled by 255/65535, greyscale repeated, alpha dropped",
    "resize": {"library": "Pillow", "filter": "BICUBIC", "keep_aspect": False},
    "scale": "x / 127.5 - 1",
    "layout": "NCHW float32 in [-1, 1]",
}
POSTPROCESS = {
    "depth": "decoder output (B, 1, S, S): relative depth in [0, 1], 0 = near",
    "resize_to_input": "bicubic, clipped to [0, 1]",
}


def write_manifest(bundle_dir, manifest: dict) -> None:
    """Write manifest.json, recording the size and sha256 of every file it names ("files", runtime/integrity.py).

    Every writer (export, --trt, calibrate) goes through here, so the record always matches the folder.
    """
    from ..runtime.integrity import FILES_KEY, file_records

    manifest[FILES_KEY] = file_records(bundle_dir, manifest)
    atomic_write_bytes(os.path.join(bundle_dir, "manifest.json"),
                       (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())


def read_manifest(bundle_dir) -> dict:
    """The validated manifest (the runtime's reader: one definition of what a bundle is)."""
    from ..runtime.manifest import load_manifest

    return load_manifest(bundle_dir)
