"""The procedural scene generator: exact planar depth, determinism, masks, textures, disk layout."""

import csv
import json

import numpy as np
import pytest

from depthart.data import DataError, FromLoader, ProceduralDataset, check_sample, generate_scene
from depthart.data import procedural as P
from depthart.data.geometry import distance_to_planar, intrinsics_from_fov, planar_to_distance, ray_scale
from depthart.data.textures import Plain, photos_available


def _render(prims, size, position, yaw=0.0, pitch=0.0, roll=0.0, fov_deg=60.0, sky_depth=None):
    """Render hand-built primitives from a hand-placed camera (no randomness)."""
    K = intrinsics_from_fov(np.deg2rad(fov_deg), size)
    cam = P.Camera(np.asarray(position, float), yaw, pitch, roll, K, (size, size) if np.isscalar(size) else size)
    scene = P.Scene("outdoor" if sky_depth else "indoor", prims, cam, light_pos=None,
                    sun_dir=np.array([0.3, 0.2, 0.93]) / np.linalg.norm([0.3, 0.2, 0.93]),
                    light_color=np.ones(3), ambient=np.full(3, 0.3), sky_depth=sky_depth)
    return P.render(scene)


def _tex():
    return [Plain(np.random.default_rng(0), (0.5, 0.5, 0.5))]


def _pixel_rays(K, h, w):
    """Unit-forward camera-frame ray offsets (x right, y down) for every pixel centre."""
    x = (np.arange(w) + 0.5 - K[0, 2]) / K[0, 0]
    y = (np.arange(h) + 0.5 - K[1, 2]) / K[1, 1]
    return np.meshgrid(x, y)


def test_floor_plane_depth_is_closed_form():
    # camera 1.6 m above the ground, looking 20 degrees down, 70 degree fov: z = h / (y cos(p) - sin(p))
    h_cam, pitch, size = 1.6, np.deg2rad(-20.0), 48
    s = _render([P.Ground(_tex())], size, [0, 0, h_cam], yaw=0.7, pitch=pitch, fov_deg=70.0, sky_depth=1e4)
    K = intrinsics_from_fov(np.deg2rad(70.0), size)
    _, y = _pixel_rays(K, size, size)
    denom = y * np.cos(pitch) - np.sin(pitch)
    expect_valid = denom > h_cam / 1e4
    np.testing.assert_array_equal(s.valid, expect_valid)
    np.testing.assert_allclose(s.depth[s.valid], (h_cam / denom)[s.valid], rtol=1e-6)
    # planar depth does not depend on the column for a horizontal plane and a level camera
    assert np.ptp(s.depth[s.valid].reshape(-1, size)[-5:], axis=1).max() < 1e-4
    assert (s.depth[~s.valid] == 1e4).all() and (s.entity[~s.valid] == -1).all()


