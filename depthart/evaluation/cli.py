"""`depthart eval`: score a checkpoint, or saved predictions, on a depth benchmark.

Registered on the root group in depthart/cli.py (`main.add_command(eval_cmd)`). torch is imported
only when a model runs, so `--predictions` re-scoring works on a torch-free install.
"""

from __future__ import annotations

import os

import click

from ..config import PRESETS
from ..errors import DepthartError
from ..metrics import mean_metrics
from ..progress import bar as progress_bar, quiet_option
from .baselines import AUTO_MAX_BYTES, AUTO_MAX_SAMPLES, collector_for, compute_baselines
from .datasets import DATASETS, open_dataset
from .protocol import PROTOCOLS, get_settings
from .runner import (FilePredictor, ModelPredictor, checkpoint_hash, format_table, iter_results, summarize,
                     write_json, write_manifest, write_per_sample_csv)

ALIGNMENT_CHOICES = ("least_squares", "least_squares_disparity", "median_scale", "none")
OUTPUT_FILES = ("per_sample.csv", "summary.json", "report.html", "report.png")


def _fail(msg: str):
    raise click.ClickException(msg)


def _load_model(checkpoint, device):
    try:
        import torch
        import safetensors  # noqa: F401
    except ImportError:
        _fail('running a model needs PyTorch: pip install torch==2.13.0 "depthart[torch]" '
              "(re-scoring saved predictions with --predictions does not)")
    from ..checkpoint import load_reporting

    if device.startswith("cuda") and not torch.cuda.is_available():
        _fail(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    torch.manual_seed(0)  # a preset's random weights, and so its scores, are the same on every run
    return load_reporting(checkpoint, device, lambda msg: click.echo(f"warning: {msg}", err=True))


@click.command("eval")
@click.option("-d", "--dataset", required=True, type=click.Choice(list(DATASETS)),
              help="Benchmark. middlebury (scikit-image's Motorcycle pair) and procedural (200 held-out generated scenes) need no --root.")
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="The dataset folder (layouts: docs/evaluation.md).")
@click.option("--split-file", type=click.Path(dir_okay=False), default=None,
              help="List of 'rgb depth' paths relative to --root (kitti, scannet, tum).")
@click.option("-c", "--checkpoint", envvar="DEPTHART_CHECKPOINT", default=None, metavar="PATH|PRESET",
              help=f"A depthart checkpoint, or a preset ({', '.join(PRESETS)}; random weights). "
                   "Env: DEPTHART_CHECKPOINT.")
@click.option("--predictions", "predictions_dir", type=click.Path(file_okay=False), default=None,
              help="Score saved predictions (<id>.npy, from --save-predictions) instead of running a model.")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default=None,
              help="marigold (default): native resolution, least squares in depth. depthart: the DepthART "
                   "release's 256x256 + median scale. With --predictions: what made them.")
@click.option("--alignment", type=click.Choice(ALIGNMENT_CHOICES), default=None,
              help="Override the protocol's alignment (least_squares_disparity for disparity predictions).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N samples.")
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False),
              help="Folder for per_sample.csv, summary.json (and predictions/, report.*).")
@click.option("--save-predictions", is_flag=True, help="Also save predictions to OUTPUT_DIR/predictions/.")
@click.option("--report", is_flag=True, help="Write report.html and report.png: the worst and best samples.")
@click.option("--report-samples", type=click.IntRange(min=1), default=4, show_default=True,
              help="Samples in each of the worst and best lists.")
@click.option("--baselines/--no-baselines", "baselines", default=None,
              help="Also score a constant map, an input-free prior map and each sample with another sample's "
                   "prediction, and report the image-use gap (docs/evaluation.md). Default: on up to "
                   f"{AUTO_MAX_SAMPLES} samples while the kept maps fit in {AUTO_MAX_BYTES // 2**30} GiB.")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu or cuda.")
@click.option("--sampler", type=click.Choice(["auto", "greedy", "expect"]), default="auto", show_default=True,
              help="Token choice per scale (as depthart predict). auto: the one the checkpoint recommends (its "
                   "metadata; greedy when it names none, and for presets); greedy: argmax; expect: the expected "
                   "code vector. summary.json records the one used.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs in OUTPUT_DIR.")
