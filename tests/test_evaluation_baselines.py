"""The baselines of `depthart eval` (constant, leave-one-out prior map, shuffled predictions) and the
image-use gap: at the function level on synthetic maps, then end to end on the procedural set."""

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from depthart.evaluation import baselines as bl
from depthart.evaluation.baselines import (BaselineCollector, Kept, compute_baselines, format_baselines,
                                           normalized_depth, prior_maps, resize_area, score, shuffled_prediction)
from depthart.evaluation.cli import eval_cmd
from depthart.evaluation.datasets import open_dataset
from depthart.evaluation.protocol import get_settings
from depthart.metrics import METRIC_NAMES, mean_metrics

SETTINGS = {p: get_settings(p, "procedural") for p in ("marigold", "depthart")}
BASELINE_KEYS = {"samples", "constant", "prior_map", "shuffled", "image_use_gap", "image_use_gap_ratio", "flag",
                 "worse_than_prior", "note"}


def scenes(n, shape=(24, 40), seed=0):
    """n synthetic (gt, mask) pairs: tilted planes, each tilted its own way, plus a bump; 10 % unscored."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]] / np.array(shape).reshape(2, 1, 1)
    out = []
    for _ in range(n):
        a, b = rng.uniform(-4, 4, 2)
        cy, cx = rng.random(2)
        gt = 6 + a * yy + b * xx + 3 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
        out.append((gt.astype(np.float32), rng.random(shape) > 0.1))
    return out


def kept(pairs, predict):
    return [Kept(f"s{i}", gt, mask, predict(i, gt)) for i, (gt, mask) in enumerate(pairs)]


def model_means(samples, settings):
    return mean_metrics([score(s.pred, s, settings) for s in samples])


@pytest.mark.parametrize("protocol", ["marigold", "depthart"])
def test_a_predictor_that_uses_its_image_has_a_positive_gap(protocol):
    settings = SETTINGS[protocol]
    samples = kept(scenes(6), lambda i, gt: gt / 10)  # the ground truth itself, up to scale
    model = model_means(samples, settings)
    assert model["abs_rel"] < 1e-6 and model["delta1"] == 1.0
    b = compute_baselines(samples, settings, model)
    assert set(b) == BASELINE_KEYS and b["samples"] == 6
    for name in ("constant", "prior_map", "shuffled"):
        assert set(b[name]) == set(METRIC_NAMES)
        assert b[name]["abs_rel"] > 0.01
    assert b["image_use_gap"] == pytest.approx(b["shuffled"]["abs_rel"] - model["abs_rel"])
    assert b["image_use_gap"] > 0.01 and b["image_use_gap_ratio"] > 1
    assert b["flag"] is None and b["worse_than_prior"] is None


def test_a_predictor_that_ignores_its_image_is_flagged():
    settings = SETTINGS["marigold"]
    fixed = scenes(1, seed=7)[0][0]
    samples = kept(scenes(5), lambda i, gt: fixed)  # the same map for every sample
    model = model_means(samples, settings)
    b = compute_baselines(samples, settings, model)
    assert b["shuffled"]["abs_rel"] == pytest.approx(model["abs_rel"], abs=1e-12)
    assert abs(b["image_use_gap"]) < 1e-12 and abs(b["image_use_gap_ratio"]) < 1e-9
    assert b["flag"].startswith("WARNING: image-use gap 0.0 % of AbsRel") and "barely depend" in b["flag"]
    text = "\n".join(format_baselines({"metrics": model, "baselines": b}))
    assert b["flag"] in text and "image-use gap (shuffled - model AbsRel)" in text
    for label in ("model", "constant", "prior map", "shuffled"):
        assert f"\n{label} " in text


def test_a_model_worse_than_the_prior_map_is_called_out():
    settings = SETTINGS["marigold"]
    samples = kept(scenes(4), lambda i, gt: gt)
    model = {"abs_rel": 10.0, "delta1": 0.0}  # as a model far off the mark would score
    b = compute_baselines(samples, settings, model)
    assert b["worse_than_prior"].startswith("WARNING: the model's AbsRel 10.0000 is worse than the input-free prior")


def test_the_prior_map_is_leave_one_out():
    pairs = scenes(4)
    samples = kept(pairs, lambda i, gt: gt)
    before = prior_maps(samples)
    changed = list(samples)
    changed[0] = Kept("s0", samples[0].gt[::-1, ::-1] * 3 + 1, ~samples[0].mask, samples[0].pred)
    after = prior_maps(changed)
    np.testing.assert_allclose(after[0], before[0], rtol=1e-6, atol=1e-7)  # its own GT is not used
    assert not np.allclose(after[1], before[1], atol=1e-3)  # the others' priors do use it
    assert all(p.shape == s.gt.shape and p.dtype == np.float32 for p, s in zip(before, samples))


def test_the_prior_map_of_two_samples_is_the_other_ones_normalised_depth():
    gt = np.linspace(1, 9, 64 * 64, dtype=np.float32).reshape(64, 64)
    mask = np.ones((64, 64), bool)
    mask[:, :8] = False  # unscored in the other sample: those cells get the overall mean
    other = normalized_depth(gt, mask)
    samples = [Kept("a", np.full((64, 64), 2, np.float32), np.ones((64, 64), bool), gt),
               Kept("b", gt, mask, gt)]
    prior = prior_maps(samples)[0]
    np.testing.assert_allclose(prior[:, 8:], other[:, 8:], rtol=1e-6)
    np.testing.assert_allclose(prior[:, :8], other[mask].mean(), rtol=1e-6)
    np.testing.assert_allclose(prior_maps(samples)[1], 1, rtol=1e-6)  # b's prior: a's constant map


def test_normalisation_is_the_training_targets():
    from depthart.data.transforms import normalize_depth

    gt, mask = scenes(1)[0]
    target, used, _ = normalize_depth(gt, mask)
    np.testing.assert_allclose(normalized_depth(gt, mask)[used], (target[used] + 1) / 2, atol=1e-6)
    assert np.all(normalized_depth(gt, mask)[~mask] == 0)


def test_area_resize_and_shuffled_shapes():
    a = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(resize_area(a, (3, 4)), a)
    np.testing.assert_allclose(resize_area(a, (1, 2)), [[a[:, :2].mean(), a[:, 2:].mean()]])
    assert resize_area(np.ones((7, 5)), (64, 64)) == pytest.approx(np.ones((64, 64)))
    samples = [Kept("a", np.ones((8, 12), np.float32), np.ones((8, 12), bool), np.zeros((8, 12), np.float32)),
               Kept("b", np.ones((4, 4), np.float32), np.ones((4, 4), bool), np.ones((4, 4), np.float32))]
    assert shuffled_prediction(samples, 0).shape == (8, 12) and np.all(shuffled_prediction(samples, 0) == 1)
    assert shuffled_prediction(samples, 1).shape == (4, 4) and np.all(shuffled_prediction(samples, 1) == 0)


def test_one_sample_gives_the_constant_only_and_says_why():
    samples = kept(scenes(1), lambda i, gt: gt)
    b = compute_baselines(samples, SETTINGS["marigold"], model_means(samples, SETTINGS["marigold"]))
    assert b["constant"] is not None and b["prior_map"] is None and b["shuffled"] is None
    assert b["image_use_gap"] is None and b["image_use_gap_ratio"] is None and b["flag"] is None
    assert "need at least 2 samples; this run has 1" in b["note"]
    text = "\n".join(format_baselines({"metrics": b["constant"], "baselines": b}))
    assert re.search(r"^shuffled +n/a +n/a$", text, re.M) and "image-use gap: n/a (needs at least 2 samples)" in text


def test_a_baseline_that_cannot_be_scored_is_left_out_with_the_reason():
    settings = SETTINGS["depthart"]  # median scale: a prediction that is 0 on most pixels has no scale
    samples = kept(scenes(3), lambda i, gt: np.zeros_like(gt) if i == 1 else gt)
    b = compute_baselines(samples, settings, {"abs_rel": 0.1, "delta1": 0.9})
    assert b["shuffled"] is None and b["image_use_gap"] is None and b["prior_map"] is not None
    assert "shuffled not scored: sample s0: median scale is not finite" in b["note"]


def test_the_collector_keeps_copies_and_stops_at_its_byte_cap():
    gt, mask = scenes(1)[0]
    c = BaselineCollector()
    pred = gt.copy()
    c.add("a", gt, mask, pred)
    pred[:] = 0
    assert c.samples[0].pred.max() > 0 and c.nbytes == gt.size * 9
    capped = BaselineCollector(max_bytes=gt.size * 9 * 2)
    for i in range(3):
        capped.add(str(i), gt, mask, gt)
    assert capped.samples == [] and capped.nbytes == 0
    assert "would take more than" in capped.skipped and "pass --baselines" in capped.skipped


# ---------------------------------------------------------------- end to end: depthart eval -d procedural
def run(args):
    result = CliRunner().invoke(eval_cmd, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def summary_of(folder):
    return json.loads((folder / "summary.json").read_text())


def test_eval_reports_baselines_beside_the_model(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    r = run(["-d", "procedural", "-c", tiny_checkpoint, "--limit", 2, "-o", out])
    s = summary_of(out)
    b = s["baselines"]
    assert set(b) == BASELINE_KEYS and b["samples"] == 2
    for name in ("constant", "prior_map", "shuffled"):
        assert set(b[name]) == set(METRIC_NAMES)
    assert b["image_use_gap"] == pytest.approx(b["shuffled"]["abs_rel"] - s["metrics"]["abs_rel"])
    assert b["image_use_gap_ratio"] == pytest.approx(b["image_use_gap"] / s["metrics"]["abs_rel"])
    assert "baselines (scored like the model; 2 samples)" in r.stdout and "image-use gap" in r.stdout
    assert "scoring baselines" in r.stderr


@pytest.fixture
def saved_predictions(tmp_path):
    """Two folders of procedural predictions: each scene's own ground truth (up to scale), and one
    fixed map for every scene."""
    ds = open_dataset("procedural")
    own, same = tmp_path / "own", tmp_path / "same"
    own.mkdir(), same.mkdir()
    fixed = None
    for i in range(4):
        sample = ds.load(i)
        depth = np.where(sample.valid & np.isfinite(sample.depth), sample.depth, 0).astype(np.float32)
        np.save(own / f"{sample.id}.npy", depth / depth.max())
        fixed = depth / depth.max() if fixed is None else fixed
        np.save(same / f"{sample.id}.npy", fixed)
    return own, same


def test_the_gap_separates_image_use_from_an_image_free_map(tmp_path, saved_predictions):
    own, same = saved_predictions
    run(["-d", "procedural", "--predictions", own, "--limit", 4, "-o", tmp_path / "own"])
    s = summary_of(tmp_path / "own")
    assert s["metrics"]["abs_rel"] < 1e-6
    assert s["baselines"]["image_use_gap"] > 0.05 and s["baselines"]["flag"] is None

    r = run(["-d", "procedural", "--predictions", same, "--limit", 4, "-o", tmp_path / "same"])
    b = summary_of(tmp_path / "same")["baselines"]
    assert b["flag"].startswith("WARNING: image-use gap") and b["flag"] in r.stdout
    assert abs(b["image_use_gap"]) < 1e-12

    r = run(["-d", "procedural", "--predictions", same, "--limit", 4, "-o", tmp_path / "off", "--no-baselines"])
    off = summary_of(tmp_path / "off")
    assert "baselines" not in off and "image-use gap" not in r.stdout and "scoring baselines" not in r.stderr
    assert off["metrics"] == summary_of(tmp_path / "same")["metrics"]


def test_auto_mode_limits_and_one_sample(tmp_path, saved_predictions, monkeypatch):
    own, _ = saved_predictions
    r = run(["-d", "procedural", "--predictions", own, "--limit", 1, "-o", tmp_path / "one"])
    b = summary_of(tmp_path / "one")["baselines"]
    assert b["shuffled"] is None and b["prior_map"] is None and b["constant"] is not None
    assert "at least 2 samples" in b["note"] and "image-use gap: n/a" in r.stdout

    monkeypatch.setattr(bl, "AUTO_MAX_SAMPLES", 2)
    r = run(["-d", "procedural", "--predictions", own, "--limit", 3, "-o", tmp_path / "many"])
    skipped = summary_of(tmp_path / "many")["baselines"]["skipped"]
    assert "3 samples, more than the 2" in skipped and "pass --baselines" in skipped
    assert "note: baselines not computed" in r.stderr and "baselines: not computed" in r.stdout
    run(["-d", "procedural", "--predictions", own, "--limit", 3, "-o", tmp_path / "forced", "--baselines"])
    assert summary_of(tmp_path / "forced")["baselines"]["shuffled"] is not None

    monkeypatch.setattr(bl, "AUTO_MAX_SAMPLES", 1000)
    monkeypatch.setattr(bl, "AUTO_MAX_BYTES", 128 * 128 * 9 * 2)  # room for two 128x128 samples of three
    run(["-d", "procedural", "--predictions", own, "--limit", 2, "-o", tmp_path / "fits"])
    assert summary_of(tmp_path / "fits")["baselines"]["shuffled"] is not None
    run(["-d", "procedural", "--predictions", own, "--limit", 3, "-o", tmp_path / "big"])
    assert "GiB" in summary_of(tmp_path / "big")["baselines"]["skipped"]
