"""Token shifts and the shift-and-mix in plain PyTorch: the portable path (tracing, ONNX export
with both exporters, FLOP counting, no extension) and the reference the fused kernels match.

A shift function takes tokens ``x [B, T, C]`` in raster order over the patch grid
``patch_resolution = (H, W)`` (``T = H * W``) and returns a tensor of the same shape in which
(some) channels of every token come from a neighbouring token, zero where the neighbour lies
outside the grid. Every shift is written with narrow + zero pad + cat, never with in-place
slice assignment: the legacy ONNX exporter dies in ``index_put`` on slice assignments.

Signature of every function:
``fn(x, shift_pixel, channel_gamma, patch_resolution, *, num_heads=1) -> Tensor``
(arguments a mode does not use are accepted and ignored).
"""
import numbers
from typing import Optional, Sequence

import torch
import torch.nn.functional as F


def _shifted(g: torch.Tensor, dim: int, s: int) -> torch.Tensor:
    """``g`` moved by ``s`` positions along ``dim`` (``out[i] = g[i - s]``), zero filled;
    ``s < 0`` moves the other way. ``|s| >= size`` gives zeros."""
    n = g.shape[dim]
    # sym_min keeps a dynamic (export) size symbolic; the legacy tracer's sizes are tensors.
    k = torch.sym_min(abs(s), n) if isinstance(n, torch.SymInt) else min(abs(s), n)
    pad = [0, 0] * (g.dim() - 1 - dim)
    if s > 0:
        return F.pad(g.narrow(dim, 0, n - k), pad + [k, 0])
    return F.pad(g.narrow(dim, k, n - k), pad + [0, k])


def _grid_side(value, name: str, patch_resolution, fn: str):
    """One side of the grid as an int (a SymInt stays symbolic; the legacy tracer's 0-dim
    integer size tensors are read as ints, as before); TypeError naming ``patch_resolution``
    for anything else (floats would truncate silently, bools are not sizes)."""
    if isinstance(value, torch.SymInt):
        return value
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not (
            value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f'{fn}: patch_resolution must be a pair (H, W) of ints, got {name} = '
                        f'{value!r} ({type(value).__name__}) in {patch_resolution!r}')
    return int(value)


def grid_of(x: torch.Tensor, patch_resolution: Optional[Sequence[int]], fn: str) -> tuple:
    """``(H, W)`` as ints (symbolic sizes stay symbolic), checked against ``x``'s token count.

    Raises, naming ``patch_resolution`` and what was expected: ValueError when it is None,
    not of length 2, not positive, or ``H * W != T``; TypeError when it is not a sequence
    (a tuple, list, ``torch.Size``, a tensor or numpy array of two ints) or a side is not
    an int.
    """
    if patch_resolution is None:
        raise ValueError(f'{fn} needs patch_resolution=(H, W), the patch grid of the '
                         f'{x.shape[1]} tokens')
    if isinstance(patch_resolution, (str, bytes)) or not (
            isinstance(patch_resolution, (Sequence, torch.Tensor))
            or hasattr(patch_resolution, '__array__')):  # numpy arrays
        raise TypeError(f'{fn}: patch_resolution must be a pair (H, W) of ints, got '
                        f'{patch_resolution!r} ({type(patch_resolution).__name__})')
    if len(patch_resolution) != 2:
        raise ValueError(f'{fn}: patch_resolution must be a pair (H, W), got '
                         f'{len(patch_resolution)} values: {patch_resolution!r}')
    H, W = (_grid_side(v, n, patch_resolution, fn) for v, n in zip(patch_resolution, 'HW'))
    T = x.shape[1]
    if any(isinstance(v, torch.SymInt) for v in (H, W, T)):
        # Symbolic sizes (export with a dynamic image size): keep them symbolic, a Python
        # comparison would pin them to the example's values.
        torch._check(H * W == T, lambda: f'{fn}: patch_resolution (H, W) does not match the '
                                         'token count T')
        return H, W
    if H < 1 or W < 1:
        raise ValueError(f'{fn}: patch_resolution (H, W) must be positive, got {(H, W)}')
    if H * W != T:
        raise ValueError(f'{fn}: patch_resolution {(H, W)} does not match the token count: '
                         f'H * W = {H * W}, but x has T = {T} tokens')
    return H, W


def head_size_of(C: int, num_heads: int, fn: str) -> int:
    """Channels per head, ``C / num_heads`` (ValueError naming num_heads when it does not divide)."""
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f'{fn}: num_heads must be an int >= 1, got {num_heads!r}')
    if C % num_heads:
        raise ValueError(f'{fn}: num_heads={num_heads} must divide the channel count C={C}')
    return C // num_heads


def quarter_split(C: int, channel_gamma: float, num_heads: int = 1) -> tuple:
    """``(N, q)``: channels per head and per shift direction inside a head of the Q-Shift
    (``q = int(N * channel_gamma)``, integer truncation as in the original)."""
    N = C // num_heads
    return N, int(N * channel_gamma)


