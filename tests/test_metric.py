"""Intrinsics (runtime/intrinsics.py) and metric depth from a camera height or sparse points (runtime/metric.py),
on procedural scenes whose camera height, intrinsics and metric depth are known."""

import numpy as np
import pytest

from depthart.data.procedural import HELD_OUT_SEED_OFFSET, generate_scene
from depthart.errors import DepthartError
from depthart.runtime import intrinsics as intr
from depthart.runtime.metric import MetricScaler, fit_ground, fit_sparse, load_sparse


@pytest.fixture(scope="module")
def scenes():
    out = []
    for i in range(6):
        s = generate_scene(HELD_OUT_SEED_OFFSET + 500_000 + i, 96)
        rel = np.clip(s.depth / np.percentile(s.depth[s.valid], 98), 0, 1).astype(np.float32)
        out.append((s, rel, intr.from_k(s.K, 96, 96, "procedural")))
    return out


def test_intrinsics_parse_yaml_rescale(tmp_path):
    k = intr.parse("525,520,319.5,239.5")
    assert (k.fx, k.fy, k.cx, k.cy) == (525, 520, 319.5, 239.5)
    y = tmp_path / "ost.yaml"
    y.write_text("image_width: 640\nimage_height: 480\ncamera_name: cam\ncamera_matrix:\n  rows: 3\n  cols: 3\n"
                 "  data: [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]\n"
                 "distortion_model: plumb_bob\n")
    k = intr.parse(str(y))
    half = k.for_size(320, 240)
    assert (half.fx, half.cx, half.cy) == (250, 160, 120) and "rescaled" in half.source
    f = intr.from_fov(90, 100, 50)
    assert f.fx == pytest.approx(50) and (f.cx, f.cy) == (50, 25)
    for bad in ("1,2,3", "0,0,0,0", "a,b,c,d"):
        with pytest.raises(DepthartError):
            intr.parse(bad)
    (tmp_path / "bad.yaml").write_text("camera_matrix: {rows: 3}\n")
    with pytest.raises(DepthartError, match="camera_matrix"):
        intr.parse(str(tmp_path / "bad.yaml"))
    with pytest.raises(DepthartError, match="no such file"):
        intr.parse(str(tmp_path / "missing.yaml"))


def test_backproject_matches_procedural_geometry(scenes):
    s, _, k = scenes[0]
    p = intr.backproject(s.depth, k)
    assert np.allclose(p[..., 2], s.depth)
    # the pixel at the principal point looks straight ahead
    assert abs(p[48, 48, 0]) < 0.02 * s.depth[48, 48]


def test_camera_height_recovers_scale(scenes):
    errs = []
    for s, rel, k in scenes:
        fit = fit_ground(rel, k, s.meta["camera"]["position"][2])
        if fit.ok:
            oracle = np.median(s.depth[s.valid] / rel[s.valid])
            errs.append(abs(fit.scale / oracle - 1))
    assert len(errs) >= 4 and np.median(errs) < 0.03


def test_camera_height_fails_honestly():
    k = intr.from_fov(60, 64, 64)
    wall = np.full((64, 64), 0.5, np.float32)  # a fronto-parallel wall: no ground
    fit = fit_ground(wall, k, 1.5)
    assert not fit.ok and fit.scale is None and fit.reason and fit.units == "relative"
    depth, fit = MetricScaler(height=1.5)(wall, k)
    assert np.array_equal(depth, wall) and not fit.ok
    fit = fit_ground(np.ones((64, 64), np.float32), k, 1.5)  # all saturated
    assert not fit.ok and "too few" in fit.reason


def test_sparse_fit_noise_outliers(scenes):
    s, rel, _ = scenes[1]
    rng = np.random.default_rng(0)
    vv, uu = np.nonzero(s.valid & (rel < 0.99))
    pick = rng.choice(len(vv), 50, replace=False)
    z = s.depth[vv[pick], uu[pick]] * np.exp(rng.normal(0, 0.05, 50))
    z[:5] = 100.0  # outliers
    fit = fit_sparse(rel, np.stack([uu[pick] + 0.5, vv[pick] + 0.5, z], 1))
    oracle = np.median(s.depth[s.valid] / rel[s.valid])
    assert fit.ok and abs(fit.scale / oracle - 1) < 0.03 and fit.points <= 45
    few = fit_sparse(rel, [[10, 10, 2.0], [200, 5, 3.0]])  # one off-image
    assert not few.ok and "too few" in few.reason


def test_load_sparse(tmp_path):
    p = tmp_path / "pts.csv"
    p.write_text("frame,u,v,z\n0,1,2,3.5\n0,4,5,6\n2,7,8,9\n")
    d = load_sparse(str(p))
    assert sorted(d) == [0, 2] and d[0].shape == (2, 3)
    q = tmp_path / "pts.npy"
    np.save(q, np.array([[1.0, 2.0, 3.0]]))
    assert load_sparse(str(q))[None].shape == (1, 3)
    (tmp_path / "bad.csv").write_text("u,v\n1,2\n")
    with pytest.raises(DepthartError, match="u,v,z"):
        load_sparse(str(tmp_path / "bad.csv"))
    sc = MetricScaler(sparse=d)
    assert "no sparse points for frame 1" in sc.fit(np.full((8, 8), 0.5, np.float32), None, frame=1).reason
    with pytest.raises(DepthartError, match="one of"):
        MetricScaler()
