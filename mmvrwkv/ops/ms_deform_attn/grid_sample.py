"""Multi-scale deformable sampling with ``F.grid_sample``: the portable path (any device,
traces, exports; the one FLOP counting sees)."""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F


def ms_deform_attn_grid_sample(value: torch.Tensor, shapes: Sequence[Tuple[int, int]],
                               sampling_locations: torch.Tensor,
                               attention_weights: torch.Tensor) -> torch.Tensor:
    """Same arguments and result as :func:`~.reference.ms_deform_attn_reference`, in the
    inputs' dtype: per level one bilinear ``grid_sample`` (zero padding,
    ``align_corners=False``) and the attention-weighted sum over the points."""
    B, _, nH, D = value.shape
    Q, P = sampling_locations.shape[1], sampling_locations.shape[4]
    grids = sampling_locations * 2 - 1  # grid_sample works in [-1, 1]
    out = value.new_zeros(B * nH, D, Q)
    start = 0
    for lvl, (h, w) in enumerate(shapes):
        v = value[:, start:start + h * w]
        start += h * w
        v = v.permute(0, 2, 3, 1).reshape(B * nH, D, h, w)
        g = grids[:, :, :, lvl].permute(0, 2, 1, 3, 4).reshape(B * nH, Q, P, 2)
        sampled = F.grid_sample(v, g, mode='bilinear', padding_mode='zeros',
                                align_corners=False)  # [B*nH, D, Q, P]
        a = attention_weights[:, :, :, lvl].permute(0, 2, 1, 3).reshape(B * nH, 1, Q, P)
        out = out + (sampled * a).sum(-1)
    return out.reshape(B, nH * D, Q).transpose(1, 2).contiguous()
