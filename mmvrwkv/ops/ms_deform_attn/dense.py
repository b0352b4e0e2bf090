"""Multi-scale deformable sampling as one dense matrix product: fast on the CPU for small
maps (the derivation: ``README.md`` beside this file)."""
from typing import Sequence, Tuple

import torch


def ms_deform_attn_dense(value: torch.Tensor, shapes: Sequence[Tuple[int, int]],
                         sampling_locations: torch.Tensor,
                         attention_weights: torch.Tensor) -> torch.Tensor:
    """Same arguments and result as :func:`~.reference.ms_deform_attn_reference`, in the
    inputs' dtype. Builds ``M [B, nH, Q, S]`` (attention times bilinear weight of each of the
    four pixels around each point, zero outside the map) with one ``scatter_add_`` and
    returns ``M @ value``; autograd differentiates through all three inputs."""
    B, S, nH, D = value.shape
    Q, L, P = sampling_locations.shape[1], sampling_locations.shape[3], \
        sampling_locations.shape[4]
    if (sampling_locations.shape[:3] != (B, Q, nH) or len(shapes) != L
            or attention_weights.shape != sampling_locations.shape[:-1]):
        raise ValueError(
            f'sampling_locations {tuple(sampling_locations.shape)} and attention_weights '
            f'{tuple(attention_weights.shape)} do not fit value {tuple(value.shape)} and '
            f'{len(shapes)} levels: expected [B={B}, Q, nH={nH}, L={len(shapes)}, P, 2] and '
            f'[B, Q, nH, L, P]')
    device = value.device
    h = torch.tensor([s[0] for s in shapes], device=device).view(L, 1)
    w = torch.tensor([s[1] for s in shapes], device=device).view(L, 1)
    sizes = [hh * ww for hh, ww in shapes]
    start = torch.tensor([sum(sizes[:i]) for i in range(L)], device=device).view(L, 1)
    loc = sampling_locations.transpose(1, 2)  # [B, nH, Q, L, P, 2]
    attn = attention_weights.transpose(1, 2)  # [B, nH, Q, L, P]
    x = loc[..., 0] * w - 0.5  # pixel coordinates (align_corners=False)
    y = loc[..., 1] * h - 0.5
    x0, y0 = x.detach().floor(), y.detach().floor()
    fx, fy = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    # is the left/right (top/bottom) neighbour inside the map?
    in_x0, in_x1 = (x0 >= 0) & (x0 < w), (x0 >= -1) & (x0 < w - 1)
    in_y0, in_y1 = (y0 >= 0) & (y0 < h), (y0 >= -1) & (y0 < h - 1)
    ax0, ax1 = attn * (1 - fx) * in_x0, attn * fx * in_x1  # attention x left/right weight
    wy0, wy1 = (1 - fy) * in_y0, fy * in_y1  # top/bottom weight
    weight = torch.stack((ax0 * wy0, ax1 * wy0, ax0 * wy1, ax1 * wy1), -1)
    corner = start + y0 * w + x0  # top-left neighbour's token index
    # pixels outside the map have weight 0; clamping only keeps their index in range
    index = torch.stack((corner, corner + 1, corner + w, corner + w + 1), -1).clamp_(0, S - 1)
    dense = value.new_zeros(B, nH, Q, S).scatter_add_(
        -1, index.view(B, nH, Q, 4 * L * P), weight.view(B, nH, Q, 4 * L * P))
    out = dense @ value.transpose(1, 2)  # [B, nH, Q, D]
    return out.transpose(1, 2).reshape(B, Q, nH * D)
