"""`depthart calibrate`: an fp16 or int8 bundle from an fp32 bundle (+ its accuracy report).

Registered by the root group with `main.add_command(calibrate_cmd)`. Thin: the work is in
`quantize.make_precision_bundle` and `report.accuracy_report`; library errors exit 1.
"""

from __future__ import annotations

import json
import os

import click


@click.command("calibrate")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--precision", type=click.Choice(["fp16", "int8"]), required=True, help="Precision of the new bundle.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="The bundle folder to write.")
@click.option("--calib-images", type=click.Path(exists=True, file_okay=False), default=None,
              help="int8: folder of calibration images (default: procedural scenes).")
@click.option("--num-calib", type=click.IntRange(min=1), default=16, show_default=True,
              help="int8: number of calibration images.")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True, help="int8: calibration method.")
@click.option("--cache-dir", type=click.Path(file_okay=False), envvar="DEPTHART_CALIB_CACHE", default=None,
              help="Where calibration tables are cached (default ~/.cache/depthart/calibration). "
                   "Env: DEPTHART_CALIB_CACHE.")
@click.option("--report", is_flag=True, help="Measure accuracy against the fp32 bundle on held-out images "
                                             "and write it into the bundle (accuracy.json and the manifest).")
@click.option("--report-images", type=click.IntRange(min=1), default=8, show_default=True,
              help="Held-out procedural scenes for --report (plus Middlebury when scikit-image is installed).")
@click.option("--int8-format", type=click.Choice(["s8s8", "u8s8"]), default="s8s8", show_default=True,
              help="int8: s8s8 = symmetric int8 activations (TensorRT, any provider); u8s8 = uint8 activations, "
                   "onnxruntime's CPU provider only, where its int8 kernels are fast; its default plan quantises the "
                   "step graph and the decoder and keeps the image prefix fp32 (--plan prefix=int8 quantises it "
                   "too, but its latent stage: faster, less accurate; docs/precision.md).")
@click.option("--plan", "plan_items", multiple=True, metavar="GRAPH=PRECISION",
              help="Per-graph precision instead of the default plan, repeatable: e.g. --plan decoder=int8 "
                   "--plan step=fp32 (graphs: prefix, step, next_* or next_K, decoder; fp32, fp16 or int8).")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
def calibrate_cmd(bundle, precision, output, calib_images, num_calib, method, cache_dir, report, report_images,
                  int8_format, plan_items, force):
    """Make an fp16 or int8 bundle from an fp32 bundle (onnxruntime calibration, Q/DQ for TensorRT)."""
    from depthart.errors import DepthartError

    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise click.ClickException(f"calibrate needs onnx and onnxruntime ({e.name} is missing): "
                                   'pip install "depthart[export,ort]"') from None
    from .quantize import METHODS, make_precision_bundle

    say = lambda m: click.echo(f"  {m}", err=True)  # noqa: E731
    plan = {}
    for item in plan_items:
        graph, sep, prec = item.partition("=")
        if not sep or not graph or prec not in ("fp32", "fp16", "int8"):
            raise click.BadParameter(f"{item!r}: give GRAPH=PRECISION, e.g. decoder=int8 (fp32, fp16 or int8)",
                                     param_hint="--plan")
        plan[graph] = prec
    try:
        manifest = make_precision_bundle(bundle, output, precision, calib_images=calib_images, num_calib=num_calib,
                                         method=method, force=force, cache_dir=cache_dir, progress=say,
                                         plan=plan or None, int8_format=int8_format)
    except (DepthartError, FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"wrote {output} ({precision}: " +
               ", ".join(f"{g} {c['precision']}" for g, c in manifest["precision_plan"].items()) + ")")
    if report:
        from depthart.export.manifest import write_manifest
        from depthart.fileio import atomic_write_bytes

        from .report import accuracy_report

        r = accuracy_report(bundle, output, num_procedural=report_images, progress=say)
        atomic_write_bytes(os.path.join(output, "accuracy.json"), json.dumps(r, indent=2).encode())
        manifest["accuracy"] = {"file": "accuracy.json", "target": r["target"], "metrics": r["metrics"]}
        write_manifest(output, manifest)
        click.echo(format_report(r))
        if r["target"]["passed"] is False:
            click.echo(f"warning: AbsRel changed by {r['target']['worst']:.2%} vs fp32, above the "
                       f"{r['target']['abs_rel_rel_change_max']:.1%} target; another calibration method "
                       f"(--method {'/'.join(m for m in METHODS if m != method)}) or "
                       "a graph kept in fp32 (--plan GRAPH=fp32) may keep it: docs/precision.md", err=True)


def format_report(r: dict) -> str:
    lines = [f"{'scale':>5} {'patch':>5} {'tokens agree':>12} {'logits max abs':>14} {'logits rel rms':>14}"]
    for s in r["per_scale"]:
        lines.append(f"{s['scale']:>5} {s['patch']:>5} {s['token_agreement']:>12.4f} {s['logits_max_abs']:>14.3e} "
                     f"{s['logits_rel_rms']:>14.3e}")
    lines.append(f"depth map vs fp32 (sampler {r.get('sampler', 'greedy')}): max abs {r['depth']['max_abs']:.3e}, "
                 f"mean abs {r['depth']['mean_abs']:.3e}")
    for name, row in r["metrics"].items():
        lines.append(f"{name} ({row['images']} images): AbsRel fp32 {row['fp32']['abs_rel']:.4f} -> "
                     f"{r['precision']} {row['test']['abs_rel']:.4f} ({row['abs_rel_rel_change']:.2%}), delta1 "
                     f"{row['fp32']['delta1']:.4f} -> {row['test']['delta1']:.4f}"
                     + (f"; per image |AbsRel change| {row['abs_rel_scene_change']:.2%} of fp32's"
                        if "abs_rel_scene_change" in row else ""))
    for s in r["skipped"]:
        lines.append(f"skipped {s}")
    return "\n".join(lines)
