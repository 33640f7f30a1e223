"""The Hypersim source: layout written by `write_hypersim_layout`, planar depth, masks, split CSV, HDR tone
mapping, errors before training, and `depthart train --data hypersim:DIR`."""

import csv
import os

import numpy as np
import pytest

from depthart.data import DataError, HypersimDataset, generate_scene, write_hypersim_layout
from depthart.data import hypersim as H
from depthart.data.procedural import hypersim_frame_paths

SIZE = 32
FOV = np.deg2rad(60.0)  # write_hypersim_layout's default, Hypersim's pi/3
SEED = 70


def _layout(tmp_path, n=8, fmt="npy", frames_per_scene=4, **kw):
    root = tmp_path / "hypersim"
    write_hypersim_layout(root, n, seed_offset=SEED, size=SIZE, frames_per_scene=frames_per_scene,
                          depth_format=fmt, **kw)
    return root


def _paths(root, k, frames_per_scene=4, ext="npy"):
    return hypersim_frame_paths(root, f"procedural_{k // frames_per_scene:05d}", k % frames_per_scene, depth_ext=ext)


def _write_split(root, rows):
    with open(root / H.SPLIT_CSV, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["scene_name", "camera_name", "frame_id", "included_in_public_release", "exclude_reason",
                     "split_partition_name"])
        wr.writerows(rows)


@pytest.mark.parametrize("fmt", ["hdf5", "npy"])
def test_planar_depth_rgb_and_mask_round_trip(tmp_path, fmt):
    if fmt == "hdf5":
        pytest.importorskip("h5py")
    from PIL import Image

    root = _layout(tmp_path, fmt=fmt)
    ds = HypersimDataset(root)
    assert len(ds) == 8 and ds.split == "train"
    for k in range(len(ds)):
        s = ds[k]
        ref = generate_scene(SEED + k, SIZE, fov=FOV)
        assert s["meta"]["id"] == f"procedural_{k // 4:05d}/cam_00/frame.{k % 4:04d}"
        assert s["meta"]["rgb_from"] == "preview"
        np.testing.assert_allclose(s["meta"]["K"], ref.K, rtol=1e-12)
        np.testing.assert_array_equal(s["valid"], ref.valid)  # NaN distance = sky = invalid
        assert s["depth"].dtype == np.float32 and np.all(s["depth"][~s["valid"]] == 0)
        # float16 distance: relative error <= 2^-11 (+ the float32 conversion)
        np.testing.assert_allclose(s["depth"][ref.valid], ref.depth[ref.valid], rtol=6e-4)
        jpg = np.asarray(Image.open(_paths(root, k, ext="hdf5" if fmt == "hdf5" else "npy")["rgb"]).convert("RGB"))
        np.testing.assert_array_equal(s["rgb"], jpg)
        assert np.abs(s["rgb"].astype(np.float32) - ref.rgb).mean() < 6  # JPEG, quality 95


def test_valid_mask_is_finite_depth_and_entity_not_minus_one(tmp_path):
    root = _layout(tmp_path, n=1, kind="indoor")  # indoor: every pixel sees a surface
    p = _paths(root, 0)
    dist, ent = np.load(p["depth"]), np.load(p["entity"])
    assert np.isfinite(dist).all() and (ent != -1).all()
    dist[:4, :] = np.nan  # no depth
    ent[:, :3] = -1  # no geometry, although the depth is finite there
    np.save(p["depth"], dist)
    np.save(p["entity"], ent)
    s = HypersimDataset(root)[0]
    expected = np.isfinite(dist) & (ent != -1)
    np.testing.assert_array_equal(s["valid"], expected)
    os.remove(p["entity"])  # without render_entity_id: finite depth only
    np.testing.assert_array_equal(HypersimDataset(root)[0]["valid"], np.isfinite(dist))


def test_split_csv_public_frames_of_the_chosen_split(tmp_path):
    root = _layout(tmp_path)
    s0, s1 = "procedural_00000", "procedural_00001"
    _write_split(root, [
        [s0, "cam_00", 0, "True", "", "train"],
        [s0, "cam_00", 1, "False", "CONTENT FLAGGED FOR REMOVAL", "train"],
        [s0, "cam_00", 2, "True", "", "val"],
        [s0, "cam_00", 3, "True", "", "train"],
        [s1, "cam_00", 0, "True", "", "test"],
        [s1, "cam_00", 1, "False", "OUTSIDE VIEWING AREA (BAD INITIALIZATION)", "val"],
        [s1, "cam_00", 7, "False", "", "train"],  # not public: its missing files don't matter
        [s1, "cam_00", 3, "True", "", "train"],
    ])
    ids = {split: [s["id"] for s in (ds[i]["meta"] for i in range(len(ds)))]
           for split in ("train", "val", "test", None) for ds in [HypersimDataset(root, split=split)]}
    assert ids["train"] == [f"{s0}/cam_00/frame.0000", f"{s0}/cam_00/frame.0003", f"{s1}/cam_00/frame.0003"]
    assert ids["val"] == [f"{s0}/cam_00/frame.0002"]
    assert ids["test"] == [f"{s1}/cam_00/frame.0000"]
    assert len(ids[None]) == 5
    _write_split(root, [[s0, "cam_00", 0, "True", "", "train"], [s0, "cam_00", 1, "False", "", "test"]])
    with pytest.raises(DataError, match=r"no public frames in split 'test' \(public frames per split: train 1\)"):
        HypersimDataset(root, split="test")
    with pytest.raises(ValueError, match="split must be"):
        HypersimDataset(root, split="training")


