"""`export_bundle`: a checkpoint -> a deployable folder of ONNX graphs + manifest.json.

The bundle is assembled in a hidden sibling folder and renamed into place at the end, so a
half-written bundle never looks complete; an existing bundle is replaced only with `force`.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
import time

import numpy as np

from ..errors import DepthartError
from ..fileio import default_dir_mode
from . import manifest as mf
from .compare import check_parity
from .loop import ort_runner, steps, torch_runner
from .onnx import MAX_BATCH, OPSET, check_graph, graph_io, graph_specs, onnx_from_module


def parity_image(size: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    """A deterministic smooth test image (gradients + a disc), float32 (B, 3, S, S) in [-1, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    imgs = []
    for _ in range(batch):
        cx, cy, r = rng.uniform(0.3, 0.7, 2).tolist() + [rng.uniform(0.15, 0.3)]
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r).astype(float)
        chans = [xx * rng.uniform(0.5, 1) + disc * 0.5, yy * rng.uniform(0.5, 1), 1 - xx * yy + 0.3 * disc]
        imgs.append(np.stack(chans) * 2 - 1)
    return np.clip(np.stack(imgs), -1, 1).astype(np.float32)


def export_bundle(model, out_dir, *, source: str, checkpoint_sha256: str | None = None, force: bool = False,
                  check: bool = True, progress=None) -> dict:
    """Export `model` to the bundle folder `out_dir`. Returns the manifest.

    Args:
        model: a DepthART model (eval mode is set here). Its recommended sampler (`model.default_sampler`,
            set when loaded from a checkpoint; greedy otherwise) becomes the manifest's "sampler".
        out_dir: the bundle folder to create.
        source: where the weights came from (checkpoint path or preset name), recorded in the manifest.
        checkpoint_sha256: hash of the checkpoint file, if any.
        force: replace an existing `out_dir`.
        check: run the parity check (onnxruntime CPU vs PyTorch eager) and record it.
        progress: optional callable(message) for per-graph progress.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir) and not force:
        raise DepthartError(f"{out_dir} exists; pass --force to replace it")
    say = progress or (lambda msg: None)
    # exported on the CPU in fp32; the caller's model is put back as it was at the end
    first = next(model.parameters())
    restore = (first.device, first.dtype, model.training)
    model.eval().float().cpu()
    try:
        return _export(model, out_dir, source, checkpoint_sha256, check, say)
    finally:
        model.to(device=restore[0], dtype=restore[1]).train(restore[2])


def _export(model, out_dir, source, checkpoint_sha256, check, say) -> dict:
    from ..checkpoint import model_sampler

    cfg = model.cfg
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(out_dir)}.partial-")
    try:
        specs = graph_specs(model)
        graphs = {}
        for name, (module, args, ins, outs, dyn) in specs.items():
            t0 = time.perf_counter()
            path = os.path.join(tmp, f"{name}.onnx")
            onnx_from_module(module, args, path, ins, outs, dyn)
            ops = check_graph(path)
            files = sorted(f for f in os.listdir(tmp) if f == f"{name}.onnx" or f.startswith(f"{name}.onnx."))
            size = sum(os.path.getsize(os.path.join(tmp, f)) for f in files)
            graphs[name] = {"file": f"{name}.onnx", "data_files": [f for f in files if f != f"{name}.onnx"],
                            "bytes": size, "ops": sorted(ops), "export_s": round(time.perf_counter() - t0, 2),
                            **graph_io(path)}
            say(f"{name}: {size / 1e6:.1f} MB, {len(ops)} op types, {graphs[name]['export_s']:.1f} s")
        # the codebook lets the runtime sample tokens (top-k/top-p) and look up their vectors
        np.save(os.path.join(tmp, "codebook.npy"), model.vae.quantize.embedding.weight.detach().numpy())
        manifest = {
            "schema_version": mf.SCHEMA_VERSION,
            "format": mf.FORMAT,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "precision": "fp32",
            "opset": OPSET,
            "model": cfg.to_dict(),
            "checkpoint": {"source": source, "sha256": checkpoint_sha256},
            "image_size": cfg.image_size,
            "batch": {"max": MAX_BATCH},
            "preprocess": mf.PREPROCESS,
            "postprocess": mf.POSTPROCESS,
            "kv_cache": {"layout": ["slot", "layer", "batch", "head", "dim"], "slots": 1 + cfg.seq_len,
                         "null_slot": 0, "depth": cfg.depth, "heads": cfg.heads, "head_dim": cfg.head_dim,
                         "dtype": "float32"},
            "steps": steps(cfg),
            "step_logits": "tail",  # the step graph's logits/tokens/h/h_expect: the steps' logits_tail tokens only
            "graphs": graphs,
            "codebook": "codebook.npy",
            "sampler": model_sampler(model),  # what the runtime uses by default (the checkpoint's recommendation)
            "onnxruntime": dict(mf.ORT_SESSION_DEFAULTS),  # the session options the runtime loads the graphs with
            "parity": None,
            "software": mf.software_versions(),
        }
        if check:
            say("parity: onnxruntime (CPU) vs PyTorch eager")
            report = check_parity(torch_runner(specs), ort_runner(tmp, manifest), cfg,
                                  parity_image(cfg.image_size, batch=1))
            manifest["parity"] = {"backend": "onnxruntime CPUExecutionProvider", "atol": 1e-4,
                                  "passed": report.passed, "max_abs": report.max_abs,
                                  "tokens_identical": report.tokens_identical,
                                  "depth_max_abs": report.depth_max_abs, "failures": report.failures}
            say(report.summary())
        mf.write_manifest(tmp, manifest)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _replace_dir(src: str, dst: str) -> None:
    """Move the finished folder into place; an old bundle is moved aside first and then deleted."""
    old = None
    if os.path.exists(dst):
        old = tempfile.mkdtemp(dir=os.path.dirname(dst), prefix=f".{os.path.basename(dst)}.old-")
        os.rename(dst, os.path.join(old, "bundle"))
    os.chmod(src, default_dir_mode())
    try:
        os.rename(src, dst)
    except OSError:
        if old:  # put the previous bundle back rather than leave nothing at dst
            os.rename(os.path.join(old, "bundle"), dst)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old:
        shutil.rmtree(old, ignore_errors=True)
