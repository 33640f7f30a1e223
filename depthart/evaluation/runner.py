"""The evaluation loop and its files: predictions in, per-sample metrics and a summary out.

Inference and scoring meet only through a predictor, a callable `Prepared -> HxW float32`:
`ModelPredictor` runs a depthart model (torch), `FilePredictor` reads `<id>.npy` files saved
earlier (`--save-predictions`), so re-scoring needs neither the model nor torch.

Files written to the output folder (all atomically):
- `per_sample.csv`: id, the 10 metrics, the fitted scale and shift, the number of scored pixels.
- `summary.json`: mean metrics, headline (AbsRel % and delta1 %, every protocol), paper_table (a paper's own
  convention, labelled), dataset, protocol settings, checkpoint and its hash, software versions, and (unless turned off) the baselines of
  `baselines.py` (constant, prior map, shuffled) with the image-use gap.
- `predictions/` (optional): `<id>.npy` (float32 model output at the model's input size),
  `<id>.png` (16-bit), `<id>_color.png`, and `manifest.json`.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import os
from dataclasses import dataclass

import numpy as np

from ..fileio import atomic_write_bytes
from ..metrics import METRIC_NAMES, MetricsError, evaluate_detailed, mean_metrics
from ..outputs import save_depth
from ..provenance import file_sha256, software_versions
from .baselines import format_baselines
from .datasets import Dataset
from .formats import PredictionError
from .protocol import Prepared, Settings, match_prediction, prepare

PREDICTIONS_FORMAT = "depthart-predictions"
MANIFEST = "manifest.json"
# the headline, one convention for every protocol (the README's): (label, metric, transform)
HEADLINE = [("AbsRel %", "abs_rel", lambda v: 100 * v), ("delta1 %", "delta1", lambda v: 100 * v)]
# where a protocol's paper prints its table in another convention: that table's columns, kept out of the headline
PAPER_TABLE = {
    "depthart": ("DepthART paper's table (arXiv 2409.15010): failure rate instead of delta1",
                 [("AbsRel %", "abs_rel", lambda v: 100 * v),
                  ("delta>1.25 % (= 100 (1 - delta1))", "delta1", lambda v: 100 * (1 - v))]),
}


@dataclass
class SampleResult:
    """Scores of one sample: metrics (see depthart.metrics), fitted scale/shift, scored pixel count."""

    id: str
    metrics: dict[str, float]
    scale: float
    shift: float
    valid_pixels: int


# ---------------------------------------------------------------- predictors
class ModelPredictor:
    """Predictions from a depthart model: `model.predict(image, sampler)` at the prepared image's size
    (a `depthart.sampling` sampler; None = greedy)."""

    def __init__(self, model, sampler=None):
        self.model, self.sampler = model, sampler

    def __call__(self, prepared: Prepared) -> np.ndarray:
        return self.model.predict(prepared.image, self.sampler)


class FilePredictor:
    """Predictions saved as `<folder>/<id>.npy` (HxW float, the model's raw output).

    Args:
        folder: the predictions folder; its `manifest.json`, if present, says which dataset,
            protocol and checkpoint made them.
    """

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        if not os.path.isdir(self.folder):
            raise PredictionError(f"predictions folder {self.folder} does not exist")
        self.manifest = {}
        path = os.path.join(self.folder, MANIFEST)
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    self.manifest = json.load(f)
            except (OSError, ValueError) as e:
                raise PredictionError(f"{path}: unreadable manifest ({e})") from None
            if not isinstance(self.manifest, dict) or self.manifest.get("format") != PREDICTIONS_FORMAT:
                raise PredictionError(f"{path}: not a depthart predictions manifest")

    def check(self, ids, dataset: str, protocol: str) -> None:
        """Raise if the manifest names another dataset or protocol, or if any `<id>.npy` is missing."""
        for key, value in (("dataset", dataset), ("protocol", protocol)):
            made = self.manifest.get(key)
            if made is not None and made != value:
                raise PredictionError(f"predictions in {self.folder} were made for {key} '{made}', not '{value}'")
        missing = [i for i in ids if not os.path.isfile(self.path(i))]
        if missing:
            raise PredictionError(f"{len(missing)} of {len(ids)} predictions missing in {self.folder}, e.g. "
                                  + ", ".join(f"{i}.npy" for i in missing[:3]))

    def path(self, sample_id: str) -> str:
        return os.path.join(self.folder, f"{sample_id}.npy")

    def __call__(self, prepared: Prepared) -> np.ndarray:
        try:
            return np.load(self.path(prepared.id), allow_pickle=False)
        except (OSError, ValueError) as e:
            raise PredictionError(f"{self.path(prepared.id)}: unreadable prediction ({e})") from None


# ---------------------------------------------------------------- the loop
def iter_results(dataset: Dataset, settings: Settings, predictor, indices, *, save_dir=None,
                 overwrite=False, report=None, keep=None):
    """Evaluate samples one by one, yielding a `SampleResult` per sample.

    Args:
        dataset: a loader from `depthart.evaluation.datasets`.
        settings: the protocol settings for it (`protocol.get_settings`).
        predictor: callable `Prepared -> HxW float32` (ModelPredictor or FilePredictor).
        indices: which samples, in order.
        save_dir: if given, save each raw prediction there (`outputs.save_depth`).
        overwrite: replace existing saved predictions.
        report: a `report.ReportCollector`, or None.
        keep: a `baselines.BaselineCollector` that keeps each sample's ground truth, mask and
            matched prediction for the baselines, or None.

    Raises:
        MetricsError, PredictionError, DatasetError: naming the sample.
    """
    for index in indices:
        prepared = prepare(dataset.load(index), settings)
        raw = np.asarray(predictor(prepared), dtype=np.float32)
        if save_dir is not None:
            save_depth(raw, save_dir, prepared.id, overwrite=overwrite)
        pred = match_prediction(raw, prepared, settings)
        try:
            ev = evaluate_detailed(pred, prepared.gt, prepared.mask, alignment=settings.alignment,
                                   depth_range=settings.clip_range, max_resolution=settings.max_resolution)
        except MetricsError as e:
            raise MetricsError(f"{dataset.name} sample {prepared.id}: {e}") from None
        if report is not None:
            report.add(prepared.id, ev.metrics, prepared.image, prepared.gt, ev.depth, prepared.mask)
        if keep is not None:
            keep.add(prepared.id, prepared.gt, prepared.mask, pred)
        yield SampleResult(prepared.id, ev.metrics, ev.scale, ev.shift, int(prepared.mask.sum()))


# ---------------------------------------------------------------- files
def checkpoint_hash(path_or_preset) -> str:
    """sha256 (hex) of a checkpoint file, or the preset name itself for a preset."""
    p = os.fspath(path_or_preset)
    return file_sha256(p) if os.path.isfile(p) else p


def headline(protocol: str, metrics: dict[str, float]) -> dict[str, float]:
    """AbsRel % and delta1 %, whatever the protocol (`protocol` is kept for callers; see paper_table)."""
    return {label: float(fn(metrics[name])) for label, name, fn in HEADLINE}


def paper_table(protocol: str, metrics: dict[str, float]) -> dict | None:
    """The columns of the protocol's paper where its table uses another convention (depthart: delta>1.25 as a
    failure rate), labelled; None where the headline already is the paper's convention."""
    if protocol not in PAPER_TABLE:
        return None
    label, cols = PAPER_TABLE[protocol]
    return {"label": label, "columns": {c: float(fn(metrics[name])) for c, name, fn in cols}}


