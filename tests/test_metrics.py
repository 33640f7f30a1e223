"""depthart.metrics against values worked out by hand on tiny arrays, plus the edge cases."""

import math
import subprocess
import sys

import numpy as np
import pytest

from depthart.metrics import (METRIC_NAMES, MetricsError, evaluate, evaluate_detailed, fit_pixels,
                              mean_metrics)

LN2 = math.log(2.0)


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=1e-12)


class TestDefinitions:
    def test_every_metric_by_hand_without_alignment(self):
        # four scored pixels, p = 2 everywhere; the fifth pixel is invalid (gt 0, prediction NaN)
        gt = np.array([[1.0, 2.0, 4.0, 2.5, 0.0]])
        pred = np.array([[2.0, 2.0, 2.0, 2.0, np.nan]])
        valid = np.array([[True, True, True, True, False]])
        m = evaluate(pred, gt, valid, alignment=None, depth_range=None)
        assert set(m) == set(METRIC_NAMES)
        # |p-g|/g = 1, 0, 0.5, 0.2
        assert m["abs_rel"] == approx((1 + 0 + 0.5 + 0.2) / 4)
        # (p-g)^2/g = 1, 0, 1, 0.1
        assert m["sq_rel"] == approx((1 + 0 + 1 + 0.1) / 4)
        # (p-g)^2 = 1, 0, 4, 0.25
        assert m["rmse"] == approx(math.sqrt(5.25 / 4))
        # e = ln p - ln g = ln2, 0, -ln2, ln 0.8
        e = [LN2, 0.0, -LN2, math.log(0.8)]
        assert m["rmse_log"] == approx(math.sqrt((2 * LN2**2 + math.log(0.8) ** 2) / 4))
        assert m["log10"] == approx((2 * math.log10(2) + abs(math.log10(0.8))) / 4)
        # max ratio = 2, 1, 2, 1.25 (exactly): 1.25 is NOT < 1.25, but < 1.5625
        assert m["delta1"] == 0.25
        assert m["delta2"] == 0.5
        assert m["delta3"] == 0.5  # 2 is not < 1.953125
        # 1/p - 1/g = -0.5, 0, 0.25, 0.1
        assert m["i_rmse"] == approx(math.sqrt((0.25 + 0.0625 + 0.01) / 4))
        mean_e = sum(e) / 4
        assert m["silog"] == approx(100 * math.sqrt(sum(x * x for x in e) / 4 - mean_e**2))

    def test_silog_of_a_pure_scale_error_is_zero_not_nan(self):
        gt = np.array([[1.0, 3.0, 7.0]])
        m = evaluate(2 * gt, gt, np.ones_like(gt, bool), alignment=None, depth_range=None)
        assert m["silog"] == pytest.approx(0.0, abs=1e-5)
        assert m["rmse_log"] == approx(LN2)
        assert m["delta1"] == 0.0 and m["delta2"] == 0.0 and m["delta3"] == 0.0  # ratio 2 fails all three

    def test_dataset_score_is_the_mean_of_per_image_values(self):
        a = dict.fromkeys(METRIC_NAMES, 1.0)
        b = dict.fromkeys(METRIC_NAMES, 0.0)
        b["abs_rel"] = 3.0
        m = mean_metrics([a, b])
        assert m["abs_rel"] == 2.0 and m["rmse"] == 0.5
        with pytest.raises(MetricsError):
            mean_metrics([])


