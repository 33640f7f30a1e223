"""`depthart eval` end to end: Middlebury with a tiny checkpoint, re-scoring saved predictions
(also without torch), --limit, --report, and the errors a user can hit."""

import csv
import hashlib
import json
import os
import subprocess
import sys

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from depthart.evaluation.cli import eval_cmd
from depthart.metrics import METRIC_NAMES

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['safetensors'] = None; "
pytest.importorskip("skimage", reason="the Middlebury pair ships with scikit-image")


def run(args):
    result = CliRunner().invoke(eval_cmd, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_middlebury_end_to_end_then_rescored_from_saved_predictions(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    r = run(["-d", "middlebury", "-c", tiny_checkpoint, "-o", out, "--save-predictions", "--report"])
    assert r.exit_code == 0, r.output
    assert "abs_rel" in r.stdout and "headline: AbsRel %" in r.stdout
    assert "evaluating middlebury" not in r.stderr  # progress bars: a terminal only (tests/test_progress.py)

    rows = read_csv(out / "per_sample.csv")
    assert [row["id"] for row in rows] == ["motorcycle"]
    assert int(rows[0]["valid_pixels"]) > 300_000
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["dataset"], summary["protocol"]) == ("middlebury", "marigold")
    assert summary["alignment"] == "least_squares"
    assert summary["samples"] == 1 and summary["settings"]["valid_range"] == [0.001, 10.0]
    assert summary["checkpoint_hash"] == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert {"depthart", "numpy", "torch", "python"} <= set(summary["versions"])
    for k in METRIC_NAMES:
        assert summary["metrics"][k] == float(rows[0][k])
    assert summary["headline"]["AbsRel %"] == pytest.approx(100 * summary["metrics"]["abs_rel"])
    assert 0 < summary["metrics"]["abs_rel"] < 1 and 0 <= summary["metrics"]["delta1"] <= 1
    # one sample: only the constant baseline, and a note saying why (tests/test_evaluation_baselines.py has more)
    baselines = summary["baselines"]
    assert set(baselines["constant"]) == set(METRIC_NAMES) and baselines["shuffled"] is None
    assert baselines["prior_map"] is None and "at least 2 samples" in baselines["note"]
    assert "constant" in r.stdout and "image-use gap: n/a" in r.stdout

    pred = np.load(out / "predictions" / "motorcycle.npy")
    assert pred.shape == (500, 741) and pred.dtype == np.float32 and 0 <= pred.min() and pred.max() <= 1
    manifest = json.loads((out / "predictions" / "manifest.json").read_text())
    assert manifest["ids"] == ["motorcycle"] and manifest["protocol"] == "marigold"
    page = (out / "report.html").read_text()
    assert "motorcycle" in page and "data:image/png;base64," in page
    with Image.open(out / "report.png") as im:
        assert im.mode == "RGB" and im.width >= 4 * 100

    # the same numbers again from the files alone
    r2 = run(["-d", "middlebury", "--predictions", out / "predictions", "-o", tmp_path / "again"])
    assert r2.exit_code == 0, r2.output
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert again["metrics"] == summary["metrics"]
    assert again["baselines"]["constant"] == baselines["constant"]
    assert again["checkpoint_hash"] == summary["checkpoint_hash"]
    assert again["predictions"] == str(out / "predictions")

    # ... and where torch cannot be imported at all
    code = (BLOCK_TORCH + "from depthart.evaluation.cli import eval_cmd; "
            f"eval_cmd(['-d', 'middlebury', '--predictions', r'{out / 'predictions'}', '-o', r'{tmp_path / 'nt'}', "
            "'--report'])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "nt" / "summary.json").read_text())["metrics"] == summary["metrics"]
    assert (tmp_path / "nt" / "report.html").is_file()


def test_depthart_protocol_saves_256_predictions_and_rescoring_keeps_the_protocol(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    r = run(["-d", "middlebury", "-c", tiny_checkpoint, "--protocol", "depthart", "-o", out, "--save-predictions"])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["alignment"] == "median_scale" and summary["settings"]["size"] == [256, 256]
    # one convention on screen and in the headline; the paper's failure rate only in its labelled table
    assert list(summary["headline"]) == ["AbsRel %", "delta1 %"] and "1 - delta1" not in r.output
    assert "delta1 %" in r.output
    paper = summary["paper_table"]
    assert "DepthART paper" in paper["label"]
    assert paper["columns"]["delta>1.25 % (= 100 (1 - delta1))"] == pytest.approx(100 - summary["headline"]["delta1 %"])
    assert np.load(out / "predictions" / "motorcycle.npy").shape == (256, 256)
    # no --protocol: taken from the manifest
    r = run(["-d", "middlebury", "--predictions", out / "predictions", "-o", tmp_path / "b"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["metrics"] == summary["metrics"]
    r = run(["-d", "middlebury", "--predictions", out / "predictions", "--protocol", "marigold", "-o", tmp_path / "c"])
    assert r.exit_code == 1 and "made for protocol 'depthart', not 'marigold'" in r.output
    assert summary["sampler"] == "greedy"
    # the expected-code-vector sampler scores other predictions, and says so; saved ones cannot be re-sampled
    r = run(["-d", "middlebury", "-c", tiny_checkpoint, "--protocol", "depthart", "--sampler", "expect", "-o",
             tmp_path / "e", "--save-predictions"])
    assert r.exit_code == 0, r.output
    expect = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert expect["sampler"] == "expect" and expect["metrics"] != summary["metrics"]
    assert "sampler expect" in r.stdout
    r = run(["-d", "middlebury", "--predictions", tmp_path / "e" / "predictions", "-o", tmp_path / "f"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "f" / "summary.json").read_text())["sampler"] == "expect"
    for choice in ("expect", "greedy"):
        r = run(["-d", "middlebury", "--predictions", out / "predictions", "--sampler", choice, "-o", tmp_path / "g"])
        assert r.exit_code == 2 and "--sampler runs a model" in r.output


def test_auto_sampler_is_the_checkpoints_and_summary_records_it(tmp_path, tiny_model):
    from depthart.checkpoint import save_checkpoint

    ckpt = tmp_path / "expect.safetensors"
    save_checkpoint(tiny_model, ckpt, extra_metadata={"sampler": "expect"})
    r = run(["-d", "middlebury", "-c", ckpt, "--protocol", "depthart", "-o", tmp_path / "auto", "--no-baselines",
             "--save-predictions"])
    assert r.exit_code == 0, r.output
    auto = json.loads((tmp_path / "auto" / "summary.json").read_text())
    assert auto["sampler"] == "expect" and "sampler expect" in r.stdout
    assert json.loads((tmp_path / "auto" / "predictions" / "manifest.json").read_text())["sampler"] == "expect"
    r = run(["-d", "middlebury", "-c", ckpt, "--protocol", "depthart", "-o", tmp_path / "greedy", "--no-baselines",
             "--sampler", "greedy"])
    assert r.exit_code == 0, r.output
    greedy = json.loads((tmp_path / "greedy" / "summary.json").read_text())
    assert greedy["sampler"] == "greedy" and greedy["metrics"] != auto["metrics"]
    r = run(["-d", "middlebury", "--predictions", tmp_path / "auto" / "predictions", "-o", tmp_path / "re"])
    assert r.exit_code == 0, r.output  # the default --sampler is not "given" with --predictions
    assert json.loads((tmp_path / "re" / "summary.json").read_text())["sampler"] == "expect"
    r = run(["-d", "middlebury", "--predictions", tmp_path / "auto" / "predictions", "--sampler", "auto",
             "-o", tmp_path / "g"])
    assert r.exit_code == 2 and "--sampler runs a model" in r.output


def write_scannet(root, n, zero_depth_frame=None):
    rng = np.random.default_rng(0)
    for i in range(n):
        scene = root / "scene0100_00"
        for sub in ("color", "depth"):
            (scene / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(scene / "color" / f"{i:06d}.jpg")
        depth = rng.integers(500, 5000, (12, 16)).astype(np.uint16) * (i != zero_depth_frame)
        Image.fromarray(depth).save(scene / "depth" / f"{i:06d}.png")


def test_limit_report_and_incomplete_dataset_warning(tmp_path, tiny_checkpoint):
    write_scannet(tmp_path / "scannet", 3)
    out = tmp_path / "out"
    r = run(["-d", "scannet", "--root", tmp_path / "scannet", "-c", tiny_checkpoint, "-o", out, "--limit", 2,
             "--report", "--report-samples", 1])
    assert r.exit_code == 0, r.output
    assert "3 samples under" in r.stderr and "the benchmark has 800" in r.stderr
    rows = read_csv(out / "per_sample.csv")
    assert [row["id"] for row in rows] == ["scene0100_00_000000", "scene0100_00_000001"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 2 and summary["samples_in_dataset"] == 3 and summary["limit"] == 2
    assert summary["baselines"]["samples"] == 2 and summary["baselines"]["shuffled"] is not None
    assert summary["metrics"]["abs_rel"] == pytest.approx(np.mean([float(row["abs_rel"]) for row in rows]))
    worst = max(rows, key=lambda row: float(row["abs_rel"]))["id"]
    best = min(rows, key=lambda row: float(row["abs_rel"]))["id"]
    page = (out / "report.html").read_text()
    assert page.index(f"worst 1: {worst}") < page.index(f"best 1: {best}")


def test_errors_are_one_line_and_say_what_to_do(tmp_path, tiny_checkpoint):
    r = run(["-d", "middlebury", "-o", tmp_path / "default"])  # no --checkpoint: the shipped default
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "default" / "summary.json").read_text())
    assert summary["checkpoint"].endswith("default.safetensors") and summary["samples"] == 1
    r = run(["-d", "middlebury", "-c", "tiny", "--predictions", tmp_path, "-o", tmp_path / "o"])
    assert r.exit_code == 2 and "not both" in r.output
    r = run(["-d", "nyu", "--root", tmp_path / "nyu", "-c", "tiny", "-o", tmp_path / "o"])
    assert r.exit_code == 1 and f"dataset folder {tmp_path / 'nyu'} does not exist" in r.output
    r = run(["-d", "nyu", "-c", "tiny", "-o", tmp_path / "o"])
    assert r.exit_code == 1 and "nyu: pass --root, the folder with nyu_depth_v2_labeled.mat" in r.output
    r = run(["-d", "middlebury", "--predictions", tmp_path, "-o", tmp_path / "o"])
    assert r.exit_code == 1 and f"1 of 1 predictions missing in {tmp_path}, e.g. motorcycle.npy" in r.output

    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "summary.json").write_text("{}")
    r = run(["-d", "middlebury", "-c", "tiny", "-o", tmp_path / "o"])
    assert r.exit_code == 1 and "already has summary.json; pass --overwrite" in r.output

    write_scannet(tmp_path / "scannet", 2, zero_depth_frame=0)
    r = run(["-d", "scannet", "--root", tmp_path / "scannet", "-c", tiny_checkpoint, "-o", tmp_path / "o2"])
    assert r.exit_code == 1
    assert "scannet sample scene0100_00_000000: no valid ground-truth pixel" in r.output
    assert not (tmp_path / "o2" / "summary.json").exists()
    assert "Traceback" not in r.output


def test_running_a_model_without_torch_says_so(tmp_path):
    code = (BLOCK_TORCH + "from depthart.evaluation.cli import eval_cmd; "
            f"eval_cmd(['-d', 'middlebury', '-c', 'tiny', '-o', r'{tmp_path}'])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 1 and "needs PyTorch" in p.stderr and "Traceback" not in p.stderr


def test_registers_on_a_click_group():
    @click.group()
    def main():
        pass

    main.add_command(eval_cmd)
    r = CliRunner().invoke(main, ["eval", "--help"])
    assert r.exit_code == 0
    for option in ("--dataset", "--root", "--checkpoint", "--predictions", "--protocol", "--limit", "--report",
                   "--save-predictions", "--baselines / --no-baselines", "middlebury"):
        assert option in r.output
    assert os.path.basename(__file__).startswith("test_evaluation")
