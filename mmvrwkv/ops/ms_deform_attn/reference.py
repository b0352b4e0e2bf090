"""Multi-scale deformable sampling by its definition, in float64: for tests only.

For batch b, query q, head n: ``out = sum_{l, p} a[b,q,n,l,p] * bilinear(value_l, loc)``,
where the location ``(x, y)`` in [0, 1] of level l maps to the pixel coordinates
``(x w - 1/2, y h - 1/2)`` (``align_corners=False``). The bilinear value mixes the four
pixels around that point, and pixels outside the map count as zero.
"""
from typing import Sequence, Tuple

import torch


def ms_deform_attn_reference(value: torch.Tensor, shapes: Sequence[Tuple[int, int]],
                             sampling_locations: torch.Tensor,
                             attention_weights: torch.Tensor) -> torch.Tensor:
    """``value [B, S, nH, D]``, locations ``[B, Q, nH, L, P, 2]``, weights
    ``[B, Q, nH, L, P]`` -> ``[B, Q, nH*D]`` (float64)."""
    value, loc, attn = value.double(), sampling_locations.double(), attention_weights.double()
    B, _, nH, D = value.shape
    Q = loc.shape[1]
    out = value.new_zeros(B, Q, nH, D)
    start = 0
    for lvl, (h, w) in enumerate(shapes):
        level = value[:, start:start + h * w].reshape(B, h, w, nH, D)
        start += h * w
        x = loc[:, :, :, lvl, :, 0] * w - 0.5  # [B, Q, nH, P]
        y = loc[:, :, :, lvl, :, 1] * h - 0.5
        x0, y0 = x.detach().floor(), y.detach().floor()
        fx, fy = x - x0, y - y0  # in [0, 1): weights (1 - f, f) of the two neighbours
        b = torch.arange(B).view(B, 1, 1, 1)
        n = torch.arange(nH).view(1, 1, nH, 1)
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                xi, yi = x0 + dx, y0 + dy
                inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
                xc, yc = xi.clamp(0, w - 1).long(), yi.clamp(0, h - 1).long()
                pixel = level[b, yc, xc, n]  # [B, Q, nH, P, D]
                scale = (attn[:, :, :, lvl] * wx * wy * inside)[..., None]
                out = out + (scale * pixel).sum(3)
    return out.reshape(B, Q, nH * D)
