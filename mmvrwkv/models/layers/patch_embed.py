"""Patch embedding of Vision-RWKV (no mmcv dependency)."""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


class PatchEmbed(nn.Module):
    """Split an image into non-overlapping patches and project them to ``embed_dims``.

    A ``Conv2d(in_channels, embed_dims, kernel_size=patch_size, stride=patch_size, bias=True)``
    named ``projection`` (state-dict key ``patch_embed.projection.*`` as in the original
    checkpoints). An input whose sides are not multiples of ``patch_size`` is zero-padded at
    the bottom and right first (mmcv's 'corner' padding), so no pixel is dropped.

    Args:
        in_channels: image channels.
        embed_dims: output channels C.
        patch_size: patch side (kernel and stride).

    Returns from ``forward``: tokens ``[B, H' * W', C]`` in raster (row-major) order and the
    patch grid ``(H', W')``.
    """

    def __init__(self, in_channels: int = 3, embed_dims: int = 192, patch_size: int = 16) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.embed_dims = embed_dims
        self.patch_size = patch_size
        self.projection = nn.Conv2d(in_channels, embed_dims, kernel_size=patch_size,
                                    stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        p = self.patch_size
        H, W = x.shape[-2:]
        pad_h, pad_w = -H % p, -W % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.projection(x)
        grid = (x.shape[2], x.shape[3])
        return x.flatten(2).transpose(1, 2), grid
