"""Protocol settings, crops, masks and resizing (depthart.evaluation.protocol)."""

import numpy as np
import pytest

from depthart.evaluation.datasets import Sample
from depthart.evaluation.formats import DatasetError, PredictionError
from depthart.evaluation.protocol import (get_settings, kb_crop, match_prediction, prepare, region_mask,
                                          resize_bilinear, resize_nearest)


def sample(h, w, depth=5.0):
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    d = np.full((h, w), depth, np.float32)
    return Sample("s", image, d, np.ones((h, w), bool))


@pytest.mark.parametrize("shape,size", [((480, 640), (256, 256)), ((464, 624), (256, 256)), ((7, 5), (3, 11)),
                                        ((4032, 6048), (256, 256))])
def test_resize_nearest_picks_the_same_pixels_as_torch(shape, size):
    torch = pytest.importorskip("torch")
    a = np.arange(shape[0] * shape[1], dtype=np.float32).reshape(shape)
    ref = torch.nn.functional.interpolate(torch.from_numpy(a)[None, None], size=size, mode="nearest")[0, 0]
    np.testing.assert_array_equal(resize_nearest(a, size), ref.numpy())


@pytest.mark.parametrize("shape,size", [((256, 256), (480, 640)), ((5, 3), (9, 2)), ((4, 4), (1, 4))])
def test_resize_bilinear_matches_torch_align_corners(shape, size):
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(1).uniform(0, 1, shape).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(a)[None, None], size=size, mode="bilinear",
                                          align_corners=True)[0, 0]
    np.testing.assert_allclose(resize_bilinear(a, size), ref.numpy(), atol=1e-4)  # torch: float32 positions


def test_kitti_benchmark_crop_and_eigen_mask():
    a = np.arange(375 * 1242).reshape(375, 1242)
    c = kb_crop(a)
    assert c.shape == (352, 1216)
    assert c[0, 0] == a[375 - 352, (1242 - 1216) // 2] == a[23, 13]
    m = region_mask("eigen_kitti", (352, 1216))
    rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
    assert (rows[0], rows[-1], cols[0], cols[-1]) == (117, 320, 43, 1171)
    with pytest.raises(DatasetError, match="smaller than the 352x1216"):
        kb_crop(np.zeros((300, 1300)))


def test_nyu_eigen_crop():
    m = region_mask("eigen_nyu", (480, 640))
    assert m.sum() == (471 - 45) * (601 - 41) and m[45, 41] and m[470, 600] and not m[44, 41] and not m[470, 601]
    with pytest.raises(DatasetError, match="480x640"):
        region_mask("eigen_nyu", (6, 8))


def test_marigold_nyu_scores_only_the_eigen_crop_and_strict_range():
    s = sample(480, 640)
    s.depth[100, 100] = 10.0  # == max: outside (min, max)
    p = prepare(s, get_settings("marigold", "nyu"))
    assert p.image.shape == (480, 640, 3) and p.gt.shape == (480, 640)
    assert p.mask.sum() == (471 - 45) * (601 - 41) - 1 and not p.mask[100, 100]


def test_depthart_nyu_crops_border_then_resizes_to_256_with_inclusive_max():
    s = sample(480, 640)
    s.depth[:8] = 0.0  # the cut border only
    s.valid[:8] = False
    s.depth[200:, :] = 10.0  # == max: inside (min, max]
    settings = get_settings("depthart", "nyu")
    assert settings.alignment == "median_scale" and settings.clip_range is None
    p = prepare(s, settings)
    assert p.image.shape == (256, 256, 3) and p.gt.shape == (256, 256)
    assert p.mask.all()  # border gone, 10 m counts


def test_depthart_ibims_keeps_gt_full_res_and_resizes_the_prediction():
    s = sample(480, 640)
    settings = get_settings("depthart", "ibims")
    p = prepare(s, settings)
    assert p.image.shape == (256, 256, 3) and p.gt.shape == (480, 640)
    pred = np.random.default_rng(0).uniform(0, 1, (256, 256)).astype(np.float32)
    out = match_prediction(pred, p, settings)
    assert out.shape == (480, 640)
    assert out[0, 0] == pred[0, 0] and out[-1, -1] == pred[-1, -1]  # corners aligned


def test_a_prediction_of_the_wrong_size_is_an_error_under_marigold():
    settings = get_settings("marigold", "middlebury")
    p = prepare(sample(20, 30), settings)
    assert match_prediction(np.zeros((1, 20, 30)), p, settings).shape == (20, 30)
    with pytest.raises(PredictionError, match="prediction is 10x15, expected 20x30"):
        match_prediction(np.zeros((10, 15)), p, settings)


def test_diode_marigold_uses_the_file_mask_and_range_only_for_clipping():
    settings = get_settings("marigold", "diode")
    assert settings.valid_range is None and settings.clip_range == (0.6, 350.0)
    s = sample(4, 4, depth=500.0)  # beyond 350 m but marked valid by the file
    assert prepare(s, settings).mask.all()


def test_settings_table():
    assert get_settings("marigold", "eth3d").max_resolution == 1024
    assert get_settings("marigold", "kitti").kb_crop and get_settings("marigold", "kitti").valid_range == (1e-5, 80.0)
    assert get_settings("marigold", "nyu", "least_squares_disparity").alignment == "least_squares_disparity"
    assert get_settings("marigold", "nyu", None).alignment is None
    assert get_settings("depthart", "eth3d").valid_range == (1e-4, 72.0)
    assert get_settings("depthart", "tum").upper_inclusive
    assert not get_settings("depthart", "middlebury").published and get_settings("depthart", "ibims").published
    with pytest.raises(ValueError, match="unknown protocol"):
        get_settings("midas", "nyu")
