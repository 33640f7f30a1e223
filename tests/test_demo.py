"""`depthart demo`: export, runtime on sample images, outputs and a latency table, in one command."""

import os

import numpy as np

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


def test_demo_runs_the_shipped_default_with_no_arguments(tmp_path):
    """The README's first command: `depthart demo` on the trained default that ships in the package."""
    assert os.path.isfile(DEFAULT_CHECKPOINT), "the trained default must ship with the package"
    out = tmp_path / "demo"
    r = CliRunner().invoke(main, ["demo", "-o", str(out), "--runs", "1"])
    assert r.exit_code == 0, r.output
    assert "random weights" not in r.output
    depth = np.load(out / "outputs" / "procedural_indoor.npy")
    assert depth.dtype == np.float32 and depth.std() > 0.02  # structure, not a flat map
