import pytest
import torch
import torch.nn.functional as F

from depthart.resize import resize, resize_matrix


@pytest.mark.parametrize("mode", ["area", "bicubic"])
def test_matrices_equal_pytorch_interpolate(mode):
    torch.manual_seed(0)
    for src, dst in [(16, 13), (16, 10), (16, 5), (16, 3), (16, 1), (4, 16), (13, 16), (2, 4), (4, 2)]:
        if mode == "area" and dst > src:
            continue
        x = torch.randn(2, 8, src, src)
        ref = F.interpolate(x, size=(dst, dst), mode=mode)
        torch.testing.assert_close(resize(x, dst, mode), ref, atol=1e-5, rtol=1e-5)
        assert resize_matrix(src, dst, mode).shape == (dst * dst, src * src)
    x = torch.randn(1, 2, 4, 4)
    assert resize(x, 4, "bicubic") is x  # same size: identity, no op in exported graphs
