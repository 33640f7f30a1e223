"""Resizes between the fixed token-map sizes, as constant matrices.

Area downsampling (16 -> 13, 10, 6, ...) and bicubic resizing between fixed sizes are linear maps.
We build each map once by running PyTorch's own `F.interpolate` on the identity basis and apply it
as a matmul. The model uses these everywhere, so the exported graphs (a MatMul with a constant,
which every exporter and TensorRT handle) compute exactly what the PyTorch model computes; the
maps equal `F.interpolate` to float rounding (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


_CACHE: dict[tuple[int, int, str], torch.Tensor] = {}


def _matrix_cpu(src: int, dst: int, mode: str) -> torch.Tensor:
    key = (src, dst, mode)
    if key not in _CACHE:
        # explicitly on the CPU: models are also built under `with torch.device("meta")`
        eye = torch.eye(src * src, dtype=torch.float64, device="cpu").view(src * src, 1, src, src)
        out = F.interpolate(eye, size=(dst, dst), mode=mode)  # image of basis vector j is row j
        m = out.view(src * src, dst * dst).T.contiguous().float()  # (dst*dst, src*src)
        if type(m) is not torch.Tensor or m.device.type != "cpu":  # fake (tracing) or meta: never cache
            return m
        _CACHE[key] = m
    return _CACHE[key]


def precompute(patch_nums) -> None:
    """Build every matrix a model with this schedule uses, eagerly (models call this when built),
    so that tracing for export finds real constants in the cache."""
    last = patch_nums[-1]
    for p in patch_nums[:-1]:
        _matrix_cpu(last, p, "area")
        _matrix_cpu(p, last, "bicubic")
        _matrix_cpu(last, p, "bicubic")


_ON_DEVICE: dict = {}


def resize_matrix(src: int, dst: int, mode: str, device=None, dtype=torch.float32) -> torch.Tensor:
    """(dst*dst, src*src) matrix M with resize(x).flatten() == M @ x.flatten() per channel.

    Copies to other devices/dtypes are cached too (no host-to-device copy per call on CUDA)."""
    m = _matrix_cpu(src, dst, mode)
    device = torch.device(device) if device is not None else m.device
    if device.type == "cpu" and dtype == torch.float32:
        return m
    key = (src, dst, mode, str(device), dtype)
    if key not in _ON_DEVICE:
        moved = m.to(device=device, dtype=dtype)
        if type(moved) is not torch.Tensor or device.type == "meta":
            return moved
        _ON_DEVICE[key] = moved
    return _ON_DEVICE[key]


def resize(x_BChw: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Resize square maps (B, C, s, s) -> (B, C, size, size) with `mode` ("area" or "bicubic")."""
    B, C, h, w = x_BChw.shape
    if h != w:
        raise ValueError(f"resize expects square maps, got {h}x{w}")
    if h == size:
        return x_BChw
    M = resize_matrix(h, size, mode, x_BChw.device, x_BChw.dtype)
    return (x_BChw.reshape(B, C, h * w) @ M.T).reshape(B, C, size, size)