class TestAlignment:
    def test_least_squares_recovers_an_exact_affine_map_and_applies_it_everywhere(self):
        pred = np.array([[0.1, 0.4], [0.7, 0.9]])
        gt = 3 * pred + 1
        valid = np.array([[True, True], [True, False]])
        ev = evaluate_detailed(pred, gt, valid, alignment="least_squares", depth_range=None)
        assert ev.scale == pytest.approx(3) and ev.shift == pytest.approx(1)
        assert ev.depth[1, 1] == pytest.approx(3 * 0.9 + 1)  # the invalid pixel is aligned too
        assert ev.metrics["abs_rel"] == pytest.approx(0, abs=1e-12) and ev.metrics["delta1"] == 1.0

    def test_least_squares_by_hand(self):
        # x = 0, 1, 2; y = 1, 2, 2: s = Sxy/Sxx = 1/2, t = 5/3 - 1/2 = 7/6 -> fit 7/6, 5/3, 13/6
        ev = evaluate_detailed(np.array([[0.0, 1.0, 2.0]]), np.array([[1.0, 2.0, 2.0]]), np.ones((1, 3), bool),
                               alignment="least_squares", depth_range=None)
        assert ev.scale == pytest.approx(0.5) and ev.shift == pytest.approx(7 / 6)
        # |fit - g|/g = 1/6, 1/6, 1/12
        assert ev.metrics["abs_rel"] == pytest.approx((1 / 6 + 1 / 6 + 1 / 12) / 3)

    def test_median_scale_uses_the_lower_median_and_no_shift(self):
        pred = np.array([[1.0, 2.0, 4.0, 8.0]])
        gt = np.full((1, 4), 2.0)
        # g/p = 2, 1, 0.5, 0.25 -> sorted 0.25, 0.5, 1, 2: lower median 0.5 (not 0.75)
        ev = evaluate_detailed(pred, gt, np.ones((1, 4), bool), alignment="median_scale", depth_range=None)
        assert ev.scale == 0.5 and ev.shift == 0.0
        # aligned 0.5, 1, 2, 4 -> |p-g|/g = 0.75, 0.5, 0, 1
        assert ev.metrics["abs_rel"] == pytest.approx(2.25 / 4)

    def test_least_squares_disparity_fits_inverse_depth_and_clips_it(self):
        gt = np.array([[1.0, 2.0, 4.0, 1.0]])
        pred = np.array([[3.0, 2.0, 1.5, 0.5]])  # = 2/g + 1 on the first three pixels
        valid = np.array([[True, True, True, False]])
        ev = evaluate_detailed(pred, gt, valid, alignment="least_squares_disparity", depth_range=(0.1, 10.0))
        assert ev.scale == pytest.approx(0.5) and ev.shift == pytest.approx(-0.5)
        assert ev.metrics["abs_rel"] == pytest.approx(0, abs=1e-12)
        # the last pixel: disparity 0.5*0.5 - 0.5 < 0 -> 1e-3 -> depth 1000 m -> clipped to 10 m
        assert ev.depth[0, 3] == 10.0

    def test_clip_to_range_then_floor(self):
        pred = np.array([[-1.0, 0.5, 20.0]])
        gt = np.ones((1, 3))
        ones = np.ones((1, 3), bool)
        ev = evaluate_detailed(pred, gt, ones, alignment=None, depth_range=(0.8, 10.0))
        np.testing.assert_array_equal(ev.depth, [[0.8, 0.8, 10.0]])
        ev = evaluate_detailed(pred, gt, ones, alignment=None, depth_range=None)
        np.testing.assert_array_equal(ev.depth, [[1e-6, 0.5, 20.0]])
        ev = evaluate_detailed(pred, gt, ones, alignment=None, depth_range=(1e-5, math.inf))
        np.testing.assert_array_equal(ev.depth, [[1e-5, 0.5, 20.0]])


