"""Token shift and the fused shift-and-mix of the VRWKV mixers: input checks and backend choice.

:func:`token_shift_mix` returns, for tokens ``x [B, T, C]`` and the stacked mix coefficients
``mix [M, C]`` of a mixer's M inputs, ``out[m] = torch.lerp(shift(x), x, mix[m])`` as one
``[M, B, T, C]`` tensor (derivation: ``README.md`` beside this file). Backends:

* ``'cuda'``: compiled CUDA kernel (fp32/fp16/bf16 in and out with fp32 math; fp64 in fp64);
* ``'cpu'``: compiled CPU kernel (torch's thread pool over token blocks, SIMD over channels);
* ``'torch'``: the shift function of :mod:`.portable` and one lerp (tracing, ONNX export, no
  extension); exactly what the unfused modules compute;
* ``'reference'``: an explicit float64 gather (tests only; returns x's dtype here).

``'auto'`` picks the compiled kernel for x's device when the extension has it, and
``'torch'`` while tracing/scripting/exporting or without it (:func:`resolve_backend`, the one
rule :class:`~mmvrwkv.models.layers.TokenShift` also follows). Under ``torch.compile`` the
kernels are the custom op ``torch.ops.mmvrwkv.token_shift_mix_forward`` with fake and
autograd rules (:mod:`.compiled`), so there is no graph break.
"""
from typing import Callable, Optional, Sequence

import torch

from .. import backends
from . import compiled  # noqa: F401  (registers the kernels' rules)
from .portable import (SHIFT_FUNCS, grid_of, head_size_of, no_shift, q_shift, q_shift_multihead,
                       quarter_split, token_shift, token_shift_mix_torch)
from .reference import token_shift_mix_reference

__all__ = ['SHIFT_FUNCS', 'q_shift', 'q_shift_multihead', 'token_shift', 'no_shift',
           'token_shift_mix', 'token_shift_mix_torch', 'token_shift_mix_reference',
           'resolve_backend', 'shift_function', 'check_shift_config', 'head_size_of',
           'quarter_split', 'grid_of']

_FN = 'token_shift_mix'


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend :func:`token_shift_mix` runs for ``backend`` on ``device``
    (:func:`mmvrwkv.ops.backends.resolve_backend` for this op)."""
    return backends.resolve_backend(_FN, backend, device)


def shift_function(shift_mode: str, fn: str = _FN) -> Callable[..., torch.Tensor]:
    """The shift function called ``shift_mode`` (a key of :data:`SHIFT_FUNCS`, never looked
    up with ``eval``); ValueError listing the valid names (message prefixed by ``fn``)."""
    if not isinstance(shift_mode, str) or shift_mode not in SHIFT_FUNCS:
        raise ValueError(f'{fn}: shift_mode must be one of {sorted(SHIFT_FUNCS)}, '
                         f'got {shift_mode!r}')
    return SHIFT_FUNCS[shift_mode]


def check_shift_config(shift_mode: str, shift_pixel: int, channel_gamma: float,
                       fn: str = _FN) -> None:
    """ValueError naming the argument (message prefixed by ``fn``) unless ``shift_mode`` is a
    key of :data:`SHIFT_FUNCS`, ``shift_pixel`` an int >= 0 and ``channel_gamma`` in (0, 1/4]."""
    shift_function(shift_mode, fn)
    if isinstance(shift_pixel, bool) or not isinstance(shift_pixel, int) or shift_pixel < 0:
        raise ValueError(f'{fn}: shift_pixel must be an int >= 0, got {shift_pixel!r}')
    if not isinstance(channel_gamma, (int, float)) or not 0 < channel_gamma <= 0.25:
        raise ValueError(f'{fn}: channel_gamma must be in (0, 1/4] (one share per shift '
                         f'direction), got {channel_gamma!r}')


def _check(x, mix, patch_resolution, shift_mode, shift_pixel, channel_gamma, num_heads) -> None:
    backends.check_float_tensors(_FN, x=x, mix=mix)
    if x.dim() != 3:
        raise ValueError(f'{_FN}: x must have shape [B, T, C], got {tuple(x.shape)}')
    if mix.dim() != 2 or mix.shape[1] != x.shape[2] or mix.shape[0] < 1:
        raise ValueError(f'{_FN}: mix must have shape [M, C] with M >= 1 and C = {x.shape[2]}, '
                         f'got {tuple(mix.shape)}')
    if mix.dtype != x.dtype:
        raise TypeError(f'{_FN}: mix must have the dtype of x ({x.dtype}), got {mix.dtype}')
    if mix.device != x.device:
        raise ValueError(f'{_FN}: mix is on {mix.device} but x is on {x.device}')
    check_shift_config(shift_mode, shift_pixel, channel_gamma)
    if shift_mode == 'q_shift_multihead':
        head_size_of(x.shape[2], num_heads, _FN)
    if shift_mode.startswith('q_shift'):
        grid_of(x, patch_resolution, _FN)


def token_shift_mix(x: torch.Tensor, mix: torch.Tensor, *,
                    patch_resolution: Optional[Sequence[int]] = None,
                    shift_mode: str = 'q_shift', shift_pixel: int = 1,
                    channel_gamma: float = 0.25, num_heads: int = 1,
                    backend: str = 'auto') -> torch.Tensor:
    """Token shift and the M interpolations of a mixer's inputs in one pass over ``x``.

    Args:
        x: tokens ``[B, T, C]`` in raster order over the patch grid.
        mix: mix coefficients ``[M, C]`` (1 keeps the token itself), x's dtype and device.
        patch_resolution: ``(H, W)``, two positive ints with ``H * W == T`` (the Q-Shift
            modes need it; anything else raises ValueError or TypeError naming it).
        shift_mode: a key of :data:`SHIFT_FUNCS`.
        shift_pixel: shift distance (0: no shift; at least the grid size: all zeros).
        channel_gamma: fraction of the channels per Q-Shift direction (<= 1/4).
        num_heads: heads of ``'q_shift_multihead'`` (must divide C); ignored otherwise.
        backend: one of :data:`mmvrwkv.ops.BACKENDS`.

    Returns:
        ``[M, B, T, C]`` with x's dtype, ``out[m] = torch.lerp(shift(x), x, mix[m])``;
        differentiable w.r.t. x and mix. Exact to the lerp's rounding while
        ``max|x| <= finfo.max / 2`` (range: :func:`.portable.token_shift_mix_torch`).
    """
    _check(x, mix, patch_resolution, shift_mode, shift_pixel, channel_gamma, num_heads)
    name = resolve_backend(backend, x.device)
    kwargs = dict(patch_resolution=patch_resolution, shift_mode=shift_mode,
                  shift_pixel=shift_pixel, channel_gamma=channel_gamma, num_heads=num_heads)
    if name == 'torch':
        return token_shift_mix_torch(x, mix, **kwargs)
    if name == 'reference':
        return token_shift_mix_reference(x, mix, **kwargs).to(x.dtype)
    C = x.shape[2]
    H, W = (int(v) for v in patch_resolution) if shift_mode.startswith('q_shift') else (1, x.shape[1])
    head_size, quarter = quarter_split(C, channel_gamma,
                                       num_heads if shift_mode == 'q_shift_multihead' else 1)
    return torch.ops.mmvrwkv.token_shift_mix_forward(x.contiguous(), mix.contiguous(), H, W,
                                                     shift_mode, shift_pixel, head_size, quarter)
