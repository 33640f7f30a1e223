"""The TensorRT 10.x implicit calibrator: import-safe without TensorRT; skipped where TensorRT is absent."""

import pytest

from depthart.calibration.calibrator import calibration_feeds, tensorrt_calibrator
from depthart.export.trt import tensorrt_status


def test_calibration_feeds_pick_one_scale_of_the_step_graph():
    m = {"steps": [{"scale": k} for k in range(3)]}
    feeds = {"step": [{"i": n} for n in range(6)], "decoder": [{"i": 0}, {"i": 1}]}  # 2 images x 3 scales
    assert calibration_feeds(feeds, "step", m) == [{"i": 2}, {"i": 5}]
    assert calibration_feeds(feeds, "step", m, scale=0) == [{"i": 0}, {"i": 3}]
    assert calibration_feeds(feeds, "decoder", m) == feeds["decoder"]
    with pytest.raises(ValueError):
        calibration_feeds(feeds, "step", m, scale=3)


def test_without_tensorrt_the_calibrator_says_what_is_missing(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is importable here")
    except Exception:
        pass
    from depthart.errors import DepthartError

    with pytest.raises(DepthartError, match="TensorRT"):
        tensorrt_calibrator([{"x": 0}], tmp_path / "calib.cache")


@pytest.mark.trt
def test_tensorrt_calibrator_builds_an_int8_decoder_engine(tiny_bundle, tmp_path):
    ok, why = tensorrt_status()
    if not ok:
        pytest.skip(why)
    import tensorrt as trt

    if int(trt.__version__.split(".")[0]) >= 11:
        pytest.skip(f"TensorRT {trt.__version__}: no implicit calibration (int8 comes from Q/DQ bundles)")
    from polygraphy.backend.trt import CreateConfig, EngineFromNetwork, NetworkFromOnnxPath, Profile

    from depthart.calibration import feeds as fd
    from depthart.export.manifest import read_manifest

    m = read_manifest(tiny_bundle["dir"])
    images, _ = fd.calibration_images(None, 2, m["image_size"])
    feeds = fd.feeds_from_bundle(tiny_bundle["dir"], images)
    cache = tmp_path / "decoder.cache"
    calib = tensorrt_calibrator(calibration_feeds(feeds, "decoder", m), cache)
    shape = feeds["decoder"][0]["f_hat"].shape
    profile = Profile().add("f_hat", shape, shape, shape)
    config = CreateConfig(int8=True, calibrator=calib, profiles=[profile])
    engine = EngineFromNetwork(NetworkFromOnnxPath(str(tiny_bundle["dir"] / "decoder.onnx")), config=config)()
    assert engine is not None and cache.is_file() and cache.stat().st_size > 0