class TestEdgeCases:
    def test_all_invalid_is_a_clear_error_not_nan(self):
        with pytest.raises(MetricsError, match="no valid ground-truth pixel"):
            evaluate(np.ones((2, 2)), np.ones((2, 2)), np.zeros((2, 2), bool), alignment="least_squares",
                     depth_range=(1e-3, 10))

    def test_constant_prediction_aligns_to_the_mean_depth(self):
        # rank-deficient fit: the minimum-norm solution predicts mean(g) = 2 everywhere
        ev = evaluate_detailed(np.full((1, 3), 0.7), np.array([[1.0, 2.0, 3.0]]), np.ones((1, 3), bool),
                               alignment="least_squares", depth_range=(1e-3, 10))
        np.testing.assert_allclose(ev.depth, 2.0)
        assert ev.metrics["abs_rel"] == pytest.approx((1 + 0 + 1 / 3) / 3)
        assert all(math.isfinite(v) for v in ev.metrics.values())

    def test_negative_fitted_scale_is_applied_then_clipped(self):
        # prediction ordered the wrong way round: g = 3 - p on the valid pixels
        pred = np.array([[0.0, 1.0, 2.0, 5.0]])
        gt = np.array([[3.0, 2.0, 1.0, 0.0]])
        valid = np.array([[True, True, True, False]])
        ev = evaluate_detailed(pred, gt, valid, alignment="least_squares", depth_range=(0.5, 10.0))
        assert ev.scale == pytest.approx(-1) and ev.shift == pytest.approx(3)
        assert ev.metrics["abs_rel"] == pytest.approx(0, abs=1e-12)
        assert ev.depth[0, 3] == 0.5  # 3 - 5 = -2 -> clipped up to the range minimum

    def test_bad_inputs_name_the_problem(self):
        ones = np.ones((2, 2))
        valid = np.ones((2, 2), bool)
        with pytest.raises(MetricsError, match="same HxW"):
            evaluate(np.ones((2, 3)), ones, valid, alignment=None, depth_range=None)
        with pytest.raises(MetricsError, match="ground truth is not finite and > 0 at 1 of 4"):
            evaluate(ones, np.array([[1.0, 0.0], [1.0, 1.0]]), valid, alignment=None, depth_range=None)
        with pytest.raises(MetricsError, match="prediction is NaN or inf at 1 of 4"):
            evaluate(np.array([[1.0, np.inf], [1.0, 1.0]]), ones, valid, alignment=None, depth_range=None)
        with pytest.raises(MetricsError, match="median scale is not finite"):
            evaluate(np.zeros((2, 2)), ones, valid, alignment="median_scale", depth_range=None)
        with pytest.raises(MetricsError, match="unknown alignment"):
            evaluate(ones, ones, valid, alignment="affine", depth_range=None)
        with pytest.raises(MetricsError, match="min must be below max"):
            evaluate(ones, ones, valid, alignment=None, depth_range=(10, 1))


class TestMaxResolution:
    def test_fit_pixels_keeps_rows_and_subsamples_columns(self):
        rows, cols = fit_pixels((4, 6), 3)  # sf = min(3/4, 3/6) = 0.5 -> 3 columns: 0, 2, 4
        assert rows.tolist() == [0, 1, 2, 3] and cols.tolist() == [0, 2, 4]
        rows, cols = fit_pixels((4, 6), 8)  # not larger than N: every pixel
        assert rows.tolist() == [0, 1, 2, 3] and cols.tolist() == list(range(6))

    @pytest.mark.parametrize("shape,n", [((4032, 6048), 1024), ((500, 741), 300), ((37, 11), 5), ((10, 10), 3)])
    def test_fit_pixels_match_a_nearest_resize_along_the_last_axis_as_marigold_does(self, shape, n):
        torch = pytest.importorskip("torch")
        h, w = shape
        sf = min(n / h, n / w)
        cols_t = torch.nn.Upsample(scale_factor=sf, mode="nearest")(torch.arange(w, dtype=torch.float64)
                                                                     .expand(1, 1, w).contiguous())
        rows, cols = fit_pixels(shape, n)
        assert rows.tolist() == list(range(h))
        assert cols.tolist() == cols_t.flatten().long().tolist()

    def test_fit_ignores_the_skipped_columns(self):
        pred = np.tile(np.arange(6.0), (4, 1)) / 6 + np.arange(4.0)[:, None]
        gt = 2 * pred + 1
        gt[:, 1::2] = 50.0  # outliers on odd columns, which the subsampled fit skips
        ev = evaluate_detailed(pred, gt, np.ones_like(gt, bool), alignment="least_squares", depth_range=None,
                               max_resolution=3)
        assert ev.scale == pytest.approx(2) and ev.shift == pytest.approx(1)
        full = evaluate_detailed(pred, gt, np.ones_like(gt, bool), alignment="least_squares", depth_range=None)
        assert full.scale != pytest.approx(2)


def test_metrics_module_does_not_import_torch():
    code = ("import sys; sys.modules['torch'] = None; import depthart.metrics, numpy as np; "
            "print(depthart.metrics.evaluate(np.ones((1, 2)), np.ones((1, 2)), np.ones((1, 2), bool), "
            "alignment='least_squares', depth_range=(0.1, 10))['delta1'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1.0"
