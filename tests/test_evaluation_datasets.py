"""Every benchmark loader, on tiny files the test writes in the dataset's real on-disk format."""

import os

import numpy as np
import pytest
from PIL import Image

from depthart.evaluation.datasets import DATASETS, Middlebury, open_dataset
from depthart.evaluation.formats import DatasetError

H, W = 6, 8  # tiny stand-ins for the real sizes (480x640, 375x1242, 4032x6048, ...)


def rng_image(seed, h=H, w=W):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save_rgb(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image).save(path)


def save_png16(path, values):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(values, dtype=np.uint16)).save(path)  # Pillow writes mode I;16 as 16-bit PNG


def depth_mm(seed, h=H, w=W):
    """uint16 depth with a few zero (missing) pixels."""
    d = np.random.default_rng(seed).integers(500, 9000, (h, w)).astype(np.uint16)
    d[0, :3] = 0
    return d


# ---------------------------------------------------------------- NYUv2
def write_matlab_v73(path, arrays: dict):
    """A MATLAB v7.3 file: HDF5 with a 512-byte user block that starts with MATLAB's text header.
    MATLAB is column-major, so each array is stored with its axes reversed (as MATLAB itself does)."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        for name, matlab_array in arrays.items():
            f[name] = np.ascontiguousarray(matlab_array.transpose(tuple(reversed(range(matlab_array.ndim)))))
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2015 HDF5 schema 1.00 .")


@pytest.fixture
def nyu_images():
    images = np.stack([rng_image(i) for i in range(5)], axis=-1)  # MATLAB layout: H x W x 3 x N
    depths = np.stack([depth_mm(i).astype(np.float32) / 1000 for i in range(5)], axis=-1)  # H x W x N
    return images, depths


@pytest.mark.parametrize("splits_format", ["v5", "v7.3"])
def test_nyu_labeled_mat(tmp_path, nyu_images, splits_format):
    pytest.importorskip("h5py")
    images, depths = nyu_images
    write_matlab_v73(tmp_path / "nyu_depth_v2_labeled.mat", {"images": images, "rawDepths": depths,
                                                             "depths": depths + 1})
    test_ndxs = np.array([[4], [2]], dtype=np.float64)  # 1-based, as in the official splits.mat
    if splits_format == "v5":
        scipy_io = pytest.importorskip("scipy.io")
        scipy_io.savemat(tmp_path / "splits.mat", {"testNdxs": test_ndxs, "trainNdxs": np.array([[1], [3], [5]])})
    else:
        write_matlab_v73(tmp_path / "splits.mat", {"testNdxs": test_ndxs})
    ds = open_dataset("nyu", tmp_path)
    assert ds.ids == ["0002", "0004"] and len(ds) == 2
    s = ds.load(1)  # image 4 (index 3)
    assert s.id == "0004" and s.image.shape == (H, W, 3) and s.image.dtype == np.uint8
    np.testing.assert_array_equal(s.image, images[..., 3])
    np.testing.assert_array_equal(s.depth, depths[..., 3])  # raw depth, not the filled "depths"
    np.testing.assert_array_equal(s.valid, depths[..., 3] > 0)
    assert not s.valid[0, :3].any()


def test_nyu_mat_without_splits_says_so(tmp_path, nyu_images):
    pytest.importorskip("h5py")
    write_matlab_v73(tmp_path / "nyu_depth_v2_labeled.mat", {"images": nyu_images[0], "rawDepths": nyu_images[1]})
    with pytest.raises(DatasetError, match=f"not splits.mat.*in {tmp_path}"):
        open_dataset("nyu", tmp_path)


def test_nyu_extracted_folders(tmp_path):
    for scene, idx in (("bedroom", 7), ("kitchen", 3)):
        save_rgb(str(tmp_path / "test" / scene / f"rgb_{idx:04d}.png"), rng_image(idx))
        save_png16(str(tmp_path / "test" / scene / f"depth_{idx:04d}.png"), depth_mm(idx))
    ds = open_dataset("nyu", tmp_path)
    assert ds.ids == ["bedroom_0007", "kitchen_0003"]
    s = ds.load(1)
    np.testing.assert_array_equal(s.image, rng_image(3))
    np.testing.assert_allclose(s.depth, depth_mm(3) / 1000.0, rtol=1e-6)
    np.testing.assert_array_equal(s.valid, depth_mm(3) > 0)


def test_nyu_incomplete_folders_name_the_missing_file(tmp_path):
    save_rgb(str(tmp_path / "test" / "office" / "rgb_0001.png"), rng_image(1))
    with pytest.raises(DatasetError, match=r"1 of 1 depth maps.*missing under .*test/office/depth_0001.png"):
        open_dataset("nyu", tmp_path)


def test_nyu_empty_root_lists_both_layouts(tmp_path):
    with pytest.raises(DatasetError, match=r"neither nyu_depth_v2_labeled.mat nor a test/ folder in .*splits.mat"):
        open_dataset("nyu", tmp_path)


# ---------------------------------------------------------------- KITTI
def test_kitti_eigen_split_with_annotated_depth(tmp_path):
    drive = "2011_09_26_drive_0002_sync"
    rgb_rel = f"2011_09_26/{drive}/image_02/data/0000000069.png"
    depth_rel = f"{drive}/proj_depth/groundtruth/image_02/0000000069.png"
    rgb2_rel = f"2011_09_26/{drive}/image_02/data/0000000070.png"
    depth2_rel = f"{drive}/proj_depth/groundtruth/image_02/0000000070.png"
    save_rgb(str(tmp_path / rgb_rel), rng_image(0))
    save_rgb(str(tmp_path / rgb2_rel), rng_image(1))
    gt = np.zeros((H, W), np.uint16)
    gt[2, 3], gt[4, 5] = 256 * 10, 256 * 80 + 128  # 10 m, 80.5 m; everything else: no LiDAR point
    save_png16(str(tmp_path / depth_rel), gt)
    save_png16(str(tmp_path / "data_depth_annotated" / "val" / depth2_rel), gt)  # the official download layout
    (tmp_path / "eigen_test_files_with_gt.txt").write_text(
        f"{rgb_rel} {depth_rel} 721.5377\n"
        f"2011_09_26/{drive}/image_02/data/0000000071.png None 721.5377\n"
        f"{rgb2_rel} {depth2_rel} 721.5377\n")
    ds = open_dataset("kitti", tmp_path)
    assert ds.ids == [f"{drive}_0000000069", f"{drive}_0000000070"]
    for i in range(2):
        s = ds.load(i)
        assert s.valid.sum() == 2 and s.depth[2, 3] == 10.0 and s.depth[4, 5] == 80.5
        np.testing.assert_array_equal(s.image, rng_image(i))


def test_kitti_without_split_file_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetError, match=f"no split file {tmp_path}/eigen_test_files_with_gt.txt"):
        open_dataset("kitti", tmp_path)


# ---------------------------------------------------------------- ETH3D
def write_eth3d(root, scene, name, depth, image, undistorted=False):
    gt_dir = root / scene / "ground_truth_depth" / "dslr_images"
    gt_dir.mkdir(parents=True, exist_ok=True)
    depth.astype("<f4").tofile(gt_dir / name)  # raw little-endian float32, no header, named .JPG
    sub = "dslr_images_undistorted" if undistorted else "dslr_images"
    save_rgb(str(root / scene / "images" / sub / name), image)


def test_eth3d_raw_float32(tmp_path):
    depth = np.random.default_rng(0).uniform(1, 30, (H, W)).astype(np.float32)
    depth[1, 1] = np.inf
    write_eth3d(tmp_path, "courtyard", "DSC_0286.JPG", depth, rng_image(0))
    write_eth3d(tmp_path, "pipes", "DSC_0001.JPG", depth * 2, rng_image(1), undistorted=True)
    ds = open_dataset("eth3d", tmp_path)
    assert ds.ids == ["courtyard_DSC_0286", "pipes_DSC_0001"]
    s = ds.load(0)
    assert s.image.shape == (H, W, 3)  # JPEG: pixels are lossy, the shape is what matters
    assert not s.valid[1, 1] and s.valid.sum() == H * W - 1 and s.depth[1, 1] == 0
    np.testing.assert_array_equal(s.depth[s.valid], depth[s.valid])
    np.testing.assert_array_equal(ds.load(1).depth[s.valid], 2 * depth[s.valid])


def test_eth3d_truncated_depth_file(tmp_path):
    write_eth3d(tmp_path, "facade", "DSC_0001.JPG", np.ones((H, W - 1)), rng_image(0))
    ds = open_dataset("eth3d", tmp_path)
    with pytest.raises(DatasetError, match=rf"{(H * (W - 1)) * 4} bytes, expected {H * W * 4} for a {H}x{W}"):
        ds.load(0)


def test_eth3d_missing_photo(tmp_path):
    d = tmp_path / "relief" / "ground_truth_depth" / "dslr_images"
    d.mkdir(parents=True)
    np.ones((H, W), "<f4").tofile(d / "DSC_0100.JPG")
    with pytest.raises(DatasetError, match="1 of 1 photos.*relief/images/dslr_images/DSC_0100.JPG"):
        open_dataset("eth3d", tmp_path)


# ---------------------------------------------------------------- DIODE
def test_diode_npy_with_mask(tmp_path):
    folder = tmp_path / "val" / "indoors" / "scene_00019" / "scan_00183"
    folder.mkdir(parents=True)
    stem = "00019_00183_indoors_000_010"
    depth = np.random.default_rng(0).uniform(0.6, 20, (H, W, 1)).astype(np.float32)
    mask = np.ones((H, W), np.float32)
    mask[3, :] = 0
    save_rgb(str(folder / f"{stem}.png"), rng_image(0))
    np.save(folder / f"{stem}_depth.npy", depth)
    np.save(folder / f"{stem}_depth_mask.npy", mask)
    ds = open_dataset("diode", tmp_path)
    assert ds.ids == [stem]
    s = ds.load(0)
    np.testing.assert_array_equal(s.depth, depth[..., 0])
    np.testing.assert_array_equal(s.valid, mask > 0)
    np.testing.assert_array_equal(s.image, rng_image(0))
    os.remove(folder / f"{stem}_depth_mask.npy")
    with pytest.raises(DatasetError, match=f"1 of 3 files.*{stem}_depth_mask.npy"):
        open_dataset("diode", tmp_path)


# ---------------------------------------------------------------- ScanNet
def test_scannet_discovered_and_listed(tmp_path):
    for scene, frame in (("scene0011_00", "000000"), ("scene0011_00", "000100"), ("scene0015_00", "000200")):
        save_rgb(str(tmp_path / scene / "color" / f"{frame}.jpg"), rng_image(int(frame)))
        save_png16(str(tmp_path / scene / "depth" / f"{frame}.png"), depth_mm(int(frame)))
    ds = open_dataset("scannet", tmp_path)
    assert ds.ids == ["scene0011_00_000000", "scene0011_00_000100", "scene0015_00_000200"]
    s = ds.load(2)
    np.testing.assert_allclose(s.depth, depth_mm(200) / 1000.0, rtol=1e-6)
    np.testing.assert_array_equal(s.valid, depth_mm(200) > 0)
    listing = tmp_path / "mine.txt"
    listing.write_text("scene0015_00/color/000200.jpg scene0015_00/depth/000200.png\n")
    assert open_dataset("scannet", tmp_path, split_file=str(listing)).ids == ["scene0015_00_000200"]


# ---------------------------------------------------------------- iBims-1
def test_ibims_scaled_png_and_masks(tmp_path):
    name = "corridor_01"
    (tmp_path / "imagelist.txt").write_text(f"{name}\n")
    raw = np.random.default_rng(0).integers(1, 65535, (H, W)).astype(np.uint16)
    invalid = np.full((H, W), 255, np.uint8)
    invalid[0, 0] = 0
    transp = np.full((H, W), 255, np.uint8)
    transp[5, 7] = 0
    save_rgb(str(tmp_path / "rgb" / f"{name}.png"), rng_image(0))
    save_png16(str(tmp_path / "depth" / f"{name}.png"), raw)
    for sub, m in (("mask_invalid", invalid), ("mask_transp", transp)):
        os.makedirs(tmp_path / sub, exist_ok=True)
        Image.fromarray(m).save(tmp_path / sub / f"{name}.png")
    ds = open_dataset("ibims", tmp_path)
    s = ds.load(0)
    np.testing.assert_allclose(s.depth, raw * 50.0 / 65535.0, rtol=1e-6)
    assert s.valid.sum() == H * W - 2 and not s.valid[0, 0] and not s.valid[5, 7]


# ---------------------------------------------------------------- TUM RGB-D
def test_tum_pairs_depth_with_the_nearest_rgb_frame(tmp_path):
    seq = tmp_path / "rgbd_dataset_freiburg1_desk"
    for t in ("1305031453.359684", "1305031453.391690", "1305031460.000000"):
        save_rgb(str(seq / "rgb" / f"{t}.png"), rng_image(1))
    for t in ("1305031453.374112", "1305031453.404114", "1305031455.000000"):  # the last has no RGB within 0.02 s
        save_png16(str(seq / "depth" / f"{t}.png"), depth_mm(2))
    (seq / "rgb.txt").write_text("# color images\n# file: 'rgbd_dataset_freiburg1_desk.bag'\n# timestamp filename\n"
                                 + "".join(f"{t} rgb/{t}.png\n" for t in
                                           ("1305031453.359684", "1305031453.391690", "1305031460.000000")))
    (seq / "depth.txt").write_text("# depth maps\n# timestamp filename\n" + "".join(
        f"{t} depth/{t}.png\n" for t in ("1305031453.374112", "1305031453.404114", "1305031455.000000")))
    for root in (tmp_path, seq):  # a folder of sequences, or one sequence
        ds = open_dataset("tum", root)
        assert ds.ids == ["rgbd_dataset_freiburg1_desk_1305031453.374112",
                          "rgbd_dataset_freiburg1_desk_1305031453.404114"]
        assert ds.pairs[1][0].endswith("1305031453.391690.png")
    s = ds.load(0)
    np.testing.assert_allclose(s.depth, depth_mm(2) / 5000.0, rtol=1e-6)
    assert not s.valid[0, :3].any()


# ---------------------------------------------------------------- Middlebury
def test_middlebury_from_a_folder_of_its_files(tmp_path):
    disparity = np.full((H, W), 40.0, np.float32)
    disparity[0, 0] = np.inf
    disparity[0, 1] = np.nan
    save_rgb(str(tmp_path / "motorcycle_left.png"), rng_image(0))
    np.savez(tmp_path / "motorcycle_disp.npz", disparity)
    s = open_dataset("middlebury", tmp_path).load(0)
    assert s.id == "motorcycle" and s.valid.sum() == H * W - 2
    assert s.depth[3, 3] == pytest.approx(994.978 * 193.001 / (40 + 31.086) / 1000)


def test_middlebury_matches_scikit_image(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    left, _, disparity = skimage_data.stereo_motorcycle()
    s = open_dataset("middlebury").load(0)
    np.testing.assert_array_equal(s.image, left)
    assert s.image.shape == (500, 741, 3)
    np.testing.assert_array_equal(s.valid, np.isfinite(disparity))
    assert 0.92 < s.valid.mean() < 0.93
    z = s.depth[s.valid]
    assert 2.1 < z.min() and z.max() < 5.1 and 2.7 < np.median(z) < 2.8  # metres


def test_middlebury_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="2 of 2 files missing.*motorcycle_left.png"):
        Middlebury(tmp_path)


# ---------------------------------------------------------------- open_dataset
def test_open_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'nyu2'"):
        open_dataset("nyu2", tmp_path)
    with pytest.raises(DatasetError, match="eth3d: pass --root"):
        open_dataset("eth3d")
    with pytest.raises(DatasetError, match=f"dataset folder {tmp_path}/nope does not exist"):
        open_dataset("diode", tmp_path / "nope")
    with pytest.raises(DatasetError, match="--split-file is only used by kitti, scannet, tum"):
        open_dataset("diode", tmp_path, split_file="x.txt")
    assert set(DATASETS) == {"nyu", "kitti", "eth3d", "diode", "scannet", "ibims", "tum", "middlebury", "procedural"}


def test_procedural_held_out_set_needs_no_root_and_uses_held_out_seeds():
    from depthart.data import HELD_OUT_SEED_OFFSET, generate_scene

    ds = open_dataset("procedural")
    assert len(ds) == 200 and ds.ids[0] == f"procedural_{HELD_OUT_SEED_OFFSET}"
    s = ds.load(1)
    ref = generate_scene(HELD_OUT_SEED_OFFSET + 1, 128)
    assert s.image.shape == (128, 128, 3) and s.depth.dtype == np.float32
    np.testing.assert_array_equal(s.image, ref.rgb)
    np.testing.assert_array_equal(s.valid, ref.valid)
    np.testing.assert_allclose(s.depth[s.valid], ref.depth[ref.valid])
    with pytest.raises(DatasetError, match="drop --root"):
        open_dataset("procedural", root="/tmp")
