"""`depthart run`: the runtime CLI on images, folders, videos and cameras."""

import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from depthart.cli import main

cv2 = pytest.importorskip("cv2", reason="video tests need OpenCV (the video extra)")


def run(*args):
    return CliRunner().invoke(main, ["run", *[str(a) for a in args]])


def test_images_and_folders_with_all_outputs(tiny_bundle, sample_photo, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(sample_photo).resize((64, 48)).save(folder / "small.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    out = tmp_path / "out"
    r = run(tiny_bundle["dir"], sample_photo, folder, "-o", out, "--side-by-side", "--ply", "--batch", "2")
    assert r.exit_code == 1  # broken.jpg failed ...
    assert "broken.jpg:" in r.output and "Traceback" not in r.output
    names = sorted(p.name for p in out.iterdir())  # ... and the others were written
    assert names == sorted(["coffee.npy", "coffee.png", "coffee_color.png", "coffee_side.png", "coffee.ply",
                            "small.npy", "small.png", "small_color.png", "small_side.png", "small.ply"])
    want = tiny_bundle["model"].predict(sample_photo)
    np.testing.assert_allclose(np.load(out / "coffee.npy"), want, atol=1e-4)
    assert Image.open(out / "coffee_side.png").size == (800, 267)
    ply = (out / "small.ply").read_bytes()
    header = ply[:ply.index(b"end_header\n") + 11].decode()
    assert "element vertex 3072" in header and "assumed pinhole intrinsics" in header and "RELATIVE" in header
    assert len(ply) - len(header) == 3072 * 15
    r = run(tiny_bundle["dir"], sample_photo, "-o", out)
    assert r.exit_code == 1 and "--overwrite" in r.output


def test_run_follows_the_bundles_sampler_unless_told(tiny_expect_bundle, sample_photo, tmp_path):
    from depthart.sampling import Expected, Greedy

    b, model = tiny_expect_bundle["dir"], tiny_expect_bundle["model"]
    r = run(b, sample_photo, "-o", tmp_path / "auto")
    assert r.exit_code == 0, r.output
    assert "sampler expect" in r.output  # the progress label describes the runtime
    np.testing.assert_allclose(np.load(tmp_path / "auto" / "coffee.npy"), model.predict(sample_photo, Expected()),
                               atol=1e-4)
    r = run(b, sample_photo, "-o", tmp_path / "greedy", "--sampler", "greedy")
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(np.load(tmp_path / "greedy" / "coffee.npy"), model.predict(sample_photo, Greedy()), atol=1e-4)


def test_video_gives_a_depth_video_at_the_input_frame_rate(tiny_bundle, tmp_path):
    path = str(tmp_path / "clip.mp4")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (40, 32))
    rng = np.random.default_rng(0)
    for _ in range(7):
        w.write((rng.random((32, 40, 3)) * 255).astype(np.uint8))
    w.release()
    out = tmp_path / "out"
    r = run(tiny_bundle["dir"], path, "camera:57", "-o", out)
    assert r.exit_code == 1 and "camera:57: cannot open camera 57" in r.output  # reported, others done
    assert "images" not in r.output and "runtime: " in r.output  # a video run has no images header
    cap = cv2.VideoCapture(str(out / "clip_depth.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 7
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (40, 32)
    assert sorted(os.listdir(out)) == ["clip_depth.mp4"]  # no temp files left


def test_run_needs_no_torch(tiny_bundle, sample_photo, tmp_path):
    code = ("import sys; sys.modules['torch'] = None; from depthart.cli import main; "
            f"main(['run', r'{tiny_bundle['dir']}', r'{sample_photo}', '-o', r'{tmp_path}'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "coffee.npy").is_file()


def test_bad_bundle_is_one_line(tmp_path, sample_photo):
    r = run(tmp_path / "nope", sample_photo, "-o", tmp_path / "o")
    assert r.exit_code == 1 and "no such bundle folder" in r.output and "Traceback" not in r.output


def test_a_video_without_frames_leaves_no_file(tmp_path):
    from depthart.runtime.media import DepthVideoWriter

    w = DepthVideoWriter(str(tmp_path / "v.mp4"), 10.0)
    w.write(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.float32))
    w.frames = 0  # as if nothing had been written
    w.close()
    assert list(tmp_path.iterdir()) == []
