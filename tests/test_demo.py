"""`depthart demo`: export, runtime on sample images, outputs and a latency table, in one command."""

import os

from click.testing import CliRunner

from depthart.cli import DEFAULT_CHECKPOINT, main


def test_demo_runs_end_to_end(tiny_checkpoint, tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(main, ["demo", "-c", str(tiny_checkpoint), "-o", str(out), "--runs", "1"])
    assert r.exit_code == 0, r.output
    names = sorted(os.listdir(out / "outputs"))
    for stem in ("procedural_indoor", "procedural_outdoor", "middlebury_motorcycle"):
        assert {f"{stem}.npy", f"{stem}_color.png", f"{stem}_side.png"} <= set(names)
    assert "runtime vs PyTorch max abs diff" in r.output and "vs eager" in r.output
    assert (out / "bundle" / "manifest.json").is_file()
    r = CliRunner().invoke(main, ["demo", "-c", str(tiny_checkpoint), "-o", str(out)])
    assert r.exit_code == 1 and "--overwrite" in r.output


def test_demo_without_a_shipped_default_says_what_to_do(tmp_path):
    if os.path.isfile(DEFAULT_CHECKPOINT):
        return  # a trained default ships: the demo uses it
    r = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "d")])
    assert r.exit_code == 1 and "--checkpoint" in r.output and "Traceback" not in r.output
