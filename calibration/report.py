"""What a precision costs: accuracy of an fp16/int8 bundle against its fp32 source, and CPU latency.

Accuracy, on held-out images (procedural test scenes, seeds from `HELD_OUT_SEED_OFFSET`, and the
Middlebury Motorcycle pair when scikit-image is installed):
- per scale: greedy token agreement of the free-running loops, and the step logits error with the
  fp32 run's exact inputs fed to both (teacher-forced, so errors do not compound);
- the final depth map's error (free-running);
- AbsRel and delta1 of both bundles against ground truth (median-scale alignment), and the relative
  AbsRel change, judged against the targets (int8 within 2 %, fp16 within 0.5 %).
The random-weight presets have no meaningful depth, so on them the metric targets check only
that the precision follows fp32; the same code measures a trained checkpoint.
"""

from __future__ import annotations

import os
import time

import numpy as np

TARGETS = {"int8": 0.02, "fp16": 0.005}  # max relative AbsRel change vs fp32
PROCEDURAL_RANGE = (1e-3, 100.0)
MIDDLEBURY_RANGE = (1e-3, 10.0)  # the depthart protocol's range for Middlebury


def _runner(bundle_dir):
    from depthart.export.loop import ort_runner
    from depthart.runtime.manifest import load_manifest

    m = load_manifest(bundle_dir)
    return ort_runner(os.fspath(bundle_dir), m), m


def held_out_samples(num_procedural: int = 8, size: int = 128, middlebury: bool = True) -> list[tuple]:
    """[(set name, id, rgb uint8 HxWx3, gt depth HxW, valid HxW)] for the report."""
    from depthart.data.procedural import HELD_OUT_SEED_OFFSET, generate_scene

    out = []
    for i in range(num_procedural):
        s = generate_scene(HELD_OUT_SEED_OFFSET + i, size)
        out.append(("procedural", f"procedural_{HELD_OUT_SEED_OFFSET + i}", s.rgb, s.depth, s.valid))
    if middlebury:
        try:
            from depthart.evaluation.datasets import open_dataset

            ds = open_dataset("middlebury")
            for i in range(len(ds)):
                smp = ds.load(i)
                out.append(("middlebury", smp.id, smp.image, smp.depth, smp.valid))
        except Exception as e:  # scikit-image (which ships the pair) missing: the report says so
            out.append(("middlebury", f"unavailable: {e}", None, None, None))
    return out


def set_row(fp32: list[dict], test: list[dict]) -> dict:
    """One image set's row of the accuracy report from per-image metrics (dicts with abs_rel, delta1), in pairs.

    abs_rel_rel_change (the budget's figure) compares the means, so changes that go both ways cancel;
    abs_rel_scene_change does not: the mean per-image |AbsRel change| over the mean fp32 AbsRel (how much the
    individual maps move; reported, not judged).
    """
    row = {tag: {k: float(np.mean([x[k] for x in v])) for k in ("abs_rel", "delta1")}
           for tag, v in (("fp32", fp32), ("test", test))}
    row["images"] = len(fp32)
    row["abs_rel_rel_change"] = abs(row["test"]["abs_rel"] - row["fp32"]["abs_rel"]) / row["fp32"]["abs_rel"]
    row["abs_rel_scene_change"] = float(np.mean([abs(t["abs_rel"] - f["abs_rel"]) for f, t in zip(fp32, test)])) \
        / row["fp32"]["abs_rel"]
    return row


