"""mmcv's multi-scale deformable attention (``backend='mmcv'``): its CUDA kernel for CUDA
tensors, its PyTorch function elsewhere; mmcv is optional."""
import functools
from typing import Optional, Sequence, Tuple

import torch


@functools.lru_cache(maxsize=None)
def mmcv_functions():
    """mmcv's (CUDA autograd function, PyTorch function), or None without mmcv."""
    try:
        from mmcv.ops.multi_scale_deform_attn import (MultiScaleDeformableAttnFunction,
                                                      multi_scale_deformable_attn_pytorch)
    except ImportError:
        return None
    return MultiScaleDeformableAttnFunction, multi_scale_deformable_attn_pytorch


def _largest_divisor_upto(n: int, cap: int) -> int:
    step = max(1, min(n, cap))
    while n % step:
        step -= 1
    return step


def ms_deform_attn_mmcv(value: torch.Tensor, shapes: Sequence[Tuple[int, int]],
                        sampling_locations: torch.Tensor, attention_weights: torch.Tensor,
                        spatial_shapes: Optional[torch.Tensor] = None,
                        level_start_index: Optional[torch.Tensor] = None,
                        im2col_step: int = 64) -> torch.Tensor:
    """Arguments and result of :func:`mmvrwkv.ops.ms_deform_attn` (checked there); raises
    RuntimeError without mmcv."""
    functions = mmcv_functions()
    if functions is None:
        raise RuntimeError("ms_deform_attn: backend 'mmcv' needs mmcv (mmcv.ops), which is "
                           "not installed; use backend 'auto' or 'grid_sample'")
    device = value.device
    if spatial_shapes is None:
        spatial_shapes = torch.tensor(list(shapes), dtype=torch.long, device=device)
    if value.is_cuda:
        if level_start_index is None:
            sizes = spatial_shapes.prod(1)
            level_start_index = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
        step = _largest_divisor_upto(value.shape[0], im2col_step)
        return functions[0].apply(value, spatial_shapes, level_start_index,
                                  sampling_locations, attention_weights, step)
    return functions[1](value, spatial_shapes, sampling_locations, attention_weights)