def test_sphere_nearest_depth_is_centre_minus_radius():
    D, r, size = 5.0, 1.2, 65  # odd size: the centre pixel's ray is the optical axis
    s = _render([P.Sphere([D, 0, 2.0], r, _tex())], size, [0, 0, 2.0], fov_deg=50.0, sky_depth=1e4)
    # depth is float32: exact up to its rounding (relative 6e-8)
    assert s.depth[size // 2, size // 2] == np.float32(D - r)
    assert s.depth[s.valid].min() == np.float32(D - r)
    # every hit lies on the sphere, and its camera-frame z is the stored depth
    K = intrinsics_from_fov(np.deg2rad(50.0), size)
    x, y = _pixel_rays(K, size, size)
    z = s.depth.astype(np.float64)
    p_world = np.stack([z, -x * z, 2.0 - y * z], -1)  # yaw 0: forward +x, right -y, up +z
    dist = np.linalg.norm(p_world - [D, 0, 2.0], axis=-1)
    np.testing.assert_allclose(dist[s.valid], r, atol=1e-6)
    # pixels that miss are exactly those whose ray passes farther than r from the centre
    d = np.stack([np.ones_like(x), -x, -y], -1)
    c = np.array([D, 0, 0])
    miss_dist = np.linalg.norm(np.cross(d, c), axis=-1) / np.linalg.norm(d, axis=-1)
    clear = np.abs(miss_dist - r) > 1e-9
    np.testing.assert_array_equal(s.valid[clear], (miss_dist <= r)[clear])


def test_box_front_face_has_constant_planar_depth():
    # a fronto-parallel face: planar depth is the same at every pixel (distance is not)
    box = P.Box([6.0, 0.3, 1.5], [0.5, 1.0, 0.8], np.eye(3), _tex())
    s = _render([box], 40, [0, 0, 1.5], fov_deg=60.0, sky_depth=1e4)
    assert s.valid.sum() > 100
    assert (s.depth[s.valid] == np.float32(5.5)).all()
    dist = planar_to_distance(s.depth.astype(np.float64), s.K)
    assert np.ptp(dist[s.valid]) > 0.05


def test_room_walls_and_cylinder():
    # inside a 10 x 6 x 3 m room looking along +x: the far wall (x = 5) is at planar depth 5 - x_cam
    room = P.Box([0, 0, 1.5], [5.0, 3.0, 1.5], np.eye(3), _tex() * 6, inside=True)
    cyl = P.Cylinder([2.0, 0, 0.6], 0.4, 0.6, np.eye(3), _tex())
    s = _render([room, cyl], 33, [-1.0, 0, 1.0], fov_deg=40.0)
    assert s.valid.all()
    far_wall = s.entity == 1
    n = s.meta["size"][0]
    K = s.K
    x, y = _pixel_rays(K, n, n)
    on_far_wall = (np.abs(x * 6.0) < 3.0) & (np.abs(y * 6.0) < 0.5)  # rays that must end on x = 5
    assert (far_wall & on_far_wall & (s.depth < 5.99)).sum() == 0
    assert (on_far_wall & far_wall).sum() > 50
    assert (s.depth[on_far_wall & far_wall] == np.float32(6.0)).all()
    # the cylinder's side is nearest along the central column at the camera's height: 2 - 0.4 - (-1)
    assert s.depth[n // 2, n // 2] == np.float32(2.6)
    assert s.entity[n // 2, n // 2] == 2


def test_planar_distance_relation():
    K = intrinsics_from_fov(np.pi / 3, (768, 1024))
    assert K[0, 0] == pytest.approx(886.81, abs=0.01)  # Hypersim's focal length
    depth = np.random.default_rng(0).uniform(1, 10, (768, 1024)).astype(np.float32)
    dist = planar_to_distance(depth, K)
    assert (dist >= depth).all()
    np.testing.assert_allclose(distance_to_planar(dist, K), depth, rtol=1e-6)
    sc = ray_scale(K, (768, 1024))
    u, v = 0.5 - 512, 0.5 - 384  # the top-left pixel
    assert sc[0, 0] == pytest.approx(np.sqrt(u * u + v * v + K[0, 0] ** 2) / K[0, 0])


def test_same_seed_same_bytes_and_seeds_differ():
    a, b = generate_scene(123, 48), generate_scene(123, 48)
    for k in ("rgb", "depth", "valid", "entity"):
        assert getattr(a, k).tobytes() == getattr(b, k).tobytes()
    assert json.dumps(a.meta) == json.dumps(b.meta)
    c = generate_scene(124, 48)
    assert a.rgb.tobytes() != c.rgb.tobytes()
    # forcing the kind or the fov keeps the sample deterministic
    assert generate_scene(5, 32, "indoor").rgb.tobytes() == generate_scene(5, 32, "indoor").rgb.tobytes()
    assert generate_scene(5, 32, fov=1.0).meta["fov_x"] == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["indoor", "outdoor"])
def test_kinds_have_sensible_ranges(kind):
    for seed in range(6):
        s = generate_scene(seed, 48, kind)
        check_sample(s.as_dict())
        assert s.meta["kind"] == kind and s.rgb.shape == (48, 48, 3)
        assert np.isfinite(s.depth).all() and (s.depth > 0).all()
        d = s.depth[s.valid]
        assert d.min() > 0.1
        if kind == "indoor":
            assert s.valid.all() and s.meta["sky_depth"] is None
            assert d.max() < 16.0  # the largest room is 10 x 10 x 3.6 m
        else:
            cap = s.meta["sky_depth"]
            assert 60 <= cap <= 200 and d.max() <= cap
            assert (s.depth[~s.valid] == np.float32(cap)).all()
        assert s.rgb.std() > 5  # not a blank image
        np.testing.assert_array_equal(s.valid, s.entity > 0)
        fov = s.meta["fov_x"]
        assert np.deg2rad(45) <= fov <= np.deg2rad(90)
        np.testing.assert_allclose(s.K, intrinsics_from_fov(fov, 48))


def test_outdoor_has_sky_and_ground_reaches_far():
    skies = [generate_scene(s, 32, "outdoor") for s in range(8)]
    assert sum((~s.valid).any() for s in skies) >= 6  # the camera pitch is at most 30 degrees down
    # the sky is at the top: in each column, once a pixel is valid going down, the rest mostly is
    s = next(s for s in skies if (~s.valid).any())
    assert (~s.valid[0]).mean() > (~s.valid[-1]).mean()


def test_textures_vary_and_photos(monkeypatch):
    kinds = set()
    for seed in range(16):
        kinds |= {t.split("-")[0] for t in generate_scene(seed, 24).meta["textures"]}
    assert len(kinds) >= 6, kinds
    if photos_available():
        assert "photo" in kinds
    # without scikit-image: procedural textures only, and the run still works
    monkeypatch.setattr(P, "photos_available", lambda: [])
    for seed in range(6):
        s = generate_scene(seed, 24)
        assert not s.meta["photos"] and not any(t.startswith("photo") for t in s.meta["textures"])


def test_antialias_changes_only_rgb_at_edges():
    a, b = generate_scene(3, 48), generate_scene(3, 48, antialias=False)
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.valid, b.valid)
    diff = (a.rgb != b.rgb).any(-1)
    ent = a.entity
    edge = np.zeros_like(diff)
    edge[:, 1:] |= ent[:, 1:] != ent[:, :-1]
    edge[:, :-1] |= ent[:, 1:] != ent[:, :-1]
    edge[1:] |= ent[1:] != ent[:-1]
    edge[:-1] |= ent[1:] != ent[:-1]
    # tone mapping is global, so exposure may shift slightly; but most changes sit on edges
    assert diff.any() and diff[edge].mean() > diff[~edge].mean()


def test_dataset_interface():
    ds = ProceduralDataset(seed_offset=10, length=3, size=24)
    assert len(ds) == 3 and not ds.endless
    x = ds[1]
    check_sample(x)
    assert x["meta"]["id"] == "procedural_11" and x["meta"]["seed"] == 11
    assert x["rgb"].tobytes() == generate_scene(11, 24).rgb.tobytes()
    with pytest.raises(IndexError):
        ds[3]
    assert sum(1 for _ in ds) == 3
    endless = ProceduralDataset(size=16)
    assert endless.endless
    with pytest.raises(TypeError):
        len(endless)
    check_sample(endless[10**6])
    with pytest.raises(DataError, match="depth must be"):
        check_sample({**x, "depth": x["depth"].astype(np.float64)}, "bad")


def test_from_loader_adapter():
    class Item:
        def __init__(self, i):
            self.id, self.image = f"s{i}", np.zeros((4, 5, 3), np.uint8)
            self.depth, self.valid = np.full((4, 5), i + 1.0, np.float32), np.ones((4, 5), bool)

    class Loader:
        name = "fake"

        def __len__(self):
            return 2

        def load(self, i):
            return Item(i)

    ds = FromLoader(Loader())
    assert len(ds) == 2 and ds[1]["meta"] == {"id": "s1", "source": "fake"}
    assert ds[1]["depth"][0, 0] == 2.0


def _read_depth(path):
    if path.endswith(".npy"):
        return np.load(path)
    import h5py

    with h5py.File(path, "r") as f:
        return f["dataset"][()]


@pytest.mark.parametrize("fmt", ["auto", "npy"])
def test_hypersim_layout_round_trip(tmp_path, fmt):
    if fmt == "auto":
        pytest.importorskip("h5py")
    from PIL import Image

    lines = P.write_hypersim_layout(tmp_path, 3, seed_offset=40, size=(24, 32), frames_per_scene=2,
                                    kind="outdoor", depth_format=fmt)
    with open(tmp_path / P.SPLIT_CSV) as f:
        rows = list(csv.DictReader(f))
    assert [(r["scene_name"], r["frame_id"]) for r in rows] == [
        ("procedural_00000", "0"), ("procedural_00000", "1"), ("procedural_00001", "0")]
    assert all(r["included_in_public_release"] == "True" and r["split_partition_name"] == "train" for r in rows)
    with open(tmp_path / P.CAMERA_CSV) as f:
        cams = {r["scene_name"]: r for r in csv.DictReader(f)}
    assert len(lines) == 3 and len(cams) == 2
    ext = "npy" if fmt == "npy" else "hdf5"
    for k, row in enumerate(rows):
        paths = P.hypersim_frame_paths(tmp_path, row["scene_name"], int(row["frame_id"]), depth_ext=ext)
        cam = cams[row["scene_name"]]
        fov, w, h = float(cam["settings_camera_fov"]), int(cam["settings_output_img_width"]), \
            int(cam["settings_output_img_height"])
        assert (h, w) == (24, 32) and fov == pytest.approx(np.pi / 3)
        ref = generate_scene(40 + k, (24, 32), "outdoor", fov=np.pi / 3)
        dist = _read_depth(paths["depth"])
        assert dist.dtype == np.float16 and dist.shape == (24, 32)
        np.testing.assert_array_equal(np.isnan(dist), ~ref.valid)
        planar = distance_to_planar(dist, intrinsics_from_fov(fov, (h, w)))  # what a Hypersim loader does
        np.testing.assert_allclose(planar[ref.valid], ref.depth[ref.valid], rtol=1e-3)
        np.testing.assert_array_equal(_read_depth(paths["entity"]), ref.entity)
        rgb = np.asarray(Image.open(paths["rgb"]).convert("RGB"), dtype=np.float32)
        assert np.abs(rgb - ref.rgb).mean() < 6  # JPEG, quality 95
    with open(tmp_path / P.META_JSONL) as f:
        meta = [json.loads(line) for line in f]
    assert meta[2]["seed"] == 42 and meta[2]["scene_name"] == "procedural_00001"


def test_generator_imports_without_torch():
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None; import depthart.data, depthart.data.preview;"
            "s = depthart.data.generate_scene(1, 16); print(s.rgb.shape)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(16, 16, 3)"