@quiet_option
@click.pass_context
def eval_cmd(ctx, dataset, root, split_file, checkpoint, predictions_dir, protocol, alignment, limit, output_dir,
             save_predictions, report, report_samples, baselines, device, sampler, overwrite):
    """Evaluate depth predictions on a benchmark (zero-shot, affine-invariant).

    \b
    Examples:
      depthart eval -d middlebury -c model.safetensors -o eval/middlebury --report
      depthart eval -d nyu --root data/nyuv2 -c model.safetensors -o eval/nyu --save-predictions
      depthart eval -d nyu --root data/nyuv2 --predictions eval/nyu/predictions -o eval/nyu2

    Writes per_sample.csv and summary.json to OUTPUT_DIR and prints the mean metrics beside
    baselines (a constant map, an input-free prior map, shuffled predictions).
    """
    from_cli = ctx.get_parameter_source("checkpoint") == click.core.ParameterSource.COMMANDLINE
    if predictions_dir and from_cli:
        raise click.UsageError("pass --checkpoint or --predictions, not both")
    if predictions_dir:
        checkpoint = None
        if save_predictions:
            raise click.UsageError("--save-predictions runs a model; it cannot be used with --predictions")
        if ctx.get_parameter_source("sampler") == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("--sampler runs a model; saved --predictions were made already (their manifest "
                                   "says with which sampler)")
    elif not checkpoint:
        from ..config import default_checkpoint

        try:
            checkpoint = default_checkpoint()
        except DepthartError as e:
            raise click.UsageError(f"{e}; or score saved predictions with --predictions DIR") from None
    existing = [f for f in OUTPUT_FILES if os.path.exists(os.path.join(output_dir, f))]
    pred_out = os.path.join(output_dir, "predictions")
    if save_predictions and os.path.isdir(pred_out) and os.listdir(pred_out):
        existing.append("predictions/")
    if existing and not overwrite:
        _fail(f"{output_dir} already has {', '.join(existing)}; pass --overwrite to replace")

    try:
        ds = open_dataset(dataset, root, split_file)
        if predictions_dir:
            predictor = FilePredictor(predictions_dir)
            protocol = protocol or predictor.manifest.get("protocol") or "marigold"
            m = predictor.manifest
            source = {"checkpoint": m.get("checkpoint"), "checkpoint_hash": m.get("checkpoint_hash"),
                      "sampler": m.get("sampler"), "predictions": os.path.abspath(predictions_dir)}
        else:
            protocol = protocol or "marigold"
            source = {"checkpoint": checkpoint, "checkpoint_hash": checkpoint_hash(checkpoint), "sampler": sampler,
                      "predictions": None}
        settings = get_settings(protocol, dataset, "default" if alignment is None else
                                (None if alignment == "none" else alignment))
        n = len(ds) if limit is None else min(limit, len(ds))
        if predictions_dir:
            predictor.check(ds.ids[:n], dataset, protocol)
        else:
            model = _load_model(checkpoint, device)
            from ..checkpoint import model_sampler
            from ..sampling import make_sampler

            if sampler == "auto":
                sampler = source["sampler"] = model_sampler(model)
            predictor = ModelPredictor(model, make_sampler(sampler))
    except DepthartError as e:
        _fail(str(e))
    if ds.expected_count and len(ds) != ds.expected_count:
        click.echo(f"warning: {dataset}: {len(ds)} samples under {ds.root}, the benchmark has {ds.expected_count}; "
                   "scores are not comparable with published ones", err=True)
    if not settings.published:
        click.echo(f"note: {dataset} under the {protocol} protocol uses depthart's own settings "
                   "(docs/evaluation.md), not a published protocol", err=True)

    collector = None
    if report:
        from .report import ReportCollector

        collector = ReportCollector(report_samples)
    keep, skipped = collector_for(baselines, n)
    results = []
    try:
        with progress_bar(total=n, desc=f"evaluating {dataset}", unit="sample") as bar:
            for r in iter_results(ds, settings, predictor, range(n), save_dir=pred_out if save_predictions else None,
                                  overwrite=overwrite, report=collector, keep=keep):
                results.append(r)
                bar.update(1)
    except (DepthartError, FileExistsError) as e:
        _fail(str(e))

    if keep is not None and keep.skipped:
        skipped = keep.skipped
    if skipped:
        click.echo(f"note: baselines {skipped}", err=True)
        baseline_summary = {"skipped": skipped}
    elif keep is not None:
        click.echo(f"scoring baselines (constant, prior map, shuffled) on {len(keep.samples)} samples", err=True)
        baseline_summary = compute_baselines(keep.samples, settings, mean_metrics([r.metrics for r in results]))
        keep = None  # free the kept maps
    else:
        baseline_summary = None
    summary = summarize(results, dataset=ds, settings=settings, source=source, limit=limit,
                        baselines=baseline_summary)
    write_per_sample_csv(os.path.join(output_dir, "per_sample.csv"), results)
    write_json(os.path.join(output_dir, "summary.json"), summary)
    if save_predictions:
        write_manifest(pred_out, dataset=dataset, protocol=protocol, source=source, ids=[r.id for r in results])
    if collector is not None:
        title = f"depthart eval: {dataset}, protocol {protocol}, {source['predictions'] or source['checkpoint']}"
        collector.write(os.path.join(output_dir, "report.html"), os.path.join(output_dir, "report.png"), title)
    click.echo(format_table(summary))
    click.echo(f"wrote {output_dir}", err=True)
