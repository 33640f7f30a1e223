"""Reading and validating a bundle's manifest.json (schema version 1). numpy-free, torch-free."""

from __future__ import annotations

import json
import os

from ..errors import DepthartError

SCHEMA_VERSION = 1  # what export writes
SUPPORTED_SCHEMAS = (1,)  # what the runtime reads
FORMAT = "depthart-bundle"
REQUIRED = ("model", "steps", "graphs", "kv_cache", "image_size", "precision")
GRAPHS = ("prefix", "step", "decoder")
SAMPLERS = ("greedy", "expect")  # the manifest's optional "sampler"; absent means greedy
# the manifest's optional "onnxruntime": the session options every graph of the bundle is loaded with.
# Absent (bundles from before it) means these defaults, which are also what export records.
ORT_SESSION_DEFAULTS = {
    "graph_optimization_level": "all",  # basic | extended | all (onnxruntime's ORT_ENABLE_*); "disable" for debugging
    "allow_spinning": False,  # intra-op threads busy-wait between calls: the loop calls many small graphs
    "intra_op_num_threads": 0,  # 0: onnxruntime's choice (one per physical core); `threads=` overrides it
}
ORT_OPT_LEVELS = ("disable", "basic", "extended", "all")


def load_manifest(bundle_dir) -> dict:
    """The validated manifest of a bundle folder. Raises DepthartError naming what is wrong."""
    path = os.path.join(os.fspath(bundle_dir), "manifest.json")
    if not os.path.isdir(bundle_dir):
        raise DepthartError(f"{bundle_dir}: no such bundle folder (create one with `depthart export`)")
    if not os.path.isfile(path):
        raise DepthartError(f"{bundle_dir}: no manifest.json (not a depthart bundle, or an unfinished export)")
    try:
        with open(path) as f:
            m = json.load(f)
    except (OSError, ValueError) as e:  # ValueError: bad JSON, or bytes that are not text
        raise DepthartError(f"{path}: unreadable manifest ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(m, dict):
        raise DepthartError(f"{path}: not a depthart manifest (a JSON {type(m).__name__}, not an object)")
    if m.get("format") != FORMAT:
        raise DepthartError(f"{path}: format {m.get('format')!r} is not {FORMAT!r}")
    for key in ("schema_version", "schema"):  # "schema": what a person editing the file may write
        if (key in m or key == "schema_version") and m.get(key) not in SUPPORTED_SCHEMAS:
            raise DepthartError(f"{path}: schema version {m.get(key)!r} found; this depthart reads version(s) "
                                f"{', '.join(map(str, SUPPORTED_SCHEMAS))}: re-export the bundle with this depthart")
    try:
        _check_structure(bundle_dir, path, m)
    except (KeyError, TypeError, AttributeError, IndexError) as e:  # an edited manifest with wrong types
        raise DepthartError(f"{path}: malformed manifest ({type(e).__name__}: {e}); re-export the bundle") from None
    return m


def _check_structure(bundle_dir, path: str, m: dict) -> None:
    missing = [k for k in REQUIRED if k not in m]
    if missing:
        raise DepthartError(f"{path}: manifest lacks {missing}")
    names = set(GRAPHS) | {f"next_{s['scale']}" for s in m["steps"]}
    if names - set(m["graphs"]):
        raise DepthartError(f"{path}: manifest lists no graph for {sorted(names - set(m['graphs']))}")
    for name, g in m["graphs"].items():
        for f in [g["file"], *g.get("data_files", [])]:
            if not os.path.isfile(os.path.join(bundle_dir, f)):
                raise DepthartError(f"{bundle_dir}: graph {name!r} needs {f}, which is missing; re-copy the bundle or "
                                    "re-export it")
    if m.get("sampler", "greedy") not in SAMPLERS:
        raise DepthartError(f"{path}: sampler {m['sampler']!r} is not one of {', '.join(SAMPLERS)}")
    ort_session_options(m, path)


def ort_session_options(m: dict, path: str = "manifest.json") -> dict:
    """The onnxruntime session options a (validated) manifest records, defaults filled in; raises
    DepthartError naming an unknown key or a bad value."""
    given = m.get("onnxruntime") or {}
    if not isinstance(given, dict):
        raise DepthartError(f"{path}: \"onnxruntime\" must be an object of session options, got {given!r}")
    unknown = sorted(set(given) - set(ORT_SESSION_DEFAULTS))
    if unknown:
        raise DepthartError(f"{path}: unknown onnxruntime session option(s) {unknown}; known: "
                            f"{', '.join(ORT_SESSION_DEFAULTS)}")
    out = {**ORT_SESSION_DEFAULTS, **given}
    if out["graph_optimization_level"] not in ORT_OPT_LEVELS:
        raise DepthartError(f"{path}: onnxruntime graph_optimization_level {out['graph_optimization_level']!r} is not "
                            f"one of {', '.join(ORT_OPT_LEVELS)}")
    if not isinstance(out["allow_spinning"], bool):
        raise DepthartError(f"{path}: onnxruntime allow_spinning must be true or false, got {out['allow_spinning']!r}")
    n = out["intra_op_num_threads"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise DepthartError(f"{path}: onnxruntime intra_op_num_threads must be an integer >= 0, got {n!r}")
    return out


def manifest_sampler(m: dict) -> str:
    """The sampler a (validated) manifest recommends: its "sampler", or "greedy" for bundles without one."""
    return m.get("sampler", "greedy")


def load_codebook(bundle_dir, m: dict):
    """The bundle's (V, C) codebook (what samplers look token vectors up in); DepthartError if absent or unreadable."""
    import numpy as np

    name = m.get("codebook")
    if not name:
        raise DepthartError(f"{bundle_dir}: bundle has no codebook; re-export it to sample")
    path = os.path.join(os.fspath(bundle_dir), name)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DepthartError(f"{path}: unreadable ({e}); re-copy or re-export the bundle") from None


def check_io(name: str, declared: dict, actual_inputs: list[str], actual_outputs: list[str]) -> None:
    """Compare a loaded graph/engine's I/O names with the manifest, reporting differences both ways."""
    problems = []
    for kind, want, have in (("inputs", [i["name"] for i in declared["inputs"]], actual_inputs),
                             ("outputs", [o["name"] for o in declared["outputs"]], actual_outputs)):
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        if missing:
            problems.append(f"{kind} in the manifest but not in the graph: {missing}")
        if extra:
            problems.append(f"{kind} in the graph but not in the manifest: {extra}")
    if problems:
        raise DepthartError(f"graph {name!r} does not match the manifest: " + "; ".join(problems) +
                            ". Re-export the bundle.")