def _quad_shift(x: torch.Tensor, s: int, channel_gamma: float, H: int, W: int,
                num_heads: int) -> torch.Tensor:
    """Four-direction shift with the quarters taken inside each of ``num_heads`` heads."""
    B, T, C = x.shape
    N, q = quarter_split(C, channel_gamma, num_heads)
    g = x.reshape(B, H, W, num_heads, N)
    parts = [
        _shifted(g[..., 0:q], 2, s),              # from the left
        _shifted(g[..., q:2 * q], 2, -s),         # from the right
        _shifted(g[..., 2 * q:3 * q], 1, s),      # from above
        _shifted(g[..., 3 * q:4 * q], 1, -s),     # from below
        g[..., 4 * q:],                           # unchanged
    ]
    return torch.cat(parts, dim=-1).reshape(B, T, C)


def q_shift(x: torch.Tensor, shift_pixel: int = 1, channel_gamma: float = 0.25,
            patch_resolution: Optional[Sequence[int]] = None, *,
            num_heads: int = 1) -> torch.Tensor:
    """Quad-directional shift (Q-Shift) of Vision-RWKV.

    With ``q = int(C * channel_gamma)`` and ``s = shift_pixel``, every token takes

    * channels ``[0, q)`` from the token ``s`` columns to its left,
    * channels ``[q, 2q)`` from the token ``s`` columns to its right,
    * channels ``[2q, 3q)`` from the token ``s`` rows above,
    * channels ``[3q, 4q)`` from the token ``s`` rows below,

    with zeros where that token is outside the grid; channels ``[4q, C)`` are copied unchanged.
    It gives each token a local 2-D receptive field for O(T*C) work.

    Args:
        x: tokens ``[B, T, C]`` in raster (row-major) order.
        shift_pixel: shift distance in patches (``>= 0``; 0 returns ``x``).
        channel_gamma: fraction of the channels per direction (``<= 1/4``).
        patch_resolution: ``(H, W)`` of the patch grid, ``H * W == T``.
        num_heads: ignored (see :func:`q_shift_multihead`).
    """
    H, W = grid_of(x, patch_resolution, 'q_shift')
    if int(shift_pixel) == 0:
        return x
    return _quad_shift(x, int(shift_pixel), channel_gamma, H, W, 1)


def q_shift_multihead(x: torch.Tensor, shift_pixel: int = 1, channel_gamma: float = 0.25,
                      patch_resolution: Optional[Sequence[int]] = None, *,
                      num_heads: int = 1) -> torch.Tensor:
    """Q-Shift inside each head (VRWKV6): :func:`q_shift` applied to every head of
    ``N = C / num_heads`` channels on its own, with ``q = int(N * channel_gamma)``."""
    H, W = grid_of(x, patch_resolution, 'q_shift_multihead')
    head_size_of(x.shape[2], num_heads, 'q_shift_multihead')
    if int(shift_pixel) == 0:
        return x
    return _quad_shift(x, int(shift_pixel), channel_gamma, H, W, num_heads)


def token_shift(x: torch.Tensor, shift_pixel: int = 1, channel_gamma: float = 0.25,
                patch_resolution: Optional[Sequence[int]] = None, *,
                num_heads: int = 1) -> torch.Tensor:
    """1-D RWKV token shift: every token takes all channels of the token ``shift_pixel``
    positions earlier in raster order (zeros for the first ``shift_pixel`` tokens).

    ``channel_gamma``, ``patch_resolution`` and ``num_heads`` are accepted for a uniform
    signature and unused.
    """
    if int(shift_pixel) == 0:
        return x
    return _shifted(x, 1, int(shift_pixel))


def no_shift(x: torch.Tensor, shift_pixel: int = 1, channel_gamma: float = 0.25,
             patch_resolution: Optional[Sequence[int]] = None, *,
             num_heads: int = 1) -> torch.Tensor:
    """No token shift (identity); the mixers then skip the interpolation entirely."""
    return x


#: Shift functions by ``shift_mode`` name.
SHIFT_FUNCS = {
    'q_shift': q_shift,
    'q_shift_multihead': q_shift_multihead,
    'token_shift': token_shift,
    'none': no_shift,
}


def token_shift_mix_torch(x: torch.Tensor, mix: torch.Tensor, *, patch_resolution=None,
                          shift_mode: str = 'q_shift', shift_pixel: int = 1,
                          channel_gamma: float = 0.25, num_heads: int = 1) -> torch.Tensor:
    """``[M, B, T, C]``: ``torch.lerp(shift(x), x, mix[m])`` for every row m of ``mix [M, C]``,
    the unfused computation (a shift function, then one broadcast lerp).

    Exact to the lerp's rounding while ``max|x| <= finfo(math type).max / 2`` (range and the
    sweep that measured it: ``README.md`` beside this file); no check is made.
    """
    xx = SHIFT_FUNCS[shift_mode](x, shift_pixel, channel_gamma, patch_resolution,
                                 num_heads=num_heads)
    return torch.lerp(xx[None], x[None], mix[:, None, None, :])