def test_fov_from_the_camera_csv_else_hypersims(tmp_path):
    root = _layout(tmp_path, n=2, fov_deg=75.0)
    K = np.array(HypersimDataset(root)[0]["meta"]["K"])
    assert K[0, 0] == pytest.approx(16 / np.tan(np.deg2rad(37.5)))
    os.remove(root / H.CAMERA_CSV)
    s = HypersimDataset(root)[0]
    assert s["meta"]["fov_x"] == pytest.approx(np.pi / 3)
    assert s["meta"]["K"][0][0] == pytest.approx(16 / np.tan(np.pi / 6))  # 886.81 px at 1024 px
    ref = generate_scene(SEED, SIZE, fov=np.deg2rad(75.0))
    assert not np.allclose(s["depth"][ref.valid], ref.depth[ref.valid], rtol=1e-2)  # wrong fov, wrong depth


def test_tonemap_is_hypersims_operator():
    grey = np.full((4, 4, 3), 2.5)
    assert (H.tonemap(grey) == int(0.8 * 255)).all()  # P90 brightness -> 0.8 after gamma 1/2.2
    rng = np.random.default_rng(0)
    hdr = rng.gamma(2.0, 3.0, (6, 8, 3))
    valid = np.ones((6, 8), dtype=bool)
    valid[:, :2] = False
    hdr[:, :2] = 1e6  # invalid pixels do not set the exposure
    y = hdr[valid] @ np.array([0.3, 0.59, 0.11])
    scale = 0.8 ** 2.2 / np.percentile(y, 90)
    expected = (np.clip((scale * hdr) ** (1 / 2.2), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(H.tonemap(hdr, valid), expected)
    assert (H.tonemap(hdr, valid)[:, :2] == 255).all()
    assert (H.tonemap(np.full((2, 2, 3), 1e-6)) == 0).all()  # P90 < 1e-4: black, as Hypersim
    np.testing.assert_array_equal(H.tonemap(np.full((2, 2, 3), 0.25), np.zeros((2, 2), bool)),
                                  np.full((2, 2, 3), int(0.25 ** (1 / 2.2) * 255)))  # no valid pixel: scale 1
    nan = np.full((2, 2, 3), 2.5)
    nan[0, 0] = np.nan
    assert H.tonemap(nan)[0, 0].tolist() == [0, 0, 0]


def test_hdr_color_hdf5_is_tone_mapped(tmp_path):
    h5py = pytest.importorskip("h5py")
    root = _layout(tmp_path, n=2, fmt="hdf5", frames_per_scene=2)
    p = _paths(root, 1, frames_per_scene=2, ext="hdf5")
    final = os.path.join(os.path.dirname(os.path.dirname(p["rgb"])), "scene_cam_00_final_hdf5")
    os.makedirs(final)
    hdr = np.random.default_rng(1).gamma(2.0, 0.5, (SIZE, SIZE, 3)).astype(np.float16)
    with h5py.File(os.path.join(final, "frame.0001.color.hdf5"), "w") as f:
        f.create_dataset("dataset", data=hdr)
    with h5py.File(p["entity"], "r") as f:
        geometry = f["dataset"][()] != -1
    expected = H.tonemap(hdr, geometry)
    ds = HypersimDataset(root)  # auto: the preview while there is one
    assert ds[1]["meta"]["rgb_from"] == "preview"
    ds = HypersimDataset(root, color="hdr", skip_missing=True)  # frame 0 has no color.hdf5
    assert len(ds) == 1 and ds[0]["meta"]["rgb_from"] == "hdr"
    np.testing.assert_array_equal(ds[0]["rgb"], expected)
    os.remove(p["rgb"])  # auto without a preview: the HDR image
    s = HypersimDataset(root)[1]
    assert s["meta"]["rgb_from"] == "hdr"
    np.testing.assert_array_equal(s["rgb"], expected)


def test_size_resizes_like_the_training_transforms(tmp_path):
    from depthart.data.transforms import resize_nearest

    root = _layout(tmp_path, n=1, kind="outdoor")
    full, small = HypersimDataset(root)[0], HypersimDataset(root, size=16)[0]
    assert small["rgb"].shape == (16, 16, 3) and small["depth"].shape == small["valid"].shape == (16, 16)
    np.testing.assert_array_equal(small["depth"], resize_nearest(full["depth"], 16))
    np.testing.assert_array_equal(small["valid"], resize_nearest(full["valid"], 16))
    np.testing.assert_allclose(np.array(small["meta"]["K"]), np.array(full["meta"]["K"]) * [[0.5], [0.5], [1]])


# ---------------------------------------------------------------- errors, before any training
def test_missing_split_csv(tmp_path):
    root = _layout(tmp_path, n=1)
    os.remove(root / H.SPLIT_CSV)
    with pytest.raises(DataError, match=f"split CSV not found: .*{H.SPLIT_CSV}"):
        HypersimDataset(root)
    with pytest.raises(DataError, match="is not a folder"):
        HypersimDataset(tmp_path / "nowhere")


def test_malformed_split_csv(tmp_path):
    root = _layout(tmp_path, n=1)
    (root / H.SPLIT_CSV).write_text("scene_name,camera_name,frame\nprocedural_00000,cam_00,0\n")
    with pytest.raises(DataError, match="missing column\\(s\\) frame_id, included_in_public_release, "
                                        "split_partition_name"):
        HypersimDataset(root)
    _write_split(root, [["procedural_00000", "cam_00", "zero", "True", "", "train"]])
    with pytest.raises(DataError, match="line 2: frame_id 'zero' is not an integer"):
        HypersimDataset(root)


def test_missing_frame_files_are_reported_with_the_count(tmp_path):
    root = _layout(tmp_path)
    os.remove(_paths(root, 2)["depth"])
    os.remove(_paths(root, 5)["rgb"])
    with pytest.raises(DataError) as e:
        HypersimDataset(root)
    msg = str(e.value)
    assert "2 of the 8 public train frames" in msg and H.SPLIT_CSV in msg
    assert "procedural_00000/images/scene_cam_00_geometry_hdf5/frame.0002.depth_meters.hdf5" in msg
    assert "procedural_00001/images/scene_cam_00_final_preview/frame.0001.tonemap.jpg (or " in msg
    ds = HypersimDataset(root, skip_missing=True)
    assert len(ds) == 6 and len(ds.missing) == 2
    with pytest.raises(DataError, match="frame.0000.color.hdf5"):  # HDR only: no color.hdf5 anywhere
        HypersimDataset(root, color="hdr")


def test_hdf5_without_h5py_says_pip_install(tmp_path, monkeypatch):
    root = _layout(tmp_path, n=1)
    p = _paths(root, 0)
    for key in ("depth", "entity"):  # only names matter: the check runs before any file is read
        os.rename(p[key], p[key][:-len("npy")] + "hdf5")
    monkeypatch.setattr(H, "_h5py", lambda: None)
    with pytest.raises(DataError, match="needs h5py: pip install h5py"):
        HypersimDataset(root)


# ---------------------------------------------------------------- --data hypersim:PATH
def test_open_source_specs(tmp_path):
    from depthart.train.data import open_source

    root = _layout(tmp_path, n=2, frames_per_scene=2)
    _write_split(root, [["procedural_00000", "cam_00", 0, "True", "", "train"],
                        ["procedural_00000", "cam_00", 1, "True", "", "val"]])
    ds = open_source(f"hypersim:{root}", 16)
    assert isinstance(ds, HypersimDataset) and ds.split == "train" and len(ds) == 1
    assert ds.size is None  # make_loader resizes to the model's resolution
    assert open_source(f"hypersim:{root}:val", 16)[0]["meta"]["frame"] == 1
    with pytest.raises(DataError, match=f"--data hypersim:{root}:test: .*no public frames in split 'test'"):
        open_source(f"hypersim:{root}:test", 16)


def test_cli_trains_on_hypersim(tmp_path):
    import torch
    from click.testing import CliRunner

    from depthart.train.cli import train_cmd
    from depthart.train.trainer import STATE_FILE

    root = _layout(tmp_path, n=4, fmt="auto")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = CliRunner().invoke(train_cmd, ["--preset", "tiny", "--data", f"hypersim:{root}", "--steps", "2",
                                           "--batch-size", "2", "-o", str(tmp_path / "run")])
    finally:
        torch.set_num_threads(n)
    assert r.exit_code == 0, r.output
    assert "step 2/2" in r.output and (tmp_path / "run" / STATE_FILE).is_file()
    os.remove(_paths(root, 3, ext="hdf5" if H._h5py() else "npy")["depth"])
    r = CliRunner().invoke(train_cmd, ["--preset", "tiny", "--data", f"hypersim:{root}", "--steps", "2",
                                       "-o", str(tmp_path / "run2")])
    assert r.exit_code == 1 and "1 of the 4 public train frames" in r.output, r.output
    assert not (tmp_path / "run2" / STATE_FILE).exists()
