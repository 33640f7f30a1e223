"""The torch adapter: preprocessing, the paper's depth normalisation, deterministic DataLoaders."""

import numpy as np
import pytest
import torch
from PIL import Image

from depthart.data import DepthDataset, ProceduralDataset
from depthart.data.torch_data import EpochSampler, make_loader
from depthart.data.transforms import depth_target, model_arrays, normalize_depth
from depthart.preprocess import to_model_input


class Handmade(DepthDataset):
    """A finite dataset of hand-made samples (depth 0..99 in a 10x10 grid)."""

    def __init__(self, n=5):
        self.length = n

    def _get(self, i):
        rgb = np.random.default_rng(i).integers(0, 256, (10, 10, 3), dtype=np.uint8)
        depth = np.arange(100, dtype=np.float32).reshape(10, 10) * (i + 1)
        valid = np.ones((10, 10), bool)
        valid[0, 0] = False
        return {"rgb": rgb, "depth": depth, "valid": valid, "meta": {"id": str(i)}}


def test_normalisation_on_a_handmade_map():
    depth = np.arange(100, dtype=np.float32).reshape(10, 10)
    valid = np.ones((10, 10), bool)
    valid[9, 9] = False  # 99 m, not counted in the percentile
    depth[9, 8] = np.nan
    valid[9, 8] = True   # non-finite depth is treated as invalid even where valid says True
    d, mask, s = normalize_depth(depth, valid)
    ok = np.delete(np.arange(99.0), 98)  # the finite valid values: 0..97
    assert s == pytest.approx(np.percentile(ok, 98))
    assert d[0, 0] == -1.0  # depth 0 -> -1
    assert d[9, 7] == 1.0   # 97 m, above the 98th percentile -> clipped to +1
    assert d[4, 8] == pytest.approx(2 * 48 / (s + 1e-7) - 1, abs=1e-6)
    assert d[9, 9] == 1.0 and d[9, 8] == 1.0  # invalid pixels -> +1 (far)
    assert not mask[9, 9] and not mask[9, 8] and mask.sum() == 98
    assert d.min() >= -1 and d.max() <= 1
    d2, _, _ = normalize_depth(depth, valid, invalid_value=-1.0)
    assert d2[9, 9] == -1.0
    # scale invariance: a map in other units gives the same target
    np.testing.assert_allclose(normalize_depth(depth * 7.5, valid)[0], d, atol=1e-6)
    # nothing valid: constant target, empty mask, no scale
    d3, m3, s3 = normalize_depth(depth, np.zeros_like(valid))
    assert s3 is None and not m3.any() and (d3 == 1.0).all()


def test_target_resize_is_nearest_and_3_channels():
    depth = np.repeat(np.arange(4, dtype=np.float32), 4)[None].repeat(16, 0)  # 16x16, columns of 0..3
    valid = np.ones((16, 16), bool)
    valid[:, :4] = False
    t, m, s = depth_target(depth, valid, 8)
    assert t.shape == (3, 8, 8) and t.dtype == np.float32 and m.shape == (8, 8) and m.dtype == np.bool_
    assert (t[0] == t[1]).all() and (t[0] == t[2]).all()
    full, mask, s_full = normalize_depth(depth, valid)
    assert s == s_full
    np.testing.assert_array_equal(t[0], full[1::2, 1::2])  # Pillow NEAREST 16 -> 8 takes pixel 2k + 1
    np.testing.assert_array_equal(m, mask[1::2, 1::2])
    assert len(np.unique(t)) == 4  # no blended values: -1/3, 1/3, ~1 (depth 3 = s) and 1 (invalid)
    assert not m[:, :2].any() and m[:, 2:].all()


def test_model_arrays_match_preprocess():
    src = Handmade()
    a = model_arrays(src[2], 16)
    ref = to_model_input(Image.fromarray(src[2]["rgb"]), 16)
    np.testing.assert_array_equal(a["image"], ref)
    assert a["image"].shape == (3, 16, 16) and a["image"].dtype == np.float32
    assert -1 <= a["image"].min() and a["image"].max() <= 1
    f = model_arrays(src[2], 16, flip=True)
    np.testing.assert_array_equal(f["depth"], a["depth"][:, :, ::-1])
    np.testing.assert_array_equal(f["image"], to_model_input(Image.fromarray(src[2]["rgb"][:, ::-1]), 16))


def test_finite_loader_batches_and_resume():
    src = Handmade(5)
    batches = list(make_loader(src, 8, batch_size=2))
    assert len(batches) == 2  # drop_last
    b = batches[0]
    assert b["image"].shape == (2, 3, 8, 8) and b["image"].dtype == torch.float32
    assert b["depth"].shape == (2, 3, 8, 8) and b["valid"].shape == (2, 8, 8) and b["valid"].dtype == torch.bool
    assert b["index"].tolist() == [0, 1] and b["scale"].shape == (2,)
    # shuffled epochs: deterministic by seed, a permutation each epoch, and start resumes exactly
    s = EpochSampler(5, shuffle=True, seed=3, repeat=True)
    it = iter(s)
    stream = [next(it) for _ in range(15)]
    assert sorted(stream[:5]) == list(range(5)) and sorted(stream[5:10]) == list(range(5))
    it2 = iter(EpochSampler(5, shuffle=True, seed=3, start=7, repeat=True))
    assert [next(it2) for _ in range(8)] == stream[7:]
    loader = make_loader(src, 8, batch_size=2, shuffle=True, seed=3, repeat=True, start=4)
    it3 = iter(loader)
    assert next(it3)["index"].tolist() == stream[4:6]


def test_endless_loader_two_workers_is_deterministic():
    src = ProceduralDataset(seed_offset=100, size=24)

    def take(workers, start=0, n=4):
        it = iter(make_loader(src, 16, batch_size=2, num_workers=workers, start=start))
        return [next(it) for _ in range(n)]

    a, b, c = take(2), take(2), take(0)
    for x, y, z in zip(a, b, c):
        for k in x:
            assert torch.equal(x[k], y[k]) and torch.equal(x[k], z[k]), k
    assert [x["index"].tolist() for x in a] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    d = take(0, start=4, n=1)[0]
    for k in d:
        assert torch.equal(d[k], a[2][k])
    # the samples are the procedural scenes themselves
    ref = model_arrays(src[3], 16)
    np.testing.assert_array_equal(a[1]["image"][1].numpy(), ref["image"])
    np.testing.assert_array_equal(a[1]["depth"][1].numpy(), ref["depth"])
