"""The video stabiliser: scale/shift jumps between frames are taken out, the colour range stays put."""

import numpy as np
import pytest
from click.testing import CliRunner

from depthart.outputs import colorize
from depthart.runtime.stabilize import DepthStabilizer, frame_change


def _jumpy_frames(n=12, seed=0):
    """The same scene each frame, with its own scale and offset (as a relative-depth model gives), noise, and a
    few stray pixels that move each frame's min and max (which the plain colouring stretches to the palette)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:64]
    scene = (0.3 + 0.5 * yy / 47 + 0.1 * np.sin(xx / 6)).astype(np.float32)
    frames = []
    for _ in range(n):
        f = rng.uniform(0.5, 1.5) * scene + rng.uniform(-0.2, 0.2) + 0.01 * rng.standard_normal(scene.shape)
        f.flat[rng.choice(f.size, 4, replace=False)] = f.mean() + rng.uniform(-1.0, 1.0, 4)
        frames.append(f.astype(np.float32))
    return scene, frames


def test_alignment_removes_scale_jumps_and_keeps_one_colour_range():
    _, frames = _jumpy_frames()
    raw = frame_change(colorize(f) for f in frames)
    st = DepthStabilizer(0.0)
    outs = [(st(f), st.color_range) for f in frames]
    steady = frame_change(colorize(o, lo, hi) for o, (lo, hi) in outs)
    assert steady.mean() < 0.25 * raw.mean()
    # every output is in the first frame's scale
    for o, _ in outs:
        assert np.abs(o - outs[0][0]).mean() < 0.05
    smoothed = DepthStabilizer(0.5)
    assert frame_change(smoothed(f) for f in frames).mean() < frame_change(o for o, _ in outs).mean()


def test_stabilizer_rejects_bad_smoothing_and_follows_a_new_size():
    with pytest.raises(ValueError):
        DepthStabilizer(1.0)
    st = DepthStabilizer()
    st(np.ones((4, 4), np.float32))
    assert st(np.zeros((8, 8), np.float32)).shape == (8, 8)  # a new size starts over


def test_run_stabilize_on_video(tiny_bundle, tmp_path):
    cv2 = pytest.importorskip("cv2")
    from depthart.cli import main

    path = str(tmp_path / "clip.mp4")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (40, 32))
    rng = np.random.default_rng(0)
    for _ in range(4):
        w.write((rng.random((32, 40, 3)) * 255).astype(np.uint8))
    w.release()
    r = CliRunner().invoke(main, ["run", str(tiny_bundle["dir"]), path, "-o", str(tmp_path / "o"),
                                  "--stabilize", "0.5"])
    assert r.exit_code == 0, r.output
    cap = cv2.VideoCapture(str(tmp_path / "o" / "clip_depth.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    r = CliRunner().invoke(main, ["run", str(tiny_bundle["dir"]), path, "-o", str(tmp_path / "o"), "--stabilize", "1"])
    assert r.exit_code == 2