def accuracy_report(fp32_bundle, test_bundle, num_procedural: int = 8, middlebury: bool = True,
                    samples: list | None = None, progress=None) -> dict:
    """The accuracy of `test_bundle` (fp16/int8) against `fp32_bundle` on held-out images.

    Args:
        fp32_bundle: the fp32 source bundle.
        test_bundle: the precision bundle.
        num_procedural: held-out procedural scenes (rendered at twice the model size, min 64 px).
        middlebury: include the Middlebury Motorcycle pair (needs scikit-image).
        samples: instead of the above, [(set, id, rgb, depth, valid)] (`held_out_samples`).
        progress: optional callable(message).

    Returns:
        {"precision", "sampler", "images", "per_scale": [{scale, patch, token_agreement, logits_max_abs,
        logits_rel_rms}], "depth": {max_abs, mean_abs}, "metrics": {set: {"fp32": {abs_rel, delta1},
        "test": {...}, "abs_rel_rel_change", "abs_rel_scene_change"}}, "target": {abs_rel_rel_change_max, passed}, "skipped": [...]}
    """
    from depthart.config import ModelConfig
    from depthart.export.loop import run_loop
    from depthart.metrics import evaluate
    from depthart.preprocess import load_image, resize_depth, to_model_input
    from depthart.runtime.manifest import load_codebook, manifest_sampler
    from depthart.runtime.sampling import make_sampler

    say = progress or (lambda msg: None)
    ref_run, m = _runner(fp32_bundle)
    test_run, tm = _runner(test_bundle)
    cfg = ModelConfig.from_dict(m["model"])
    S = m["image_size"]
    # the sampler the runtime uses for these bundles (the manifest's; greedy is the step graph's argmax)
    sampler_name = manifest_sampler(tm)
    sampler = make_sampler(sampler_name)
    ref_cb = test_cb = None
    if sampler is not None:
        ref_cb, test_cb = load_codebook(fp32_bundle, m), load_codebook(test_bundle, tm)
    if samples is None:
        samples = held_out_samples(num_procedural, max(2 * S, 64), middlebury)
    n_scales = len(m["steps"])
    agree = [[] for _ in range(n_scales)]
    lmax = [0.0] * n_scales
    lrel = [[] for _ in range(n_scales)]
    dmax, dmean, per_set, skipped = 0.0, [], {}, []
    for set_name, sid, rgb, gt, valid in samples:
        if rgb is None:
            skipped.append(f"{set_name}: {sid}")
            continue
        pil = load_image(rgb)
        image = to_model_input(pil, S)[None]
        ref_calls, forced_calls = [], []
        ref = run_loop(ref_run, cfg, image, record=ref_calls, sampler=sampler, codebook=ref_cb)
        run_loop(test_run, cfg, image, record=forced_calls, feeds_from=ref_calls, sampler=sampler, codebook=test_cb)
        free = run_loop(test_run, cfg, image, sampler=sampler, codebook=test_cb)
        steps = [(r[2], f[2]) for r, f in zip(ref_calls, forced_calls) if r[0] == "step"]
        for k, (ro, fo) in enumerate(steps):
            n = m["steps"][k]["logits_tail"]
            a, b = ro["logits"][:, -n:], fo["logits"][:, -n:]
            lmax[k] = max(lmax[k], float(np.abs(a - b).max()))
            lrel[k].append(float(np.sqrt(np.mean((a - b) ** 2)) / (np.sqrt(np.mean(a ** 2)) + 1e-12)))
            agree[k].append(float(np.mean(ref["tokens"][k] == free["tokens"][k])))
        diff = np.abs(ref["depth"] - free["depth"])
        dmax, dmean = max(dmax, float(diff.max())), dmean + [float(diff.mean())]
        for tag, out in (("fp32", ref), ("test", free)):
            pred = resize_depth(out["depth"][0, 0], gt.shape[0], gt.shape[1])
            rng = MIDDLEBURY_RANGE if set_name == "middlebury" else PROCEDURAL_RANGE
            mt = evaluate(pred, gt, valid, alignment="median_scale", depth_range=rng)
            per_set.setdefault(set_name, {}).setdefault(tag, []).append(mt)
        say(f"{sid}: depth max abs diff {float(diff.max()):.2e}")
    metrics = {set_name: set_row(d["fp32"], d["test"]) for set_name, d in per_set.items()}
    precision = tm["precision"]
    limit = TARGETS.get(precision)
    worst = max((r["abs_rel_rel_change"] for r in metrics.values()), default=0.0)
    return {
        "precision": precision,
        "sampler": sampler_name,
        "fp32_bundle": os.path.abspath(os.fspath(fp32_bundle)),
        "test_bundle": os.path.abspath(os.fspath(test_bundle)),
        "images": sum(r["images"] for r in metrics.values()),
        "per_scale": [{"scale": k, "patch": m["steps"][k]["patch"],
                       "token_agreement": float(np.mean(agree[k])) if agree[k] else None,
                       "logits_max_abs": lmax[k],
                       "logits_rel_rms": float(np.mean(lrel[k])) if lrel[k] else None} for k in range(n_scales)],
        "depth": {"max_abs": dmax, "mean_abs": float(np.mean(dmean)) if dmean else None},
        "metrics": metrics,
        "target": {"abs_rel_rel_change_max": limit, "worst": worst,
                   "passed": None if limit is None else bool(worst <= limit)},
        "skipped": skipped,
    }


def graph_sensitivity(fp32_bundle, work_dir, precision: str = "int8", samples=None, progress=None, **kw) -> dict:
    """Which graphs cost accuracy: one bundle per graph with only that graph in `precision`.

    Returns {graph: {"abs_rel_rel_change": worst over the sets, "token_agreement": mean over scales,
    "depth_max_abs"}}. Extra keyword arguments go to `make_precision_bundle` (calib_images, method, ...).
    """
    from depthart.runtime.manifest import load_manifest

    from .quantize import make_precision_bundle

    m = load_manifest(fp32_bundle)
    out = {}
    for name in m["graphs"]:
        plan = {"*": "fp32", "next_*": "fp32", "prefix": "fp32", "decoder": "fp32", "step": "fp32", name: precision}
        d = os.path.join(os.fspath(work_dir), f"only_{name}")
        make_precision_bundle(fp32_bundle, d, precision, plan=plan, force=True, **kw)
        r = accuracy_report(fp32_bundle, d, samples=samples)
        out[name] = {"abs_rel_rel_change": r["target"]["worst"],
                     "token_agreement": float(np.mean([s["token_agreement"] for s in r["per_scale"]])),
                     "depth_max_abs": r["depth"]["max_abs"]}
        if progress:
            progress(f"only {name} in {precision}: {out[name]}")
    return out


def latency(bundle_dir, runs: int = 10, warmup: int = 2, threads: int | None = None, image=None) -> dict:
    """onnxruntime CPU latency of a bundle through `DepthRuntime`: median seconds per stage and end to end.

    Returns {"total", "steps" (sum of the step graph calls), "step_<k>", "prefix", "decoder", "next"}.
    """
    from depthart.runtime import DepthRuntime

    rt = DepthRuntime(bundle_dir, threads=threads)
    S = rt.image_size
    if image is None:
        yy, xx = np.mgrid[0:S, 0:S] / max(S - 1, 1)
        image = (np.stack([xx, yy, 1 - xx * yy], -1) * 255).astype(np.uint8)
    for _ in range(warmup):
        rt.predict(image)
    rows = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = rt.predict(image)
        t = dict(r.timings)
        t["wall"] = time.perf_counter() - t0
        rows.append(t)
    med = {k: float(np.median([row[k] for row in rows])) for k in rows[0]}
    out = {"total": med["wall"], "prefix": med.get("prefix"), "decoder": med.get("decoder"),
           "steps": sum(v for k, v in med.items() if k.startswith("step_")),
           "next": sum(v for k, v in med.items() if k.startswith("next_"))}
    out.update({k: v for k, v in med.items() if k.startswith("step_")})
    return out
