"""Public multi-scale deformable sampling op: input checks and backend choice.

Backends compute the same function (``reference.py`` states it; ``README.md`` here says
which is used where and why the dense form is fast on small maps):

* ``'mmcv'``: mmcv's CUDA kernel for CUDA tensors, its PyTorch function elsewhere
  (:mod:`.compiled`);
* ``'dense'``: one dense matrix product per batch item and head (fast on the CPU, small maps);
* ``'grid_sample'``: portable ``F.grid_sample`` path (tracing, FLOP counting, no mmcv;
  what FLOP counting sees: :mod:`.flops`);
* ``'reference'``: float64 definition (tests only).
"""
import contextlib
from typing import Optional, Sequence, Tuple

import torch

from .compiled import mmcv_functions, ms_deform_attn_mmcv
from .dense import ms_deform_attn_dense
from .flops import ms_deform_attn_flops
from .grid_sample import ms_deform_attn_grid_sample
from .reference import ms_deform_attn_reference

#: The backends of this op (not those of the compiled ops, :data:`mmvrwkv.ops.BACKENDS`: its
#: compiled kernel is mmcv's).
MSDA_BACKENDS = ('auto', 'dense', 'grid_sample', 'mmcv', 'reference')
#: Default of ``dense_max_elements``: the largest dense matrix (``B * nH * Q * S`` entries)
#: for which ``'auto'`` takes the dense form on the CPU (measurement in README.md).
DENSE_MAX_ELEMENTS = 1 << 22

Shape2d = Tuple[int, int]


def choose_backend(device_type: str, dense_elements: int,
                   dense_max_elements: int = DENSE_MAX_ELEMENTS) -> str:
    """What ``backend='auto'`` runs for a dense matrix of ``dense_elements`` entries."""
    if torch.jit.is_tracing():
        return 'grid_sample'
    if device_type == 'cpu' and 0 < dense_elements <= dense_max_elements:
        return 'dense'
    return 'mmcv' if mmcv_functions() is not None else 'grid_sample'


def ms_deform_attn(value: torch.Tensor, shapes: Sequence[Shape2d],
                   sampling_locations: torch.Tensor, attention_weights: torch.Tensor, *,
                   backend: str = 'auto', dense_max_elements: int = DENSE_MAX_ELEMENTS,
                   spatial_shapes: Optional[torch.Tensor] = None,
                   level_start_index: Optional[torch.Tensor] = None,
                   im2col_step: int = 64) -> torch.Tensor:
    """Multi-scale deformable sampling.

    Args:
        value: ``[B, S, nH, D]``, the levels' tokens concatenated in raster order.
        shapes: ``(h, w)`` of each level (``sum(h*w) == S``).
        sampling_locations: ``[B, Q, nH, L, P, 2]``, (x, y) in [0, 1] of each level.
        attention_weights: ``[B, Q, nH, L, P]``.
        backend: 'auto' | 'dense' | 'grid_sample' | 'mmcv' | 'reference'.
        dense_max_elements: largest ``B * nH * Q * S`` for which 'auto' takes 'dense' on the
            CPU (0 turns it off).
        spatial_shapes, level_start_index: ``shapes`` as tensors, if the caller has them
            (mmcv's kernel wants them; built here otherwise).
        im2col_step: mmcv's CUDA batch step (reduced to a divisor of B).

    Returns:
        ``[B, Q, nH*D]`` in ``value``'s dtype. Half/bfloat16 inputs are sampled in float32
        with autocast off (mmcv's kernel has no half path, and locations need float32).
    """
    if backend not in MSDA_BACKENDS:
        raise ValueError(f'ms_deform_attn: backend must be one of {MSDA_BACKENDS}, '
                         f'got {backend!r}')
    if value.dim() != 4:
        raise ValueError(f'ms_deform_attn: value must be [B, S, nH, D], got '
                         f'{tuple(value.shape)}')
    B, S, nH, _ = value.shape
    if sum(h * w for h, w in shapes) != S:
        raise ValueError(f'ms_deform_attn: shapes {list(shapes)} hold '
                         f'{sum(h * w for h, w in shapes)} tokens, value has S={S}')
    if backend == 'auto':
        backend = choose_backend(value.device.type, B * nH * sampling_locations.shape[1] * S,
                                 dense_max_elements)
    if backend == 'reference':
        return ms_deform_attn_reference(value, shapes, sampling_locations, attention_weights)
    dtype = value.dtype
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    value = value.to(compute)
    sampling_locations = sampling_locations.to(compute)
    attention_weights = attention_weights.to(compute)
    device_type = value.device.type
    no_autocast = torch.autocast(device_type, enabled=False) \
        if device_type in ('cuda', 'cpu') else contextlib.nullcontext()
    with no_autocast:
        if backend == 'dense':
            out = ms_deform_attn_dense(value, shapes, sampling_locations, attention_weights)
        elif backend == 'grid_sample':
            out = ms_deform_attn_grid_sample(value, shapes, sampling_locations,
                                             attention_weights)
        else:
            out = ms_deform_attn_mmcv(value, shapes, sampling_locations, attention_weights,
                                      spatial_shapes, level_start_index, im2col_step)
    return out.to(dtype)


__all__ = ['MSDA_BACKENDS', 'DENSE_MAX_ELEMENTS', 'choose_backend', 'ms_deform_attn',
           'ms_deform_attn_dense', 'ms_deform_attn_grid_sample', 'ms_deform_attn_mmcv',
           'ms_deform_attn_reference', 'ms_deform_attn_flops']
