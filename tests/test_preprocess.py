import numpy as np
import pytest
from PIL import Image

from depthart.preprocess import ImageError, load_image, to_model_input


def test_modes_become_rgb8(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    cases = {
        "rgba.png": Image.fromarray(np.dstack([rgb, np.full((20, 30), 128, np.uint8)]), "RGBA"),
        "l.png": Image.fromarray(rgb[:, :, 0], "L"),
        "p.png": Image.fromarray(rgb).convert("P"),
        "i16.png": Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257),
    }
    for name, im in cases.items():
        im.save(tmp_path / name)
        out = load_image(tmp_path / name)
        assert out.mode == "RGB" and out.size == (30, 20), name
    # RGBA drops alpha; 16-bit scales to 8 bits; greyscale repeats
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "rgba.png")), rgb)
    g = np.asarray(load_image(tmp_path / "i16.png"))
    np.testing.assert_array_equal(g[:, :, 0], rgb[:, :, 0])
    np.testing.assert_array_equal(g[:, :, 1], g[:, :, 2])


def test_arrays_of_each_dtype():
    a8 = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    ref = np.asarray(load_image(a8))
    np.testing.assert_array_equal(ref, a8)
    np.testing.assert_array_equal(np.asarray(load_image(a8.astype(np.uint16) * 257)), a8)
    np.testing.assert_array_equal(np.asarray(load_image(a8 / 255.0)), a8)
    assert load_image(a8[:, :, :1]).size == (7, 5)
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((5, 7, 2), np.uint8))
    with pytest.raises(ImageError, match="dtype"):
        load_image(np.zeros((5, 7), np.int64))
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((5, 7), np.nan))
    with pytest.raises(ImageError, match="unsupported input type"):
        load_image(3.5)


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((10, 40, 3), np.uint8)
    a[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(a).save(tmp_path / "rot.jpg", exif=exif)
    im = load_image(tmp_path / "rot.jpg")
    assert im.size == (10, 40)  # displayed upright: portrait
    top = np.asarray(im)[:20].mean()
    assert top > 200  # the white half is on top after rotating 90 degrees clockwise
    with Image.open(tmp_path / "rot.jpg") as opened:  # the same file handed over as a PIL image (RGB, rotated)
        assert opened.mode == "RGB" and load_image(opened).size == (10, 40)
    plain = Image.fromarray(a)
    assert load_image(plain) is plain  # RGB, no rotation: used as it is, no copy


def test_to_model_input_range_and_layout(sample_photo):
    x = to_model_input(load_image(sample_photo), 32)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    assert -1 <= x.min() < x.max() <= 1
    solid = to_model_input(Image.new("RGB", (9, 5), (255, 0, 127)), 8)
    np.testing.assert_allclose(solid[:, 0, 0], [1.0, -1.0, 127 / 127.5 - 1], atol=1e-6)


def test_bad_files_name_the_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    for name, msg in [("empty.jpg", "empty file"), ("text.png", "not an image"), ("nope.jpg", "no such file")]:
        with pytest.raises(ImageError, match=msg) as e:
            load_image(tmp_path / name)
        assert name in str(e.value)
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)


def test_alpha_is_dropped_and_said_once(monkeypatch, caplog):
    import logging

    import depthart.preprocess as pp

    monkeypatch.setattr(pp, "_alpha_noted", False)
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 200, 0
    with caplog.at_level(logging.WARNING, logger="depthart.preprocess"):
        a = np.asarray(pp.load_image(Image.fromarray(rgba, "RGBA")))
        b = np.asarray(pp.load_image(rgba))
        pp.load_image(np.zeros((4, 5, 3), np.uint8))
    assert a.shape == b.shape == (4, 5, 3) and (a == 200).all() and (b == 200).all()
    notes = [r.getMessage() for r in caplog.records if "alpha" in r.getMessage()]
    assert len(notes) == 1 and "ignored" in notes[0]