def summarize(results: list[SampleResult], *, dataset: Dataset, settings: Settings, source: dict,
              limit=None, baselines=None) -> dict:
    """The content of summary.json.

    Args:
        results: per-sample results.
        dataset: the loader (name, root, size).
        settings: the protocol settings used.
        source: where predictions came from: {"checkpoint", "checkpoint_hash", "sampler", "predictions"}.
        limit: the --limit used, if any.
        baselines: the `baselines` object (`baselines.compute_baselines`, or {"skipped": why}), or
            None to leave it out.
    """
    means = mean_metrics([r.metrics for r in results])
    s = dataclasses.asdict(settings)
    summary = {
        "dataset": dataset.name,
        "root": os.path.abspath(dataset.root) if os.path.isdir(dataset.root) else dataset.root,
        "samples": len(results),
        "samples_in_dataset": len(dataset),
        "limit": limit,
        "protocol": settings.protocol,
        "alignment": settings.alignment,
        "settings": {k: _jsonable(v) for k, v in s.items() if k not in ("protocol", "dataset")},
        **source,
        "metrics": means,
        "headline": headline(settings.protocol, means),
        **({"paper_table": t} if (t := paper_table(settings.protocol, means)) else {}),
        "versions": software_versions(),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if baselines is not None:
        summary["baselines"] = baselines
    return summary


def _jsonable(v):
    """Tuples -> lists; an infinite bound -> None (strict JSON has no inf)."""
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def write_per_sample_csv(path, results: list[SampleResult]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", *METRIC_NAMES, "scale", "shift", "valid_pixels"])
    for r in results:
        w.writerow([r.id, *(repr(r.metrics[k]) for k in METRIC_NAMES), repr(r.scale), repr(r.shift),
                    r.valid_pixels])
    atomic_write_bytes(path, buf.getvalue().encode())


def read_per_sample_csv(path) -> list[SampleResult]:
    """Read back `per_sample.csv` (for comparing runs)."""
    with open(path, newline="") as f:
        return [SampleResult(row["id"], {k: float(row[k]) for k in METRIC_NAMES}, float(row["scale"]),
                             float(row["shift"]), int(row["valid_pixels"])) for row in csv.DictReader(f)]


def write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def write_manifest(folder, *, dataset: str, protocol: str, source: dict, ids) -> None:
    write_json(os.path.join(folder, MANIFEST), {"format": PREDICTIONS_FORMAT, "version": 1, "dataset": dataset,
                                                "protocol": protocol, **source, "ids": list(ids)})


def _source_line(summary: dict) -> str:
    ckpt, digest = summary.get("checkpoint"), summary.get("checkpoint_hash")
    made_by = "unknown checkpoint" if ckpt is None else (
        f"preset {ckpt}" if digest == ckpt else f"{ckpt} (sha256 {str(digest)[:12]}...)")
    if summary.get("sampler") not in (None, "greedy"):
        made_by += f", sampler {summary['sampler']}"
    if summary.get("predictions"):
        return f"predictions: {summary['predictions']}, made by {made_by}"
    return f"checkpoint: {made_by}"


def format_table(summary: dict) -> str:
    """A plain-text table of the summary for the terminal."""
    s = summary["settings"]
    rng = s["valid_range"] or s["clip_range"]
    rng_txt = f"{rng[0]:g}..{'inf' if rng[1] is None else format(rng[1], 'g')} m" if rng else "dataset mask"
    lines = [f"{summary['dataset']}: {summary['samples']} of {summary['samples_in_dataset']} samples, protocol "
             f"{summary['protocol']} (alignment {summary['alignment']}, range {rng_txt})",
             _source_line(summary),
             "", f"{'metric':<10} {'mean':>12}"]
    lines += [f"{k:<10} {v:>12.6f}" for k, v in summary["metrics"].items()]
    lines += ["", "headline: " + ", ".join(f"{k} {v:.2f}" for k, v in summary["headline"].items())]
    lines += format_baselines(summary)
    return "\n".join(lines)
