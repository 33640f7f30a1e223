"""`depthart demo`: export, runtime on sample images, outputs and a latency table, in one command."""

import json
import os
import re

import numpy as np

from click.testing import CliRunner

from depthart.cli import DEFAULT_CHECKPOINT, main


def test_demo_runs_end_to_end(tiny_model, tmp_path):
    """On a checkpoint that names the expect sampler: the runtime follows it, and so does the eager side of
    the parity check (greedy there would differ by far more than 1e-4)."""
    from depthart.checkpoint import save_checkpoint

    ckpt = tmp_path / "expect.safetensors"
    save_checkpoint(tiny_model, ckpt, extra_metadata={"sampler": "expect"})
    out = tmp_path / "demo"
    r = CliRunner().invoke(main, ["demo", "-c", str(ckpt), "-o", str(out), "--runs", "1"])
    assert r.exit_code == 0, r.output
    names = sorted(os.listdir(out / "outputs"))
    for stem in ("procedural_indoor", "procedural_outdoor", "middlebury_motorcycle"):
        assert {f"{stem}.npy", f"{stem}_color.png", f"{stem}_side.png"} <= set(names)
    assert "vs eager" in r.output and "sampler expect" in r.output
    diff = re.search(r"runtime vs PyTorch max abs diff (\S+)\)", r.output)
    assert diff and float(diff.group(1)) <= 1e-4, r.output
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert manifest["sampler"] == "expect"
    from depthart.export.manifest import file_sha256

    assert manifest["checkpoint"]["sha256"] == file_sha256(ckpt)  # as an `export` bundle records it
    r = CliRunner().invoke(main, ["demo", "-c", str(ckpt), "-o", str(out)])
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
