"""Fault injection (issue 16): every CLI entry point against bad inputs and damaged artefacts.

Each case asserts a non-zero exit (or the per-input error), one line, no traceback, and that nothing
valid is lost: good inputs of the same call are written, existing outputs and bundles stay intact,
no half-written or temporary file is left. One tiny bundle is shared (the session's `tiny_bundle`);
cases that damage it work on a copy.
"""

import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from depthart.cli import main
from depthart.errors import DepthartError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def hash_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTHART_CACHE", str(tmp_path / "cache"))  # never the user's ~/.cache


def cli(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def refused(r, *words):
    """A clean refusal: non-zero exit through click (no exception escaped), an `Error:` line naming `words`."""
    assert r.exit_code != 0, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    errors = [line for line in r.output.splitlines() if line.startswith(("Error:", "error:"))]
    assert errors, r.output
    for w in words:
        assert any(w in line for line in errors), (w, r.output)
    return errors


def listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    assert (tiny_bundle["dir"] / "manifest.json").is_file(), tiny_bundle["result"].output
    return tiny_bundle["dir"]


@pytest.fixture
def copy(bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(bundle, dst)
    return dst


def edit_manifest(folder, **changes):
    m = json.loads((folder / "manifest.json").read_text())
    m.update(changes)
    (folder / "manifest.json").write_text(json.dumps(m))


def truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def flip(path, n=64):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        block = f.read(n)
        f.seek(os.path.getsize(path) // 2)
        f.write(bytes(b ^ 0xFF for b in block))


# --- damaged bundles: run, bench, calibrate and the Python API refuse them by name ---------------

DAMAGES = {
    "truncated step.onnx": (lambda b: truncate(b / "step.onnx"), "step.onnx"),
    "64 bytes flipped in step.onnx": (lambda b: flip(b / "step.onnx"), "step.onnx"),
    "missing step.onnx": (lambda b: os.remove(b / "step.onnx"), "step.onnx"),
    "flipped codebook": (lambda b: flip(b / "codebook.npy", 8), "codebook.npy"),
    "schema 999": (lambda b: edit_manifest(b, schema=999), "schema version 999"),
    "schema_version 2": (lambda b: edit_manifest(b, schema_version=2), "reads version(s) 1"),
    "manifest not JSON": (lambda b: (b / "manifest.json").write_bytes(b"\x00\xff{garbage"), "manifest.json"),
    "manifest with wrong types": (lambda b: edit_manifest(b, steps=7), "malformed manifest"),
    "manifest lost a file's record": (lambda b: edit_manifest(b, files={}), "records no size and hash"),
    "missing manifest": (lambda b: os.remove(b / "manifest.json"), "no manifest.json"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_run_refuses_a_damaged_bundle(copy, sample_photo, tmp_path, damage):
    do, word = DAMAGES[damage]
    do(copy)
    r = cli(["run", copy, sample_photo, "-o", tmp_path / "out"])
    assert len(refused(r, word)) == 1
    assert listing(tmp_path / "out") == []


@pytest.mark.parametrize("damage", ["truncated step.onnx", "64 bytes flipped in step.onnx", "schema 999"])
def test_bench_calibrate_and_the_api_refuse_a_damaged_bundle(copy, tmp_path, damage):
    from depthart.runtime import DepthRuntime

    do, word = DAMAGES[damage]
    do(copy)
    refused(cli(["bench", "--bundle", copy, "--runs", 1, "--warmup", 0]), word)
    refused(cli(["calibrate", copy, "--precision", "fp16", "-o", tmp_path / "fp16"]), word)
    assert not (tmp_path / "fp16").exists()
    with pytest.raises(DepthartError, match=word):
        DepthRuntime(copy)


def test_no_verify_checks_sizes_and_says_so(copy, sample_photo, tmp_path):
    r = cli(["run", copy, sample_photo, "-o", tmp_path / "a"])
    assert r.exit_code == 0 and "7 files verified (sha256)" in r.output, r.output
    r = cli(["run", copy, sample_photo, "-o", tmp_path / "b"])  # second start: nothing re-hashed
    assert "0.0 MB hashed" in r.output and "unchanged since their last check" in r.output, r.output
    r = cli(["run", copy, sample_photo, "-o", tmp_path / "c", "--no-verify"])
    assert r.exit_code == 0 and "--no-verify: contents not checked" in r.output, r.output
    truncate(copy / "step.onnx")  # sizes are checked even then
    refused(cli(["run", copy, sample_photo, "-o", tmp_path / "d", "--no-verify"]), "step.onnx", "interrupted copy")


def test_the_hash_cache_sees_a_changed_file(copy, sample_photo, tmp_path):
    from depthart.runtime.integrity import verify_bundle
    from depthart.runtime.manifest import load_manifest

    m = load_manifest(copy)
    assert verify_bundle(copy, m)["hashed_bytes"] > 0
    assert verify_bundle(copy, m)["hashed_bytes"] == 0
    flip(copy / "next_1.onnx")  # same size; the write changes the mtime
    with pytest.raises(DepthartError, match="next_1.onnx: damaged"):
        verify_bundle(copy, m)
    assert verify_bundle(copy, m, "sizes")["hashed_bytes"] == 0  # sizes only: not seen, as documented


def test_old_bundle_without_a_record_gives_one_line_backend_errors(copy, sample_photo, tmp_path):
    """A bundle exported before files were recorded: onnxruntime's protobuf error becomes one line."""
    m = json.loads((copy / "manifest.json").read_text())
    del m["files"]
    (copy / "manifest.json").write_text(json.dumps(m))
    r = cli(["run", copy, sample_photo, "-o", tmp_path / "ok"])
    assert r.exit_code == 0 and "not recorded" in r.output, r.output
    truncate(copy / "step.onnx")
    refused(cli(["run", copy, sample_photo, "-o", tmp_path / "out"]), "step.onnx", "could not load")


def test_engines_and_sidecars_are_recorded_and_checked(copy, sample_photo, tmp_path):
    from depthart.export.manifest import write_manifest

    m = json.loads((copy / "manifest.json").read_text())
    for name in m["graphs"]:  # stand-in engines: checked before TensorRT is even imported
        (copy / f"{name}.engine").write_bytes(os.urandom(256))
        (copy / f"{name}.engine.json").write_text("{}")
    m["engines"] = {n: {"file": f"{n}.engine", "sidecar": f"{n}.engine.json", "precision": "fp32", "batch": 1}
                    for n in m["graphs"]}
    write_manifest(copy, m)
    assert {"step.engine", "step.engine.json"} <= set(json.loads((copy / "manifest.json").read_text())["files"])
    flip(copy / "step.engine", 16)
    refused(cli(["run", copy, sample_photo, "-o", tmp_path / "o", "--backend", "trt"]), "step.engine: damaged")
    (copy / "decoder.engine.json").write_text("{ }")
    refused(cli(["run", copy, sample_photo, "-o", tmp_path / "o", "--backend", "trt"]), "engine")
    # onnxruntime does not read engines: a damaged engine does not stop it
    assert cli(["run", copy, sample_photo, "-o", tmp_path / "ort"]).exit_code == 0


# --- bad images: per-input errors; the good input of the same call is written --------------------

@pytest.fixture
def bad_images(tmp_path, sample_photo):
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(sample_photo, d / "good.jpg")
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.png").write_text("not an image\n")
    data = sample_photo.read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 3])
    Image.new("RGB", (400, 300)).save(d / "big.png")  # above --max-pixels 110000 (the photo is 400x267)
    return d


def check_bad_images(r, out):
    errors = refused(r, "empty.jpg: empty file", "text.png: not an image", "truncated.jpg", "big.png: 400x300",
                     "missing.jpg: no such file")
    assert len(errors) == 5, errors
    assert {"good.npy", "good.png", "good_color.png"} <= set(listing(out))
    assert not any(f.startswith(("empty", "text", "truncated", "big", ".")) for f in listing(out))


def test_run_bad_images(bundle, bad_images, tmp_path):
    out = tmp_path / "out"
    check_bad_images(cli(["run", bundle, bad_images, tmp_path / "missing.jpg", "-o", out, "--max-pixels", 110000]),
                     out)


def test_predict_bad_images(tiny_bundle, bad_images, tmp_path):
    out = tmp_path / "out"
    check_bad_images(cli(["predict", bad_images, tmp_path / "missing.jpg", "-o", out, "-c", tiny_bundle["ckpt"],
                          "--max-pixels", 110000]), out)


def test_missing_camera_and_video(bundle, tmp_path):
    pytest.importorskip("cv2")
    (tmp_path / "clip.mp4").write_bytes(b"no video here")
    r = cli(["run", bundle, "camera:97", "camera:x", tmp_path / "clip.mp4", "-o", tmp_path / "out"])
    refused(r, "camera:97: cannot open camera 97", "camera:x: expected camera:N", "clip.mp4")
    assert listing(tmp_path / "out") == []


# --- bad checkpoints ------------------------------------------------------------------------------

@pytest.fixture
def bad_checkpoints(tmp_path, tiny_bundle):
    data = tiny_bundle["ckpt"].read_bytes()
    files = {"empty": b"", "random": os.urandom(4096), "truncated": data[: len(data) // 2]}
    for name, blob in files.items():
        (tmp_path / f"{name}.safetensors").write_bytes(blob)
    return [tmp_path / f"{n}.safetensors" for n in files] + [tmp_path / "missing.safetensors"]


def test_bad_checkpoints(bad_checkpoints, sample_photo, tmp_path):
    for ckpt in bad_checkpoints:
        refused(cli(["predict", sample_photo, "-o", tmp_path / "p", "-c", ckpt]), ckpt.name)
        refused(cli(["export", "-c", ckpt, "-o", tmp_path / "b"]), ckpt.name)
        refused(cli(["bench", "-c", ckpt, "--runs", 1]), ckpt.name)
    assert listing(tmp_path / "p") == [] and not (tmp_path / "b").exists()
    assert not [f for f in listing(tmp_path) if f.startswith(".b.")]  # no half bundle


def test_eval_unknown_dataset_and_damaged_predictions(tmp_path):
    pytest.importorskip("skimage")
    r = cli(["eval", "-d", "nope", "--predictions", tmp_path, "-o", tmp_path / "e"])
    assert r.exit_code == 2 and "Traceback" not in r.output and "nope" in r.output
    preds = tmp_path / "preds"
    preds.mkdir()
    buf = tmp_path / "full.npy"
    np.save(buf, np.zeros((4, 4), np.float32))
    (preds / "motorcycle.npy").write_bytes(buf.read_bytes()[:100])
    refused(cli(["eval", "-d", "middlebury", "--predictions", preds, "-o", tmp_path / "e"]), "motorcycle.npy")


# --- outputs: existing ones, a full disk, two writers ---------------------------------------------

def test_existing_outputs_are_kept_without_overwrite(bundle, tiny_bundle, sample_photo, tmp_path):
    out = tmp_path / "out"
    assert cli(["run", bundle, sample_photo, "-o", out]).exit_code == 0
    before = {f: (out / f).read_bytes() for f in listing(out)}
    refused(cli(["run", bundle, sample_photo, "-o", out]), "--overwrite")
    refused(cli(["export", "-c", tiny_bundle["ckpt"], "-o", bundle]), "--force")
    assert {f: (out / f).read_bytes() for f in listing(out)} == before
    assert (bundle / "manifest.json").is_file()


def test_disk_full_stops_with_one_line_and_no_partial_file(bundle, tiny_bundle, sample_photo, tmp_path,
                                                           monkeypatch):
    """ENOSPC in the middle of a write: the temp file is removed, the old output stays whole."""
    import depthart.fileio as fileio

    out = tmp_path / "out"
    assert cli(["run", bundle, sample_photo, "-o", out]).exit_code == 0
    before = {f: (out / f).read_bytes() for f in listing(out)}

    def full_disk(path, data):
        with fileio.atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("depthart.outputs.atomic_write_bytes", full_disk)
    refused(cli(["run", bundle, sample_photo, "-o", out, "--overwrite"]), "No space left on device")
    refused(cli(["predict", sample_photo, "-o", out, "--overwrite", "-c", tiny_bundle["ckpt"]]),
            "No space left on device")
    assert {f: (out / f).read_bytes() for f in listing(out)} == before


def test_interrupted_export_leaves_no_half_bundle(tiny_bundle, tmp_path, monkeypatch):
    """Ctrl-C while a graph file is being written: no bundle, no partial folder; an old bundle survives."""
    import depthart.export.bundle as eb
    from depthart.export.bundle import export_bundle
    from depthart.runtime import DepthRuntime

    def interrupted(module, args, path, *rest):
        with open(path, "wb") as f:
            f.write(b"half a graph")
        raise KeyboardInterrupt

    monkeypatch.setattr(eb, "onnx_from_module", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_bundle(tiny_bundle["model"], tmp_path / "new", source="tiny", check=False)
    assert listing(tmp_path) == []
    old = tmp_path / "old"
    shutil.copytree(tiny_bundle["dir"], old)
    with pytest.raises(KeyboardInterrupt):
        export_bundle(tiny_bundle["model"], old, source="tiny", check=False, force=True)
    assert listing(tmp_path) == ["old"] and listing(old) == listing(tiny_bundle["dir"])
    DepthRuntime(old)  # the previous bundle is intact (verified)


def test_two_runs_writing_the_same_folder(bundle, sample_photo, tmp_path):
    """Two processes write the same outputs at once: every file ends up whole, no temp file is left."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "from depthart.cli import main; main()", "run", str(bundle), str(sample_photo),
           "-o", str(out), "--overwrite", "--no-verify"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DEPTHART_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].decode() for p in procs]
    for p, text in zip(procs, outs):
        assert p.returncode == 0 and "Traceback" not in text, text
    assert listing(out) == ["coffee.npy", "coffee.png", "coffee_color.png"]  # no .tmp leftovers
    assert np.load(out / "coffee.npy").shape == (267, 400)
    for f in ("coffee.png", "coffee_color.png"):
        with Image.open(out / f) as im:
            im.load()


# --- huge inputs ----------------------------------------------------------------------------------

def test_huge_jpeg_is_decoded_reduced_and_too_many_pixels_refused(tmp_path, monkeypatch):
    import warnings

    from depthart.preprocess import ImageError, load_image, reduction

    path = tmp_path / "big.jpg"
    Image.new("RGB", (6400, 4800), (90, 120, 200)).save(path, quality=70)  # 30.7 MP > WORK_PIXELS
    assert reduction(6400, 4800) == 2 and reduction(12000, 9000) == 4 and reduction(4000, 3000) == 1
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000_000)  # Pillow would warn about a "bomb" now
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        im = load_image(path)
    assert im.size == (3200, 2400) and im.mode == "RGB"
    png = tmp_path / "big.png"
    Image.new("L", (6400, 4800)).save(png)
    assert load_image(png).size == (3200, 2400)
    with pytest.raises(ImageError, match=r"6400x4800 is 30,720,000 pixels, above the limit of 20,000,000"):
        load_image(path, max_pixels=20_000_000)
