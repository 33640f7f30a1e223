"""A small U-Net that guesses a relative depth map from an RGB image: the image side of a model with
`ModelConfig.image_unet` set.

VAR's VQ-VAE reads the image with the encoder it reads depth maps with; the transformer then sees the image only
through that latent's multi-scale tokens (its prefix). Here the image first goes through this network, a
convolutional depth guess, and the VQ-VAE's own depth encoder makes the prefix's latent of the guess: the prefix
is then a token pyramid in the very space the depth tokens live in, and the transformer refines it scale by scale
(docs/experiments.md, section 17). Levels: two 3x3 conv + BatchNorm + ReLU each, max-pool down, transposed conv up,
skip connections, a sigmoid output in [0, 1] (the normalised depth: depth / q98, as `depthart.data` makes targets).
"""

from __future__ import annotations

import torch
from torch import nn


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class DepthUNet(nn.Module):
    """RGB in [-1, 1] (B, 3, H, W) -> relative depth in [0, 1] (B, 1, H, W); H and W divisible by
    2 ** (len(channels) - 1)."""

    def __init__(self, channels: tuple[int, ...] = (12, 24, 48, 96, 192)):
        super().__init__()
        self.channels = tuple(channels)
        c = self.channels
        self.down = nn.ModuleList([_double_conv(3 if i == 0 else c[i - 1], c[i]) for i in range(len(c))])
        self.up = nn.ModuleList([nn.ConvTranspose2d(c[i + 1], c[i], 2, stride=2) for i in range(len(c) - 1)])
        self.merge = nn.ModuleList([_double_conv(2 * c[i], c[i]) for i in range(len(c) - 1)])
        self.out = nn.Conv2d(c[0], 1, 1)
        self.pool = nn.MaxPool2d(2)

    @property
    def stride(self) -> int:
        return 2 ** (len(self.channels) - 1)

    def forward(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        skips, x = [], img_B3HW
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        for i in reversed(range(len(self.up))):
            x = self.merge[i](torch.cat([self.up[i](x), skips[i]], dim=1))
        return torch.sigmoid(self.out(x))
