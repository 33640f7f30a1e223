import numpy as np
import pytest
from PIL import Image

from depthart.outputs import colorize, save_depth


def test_colour_map_is_warm_near_and_cool_far():
    rgb = colorize(np.array([[0.0, 0.5, 1.0]]))
    near, far = rgb[0, 0].astype(int), rgb[0, 2].astype(int)
    assert near[0] > near[2] + 50  # red dominates near
    assert far[2] > far[0] + 50  # blue dominates far
    assert colorize(np.array([[np.nan, 1.0]]))[0, 0].tolist() == [0, 0, 0]
    flat = colorize(np.full((2, 2), 0.3))  # a constant map does not divide by zero
    assert flat.shape == (2, 2, 3)


def test_three_files_with_exact_contents(tmp_path):
    d = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    paths = save_depth(d, tmp_path / "out", "img")
    np.testing.assert_array_equal(np.load(paths["npy"]), d)
    png = np.asarray(Image.open(paths["png16"]))
    assert png.dtype == np.uint16
    np.testing.assert_array_equal(png, np.round(d * 65535).astype(np.uint16))
    col = Image.open(paths["color"])
    assert col.mode == "RGB" and col.size == (4, 3)
    with pytest.raises(FileExistsError, match="--overwrite"):
        save_depth(d * 0, tmp_path / "out", "img")
    np.testing.assert_array_equal(np.load(paths["npy"]), d)  # untouched
    save_depth(d * 0, tmp_path / "out", "img", overwrite=True)
    assert np.load(paths["npy"]).max() == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img.npy", "img.png", "img_color.png"]
